//! From a file to its structure: a title and a list of blocks, each under a heading path, with
//! the lines it spans. Markdown keeps its source text (fences and all); HTML and PDF become text
//! (their line numbers count lines of that text, which is what `get_document` shows); source code
//! is cut at its top-level definitions.

use std::path::Path;

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

pub(crate) mod formats;

/// The kinds of file we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Markdown (`.md`, `.markdown`).
    Markdown,
    /// Plain text.
    Text,
    /// HTML.
    Html,
    /// PDF.
    Pdf,
    /// reStructuredText.
    Rst,
    /// A Word document (`.docx`).
    Docx,
    /// An EPUB book.
    Epub,
    /// A Jupyter notebook (`.ipynb`).
    Notebook,
    /// Source code; the language's name.
    Code(&'static str),
}

impl Kind {
    /// The kind's name as searches filter by it (`markdown`, `rust`, …).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Markdown => "markdown",
            Kind::Text => "text",
            Kind::Html => "html",
            Kind::Pdf => "pdf",
            Kind::Rst => "rst",
            Kind::Docx => "docx",
            Kind::Epub => "epub",
            Kind::Notebook => "notebook",
            Kind::Code(language) => language,
        }
    }

    /// The kind of a file, from its extension (or name); `None` for files we do not read.
    pub fn of(path: &Path) -> Option<Kind> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if matches!(name.as_str(), "readme" | "license" | "changelog" | "notes") {
            return Some(Kind::Text);
        }
        let extension = name.rsplit_once('.')?.1;
        Some(match extension {
            "md" | "markdown" | "mdx" | "mdown" => Kind::Markdown,
            "txt" | "text" | "adoc" | "org" | "csv" | "tsv" | "log" => Kind::Text,
            "rst" | "rest" => Kind::Rst,
            "docx" => Kind::Docx,
            "epub" => Kind::Epub,
            "ipynb" => Kind::Notebook,
            "html" | "htm" | "xhtml" => Kind::Html,
            "pdf" => Kind::Pdf,
            "rs" => Kind::Code("rust"),
            "py" | "pyi" => Kind::Code("python"),
            "js" | "mjs" | "cjs" | "jsx" => Kind::Code("javascript"),
            "ts" | "tsx" | "mts" => Kind::Code("typescript"),
            "go" => Kind::Code("go"),
            "java" => Kind::Code("java"),
            "kt" | "kts" => Kind::Code("kotlin"),
            "c" | "h" => Kind::Code("c"),
            "cc" | "cpp" | "cxx" | "hpp" | "hh" => Kind::Code("cpp"),
            "cs" => Kind::Code("csharp"),
            "rb" => Kind::Code("ruby"),
            "php" => Kind::Code("php"),
            "swift" => Kind::Code("swift"),
            "scala" => Kind::Code("scala"),
            "sh" | "bash" | "zsh" => Kind::Code("shell"),
            "sql" => Kind::Code("sql"),
            "toml" | "yaml" | "yml" | "json" | "ini" | "cfg" => Kind::Code("config"),
            _ => return None,
        })
    }
}

/// A piece of a document that chunking keeps in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The headings above it, outermost first.
    pub headings: Vec<String>,
    /// Its text.
    pub text: String,
    /// First and last line (1-based, inclusive).
    pub lines: (usize, usize),
    /// Never split (a code fence, a function).
    pub atomic: bool,
}

/// What a file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// What kind of file it is.
    pub kind: Kind,
    /// Its title (the first heading, `<title>`, or the file name).
    pub title: String,
    /// Its blocks, in order.
    pub blocks: Vec<Block>,
    /// The text `get_document` shows and line numbers count (the source for text formats).
    pub text: String,
}

/// Why a file was not read; the index reports it with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Not valid UTF-8 text.
    #[error("not valid UTF-8 text (a binary file?)")]
    NotText,
    /// The PDF could not be parsed.
    #[error("the PDF could not be read: {0}")]
    Pdf(String),
    /// Nothing to index in it.
    #[error("no text in it")]
    Empty,
    /// A PDF took longer than the time limit.
    #[error(
        "reading the PDF took more than {} s (a hostile or broken file?); not read",
        MAX_PDF_TIME.as_secs()
    )]
    TooSlow,
    /// Too many slow PDFs are still being read.
    #[error(
        "{MAX_PDF_READERS} slow PDFs are still being read; this one was left out (index again later)"
    )]
    Busy,
    /// A docx or epub that cannot be read as one.
    #[error("{0}")]
    Container(String),
    /// A PDF's streams inflate past the limit.
    #[error(
        "the PDF's compressed streams inflate to more than {} MB (a decompression bomb?); not read",
        MAX_PDF_INFLATED_BYTES / (1024 * 1024)
    )]
    Bomb,
}

/// Most bytes a PDF's compressed streams may inflate to, all together. A PDF of 2 MB can hold
/// gigabytes of zeros; pdf-extract would inflate them whole (the attack run saw 4.18 GB).
pub const MAX_PDF_INFLATED_BYTES: u64 = 256 * 1024 * 1024;

/// Inflates every zlib stream of `bytes` (each `stream … endstream`, object streams included)
/// into nothing, counting, and stops as soon as the count passes the limit: what pdf-extract will
/// ask of memory, learned at the cost of one bounded pass and no parser.
fn check_inflation(bytes: &[u8]) -> Result<(), ExtractError> {
    use std::io::Read;
    let mut total: u64 = 0;
    let mut at = 0;
    while let Some(found) = find(&bytes[at..], b"stream") {
        let mut start = at + found + b"stream".len();
        at = start;
        // `endstream` also contains `stream`; only a keyword followed by an end of line opens one.
        match bytes.get(start..start + 2) {
            Some([b'\r', b'\n']) => start += 2,
            Some([b'\n', _]) | Some([b'\n']) => start += 1,
            _ => continue,
        }
        let end = find(&bytes[start..], b"endstream").map_or(bytes.len(), |e| start + e);
        let body = &bytes[start..end];
        // Past the `endstream`, whose own `stream` must not open a next one.
        at = (end + b"endstream".len()).min(bytes.len());
        if body.first() == Some(&0x78) {
            let budget = MAX_PDF_INFLATED_BYTES - total;
            let mut decoder = flate2::read::ZlibDecoder::new(body).take(budget + 1);
            let inflated = std::io::copy(&mut decoder, &mut std::io::sink()).unwrap_or(0);
            total += inflated;
            if total > MAX_PDF_INFLATED_BYTES {
                return Err(ExtractError::Bomb);
            }
        }
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads `bytes` as a file of `kind` named `path`.
pub fn extract(path: &Path, kind: Kind, bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extracted = match kind {
        Kind::Pdf => plain(kind, stem, pdf_text(bytes)?),
        Kind::Html => html(stem, &text_of(bytes)?),
        Kind::Markdown => markdown(stem, text_of(bytes)?),
        Kind::Text => plain(kind, stem, text_of(bytes)?),
        Kind::Code(_) => code(kind, stem, text_of(bytes)?),
        Kind::Rst => formats::rst(stem, text_of(bytes)?),
        Kind::Docx => formats::docx(stem, bytes)?,
        Kind::Epub => formats::epub(stem, bytes)?,
        Kind::Notebook => {
            markdown_titled(Kind::Notebook, stem, formats::notebook(&text_of(bytes)?)?)
        }
    };
    if extracted.blocks.iter().all(|b| b.text.trim().is_empty()) {
        return Err(ExtractError::Empty);
    }
    Ok(extracted)
}

pub(crate) fn text_of(bytes: &[u8]) -> Result<String, ExtractError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ExtractError::NotText)?;
    if text.contains('\0') {
        return Err(ExtractError::NotText);
    }
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text).to_owned())
}

fn pdf_text(bytes: &[u8]) -> Result<String, ExtractError> {
    pdf_text_within(bytes, MAX_PDF_TIME)
}

/// Longest a PDF may take to read. pdf-extract cannot be stopped from outside, so a slower one
/// is reported and its reading thread left to finish on its own (at most [`MAX_PDF_READERS`]
/// at once; its memory is bounded by [`MAX_PDF_INFLATED_BYTES`]).
pub const MAX_PDF_TIME: std::time::Duration = std::time::Duration::from_secs(60);
/// PDFs being read at once, counting slow ones left running; past it a PDF waits (up to
/// [`MAX_PDF_TIME`]) for a place, then is reported.
pub const MAX_PDF_READERS: usize = 4;

static PDF_READERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts a reader from its start to the end of its thread.
struct Reader;

impl Reader {
    /// A place among the readers, waiting up to `limit` for one to free.
    fn start(limit: std::time::Duration) -> Option<Self> {
        use std::sync::atomic::Ordering;
        let deadline = std::time::Instant::now() + limit;
        loop {
            let running = PDF_READERS.load(Ordering::Acquire);
            if running < MAX_PDF_READERS
                && PDF_READERS
                    .compare_exchange(running, running + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return Some(Self);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        PDF_READERS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

fn pdf_text_within(bytes: &[u8], limit: std::time::Duration) -> Result<String, ExtractError> {
    check_inflation(bytes)?;
    let bytes = bytes.to_vec();
    let text = within(limit, move || {
        pdf_extract::extract_text_from_mem(&bytes).map_err(|error| error.to_string())
    })?;
    Ok(text.replace('\u{c}', "\n"))
}

/// Runs `read` on a thread of its own (one of at most [`MAX_PDF_READERS`]) and waits for it at
/// most `limit`: one that takes longer is reported as too slow and left to finish, since a
/// thread cannot be killed.
fn within(
    limit: std::time::Duration,
    read: impl FnOnce() -> Result<String, String> + Send + 'static,
) -> Result<String, ExtractError> {
    let reader = Reader::start(limit).ok_or(ExtractError::Busy)?;
    let (sender, answer) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("pdf-reader".into())
        .spawn(move || {
            let _reader = reader;
            // pdf-extract panics on some malformed files; a bad PDF is a failure to report,
            // not a crash.
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
            let _ = sender.send(read);
        })
        .map_err(|error| ExtractError::Pdf(format!("cannot start its reader: {error}")))?;
    match answer.recv_timeout(limit) {
        Ok(Ok(Ok(text))) => Ok(text),
        Ok(Ok(Err(error))) => Err(ExtractError::Pdf(error)),
        Ok(Err(_)) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err(ExtractError::Pdf("the parser gave up on it".into()))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(ExtractError::TooSlow),
    }
}

/// Byte offset → 1-based line number.
pub(crate) struct Lines(Vec<usize>);

impl Lines {
    pub(crate) fn new(text: &str) -> Self {
        Self(
            std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        )
    }

    fn at(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }

    /// Lines of the byte range `start..end` (an empty range is its start's line).
    pub(crate) fn span(&self, start: usize, end: usize) -> (usize, usize) {
        (self.at(start), self.at(end.saturating_sub(1).max(start)))
    }
}

/// Text split at blank lines into paragraphs.
pub(crate) fn plain(kind: Kind, title: String, text: String) -> Extracted {
    let lines = Lines::new(&text);
    let mut blocks = Vec::new();
    let mut start: Option<usize> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim().is_empty() {
            if let Some(s) = start.take() {
                blocks.push(paragraph(&text, &lines, s, offset, &[]));
            }
        } else if start.is_none() {
            start = Some(offset);
        }
        offset += line.len();
    }
    if let Some(s) = start {
        blocks.push(paragraph(&text, &lines, s, text.len(), &[]));
    }
    Extracted {
        kind,
        title,
        blocks,
        text,
    }
}

pub(crate) fn paragraph(
    text: &str,
    lines: &Lines,
    start: usize,
    end: usize,
    headings: &[String],
) -> Block {
    Block {
        headings: headings.to_vec(),
        text: text[start..end].trim_end().to_owned(),
        lines: lines.span(start, end),
        atomic: false,
    }
}

/// Markdown: top-level blocks under their headings; fences are atomic; front matter is skipped
/// (its `title:` is used).
fn markdown(stem: String, text: String) -> Extracted {
    markdown_titled(Kind::Markdown, stem, text)
}

/// [`markdown`] for a document of `kind` that is written as Markdown (a notebook).
fn markdown_titled(kind: Kind, stem: String, text: String) -> Extracted {
    let lines = Lines::new(&text);
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH;
    let mut headings: Vec<(HeadingLevel, String)> = Vec::new();
    let mut blocks = Vec::new();
    let mut title = None;
    let mut depth = 0usize;
    let mut heading: Option<(HeadingLevel, String)> = None;
    let mut in_metadata = false;
    for (event, range) in Parser::new_ext(&text, options).into_offset_iter() {
        match event {
            Event::Start(tag) => {
                if depth == 0 {
                    match &tag {
                        Tag::Heading { level, .. } => heading = Some((*level, String::new())),
                        Tag::MetadataBlock(_) => in_metadata = true,
                        _ => {
                            let path: Vec<String> =
                                headings.iter().map(|(_, h)| h.clone()).collect();
                            let mut block = paragraph(&text, &lines, range.start, range.end, &path);
                            block.atomic = matches!(tag, Tag::CodeBlock(_));
                            if !block.text.trim().is_empty() {
                                blocks.push(block);
                            }
                        }
                    }
                }
                depth += 1;
            }
            Event::End(end) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    match end {
                        TagEnd::Heading(_) => {
                            if let Some((level, name)) = heading.take() {
                                let name = name.trim().to_owned();
                                if level == HeadingLevel::H1 && title.is_none() {
                                    title = Some(name.clone());
                                }
                                headings.retain(|(l, _)| *l < level);
                                headings.push((level, name));
                            }
                        }
                        TagEnd::MetadataBlock(_) => in_metadata = false,
                        _ => {}
                    }
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, name)) = &mut heading {
                    name.push_str(&t);
                } else if in_metadata && title.is_none() {
                    title = t.lines().find_map(|line| {
                        line.strip_prefix("title:")
                            .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
                    });
                }
            }
            _ => {}
        }
    }
    Extracted {
        kind,
        title: title.filter(|t| !t.is_empty()).unwrap_or(stem),
        blocks,
        text,
    }
}

/// HTML: the text of the main content, headings kept as the structure; `pre` blocks atomic.
fn html(stem: String, source: &str) -> Extracted {
    let document = scraper::Html::parse_document(source);
    let title = html_title(&document);
    let mut walker = HtmlWalker::default();
    if let Some(root) = html_content(&document) {
        walker.walk(root);
    }
    walker.flush();
    walker.outline.finish(Kind::Html, title, stem)
}

fn selector(css: &str) -> Option<scraper::Selector> {
    scraper::Selector::parse(css).ok()
}

/// A page's `<title>`, if it has one with text.
pub(crate) fn html_title(document: &scraper::Html) -> Option<String> {
    selector("title")
        .and_then(|s| document.select(&s).next())
        .map(|t| collapse(&t.text().collect::<String>()))
        .filter(|t| !t.is_empty())
}

/// Where a page's content is: its `main`, its article, or its body.
pub(crate) fn html_content(document: &scraper::Html) -> Option<scraper::ElementRef<'_>> {
    ["main", "#main-content", "article", "body"]
        .iter()
        .filter_map(|css| selector(css))
        .find_map(|s| document.select(&s).next())
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A document written block by block (HTML, docx, epub), its headings as `#` lines in its
/// text: the text `get_document` shows and line numbers count.
#[derive(Default)]
pub(crate) struct Outline {
    text: String,
    line: usize,
    blocks: Vec<Block>,
    headings: Vec<(u8, String)>,
    first_h1: Option<String>,
}

impl Outline {
    /// A heading of `level` (1–6): the blocks after it are under it, and under the headings
    /// above it of lower levels.
    pub(crate) fn heading(&mut self, level: u8, heading: &str) {
        let heading = collapse(heading);
        if heading.is_empty() {
            return;
        }
        let level = level.clamp(1, 6);
        if level == 1 && self.first_h1.is_none() {
            self.first_h1 = Some(heading.clone());
        }
        self.headings.retain(|(l, _)| *l < level);
        self.headings.push((level, heading.clone()));
        self.text
            .push_str(&format!("{} {heading}\n\n", "#".repeat(level.into())));
        self.line += 2;
    }

    /// Forgets the headings (a new chapter).
    pub(crate) fn reset_headings(&mut self) {
        self.headings.clear();
    }

    /// Appends a block of text, one line per line; `atomic` blocks are never split.
    pub(crate) fn push(&mut self, text: &str, atomic: bool) {
        let text = text.trim_matches('\n');
        if text.trim().is_empty() {
            return;
        }
        let start = self.line + 1;
        let count = text.lines().count().max(1);
        self.text.push_str(text);
        self.text.push_str("\n\n");
        self.line += count + 1;
        self.blocks.push(Block {
            headings: self.headings.iter().map(|(_, h)| h.clone()).collect(),
            text: text.to_owned(),
            lines: (start, start + count - 1),
            atomic,
        });
    }

    /// The document: titled `title`, else by its first top-level heading, else `stem`.
    pub(crate) fn finish(self, kind: Kind, title: Option<String>, stem: String) -> Extracted {
        Extracted {
            kind,
            title: title.or(self.first_h1).unwrap_or(stem),
            blocks: self.blocks,
            text: self.text,
        }
    }
}

/// Walks an HTML element into an [`Outline`].
#[derive(Default)]
pub(crate) struct HtmlWalker {
    pub(crate) outline: Outline,
    /// Inline text gathered outside any block element.
    loose: String,
}

impl HtmlWalker {
    /// Ends the block of loose text gathered so far.
    pub(crate) fn flush(&mut self) {
        let loose = collapse(&std::mem::take(&mut self.loose));
        if !loose.is_empty() {
            self.outline.push(&loose, false);
        }
    }

    pub(crate) fn walk(&mut self, element: scraper::ElementRef<'_>) {
        for child in element.children() {
            if let Some(text) = child.value().as_text() {
                self.loose.push_str(text);
                continue;
            }
            let Some(child) = scraper::ElementRef::wrap(child) else {
                continue;
            };
            let name = child.value().name();
            match name {
                "script" | "style" | "nav" | "header" | "footer" | "noscript" | "template"
                | "button" | "svg" | "form" | "select" | "iframe" => {}
                "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                    self.flush();
                    let level = name.as_bytes()[1] - b'0';
                    self.outline
                        .heading(level, &child.text().collect::<String>());
                }
                "pre" => {
                    self.flush();
                    let code: String = child.text().collect();
                    self.outline.push(&code, true);
                }
                "p" | "li" | "dt" | "dd" | "td" | "th" | "figcaption" | "summary" | "caption"
                | "blockquote"
                    if !has_block_children(child) =>
                {
                    self.flush();
                    let text = collapse(&child.text().collect::<String>());
                    self.outline.push(&text, false);
                }
                _ => {
                    let block_level = matches!(
                        name,
                        "div"
                            | "section"
                            | "article"
                            | "ul"
                            | "ol"
                            | "dl"
                            | "table"
                            | "tr"
                            | "details"
                            | "main"
                            | "aside"
                            | "blockquote"
                            | "p"
                            | "li"
                            | "dd"
                    );
                    if block_level {
                        self.flush();
                    }
                    self.walk(child);
                    if block_level {
                        self.flush();
                    }
                }
            }
        }
    }
}

fn has_block_children(element: scraper::ElementRef<'_>) -> bool {
    element
        .children()
        .filter_map(scraper::ElementRef::wrap)
        .any(|c| {
            matches!(
                c.value().name(),
                "p" | "div" | "ul" | "ol" | "pre" | "table" | "dl" | "blockquote" | "section"
            )
        })
}

/// Source code: cut where a top-level definition starts (with the comments and attributes just
/// above it); each piece is atomic and headed by the definition's first line.
fn code(kind: Kind, stem: String, text: String) -> Extracted {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let starts_definition = |line: &str| {
        let first = line.chars().next();
        if first.is_none_or(char::is_whitespace) {
            return false;
        }
        let word = line
            .trim_start_matches(|c: char| !c.is_alphanumeric() && c != '@' && c != '#')
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .next()
            .unwrap_or("");
        matches!(
            word,
            "fn" | "pub"
                | "impl"
                | "struct"
                | "enum"
                | "trait"
                | "mod"
                | "macro_rules"
                | "def"
                | "class"
                | "async"
                | "function"
                | "func"
                | "export"
                | "interface"
                | "type"
                | "const"
                | "static"
                | "let"
                | "var"
                | "public"
                | "private"
                | "protected"
                | "module"
                | "package"
                | "object"
                | "template"
                | "namespace"
                | "CREATE"
                | "create"
        ) || line.starts_with("#[")
            || line.starts_with('@')
    };
    let is_lead = |line: &str| {
        let t = line.trim_start();
        line.starts_with("#[")
            || line.starts_with('@')
            || t.starts_with("///")
            || t.starts_with("//!")
            || t.starts_with("/**")
            || t.starts_with("# ")
            || t.starts_with("//")
    };
    // Cut points: a definition start, moved up over the comments and attributes above it.
    let mut cuts = vec![0];
    for (i, line) in lines.iter().enumerate() {
        if i > 0 && starts_definition(line) && !is_lead(line) {
            let mut cut = i;
            while cut > 0 && is_lead(lines[cut - 1]) {
                cut -= 1;
            }
            if cut > *cuts.last().unwrap_or(&0) {
                cuts.push(cut);
            }
        }
    }
    cuts.push(lines.len());
    let mut blocks = Vec::new();
    for pair in cuts.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let body: String = lines[from..to].concat();
        if body.trim().is_empty() {
            continue;
        }
        let heading = lines[from..to]
            .iter()
            .find(|l| !is_lead(l) && !l.trim().is_empty())
            .map(|l| l.trim().chars().take(100).collect::<String>())
            .unwrap_or_default();
        blocks.push(Block {
            headings: if heading.is_empty() {
                vec![]
            } else {
                vec![heading]
            },
            text: body.trim_end().to_owned(),
            lines: (from + 1, to),
            atomic: true,
        });
    }
    Extracted {
        kind,
        title: stem,
        blocks,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PDF that takes longer than its limit is reported, not waited on. The read here cannot
    /// finish before the test lets it (it waits on a channel), so the outcome does not depend
    /// on how fast the machine is.
    #[test]
    fn a_pdf_slower_than_its_limit_is_reported() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let slow = within(std::time::Duration::from_millis(20), move || {
            let _ = wait.recv();
            Ok("late".into())
        });
        drop(release);
        assert!(matches!(slow, Err(ExtractError::TooSlow)), "{slow:?}");
        assert!(
            ExtractError::TooSlow.to_string().contains("more than 60 s"),
            "{}",
            ExtractError::TooSlow
        );
        // And one that answers in time is read.
        let quick = within(std::time::Duration::from_secs(60), || Ok("text".into()));
        assert_eq!(quick.unwrap(), "text");
    }

    fn md(text: &str) -> Extracted {
        extract(Path::new("guide.md"), Kind::Markdown, text.as_bytes()).unwrap()
    }

    #[test]
    fn markdown_blocks_carry_headings_lines_and_atomic_fences() {
        let doc = md(
            "# Guide\n\nIntro text.\n\n## Install\n\nRun this:\n\n```sh\ncargo install x\n\ncargo run\n```\n\n### Linux\n\nUse apt.\n\n## Use\n\nCall it.\n",
        );
        assert_eq!(doc.title, "Guide");
        let fence = doc.blocks.iter().find(|b| b.atomic).unwrap();
        assert!(fence.text.starts_with("```sh") && fence.text.ends_with("```"));
        assert_eq!(fence.lines, (9, 13));
        assert_eq!(fence.headings, vec!["Guide", "Install"]);
        let linux = doc.blocks.iter().find(|b| b.text == "Use apt.").unwrap();
        assert_eq!(linux.headings, vec!["Guide", "Install", "Linux"]);
        let used = doc.blocks.iter().find(|b| b.text == "Call it.").unwrap();
        assert_eq!(used.headings, vec!["Guide", "Use"]);
        assert_eq!(used.lines, (21, 21));
    }

    #[test]
    fn front_matter_title_and_no_h1() {
        let doc = md("---\ntitle: \"Notes\"\n---\n\nbody\n");
        assert_eq!(doc.title, "Notes");
        assert_eq!(doc.blocks.len(), 1);
    }

    #[test]
    fn html_keeps_headings_and_drops_chrome() {
        let page = "<html><head><title>Page</title><script>var x;</script></head><body>\
            <nav>Menu item</nav><main><h1>Top</h1><p>First <b>bold</b> para.</p>\
            <h2>Sub</h2><pre>let x = 1;\nlet y = 2;</pre><ul><li>one</li><li>two</li></ul>\
            </main><footer>foot</footer></body></html>";
        let doc = extract(Path::new("p.html"), Kind::Html, page.as_bytes()).unwrap();
        assert_eq!(doc.title, "Page");
        let texts: Vec<&str> = doc.blocks.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(
            texts,
            vec!["First bold para.", "let x = 1;\nlet y = 2;", "one", "two"]
        );
        assert_eq!(doc.blocks[1].headings, vec!["Top", "Sub"]);
        assert!(doc.blocks[1].atomic);
        assert!(!doc.text.contains("Menu") && !doc.text.contains("var x"));
        // Line numbers point into the document text.
        let lines: Vec<&str> = doc.text.lines().collect();
        let (a, b) = doc.blocks[1].lines;
        assert_eq!(lines[a - 1..b].join("\n"), "let x = 1;\nlet y = 2;");
    }

    #[test]
    fn code_is_cut_at_definitions_with_their_comments() {
        let source = "use std::io;\n\n/// Adds.\n#[inline]\npub fn add(a: i32) -> i32 {\n    a + 1\n}\n\nstruct S {\n    x: i32,\n}\n";
        let doc = extract(Path::new("lib.rs"), Kind::Code("rust"), source.as_bytes()).unwrap();
        assert_eq!(doc.blocks.len(), 3, "{:#?}", doc.blocks);
        assert!(
            doc.blocks[1]
                .text
                .starts_with("/// Adds.\n#[inline]\npub fn add")
        );
        assert_eq!(doc.blocks[1].headings, vec!["pub fn add(a: i32) -> i32 {"]);
        assert_eq!(doc.blocks[1].lines, (3, 8));
        assert_eq!(doc.blocks[2].headings, vec!["struct S {"]);
    }

    #[test]
    fn binary_empty_and_broken_files_are_errors() {
        assert!(matches!(
            extract(Path::new("a.txt"), Kind::Text, b"\xff\xfe\x00abc"),
            Err(ExtractError::NotText)
        ));
        assert!(matches!(
            extract(Path::new("a.md"), Kind::Markdown, b"\n\n  \n"),
            Err(ExtractError::Empty)
        ));
        assert!(matches!(
            extract(
                Path::new("a.pdf"),
                Kind::Pdf,
                b"%PDF-1.4 this is not really a pdf"
            ),
            Err(ExtractError::Pdf(_))
        ));
    }
}
