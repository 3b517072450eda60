//! Web sources: a URL prefix crawled into a mirror folder beside its index (`<data dir>/web/`),
//! which is then indexed like any folder, so pages are read, chunked and searched exactly as
//! local HTML, Markdown, text and PDF files are.
//!
//! The crawl stays on the prefix's origin and under its path, honours robots.txt (Google's
//! matcher, through `robotstxt`) and its Crawl-delay, starts from the sitemaps as well as the
//! links, stops at a depth and a page count, waits between requests, and asks again with ETag /
//! Last-Modified so that an unchanged page costs a 304. A page is written whole or not at all;
//! every redirect and failure is reported by URL, and a page that cannot be fetched this time
//! keeps its last copy.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    io::Read as _,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use reqwest::{StatusCode, Url, header};
use robotstxt::{DefaultMatcher, RobotsParseHandler};
use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;

use crate::{extract::Kind, index::Progress};

/// The mirror's folder, under the collection's data directory.
pub const MIRROR: &str = "web";
/// The crawl's state (each page's URL, file and validators), under the data directory.
const STATE: &str = "web.sqlite";
/// The name robots.txt rules are matched against.
const ROBOTS_AGENT: &str = "mcp-docs";
/// What requests say they come from.
const USER_AGENT: &str = concat!("mcp-docs/", env!("CARGO_PKG_VERSION"), " (docs indexer)");
/// Most bytes of robots.txt read (Google reads 500 KiB).
const MAX_ROBOTS_BYTES: u64 = 512 * 1024;
/// Most bytes of one sitemap, inflated.
const MAX_SITEMAP_BYTES: u64 = 16 * 1024 * 1024;
/// Most sitemaps read (an index and the sitemaps it names).
const MAX_SITEMAPS: usize = 20;
/// Most redirects a crawl follows in a row.
const MAX_REDIRECTS: usize = 5;
/// Longest Crawl-delay honoured.
const MAX_CRAWL_DELAY: Duration = Duration::from_secs(30);
/// Longest path a page is saved under.
const MAX_PATH: usize = 1024;
/// Most URLs a report lists one by one in a list (the rest are counted).
const MAX_LISTED: usize = 200;

/// How far and how fast a crawl goes.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most pages fetched (or found unchanged).
    pub max_pages: usize,
    /// Most links followed from the start page.
    pub max_depth: usize,
    /// Least time between two requests (robots.txt's Crawl-delay may ask for more).
    pub delay: Duration,
    /// Largest page read; bigger ones are reported and left out.
    pub max_page_bytes: u64,
    /// Longest one request (headers and body) may take.
    pub timeout: Duration,
    /// Longest a whole crawl may take; pages not reached by then keep their last copy.
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pages: 1000,
            max_depth: 10,
            delay: Duration::from_millis(250),
            max_page_bytes: 8 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            max_time: Duration::from_secs(3600),
        }
    }
}

/// What a crawl did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CrawlReport {
    /// Pages downloaded.
    pub fetched: usize,
    /// Pages the site said were unchanged (304).
    pub not_modified: usize,
    /// Pages in the mirror after the crawl.
    pub pages: usize,
    /// Pages gone from the site (or no longer linked), dropped from the mirror.
    pub removed: usize,
    /// Redirects followed within the prefix: (from, to).
    pub redirects: Vec<(String, String)>,
    /// URLs robots.txt keeps us out of.
    pub robots_excluded: Vec<String>,
    /// Links not followed: the page cap was reached.
    pub left_out: usize,
    /// Links not followed: deeper than the depth cap.
    pub too_deep: usize,
    /// Pages of a kind that is not indexed (images, scripts, …), not kept.
    pub other_types: usize,
    /// Pages that could not be fetched or kept, with the reason.
    pub failed: Vec<(String, String)>,
}

/// Why a crawl could not run.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Stopped before it was done (the pages it saved stay).
    #[error("the crawl was stopped before it was done; the pages it saved stay")]
    Stopped,
    /// The crawl's state database failed.
    #[error("crawl state: {0}")]
    State(#[from] rusqlite::Error),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The mirror could not be written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The part of the web a collection covers: an origin, and a path under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    /// Where the crawl starts.
    pub start: Url,
    /// The path every page's must start with (ends with `/`).
    dir: String,
}

impl Prefix {
    /// Reads `http(s)://host[:port]/path`. The path's last segment is a folder unless it has an
    /// extension (`…/book` covers `…/book/…`; `…/book/index.html` covers `…/book/…` too).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut start = Url::parse(text).map_err(|e| format!("{text}: {e}"))?;
        if !matches!(start.scheme(), "http" | "https") || start.host_str().is_none() {
            return Err(format!(
                "{text}: a web source is an http:// or https:// URL"
            ));
        }
        if !start.username().is_empty() || start.password().is_some() {
            return Err(format!(
                "{text}: credentials in a URL are not taken (they would be stored and shown)"
            ));
        }
        if start.query().is_some() {
            return Err(format!("{text}: give the prefix without a ?query"));
        }
        start.set_fragment(None);
        let path = start.path();
        let last = path.rsplit('/').next().unwrap_or_default();
        let dir = if path.ends_with('/') {
            path.to_owned()
        } else if last.contains('.') {
            path[..path.len() - last.len()].to_owned()
        } else {
            format!("{path}/")
        };
        Ok(Self { start, dir })
    }

    /// Whether `url` is on the prefix's origin and under its path (and asks no query).
    pub fn covers(&self, url: &Url) -> bool {
        url.origin() == self.start.origin()
            && url.query().is_none()
            && (url.path().starts_with(&self.dir) || format!("{}/", url.path()) == self.dir)
    }

    /// The file a page of `url` with content of `kind` is saved as, relative to the mirror:
    /// its path under the prefix, each segment decoded and made a plain file name, with an
    /// extension that says its kind (`guide/` → `guide/index.html`, `intro` → `intro.html`).
    pub fn file_of(&self, url: &Url, kind: Kind) -> Option<String> {
        let relative = url.path().get(self.dir.len()..).unwrap_or_default();
        let mut segments: Vec<String> = relative
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|segment| {
                let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
                let mut name: String = decoded
                    .chars()
                    .map(|c| {
                        if c == '/' || c == '\\' || c.is_control() {
                            '_'
                        } else {
                            c
                        }
                    })
                    .collect();
                // No hidden files (the walk skips them, and .gitignore would steer it), no `..`.
                if name.starts_with('.') {
                    name.insert(0, '_');
                }
                if name.len() > 200 {
                    let mut cut = 200;
                    while !name.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    name.truncate(cut);
                }
                name
            })
            .collect();
        if relative.is_empty() || relative.ends_with('/') {
            segments.push("index".into());
        }
        let last = segments.last_mut()?;
        let has = |extensions: &[&str]| {
            last.rsplit_once('.')
                .is_some_and(|(_, e)| extensions.contains(&e.to_ascii_lowercase().as_str()))
        };
        match kind {
            Kind::Html if !has(&["html", "htm", "xhtml"]) => last.push_str(".html"),
            Kind::Markdown if !has(&["md", "markdown"]) => last.push_str(".md"),
            Kind::Rst if !has(&["rst"]) => last.push_str(".rst"),
            Kind::Pdf if !has(&["pdf"]) => last.push_str(".pdf"),
            Kind::Text | Kind::Code(_)
                if !matches!(
                    Kind::of(Path::new(last.as_str())),
                    Some(Kind::Text | Kind::Code(_) | Kind::Markdown | Kind::Rst)
                ) =>
            {
                last.push_str(".txt")
            }
            _ => {}
        }
        let file = segments.join("/");
        (file.len() <= MAX_PATH).then_some(file)
    }
}

/// The kind a page is saved as, from its Content-Type (`None`: not indexed) and, for plain
/// text, the name of its path.
fn kind_of(content_type: Option<&str>, url: &Url) -> Option<Kind> {
    let mime = content_type
        .unwrap_or("text/html")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Some(match mime.as_str() {
        "text/html" | "application/xhtml+xml" => Kind::Html,
        "text/markdown" | "text/x-markdown" => Kind::Markdown,
        "text/x-rst" | "text/prs.fallenstein.rst" => Kind::Rst,
        "application/pdf" => Kind::Pdf,
        "text/plain" => match Kind::of(Path::new(url.path())) {
            Some(kind @ (Kind::Markdown | Kind::Rst | Kind::Code(_))) => kind,
            _ => Kind::Text,
        },
        _ => return None,
    })
}

/// A web collection: its prefix, its mirror and the crawl's state.
pub struct Site {
    /// What it covers.
    pub prefix: Prefix,
    /// The folder pages are saved in.
    mirror: PathBuf,
    state: Mutex<Connection>,
    /// How far and how fast it is crawled.
    pub limits: Limits,
}

/// One page's record: where it is saved and what the site said of it.
struct Known {
    file: String,
    etag: Option<String>,
    last_modified: Option<String>,
}

impl Site {
    /// Opens (creating) the mirror and the crawl state of `prefix` in `data_dir`.
    pub fn open(prefix: Prefix, data_dir: &Path, limits: Limits) -> Result<Self, WebError> {
        let mirror = data_dir.join(MIRROR);
        std::fs::create_dir_all(&mirror)?;
        let state = Connection::open(data_dir.join(STATE))?;
        state.busy_timeout(Duration::from_secs(10))?;
        state.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS pages (url TEXT PRIMARY KEY, file TEXT NOT NULL UNIQUE,
                 etag TEXT, last_modified TEXT, fetched_at INTEGER NOT NULL);",
        )?;
        Ok(Self {
            prefix,
            mirror,
            state: Mutex::new(state),
            limits,
        })
    }

    /// The folder of `data_dir` pages are saved in (what the index reads).
    pub fn mirror_of(data_dir: &Path) -> PathBuf {
        data_dir.join(MIRROR)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the site was ever crawled into this mirror.
    pub fn crawled(&self) -> bool {
        self.state()
            .query_row("SELECT count(*) FROM pages", [], |r| r.get::<_, i64>(0))
            .is_ok_and(|n| n > 0)
    }

    /// The URL of the page saved as `file` (relative to the mirror).
    pub fn url_of(&self, file: &str) -> Option<String> {
        self.state()
            .query_row("SELECT url FROM pages WHERE file = ?1", [file], |r| {
                r.get(0)
            })
            .optional()
            .ok()
            .flatten()
    }

    fn known(&self) -> Result<HashMap<String, Known>, WebError> {
        let state = self.state();
        let mut statement = state.prepare("SELECT url, file, etag, last_modified FROM pages")?;
        let rows = statement.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Known {
                    file: r.get(1)?,
                    etag: r.get(2)?,
                    last_modified: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Crawls the site into the mirror (blocking: on the runtime this thread belongs to, or on
    /// one of its own).
    pub fn crawl(&self, progress: &mut dyn Progress) -> Result<CrawlReport, WebError> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(self.crawl_async(progress)),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(self.crawl_async(progress)),
        }
    }

    async fn crawl_async(&self, progress: &mut dyn Progress) -> Result<CrawlReport, WebError> {
        let mut client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.limits.timeout.min(Duration::from_secs(10)))
            .timeout(self.limits.timeout);
        // A proxy cannot reach this machine's own servers.
        if self.prefix.start.host().is_some_and(|host| match host {
            url::Host::Domain(name) => name == "localhost",
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        }) {
            client = client.no_proxy();
        }
        let mut crawler = Crawler {
            site: self,
            client: client.build()?,
            report: CrawlReport::default(),
            delay: self.limits.delay,
            last_request: None,
            known: self.known()?,
            kept: HashSet::new(),
            claimed: HashMap::new(),
            done: HashSet::new(),
            transient: false,
        };
        crawler.run(progress).await?;
        Ok(crawler.report)
    }
}

/// A crawl under way.
struct Crawler<'a> {
    site: &'a Site,
    client: reqwest::Client,
    report: CrawlReport,
    delay: Duration,
    last_request: Option<Instant>,
    /// Pages as the last crawl left them, by URL.
    known: HashMap<String, Known>,
    /// URLs whose page is in the mirror after this crawl.
    kept: HashSet<String>,
    /// Files written by this crawl, and the URL each holds.
    claimed: HashMap<String, String>,
    /// URLs requested by this crawl.
    done: HashSet<String>,
    /// Whether a page failed in a way that may pass (then pages not reached are kept).
    transient: bool,
}

/// A page's answer, read.
enum Fetched {
    /// A page of `kind`, its bytes and validators.
    Page {
        kind: Kind,
        body: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    NotModified,
    Redirect(Url),
    /// A page of a kind that is not indexed.
    OtherType,
    /// Gone (404, 410): dropped.
    Gone(String),
    /// Failed in a way that may pass (5xx, a timeout, a reset): the old copy is kept.
    Failed(String),
    /// Failed for good (too big, other 4xx): dropped.
    Refused(String),
}

impl Crawler<'_> {
    async fn run(&mut self, progress: &mut dyn Progress) -> Result<(), WebError> {
        let prefix = self.site.prefix.clone();
        let limits = self.site.limits.clone();
        let robots = match self.robots(&prefix.start).await {
            Ok(robots) => robots,
            Err(reason) => {
                // Unreadable robots.txt (5xx, unreachable) means keep out, as Google does; the
                // mirror stays as it was.
                self.report.failed.push((
                    robots_url(&prefix.start).to_string(),
                    format!("{reason}; nothing was crawled and the last copy stays"),
                ));
                self.report.pages = self.known.len();
                return Ok(());
            }
        };
        if let Some(seconds) = robots.crawl_delay {
            self.delay = self
                .delay
                .max(Duration::from_secs_f64(seconds.clamp(0.0, 1e6)).min(MAX_CRAWL_DELAY));
        }
        let mut queue: VecDeque<(Url, usize)> = VecDeque::new();
        let mut seen: HashSet<String> = HashSet::new();
        seen.insert(prefix.start.to_string());
        queue.push_back((prefix.start.clone(), 0));
        // What a site can make the crawl hold: links waiting beyond a few times the pages it
        // may still fetch are counted, not kept.
        let most_queued = limits.max_pages.saturating_mul(4).max(1000);
        for url in self.sitemaps(&prefix, &robots.sitemaps, most_queued).await {
            if seen.insert(url.to_string()) {
                queue.push_back((url, 1));
            }
        }
        progress.stage("crawling", limits.max_pages);
        let started = Instant::now();
        let mut visited = 0;
        while let Some((url, depth)) = queue.pop_front() {
            if progress.stopped() {
                return Err(WebError::Stopped);
            }
            if started.elapsed() >= limits.max_time {
                // Out of time: what was not reached keeps its last copy.
                self.report.left_out += queue.len() + 1;
                self.transient = true;
                self.report.failed.push((
                    prefix.start.to_string(),
                    format!(
                        "the crawl stopped after {} s (--max-crawl-time) with {} links to go; \
                         pages not reached keep their last copy",
                        limits.max_time.as_secs(),
                        queue.len() + 1
                    ),
                ));
                break;
            }
            if self.done.contains(url.as_str()) {
                continue;
            }
            if visited >= limits.max_pages {
                self.report.left_out += queue.len() + 1;
                break;
            }
            if !robots.allows(&url) {
                if self.report.robots_excluded.len() < MAX_LISTED {
                    self.report.robots_excluded.push(url.to_string());
                }
                continue;
            }
            visited += 1;
            progress.advance(visited);
            let links = self.visit(&url).await?;
            for link in links {
                if !seen.insert(link.to_string()) {
                    continue;
                }
                if depth + 1 > limits.max_depth {
                    self.report.too_deep += 1;
                } else if queue.len() >= most_queued {
                    self.report.left_out += 1;
                } else {
                    queue.push_back((link, depth + 1));
                }
            }
        }
        progress.advance(limits.max_pages);
        self.drop_unreached()?;
        self.report.pages = self.kept.len()
            + if self.transient {
                self.known
                    .keys()
                    .filter(|url| !self.kept.contains(*url))
                    .count()
            } else {
                0
            };
        Ok(())
    }

    /// Fetches `url` (following redirects within the prefix), saves it, and answers the links
    /// to follow from it.
    async fn visit(&mut self, url: &Url) -> Result<Vec<Url>, WebError> {
        let mut url = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let key = url.to_string();
            self.done.insert(key.clone());
            let fetched = self.fetch(&url).await;
            match fetched {
                Fetched::Redirect(to) => {
                    if !self.site.prefix.covers(&to) {
                        self.report.failed.push((
                            key,
                            format!("redirects off the prefix to {to}; not followed"),
                        ));
                        self.forget(url.as_str())?;
                        return Ok(Vec::new());
                    }
                    self.report.redirects.push((key, to.to_string()));
                    // The page it points to takes its place (its old copy is dropped as one not
                    // reached).
                    if self.done.contains(to.as_str()) {
                        return Ok(Vec::new());
                    }
                    url = to;
                }
                Fetched::NotModified => {
                    self.report.not_modified += 1;
                    self.kept.insert(key.clone());
                    let Some(known) = self.known.get(&key) else {
                        return Ok(Vec::new());
                    };
                    let file = known.file.clone();
                    self.claimed.insert(file.clone(), key);
                    if Kind::of(Path::new(&file)) != Some(Kind::Html) {
                        return Ok(Vec::new());
                    }
                    let body = std::fs::read(self.site.mirror.join(&file)).unwrap_or_default();
                    return Ok(self.read_html(&url, &body).1);
                }
                Fetched::Page {
                    kind,
                    body,
                    etag,
                    last_modified,
                } => {
                    self.report.fetched += 1;
                    let (directives, links) = if kind == Kind::Html {
                        self.read_html(&url, &body)
                    } else {
                        (Directives::default(), Vec::new())
                    };
                    if directives.noindex {
                        self.forget(&key)?;
                        return Ok(links);
                    }
                    let Some(file) = self.site.prefix.file_of(&url, kind) else {
                        self.report
                            .failed
                            .push((key, "its path is too long to save".into()));
                        return Ok(links);
                    };
                    if let Some(other) = self.claimed.get(&file) {
                        // Two URLs, one file (`a` and `a.html`): the first keeps it.
                        tracing::debug!(%url, %other, "same file as another page");
                        return Ok(links);
                    }
                    if let Err(error) = self.save(&key, &file, &body, etag, last_modified) {
                        self.report
                            .failed
                            .push((key, format!("could not be saved: {error}")));
                        return Ok(links);
                    }
                    return Ok(links);
                }
                Fetched::OtherType => {
                    self.report.other_types += 1;
                    self.forget(&key)?;
                    return Ok(Vec::new());
                }
                Fetched::Gone(reason) | Fetched::Refused(reason) => {
                    let dropped = self.forget(&key)?;
                    let reason = if dropped {
                        format!("{reason}; its last copy was dropped")
                    } else {
                        reason
                    };
                    self.report.failed.push((key, reason));
                    return Ok(Vec::new());
                }
                Fetched::Failed(reason) => {
                    self.transient = true;
                    let reason = if self.known.contains_key(&key) {
                        self.kept.insert(key.clone());
                        format!("{reason}; its last copy stays")
                    } else {
                        reason
                    };
                    self.report.failed.push((key, reason));
                    return Ok(Vec::new());
                }
            }
        }
        self.report.failed.push((
            url.to_string(),
            format!("more than {MAX_REDIRECTS} redirects in a row; not followed"),
        ));
        Ok(Vec::new())
    }

    /// Sends `request` once the delay since the last request has passed: every request of a
    /// crawl goes through here, one at a time. A failure is said in words.
    async fn send(
        &mut self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, String> {
        if let Some(last) = self.last_request {
            let wait = self.delay.saturating_sub(last.elapsed());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        self.last_request = Some(Instant::now());
        request.send().await.map_err(|e| describe(&e))
    }

    async fn fetch(&mut self, url: &Url) -> Fetched {
        let mut request = self.client.get(url.clone());
        if let Some(known) = self.known.get(url.as_str())
            && self.site.mirror.join(&known.file).is_file()
        {
            if let Some(etag) = &known.etag {
                request = request.header(header::IF_NONE_MATCH, etag);
            }
            if let Some(date) = &known.last_modified {
                request = request.header(header::IF_MODIFIED_SINCE, date);
            }
        }
        let response = match self.send(request).await {
            Ok(response) => response,
            Err(reason) => return Fetched::Failed(reason),
        };
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Fetched::NotModified;
        }
        if status.is_redirection() {
            let target = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok());
            return match target {
                Some(mut target) => {
                    target.set_fragment(None);
                    Fetched::Redirect(target)
                }
                None => Fetched::Refused(format!("HTTP {status} without a usable Location")),
            };
        }
        if matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE) {
            return Fetched::Gone(format!("HTTP {status}"));
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Fetched::Failed(format!("HTTP {status}"));
        }
        if !status.is_success() {
            return Fetched::Refused(format!("HTTP {status}"));
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let Some(kind) = kind_of(content_type.as_deref(), url) else {
            return Fetched::OtherType;
        };
        let validator = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = validator(header::ETAG);
        let last_modified = validator(header::LAST_MODIFIED);
        match read_capped(response, self.site.limits.max_page_bytes, Overflow::Refuse).await {
            Ok(body) => Fetched::Page {
                kind,
                body,
                etag,
                last_modified,
            },
            Err(Capped::TooBig) => Fetched::Refused(format!(
                "larger than {} bytes (the page cap); left out",
                self.site.limits.max_page_bytes
            )),
            Err(Capped::Failed(reason)) => Fetched::Failed(reason),
        }
    }

    /// An HTML page's robots directives and the links to follow from it (none when it says
    /// nofollow), from one parse.
    fn read_html(&self, url: &Url, body: &[u8]) -> (Directives, Vec<Url>) {
        let text = String::from_utf8_lossy(body);
        let document = scraper::Html::parse_document(&text);
        let directives = Directives::of(&document);
        let links = if directives.nofollow {
            Vec::new()
        } else {
            self.links(url, &document)
        };
        (directives, links)
    }

    /// The links of an HTML page to follow: under the prefix, without queries or fragments, in
    /// page order.
    fn links(&self, url: &Url, document: &scraper::Html) -> Vec<Url> {
        let select = |css: &str| scraper::Selector::parse(css).ok();
        let base = select("base[href]")
            .and_then(|s| {
                document
                    .select(&s)
                    .next()
                    .and_then(|b| b.value().attr("href"))
                    .and_then(|href| url.join(href).ok())
            })
            .unwrap_or_else(|| url.clone());
        let Some(anchors) = select("a[href], area[href]") else {
            return Vec::new();
        };
        let mut links = Vec::new();
        for anchor in document.select(&anchors) {
            let Some(href) = anchor.value().attr("href") else {
                continue;
            };
            let Ok(mut link) = base.join(href.trim()) else {
                continue;
            };
            link.set_fragment(None);
            if anchor
                .value()
                .attr("rel")
                .is_some_and(|rel| rel.split_whitespace().any(|r| r == "nofollow"))
                || !self.site.prefix.covers(&link)
                || skipped_extension(&link)
            {
                continue;
            }
            links.push(link);
        }
        links
    }

    /// Saves a page whole (written beside, then renamed over the old copy) and records it.
    fn save(
        &mut self,
        url: &str,
        file: &str,
        body: &[u8],
        etag: Option<String>,
        last_modified: Option<String>,
    ) -> Result<(), WebError> {
        let path = self.site.mirror.join(file);
        let parent = path.parent().unwrap_or(&self.site.mirror);
        std::fs::create_dir_all(parent)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let part = parent.join(format!(".{name}.part"));
        std::fs::write(&part, body)?;
        if let Err(error) = std::fs::rename(&part, &path) {
            let _ = std::fs::remove_file(&part);
            return Err(error.into());
        }
        // A page that moved to another file leaves its old one.
        if let Some(old) = self.known.get(url)
            && old.file != file
            && !self.claimed.contains_key(&old.file)
        {
            let _ = std::fs::remove_file(self.site.mirror.join(&old.file));
        }
        self.site.state().execute(
            "INSERT OR REPLACE INTO pages (url, file, etag, last_modified, fetched_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![url, file, etag, last_modified, crate::index::now()],
        )?;
        self.claimed.insert(file.to_owned(), url.to_owned());
        self.kept.insert(url.to_owned());
        Ok(())
    }

    /// Drops `url`'s page from the mirror; whether it had one.
    fn forget(&mut self, url: &str) -> Result<bool, WebError> {
        self.kept.remove(url);
        let Some(known) = self.known.remove(url) else {
            return Ok(false);
        };
        if !self.claimed.contains_key(&known.file) {
            let _ = std::fs::remove_file(self.site.mirror.join(&known.file));
        }
        self.site
            .state()
            .execute("DELETE FROM pages WHERE url = ?1", [url])?;
        Ok(true)
    }

    /// Drops the pages of the last crawl this one did not reach: gone from the site's links,
    /// or past its caps. Kept when a page failed in a way that may pass (the pages behind it
    /// were not reached because of it).
    fn drop_unreached(&mut self) -> Result<(), WebError> {
        if self.transient {
            return Ok(());
        }
        let unreached: Vec<String> = self
            .known
            .keys()
            .filter(|url| !self.kept.contains(*url))
            .cloned()
            .collect();
        for url in unreached {
            if self.forget(&url)? {
                self.report.removed += 1;
            }
        }
        Ok(())
    }

    /// robots.txt of the start's origin: its rules, Crawl-delay and sitemaps. `Err` when it
    /// cannot be read for a reason that means "keep out" (5xx, unreachable).
    async fn robots(&mut self, start: &Url) -> Result<Robots, String> {
        let url = robots_url(start);
        let response = self
            .send(self.client.get(url))
            .await
            .map_err(|reason| format!("robots.txt could not be read: {reason}"))?;
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(format!("robots.txt answered HTTP {status}"));
        }
        if !status.is_success() {
            // No robots.txt (4xx, or a redirect we do not chase): no rules.
            return Ok(Robots::default());
        }
        // As Google does, the first 512 KiB count and the rest is not read.
        let body = read_capped(response, MAX_ROBOTS_BYTES, Overflow::Cut)
            .await
            .map_err(|e| {
                format!(
                    "robots.txt could not be read: {}",
                    e.reason(MAX_ROBOTS_BYTES)
                )
            })?;
        Ok(Robots::parse(String::from_utf8_lossy(&body).into_owned()))
    }

    /// The pages the sitemaps list under the prefix: those robots.txt names on this origin,
    /// else `/sitemap.xml` and the prefix's own `sitemap.xml`.
    async fn sitemaps(&mut self, prefix: &Prefix, listed: &[String], most: usize) -> Vec<Url> {
        let origin_only = |u: &Url| u.origin() == prefix.start.origin();
        let mut to_read: VecDeque<(Url, bool)> = listed
            .iter()
            .filter_map(|s| Url::parse(s).ok())
            .filter(origin_only)
            .map(|u| (u, true))
            .collect();
        if to_read.is_empty() {
            for guess in [
                "/sitemap.xml".to_owned(),
                format!("{}sitemap.xml", prefix.dir),
            ] {
                if let Ok(url) = prefix.start.join(&guess)
                    && !to_read.iter().any(|(u, _)| *u == url)
                {
                    to_read.push_back((url, false));
                }
            }
        }
        let mut pages = Vec::new();
        let mut read = 0;
        let mut done: HashSet<String> = HashSet::new();
        while let Some((url, named)) = to_read.pop_front() {
            if read >= MAX_SITEMAPS || pages.len() >= most || !done.insert(url.to_string()) {
                continue;
            }
            read += 1;
            match self.sitemap(&url).await {
                Ok(Sitemap::Pages(urls)) => pages.extend(
                    urls.iter()
                        .filter_map(|u| Url::parse(u.trim()).ok())
                        .map(|mut u| {
                            u.set_fragment(None);
                            u
                        })
                        .filter(|u| prefix.covers(u))
                        .take(most.saturating_sub(pages.len())),
                ),
                Ok(Sitemap::Index(urls)) => to_read.extend(
                    urls.iter()
                        .filter_map(|u| Url::parse(u.trim()).ok())
                        .filter(origin_only)
                        .map(|u| (u, true)),
                ),
                // A guessed sitemap that is not there is no news; a named one is.
                Err(reason) if named => self.report.failed.push((url.to_string(), reason)),
                Err(_) => {}
            }
        }
        pages
    }

    async fn sitemap(&mut self, url: &Url) -> Result<Sitemap, String> {
        let response = self.send(self.client.get(url.clone())).await?;
        if !response.status().is_success() {
            return Err(format!("sitemap: HTTP {}", response.status()));
        }
        let mut body = read_capped(response, MAX_SITEMAP_BYTES, Overflow::Refuse)
            .await
            .map_err(|e| format!("sitemap: {}", e.reason(MAX_SITEMAP_BYTES)))?;
        if body.starts_with(&[0x1f, 0x8b]) {
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(body.as_slice())
                .take(MAX_SITEMAP_BYTES + 1)
                .read_to_end(&mut inflated)
                .map_err(|e| format!("sitemap: bad gzip: {e}"))?;
            if inflated.len() as u64 > MAX_SITEMAP_BYTES {
                return Err(format!(
                    "sitemap: more than {MAX_SITEMAP_BYTES} bytes inflated"
                ));
            }
            body = inflated;
        }
        Sitemap::parse(&body)
    }
}

/// `<origin>/robots.txt`.
fn robots_url(start: &Url) -> Url {
    let mut url = start.clone();
    url.set_path("/robots.txt");
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// Links not worth a request: what is surely not a document.
fn skipped_extension(url: &Url) -> bool {
    let path = url.path().to_ascii_lowercase();
    let extension = path.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    matches!(
        extension,
        "png"
            | "jpg"
            | "jpeg"
            | "gif"
            | "svg"
            | "webp"
            | "ico"
            | "css"
            | "js"
            | "mjs"
            | "map"
            | "woff"
            | "woff2"
            | "ttf"
            | "otf"
            | "eot"
            | "zip"
            | "gz"
            | "tgz"
            | "tar"
            | "xz"
            | "bz2"
            | "7z"
            | "mp3"
            | "mp4"
            | "webm"
            | "ogg"
            | "wav"
            | "avi"
            | "mov"
            | "exe"
            | "dmg"
            | "iso"
            | "whl"
            | "crate"
            | "jar"
            | "wasm"
    )
}

/// A request's failure in words.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        format!("could not connect ({})", root_cause(error))
    } else {
        root_cause(error)
    }
}

fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Why a body was not read whole.
enum Capped {
    TooBig,
    Failed(String),
}

impl Capped {
    fn reason(&self, cap: u64) -> String {
        match self {
            Capped::TooBig => format!("larger than {cap} bytes"),
            Capped::Failed(reason) => reason.clone(),
        }
    }
}

/// What a body longer than its cap gets.
#[derive(Clone, Copy, PartialEq)]
enum Overflow {
    /// Refused.
    Refuse,
    /// Cut at the cap.
    Cut,
}

/// The body, read up to `cap` bytes: an endless page costs `cap` bytes. A longer one is refused
/// (from its Content-Length when it says so) or cut.
async fn read_capped(
    mut response: reqwest::Response,
    cap: u64,
    overflow: Overflow,
) -> Result<Vec<u8>, Capped> {
    if overflow == Overflow::Refuse && response.content_length().is_some_and(|n| n > cap) {
        return Err(Capped::TooBig);
    }
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    if overflow == Overflow::Cut {
                        body.extend_from_slice(&chunk[..cap - body.len()]);
                        return Ok(body);
                    }
                    return Err(Capped::TooBig);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => return Err(Capped::Failed(describe(&error))),
        }
    }
}

/// `<meta name="robots">`: whether the page may be indexed and its links followed.
#[derive(Default)]
struct Directives {
    noindex: bool,
    nofollow: bool,
}

impl Directives {
    fn of(document: &scraper::Html) -> Self {
        let mut directives = Self::default();
        let Ok(meta) = scraper::Selector::parse("meta[name][content]") else {
            return directives;
        };
        for element in document.select(&meta) {
            let name = element.value().attr("name").unwrap_or_default();
            if !(name.eq_ignore_ascii_case("robots") || name.eq_ignore_ascii_case(ROBOTS_AGENT)) {
                continue;
            }
            for word in element
                .value()
                .attr("content")
                .unwrap_or_default()
                .split(',')
            {
                match word.trim().to_ascii_lowercase().as_str() {
                    "noindex" => directives.noindex = true,
                    "nofollow" => directives.nofollow = true,
                    "none" => {
                        directives.noindex = true;
                        directives.nofollow = true;
                    }
                    _ => {}
                }
            }
        }
        directives
    }
}

/// robots.txt, read: the text (matched per URL by Google's rules), its Crawl-delay for us and
/// its sitemaps.
#[derive(Default)]
struct Robots {
    body: String,
    crawl_delay: Option<f64>,
    sitemaps: Vec<String>,
}

impl Robots {
    fn parse(body: String) -> Self {
        let mut extras = Extras::default();
        robotstxt::parse_robotstxt(&body, &mut extras);
        Self {
            crawl_delay: extras.ours.or(extras.anyone),
            sitemaps: extras.sitemaps,
            body,
        }
    }

    fn allows(&self, url: &Url) -> bool {
        self.body.is_empty()
            || DefaultMatcher::default().one_agent_allowed_by_robots(
                &self.body,
                ROBOTS_AGENT,
                url.as_str(),
            )
    }
}

/// What Google's matcher leaves out of robots.txt: Crawl-delay (for our group, else `*`'s) and
/// the sitemaps.
#[derive(Default)]
struct Extras {
    sitemaps: Vec<String>,
    in_ours: bool,
    in_anyone: bool,
    after_rules: bool,
    ours: Option<f64>,
    anyone: Option<f64>,
}

impl RobotsParseHandler for Extras {
    fn handle_robots_start(&mut self) {}
    fn handle_robots_end(&mut self) {}

    fn handle_user_agent(&mut self, _: u32, user_agent: &str) {
        // Consecutive user-agent lines form one group; one after rules starts another.
        if self.after_rules {
            self.in_ours = false;
            self.in_anyone = false;
            self.after_rules = false;
        }
        let agent = user_agent
            .split(|c: char| !(c.is_ascii_alphabetic() || c == '-' || c == '_' || c == '*'))
            .next()
            .unwrap_or_default();
        if agent == "*" {
            self.in_anyone = true;
        } else if agent.eq_ignore_ascii_case(ROBOTS_AGENT) {
            self.in_ours = true;
        }
    }

    fn handle_allow(&mut self, _: u32, _: &str) {
        self.after_rules = true;
    }

    fn handle_disallow(&mut self, _: u32, _: &str) {
        self.after_rules = true;
    }

    fn handle_sitemap(&mut self, _: u32, value: &str) {
        if self.sitemaps.len() < MAX_SITEMAPS {
            self.sitemaps.push(value.trim().to_owned());
        }
    }

    fn handle_unknown_action(&mut self, _: u32, action: &str, value: &str) {
        if !action.eq_ignore_ascii_case("crawl-delay") {
            return;
        }
        self.after_rules = true;
        let Ok(seconds) = value.trim().parse::<f64>() else {
            return;
        };
        if !seconds.is_finite() {
            return;
        }
        if self.in_ours {
            self.ours = Some(seconds);
        } else if self.in_anyone {
            self.anyone = Some(seconds);
        }
    }
}

/// A sitemap: the pages it lists, or (an index) the sitemaps.
enum Sitemap {
    Pages(Vec<String>),
    Index(Vec<String>),
}

impl Sitemap {
    fn parse(xml: &[u8]) -> Result<Self, String> {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_reader(xml);
        let mut buffer = Vec::new();
        let mut root: Option<String> = None;
        // The text of the `<loc>` being read.
        let mut loc: Option<String> = None;
        let mut locations = Vec::new();
        loop {
            match reader.read_event_into(&mut buffer) {
                Ok(Event::Start(element)) => {
                    let name = element.local_name().into_inner().to_owned();
                    loc = (name == "loc").then(String::new);
                    root.get_or_insert(name);
                }
                Ok(Event::Text(text)) => {
                    if let Some(loc) = &mut loc {
                        loc.push_str(&text.xml10_content());
                    }
                }
                Ok(Event::GeneralRef(reference)) => {
                    if let (Some(loc), Some(text)) =
                        (&mut loc, crate::extract::formats::reference(&reference))
                    {
                        loc.push_str(&text);
                    }
                }
                Ok(Event::CData(text)) => {
                    if let Some(loc) = &mut loc {
                        loc.push_str(&text.into_inner());
                    }
                }
                Ok(Event::End(_)) => {
                    if let Some(loc) = loc.take() {
                        locations.push(loc.trim().to_owned());
                    }
                }
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(error) => return Err(format!("sitemap: bad XML: {error}")),
            }
            buffer.clear();
            if locations.len() > 50_000 {
                break;
            }
        }
        match root.as_deref() {
            Some("sitemapindex") => Ok(Sitemap::Index(locations)),
            Some("urlset") => Ok(Sitemap::Pages(locations)),
            _ => Err("sitemap: neither a <urlset> nor a <sitemapindex>".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn prefixes_cover_their_folder_on_their_origin() {
        let book = Prefix::parse("https://doc.example.org/book").unwrap();
        assert!(book.covers(&url("https://doc.example.org/book/ch01.html")));
        assert!(book.covers(&url("https://doc.example.org/book")));
        assert!(book.covers(&url("https://doc.example.org/book/")));
        assert!(!book.covers(&url("https://doc.example.org/bookshelf/x.html")));
        assert!(!book.covers(&url("http://doc.example.org/book/ch01.html")));
        assert!(!book.covers(&url("https://doc.example.org:8443/book/ch01.html")));
        assert!(!book.covers(&url("https://evil.example.org/book/ch01.html")));
        assert!(!book.covers(&url("https://doc.example.org/book/search?q=x")));
        // `..` is resolved by the URL parser before it is checked.
        assert!(!book.covers(&url("https://doc.example.org/book/../admin")));

        let page = Prefix::parse("https://doc.example.org/book/index.html").unwrap();
        assert!(page.covers(&url("https://doc.example.org/book/ch02.html")));
        assert!(Prefix::parse("ftp://x/y").is_err());
        assert!(Prefix::parse("https://user:pw@x/y").is_err());
        assert!(Prefix::parse("https://x/y?page=2").is_err());
    }

    #[test]
    fn pages_are_saved_as_plain_files_named_for_their_kind() {
        let book = Prefix::parse("https://doc.example.org/book/").unwrap();
        for (path, kind, file) in [
            ("", Kind::Html, "index.html"),
            ("guide/", Kind::Html, "guide/index.html"),
            ("intro", Kind::Html, "intro.html"),
            ("a%20b.html", Kind::Html, "a b.html"),
            // No hidden files, and an encoded `/` or `..` cannot climb.
            (".git/config", Kind::Text, "_.git/config.txt"),
            ("x%2F..%2Fy", Kind::Html, "x_.._y.html"),
            ("notes.md", Kind::Markdown, "notes.md"),
            ("paper", Kind::Pdf, "paper.pdf"),
        ] {
            let page = url(&format!("https://doc.example.org/book/{path}"));
            assert_eq!(book.file_of(&page, kind).as_deref(), Some(file), "{path}");
        }
        let long = format!("https://doc.example.org/book/{}", "a/".repeat(600));
        assert_eq!(book.file_of(&url(&long), Kind::Html), None);
    }

    #[test]
    fn content_types_say_what_is_kept() {
        let u = url("https://x/docs/lib.rs");
        assert_eq!(
            kind_of(Some("text/html; charset=utf-8"), &u),
            Some(Kind::Html)
        );
        assert_eq!(kind_of(Some("text/plain"), &u), Some(Kind::Code("rust")));
        assert_eq!(kind_of(Some("application/pdf"), &u), Some(Kind::Pdf));
        assert_eq!(kind_of(Some("image/png"), &u), None);
        assert_eq!(kind_of(Some("application/javascript"), &u), None);
    }

    #[test]
    fn robots_rules_delay_and_sitemaps() {
        let robots = Robots::parse(
            "User-agent: *\nDisallow: /docs/private/\nCrawl-delay: 2\n\n\
             User-agent: mcp-docs\nDisallow: /docs/drafts/\nCrawl-delay: 0.5\n\
             Sitemap: https://x/sitemap.xml\n"
                .into(),
        );
        assert_eq!(robots.crawl_delay, Some(0.5));
        assert_eq!(robots.sitemaps, ["https://x/sitemap.xml"]);
        assert!(!robots.allows(&url("https://x/docs/drafts/a.html")));
        // Our group replaces `*`'s, as the protocol says.
        assert!(robots.allows(&url("https://x/docs/private/a.html")));
        let anyone =
            Robots::parse("User-agent: *\nDisallow: /docs/private/\nCrawl-delay: 2\n".into());
        assert_eq!(anyone.crawl_delay, Some(2.0));
        assert!(!anyone.allows(&url("https://x/docs/private/a.html")));
        assert!(anyone.allows(&url("https://x/docs/a.html")));
        assert!(Robots::default().allows(&url("https://x/anything")));
    }

    #[test]
    fn sitemaps_and_their_indexes_are_read() {
        let Ok(Sitemap::Pages(pages)) = Sitemap::parse(
            br#"<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
            <url><loc>https://x/docs/a.html</loc></url><url><loc><![CDATA[https://x/docs/b.html]]></loc></url>
            </urlset>"#,
        ) else {
            panic!("not read as pages")
        };
        assert_eq!(pages, ["https://x/docs/a.html", "https://x/docs/b.html"]);
        let Ok(Sitemap::Index(maps)) = Sitemap::parse(
            b"<sitemapindex><sitemap><loc>https://x/s1.xml</loc></sitemap></sitemapindex>",
        ) else {
            panic!("not read as an index")
        };
        assert_eq!(maps, ["https://x/s1.xml"]);
        assert!(Sitemap::parse(b"<html>").is_err());
        assert!(Sitemap::parse(b"<urlset><url><loc>x</loc></urlset>").is_err());
    }

    #[test]
    fn meta_robots_directives() {
        let of = |html: &str| Directives::of(&scraper::Html::parse_document(html));
        let d = of(r#"<html><head><meta name="robots" content="noindex, nofollow"></head></html>"#);
        assert!(d.noindex && d.nofollow);
        let d = of("<html><head><meta name='description' content='noindex'></head></html>");
        assert!(!d.noindex && !d.nofollow);
    }
}
