//! The formats that are containers or dialects of others: reStructuredText (its source, headings
//! from their underlines), Word documents and EPUB books (zip archives of XML, read into an
//! [`Outline`]), Jupyter notebooks (JSON, written out as Markdown: text cells as they are, code
//! cells as fences; outputs are left out).

use std::{borrow::Cow, collections::HashMap, io::Read};

use quick_xml::{
    XmlVersion,
    escape::resolve_predefined_entity,
    events::{BytesRef, BytesStart, Event},
};

use super::{ExtractError, Extracted, HtmlWalker, Kind, Lines, Outline, html_content, paragraph};

/// Most bytes the parts of a docx or epub may inflate to, all together: a 2 MB archive can hold
/// gigabytes of zeros.
pub const MAX_CONTAINER_INFLATED_BYTES: u64 = 256 * 1024 * 1024;
/// Most parts a docx or epub may have.
pub const MAX_CONTAINER_PARTS: usize = 10_000;

fn broken(what: impl std::fmt::Display) -> ExtractError {
    ExtractError::Container(what.to_string())
}

/// A docx or epub: a zip archive whose parts are read against one budget of inflated bytes.
struct Container<'a> {
    archive: zip::ZipArchive<std::io::Cursor<&'a [u8]>>,
    budget: u64,
    what: &'static str,
}

impl<'a> Container<'a> {
    fn open(bytes: &'a [u8], what: &'static str) -> Result<Self, ExtractError> {
        let archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|error| broken(format!("not a readable {what} (a zip archive): {error}")))?;
        if archive.len() > MAX_CONTAINER_PARTS {
            return Err(broken(format!(
                "a {what} of {} parts (more than {MAX_CONTAINER_PARTS}); not read",
                archive.len()
            )));
        }
        Ok(Self {
            archive,
            budget: MAX_CONTAINER_INFLATED_BYTES,
            what,
        })
    }

    /// The part `name`, inflated; `None` if there is none.
    fn part(&mut self, name: &str) -> Result<Option<Vec<u8>>, ExtractError> {
        let what = self.what;
        let mut file = match self.archive.by_name(name) {
            Ok(file) => file,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(error) => {
                return Err(broken(format!(
                    "{name} in the {what} cannot be read: {error}"
                )));
            }
        };
        let mut bytes = Vec::new();
        // The sizes an archive declares may lie: what is read is what counts. The zip reader
        // checks each part's CRC at its end.
        Read::take(&mut file, self.budget + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| broken(format!("{name} in the {what} cannot be read: {error}")))?;
        if bytes.len() as u64 > self.budget {
            return Err(broken(format!(
                "the {what}'s parts inflate to more than {} MB (a decompression bomb?); not read",
                MAX_CONTAINER_INFLATED_BYTES / (1024 * 1024)
            )));
        }
        self.budget -= bytes.len() as u64;
        Ok(Some(bytes))
    }
}

/// An attribute's value by its local name (`w:val` → `val`).
fn attribute(element: &BytesStart<'_>, name: &str) -> Option<String> {
    element
        .attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| a.normalized_value(XmlVersion::Implicit1_0).ok())
        .map(Cow::into_owned)
}

/// What an entity reference stands for (`&amp;`, `&#233;`); nothing for one a DTD would
/// declare (never expanded: no entity bombs).
pub(crate) fn reference(reference: &BytesRef<'_>) -> Option<Cow<'static, str>> {
    if let Ok(Some(c)) = reference.resolve_char_ref() {
        return Some(Cow::Owned(c.to_string()));
    }
    resolve_predefined_entity(reference).map(Cow::Borrowed)
}

fn not_xml(name: &str, error: quick_xml::Error) -> ExtractError {
    broken(format!("{name} is not well-formed XML: {error}"))
}

/// `heading 2` → 2, `Heading2` → 2, `Title` → 1 (style names and ids alike); deeper than 6 is 6.
fn heading_level(name: &str) -> Option<u8> {
    let name = name.to_ascii_lowercase().replace(' ', "");
    if name == "title" {
        return Some(1);
    }
    let level: u8 = name.strip_prefix("heading")?.parse().ok()?;
    (1..=9).contains(&level).then_some(level.min(6))
}

/// `w:outlineLvl`'s value (0-based, 9 for body text) as a heading level.
fn outline_level(element: &BytesStart<'_>) -> Option<u8> {
    let level: u8 = attribute(element, "val")?.parse().ok()?;
    (level < 9).then_some((level + 1).min(6))
}

/// A Word document: its paragraphs in order, those in a heading style (by the style's name in
/// `styles.xml`, whatever the id a translated Word gave it, or by its outline level) as headings;
/// its title from the document's properties.
pub(super) fn docx(stem: String, bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let mut document = Container::open(bytes, "Word document")?;
    let styles = match document.part("word/styles.xml")? {
        Some(xml) => heading_styles(&xml).map_err(|e| not_xml("word/styles.xml", e))?,
        None => HashMap::new(),
    };
    let title = match document.part("docProps/core.xml")? {
        Some(xml) => first_text(&xml, "title").map_err(|e| not_xml("docProps/core.xml", e))?,
        None => None,
    };
    let body = document
        .part("word/document.xml")?
        .ok_or_else(|| broken("not a Word document: it has no word/document.xml"))?;
    let mut outline = Outline::default();
    docx_body(&body, &styles, &mut outline).map_err(|e| not_xml("word/document.xml", e))?;
    Ok(outline.finish(Kind::Docx, title, stem))
}

/// Paragraph style id → heading level.
fn heading_styles(xml: &[u8]) -> Result<HashMap<String, u8>, quick_xml::Error> {
    let mut levels = HashMap::new();
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut style: Option<String> = None;
    loop {
        match reader.read_event()? {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                "style" => style = attribute(&e, "styleId"),
                "name" => {
                    let level = attribute(&e, "val").and_then(|name| heading_level(&name));
                    if let (Some(id), Some(level)) = (&style, level) {
                        levels.insert(id.clone(), level);
                    }
                }
                "outlineLvl" => {
                    if let (Some(id), Some(level)) = (&style, outline_level(&e)) {
                        levels.entry(id.clone()).or_insert(level);
                    }
                }
                _ => {}
            },
            Event::End(e) if e.local_name().as_ref() == "style" => style = None,
            Event::Eof => return Ok(levels),
            _ => {}
        }
    }
}

/// The text of the first element named `name` (local name), if any.
fn first_text(xml: &[u8], name: &str) -> Result<Option<String>, quick_xml::Error> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut text: Option<String> = None;
    loop {
        match reader.read_event()? {
            Event::Start(e) if text.is_none() && e.local_name().as_ref() == name => {
                text = Some(String::new());
            }
            Event::Text(t) => {
                if let Some(text) = &mut text {
                    text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let (Some(text), Some(r)) = (&mut text, reference(&r)) {
                    text.push_str(&r);
                }
            }
            Event::End(e) if e.local_name().as_ref() == name => {
                return Ok(text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()));
            }
            Event::Eof => return Ok(None),
            _ => {}
        }
    }
}

/// `word/document.xml`'s paragraphs into `outline`: the text of their runs (`w:t`; tabs and
/// breaks kept; deleted text and field codes left out), a heading when its style is one.
fn docx_body(
    xml: &[u8],
    styles: &HashMap<String, u8>,
    outline: &mut Outline,
) -> Result<(), quick_xml::Error> {
    #[derive(Default)]
    struct Paragraph {
        text: String,
        level: Option<u8>,
    }
    let mut reader = quick_xml::Reader::from_reader(xml);
    // Paragraphs nest (a text box's inside the paragraph that anchors it).
    let mut open: Vec<Paragraph> = Vec::new();
    let mut in_text = false;
    let mut in_properties = false;
    loop {
        match reader.read_event()? {
            Event::Start(e) => match e.local_name().as_ref() {
                "p" => open.push(Paragraph::default()),
                "t" => in_text = true,
                "pPr" => in_properties = true,
                _ => {}
            },
            Event::Empty(e) => {
                let Some(paragraph) = open.last_mut() else {
                    continue;
                };
                match e.local_name().as_ref() {
                    "pStyle" => {
                        if let Some(id) = attribute(&e, "val") {
                            paragraph.level = styles.get(&id).copied().or(heading_level(&id));
                        }
                    }
                    "outlineLvl" if in_properties => {
                        paragraph.level = paragraph.level.or(outline_level(&e));
                    }
                    "tab" if !in_properties => paragraph.text.push('\t'),
                    "br" | "cr" if !in_properties => paragraph.text.push('\n'),
                    _ => {}
                }
            }
            Event::Text(t) if in_text => {
                if let Some(paragraph) = open.last_mut() {
                    paragraph.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) if in_text => {
                if let (Some(paragraph), Some(r)) = (open.last_mut(), reference(&r)) {
                    paragraph.text.push_str(&r);
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_text = false,
                "pPr" => in_properties = false,
                "p" => {
                    if let Some(paragraph) = open.pop() {
                        match paragraph.level {
                            Some(level) => outline.heading(level, &paragraph.text),
                            None => outline.push(paragraph.text.trim(), false),
                        }
                    }
                }
                _ => {}
            },
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// An EPUB book: its chapters in reading order (the package's spine), each read as HTML, under
/// the book's title.
pub(super) fn epub(stem: String, bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let mut book = Container::open(bytes, "EPUB book")?;
    let container = book
        .part("META-INF/container.xml")?
        .ok_or_else(|| broken("not an EPUB book: it has no META-INF/container.xml"))?;
    let package_path = rootfile(&container)
        .map_err(|e| not_xml("META-INF/container.xml", e))?
        .ok_or_else(|| broken("not an EPUB book: its container names no package"))?;
    let package = book
        .part(&package_path)?
        .ok_or_else(|| broken(format!("the EPUB book's package {package_path} is missing")))?;
    let (title, spine) = spine(&package).map_err(|e| not_xml(&package_path, e))?;
    let base = package_path.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut walker = HtmlWalker::default();
    for href in spine {
        // A chapter the package names and the archive lacks is the book's own fault: the rest
        // is still worth reading.
        let Some(page) = book.part(&join_href(base, &href))? else {
            continue;
        };
        let page = String::from_utf8_lossy(&page);
        let document = scraper::Html::parse_document(&page);
        walker.flush();
        walker.outline.reset_headings();
        if let Some(root) = html_content(&document) {
            walker.walk(root);
        }
        walker.flush();
    }
    Ok(walker.outline.finish(Kind::Epub, title, stem))
}

/// The package's path from `META-INF/container.xml`.
fn rootfile(xml: &[u8]) -> Result<Option<String>, quick_xml::Error> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    loop {
        match reader.read_event()? {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "rootfile" => {
                return Ok(attribute(&e, "full-path"));
            }
            Event::Eof => return Ok(None),
            _ => {}
        }
    }
}

/// The package's title and the hrefs of its spine, in reading order.
fn spine(xml: &[u8]) -> Result<(Option<String>, Vec<String>), quick_xml::Error> {
    let title = first_text(xml, "title")?;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut items: HashMap<String, String> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    loop {
        match reader.read_event()? {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                "item" => {
                    if let (Some(id), Some(href)) = (attribute(&e, "id"), attribute(&e, "href")) {
                        items.insert(id, href);
                    }
                }
                "itemref" => order.extend(attribute(&e, "idref")),
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    let hrefs = order
        .iter()
        .filter_map(|id| items.get(id).cloned())
        .collect();
    Ok((title, hrefs))
}

/// An href of the package (relative to `base`, percent-encoded, maybe with a fragment) as the
/// name of a part of the archive.
fn join_href(base: &str, href: &str) -> String {
    let href = href.split('#').next().unwrap_or_default();
    let href = percent_encoding::percent_decode_str(href).decode_utf8_lossy();
    let mut parts: Vec<&str> = if href.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|p| !p.is_empty()).collect()
    };
    for part in href.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// A Jupyter notebook (nbformat 4) written as Markdown: Markdown cells as they are, code and raw
/// cells as fences in the notebook's language. Outputs are left out: they are results (often
/// images, tables of numbers or long logs), not documentation.
pub(super) fn notebook(text: &str) -> Result<String, ExtractError> {
    #[derive(serde::Deserialize)]
    struct Notebook {
        cells: Vec<Cell>,
        #[serde(default)]
        metadata: serde_json::Value,
    }
    #[derive(serde::Deserialize)]
    struct Cell {
        cell_type: String,
        #[serde(default)]
        source: Source,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Source {
        Text(String),
        Lines(Vec<String>),
    }
    impl Default for Source {
        fn default() -> Self {
            Source::Text(String::new())
        }
    }
    let notebook: Notebook = serde_json::from_str(text).map_err(|error| {
        broken(format!(
            "not a Jupyter notebook (nbformat 4 JSON with `cells`): {error}"
        ))
    })?;
    let metadata = &notebook.metadata;
    let language = [
        &metadata["kernelspec"]["language"],
        &metadata["language_info"]["name"],
    ]
    .into_iter()
    .find_map(|v| v.as_str())
    .unwrap_or("python")
    .to_owned();
    let mut markdown = String::new();
    for cell in notebook.cells {
        let source = match cell.source {
            Source::Text(text) => text,
            Source::Lines(lines) => lines.concat(),
        };
        let source = source.trim_end();
        if source.trim().is_empty() {
            continue;
        }
        if cell.cell_type == "markdown" {
            markdown.push_str(source);
        } else {
            // Longer than any run of backticks inside, so the cell cannot close its fence.
            let longest = source.split(|c| c != '`').map(str::len).max().unwrap_or(0);
            let fence = "`".repeat(longest.max(2) + 1);
            let info = if cell.cell_type == "code" {
                language.as_str()
            } else {
                ""
            };
            markdown.push_str(&format!("{fence}{info}\n{source}\n{fence}"));
        }
        markdown.push_str("\n\n");
    }
    Ok(markdown)
}

/// reStructuredText: its source, cut at blank lines into paragraphs under the section titles
/// (a title underlined, or over- and underlined, by a line of one punctuation character; levels
/// in the order the styles first appear, as docutils assigns them); literal blocks (after `::`
/// or a code directive) are atomic.
pub(super) fn rst(stem: String, text: String) -> Extracted {
    let lines = Lines::new(&text);
    let mut spans: Vec<(usize, &str)> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        spans.push((offset, line.trim_end_matches(['\n', '\r'])));
        offset += line.len();
    }
    let end_of = |i: usize| spans.get(i + 1).map_or(text.len(), |s| s.0);
    let mut styles: Vec<(char, bool)> = Vec::new();
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut title = None;
    let mut blocks = Vec::new();
    let mut literal_next = false;
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i <= spans.len() {
        let line = spans.get(i).map(|s| s.1);
        if line.is_none_or(|l| l.trim().is_empty()) {
            if let Some(from) = start.take() {
                let path: Vec<String> = headings.iter().map(|(_, h)| h.clone()).collect();
                let mut block = paragraph(&text, &lines, spans[from].0, end_of(i - 1), &path);
                let indented = spans[from].1.starts_with([' ', '\t']);
                block.atomic = indented && literal_next;
                if !indented {
                    let first = block.text.trim_start();
                    literal_next = block.text.ends_with("::")
                        || [".. code", ".. sourcecode", ".. literalinclude"]
                            .iter()
                            .any(|d| first.starts_with(d));
                }
                blocks.push(block);
            }
            i += 1;
            continue;
        }
        if start.is_none()
            && let Some((heading, style, taken)) = section_title(&spans, i)
        {
            let level = match styles.iter().position(|s| *s == style) {
                Some(at) => at,
                None => {
                    styles.push(style);
                    styles.len() - 1
                }
            };
            headings.retain(|(l, _)| *l < level);
            title.get_or_insert_with(|| heading.clone());
            headings.push((level, heading));
            literal_next = false;
            i += taken;
            continue;
        }
        start.get_or_insert(i);
        i += 1;
    }
    Extracted {
        kind: Kind::Rst,
        title: title.unwrap_or(stem),
        blocks,
        text,
    }
}

/// A line of at least three of one punctuation character: a section title's adornment.
fn adornment(line: &str) -> Option<char> {
    let line = line.trim_end();
    let first = line.chars().next()?;
    (first.is_ascii_punctuation() && line.len() >= 3 && line.chars().all(|c| c == first))
        .then_some(first)
}

/// A section title starting at line `i`: its text, its style (character, overlined) and the
/// lines it takes.
fn section_title(spans: &[(usize, &str)], i: usize) -> Option<(String, (char, bool), usize)> {
    let line = |at: usize| spans.get(at).map(|s| s.1);
    let text_line = |l: &str| !l.trim().is_empty() && adornment(l).is_none();
    let first = line(i)?;
    if let Some(over) = adornment(first)
        && let (Some(text), Some(under)) = (line(i + 1), line(i + 2))
        && text_line(text)
        && adornment(under) == Some(over)
    {
        return Some((text.trim().to_owned(), (over, true), 3));
    }
    if text_line(first)
        && !first.starts_with([' ', '\t'])
        && let Some(under) = line(i + 1).and_then(adornment)
    {
        return Some((first.trim().to_owned(), (under, false), 2));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rst_titles_nest_by_the_order_their_styles_appear() {
        let source = "=====\nGuide\n=====\n\nIntro text.\n\nInstall\n-------\n\nRun this::\n\n    cargo install x\n\n    x --help\n\nUsage\n-----\n\nDetails\n~~~~~~~\n\nMore.\n";
        let doc = rst("stem".into(), source.into());
        assert_eq!(doc.title, "Guide");
        let found: Vec<(Vec<&str>, &str, bool)> = doc
            .blocks
            .iter()
            .map(|b| {
                (
                    b.headings.iter().map(String::as_str).collect(),
                    b.text.trim(),
                    b.atomic,
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (vec!["Guide"], "Intro text.", false),
                (vec!["Guide", "Install"], "Run this::", false),
                (vec!["Guide", "Install"], "cargo install x", true),
                (vec!["Guide", "Install"], "x --help", true),
                (vec!["Guide", "Usage", "Details"], "More.", false),
            ]
        );
        // Lines count the source's.
        assert_eq!(doc.blocks[2].lines, (12, 12));
        assert_eq!(doc.blocks[4].lines, (22, 22));
    }

    #[test]
    fn a_paragraph_that_continues_into_dashes_is_not_a_title() {
        let doc = rst("s".into(), "One line\nand another\n----\n".into());
        assert_eq!(doc.blocks.len(), 1);
        assert!(doc.blocks[0].headings.is_empty());
    }

    #[test]
    fn hrefs_resolve_against_the_package() {
        assert_eq!(
            join_href("OEBPS", "Text/ch%201.xhtml#top"),
            "OEBPS/Text/ch 1.xhtml"
        );
        assert_eq!(
            join_href("OEBPS/pkg", "../Text/a.xhtml"),
            "OEBPS/Text/a.xhtml"
        );
        assert_eq!(join_href("", "a.xhtml"), "a.xhtml");
        // Climbing out of the archive's root stays at its root.
        assert_eq!(join_href("", "../../a.xhtml"), "a.xhtml");
    }

    #[test]
    fn style_names_and_ids_give_heading_levels() {
        assert_eq!(heading_level("heading 2"), Some(2));
        assert_eq!(heading_level("Heading1"), Some(1));
        assert_eq!(heading_level("Title"), Some(1));
        assert_eq!(heading_level("heading 9"), Some(6));
        assert_eq!(heading_level("Normal"), None);
        assert_eq!(heading_level("heading 0"), None);
    }

    #[test]
    fn a_notebook_cell_with_backticks_cannot_close_its_fence() {
        let cells = serde_json::json!({
            "cells": [
                {"cell_type": "markdown", "source": ["# Title\n", "Some text."]},
                {"cell_type": "code", "source": "print('```')\n", "outputs": []},
                {"cell_type": "code", "source": []}
            ],
            "metadata": {"kernelspec": {"language": "python"}}
        });
        let markdown = notebook(&cells.to_string()).unwrap();
        assert_eq!(
            markdown,
            "# Title\nSome text.\n\n````python\nprint('```')\n````\n\n"
        );
    }
}
