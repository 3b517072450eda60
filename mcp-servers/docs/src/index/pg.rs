//! The index in PostgreSQL (`--store postgres://…`), so that several mcp-docs processes, on
//! several machines, serve and update one index.
//!
//! `mcp_docs_collections` lists the collections (name, source, the model and dimension of their
//! vectors, the last update); each collection has three tables of its own, named by its id:
//! `mcp_docs_<id>_files` (path, content hash, kind, title and the document's extracted text, so
//! a replica without the source can still open a document), `mcp_docs_<id>_failures`, and
//! `mcp_docs_<id>_chunks`: each chunk's text with a generated, weighted `tsvector` under a GIN
//! index (title A, headings B, text C, path D, as the local index boosts them) and its vector
//! (pgvector) under an HNSW index for cosine distance. Dropping a collection drops its tables;
//! the others are not touched.
//!
//! Writers: one update of a collection at a time, across every process and machine, held by a
//! session advisory lock on a connection of its own (a process that dies releases it with its
//! connection). Another process's update waits for it, then finds the files it wrote unchanged.
//! Readers query the tables directly, so every replica sees an update as soon as it commits.
//!
//! The index code is synchronous (tantivy and SQLite are); the queries run on one small runtime
//! of the process's own, and a caller waits for each on a channel, from whichever thread.

use std::{
    future::Future,
    sync::{Arc, OnceLock},
    time::Duration,
};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use pgvector::Vector;
use tokio_postgres::{Client, Config, Row, types::ToSql};

use super::DocsError;
use crate::embed::ModelId;

/// The first key of every advisory lock mcp-docs takes (`mcpd`), the second being a collection's
/// id (0: the schema).
const LOCK_CLASS: i32 = 0x6d63_7064;

/// Connections a process keeps to the store.
const POOL_SIZE: usize = 4;

/// The layout of the tables; a store of another layout is refused with what to do.
const FORMAT: i32 = 1;

/// The HNSW index's candidate list at search time: at least this, and at least the candidates
/// asked for (pgvector returns no more than `ef_search`).
const EF_SEARCH: usize = 100;

/// The memory an HNSW index's build may take (`SET LOCAL`: that build only).
const HNSW_BUILD_MEMORY: &str = "2GB";

/// How one chunk's words are found: the query's own words, stemmed as the index stems them, any
/// of them (as the local BM25 query), as a `tsquery` of quoted lexemes (none of the user's
/// text is read as tsquery syntax). `$1` is the query.
const WORDS: &str = "(SELECT coalesce(string_agg(quote_literal(l), ' | '), '')::tsquery
     FROM unnest(tsvector_to_array(to_tsvector('english', $1::text))) AS l)";

/// Ranking weights of the D, C, B, A parts (path, text, headings, title): the local index's
/// boosts 0.5, 1, 1.5 and 2, halved.
const WEIGHTS: &str = "'{0.25, 0.5, 0.75, 1.0}'";

/// The process's runtime for the store's queries: never dropped (so no thread ever drops a
/// runtime inside another), two workers.
fn runtime() -> Result<&'static tokio::runtime::Runtime, DocsError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("mcp-docs-pg")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| DocsError::Postgres(format!("cannot start the store's runtime: {e}")))
}

/// Runs `work` on the store's runtime and waits for it.
fn block<T: Send + 'static>(
    work: impl Future<Output = Result<T, DocsError>> + Send + 'static,
) -> Result<T, DocsError> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let _ = sender.send(work.await);
    });
    receiver
        .recv()
        .map_err(|_| DocsError::Postgres("a query to the store stopped".into()))?
}

fn pg(error: tokio_postgres::Error) -> DocsError {
    DocsError::Postgres(match error.as_db_error() {
        Some(db) => match db.hint() {
            Some(hint) => format!("{} ({hint})", db.message()),
            None => db.message().to_owned(),
        },
        None => error.to_string(),
    })
}

fn pool_error(error: deadpool_postgres::PoolError) -> DocsError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => pg(error),
        other => DocsError::Postgres(format!("cannot reach the store: {other}")),
    }
}

/// A collection as the store lists it.
#[derive(Debug, Clone)]
pub struct StoredCollection {
    /// Its name.
    pub name: String,
    /// `folder`, `file`, `web` or `deps`.
    pub kind: String,
    /// Its source as it is shown (path or URL).
    pub source: String,
    /// The folder its paths were relative to where it was indexed.
    pub root: String,
}

/// A PostgreSQL store, connected (a pool; cheap to clone).
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    config: Arc<(Config, mcp_core::pg_tls::TlsOptions)>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

impl Database {
    /// Connects to the store at `url` (libpq's URL form and `sslmode`; the password may come
    /// from `PGPASSWORD`), and makes its schema if it has none: the `vector` extension (which
    /// needs a superuser the first time) and the list of collections.
    pub fn connect(url: &str) -> Result<Self, DocsError> {
        let (config, tls) = mcp_core::pg_tls::config(url, "mcp-docs").map_err(|e| {
            DocsError::Postgres(match e.hint {
                Some(hint) => format!("{}: {hint}", e.message),
                None => e.message,
            })
        })?;
        let manager = Manager::from_config(
            config.clone(),
            connector(&tls)?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| DocsError::Postgres(format!("cannot build the connection pool: {e}")))?;
        let database = Self {
            pool,
            config: Arc::new((config, tls)),
        };
        database.with(|mut client| async move {
            let tx = client.transaction().await.map_err(pg)?;
            // One process makes the schema; the others wait and find it made.
            tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_CLASS])
                .await
                .map_err(pg)?;
            let has_vector = tx
                .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'vector'", &[])
                .await
                .map_err(pg)?
                .is_some();
            if !has_vector {
                tx.batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
                    .await
                    .map_err(|e| {
                        DocsError::Postgres(format!(
                            "the store needs pgvector, and it is not enabled in this database \
                             ({}): have a superuser run `CREATE EXTENSION vector;` in it once \
                             (Debian: apt install postgresql-<major>-pgvector)",
                            pg(e)
                        ))
                    })?;
            }
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS mcp_docs_collections (
                     id serial PRIMARY KEY,
                     name text NOT NULL UNIQUE,
                     kind text NOT NULL,
                     source text NOT NULL,
                     root text NOT NULL,
                     model text,
                     dim integer,
                     updated_at bigint,
                     format integer NOT NULL)",
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)
        })?;
        Ok(database)
    }

    /// Runs `work` with a pooled connection and waits for it.
    fn with<T, F>(
        &self,
        work: impl FnOnce(deadpool_postgres::Object) -> F + Send + 'static,
    ) -> Result<T, DocsError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, DocsError>> + Send + 'static,
    {
        let pool = self.pool.clone();
        block(async move { work(pool.get().await.map_err(pool_error)?).await })
    }

    /// The server's version, as it reports it (`PostgreSQL 15.20 …` → `PostgreSQL 15.20`), with
    /// pgvector's and the settings that weigh on a benchmark's numbers.
    pub fn server_version(&self) -> Result<String, DocsError> {
        self.with(|client| async move {
            let row = client
                .query_one(
                    "SELECT current_setting('server_version'),
                            (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
                            current_setting('shared_buffers'),
                            current_setting('fsync')",
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok(format!(
                "PostgreSQL {}, pgvector {}, shared_buffers {}, fsync {}",
                row.get::<_, String>(0),
                row.get::<_, Option<String>>(1).unwrap_or_default(),
                row.get::<_, String>(2),
                row.get::<_, String>(3)
            ))
        })
    }

    /// The server's own execution time (EXPLAIN ANALYZE) of the full-text ranking query of
    /// the collection `name` for `query`, best `n`: what a BM25 search costs on the server alone.
    pub fn explain_words(&self, name: &str, query: &str, n: usize) -> Result<Duration, DocsError> {
        let (stored, _) = self.open(name, None)?;
        let sql = format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", stored.words_sql());
        let query = query.to_owned();
        self.with(move |client| async move {
            let none: Option<Vec<String>> = None;
            let row = client
                .query_one(&sql, &[&query, &none, &none, &none, &(n as i64)])
                .await
                .map_err(pg)?;
            let plan: serde_json::Value = row.get(0);
            let ms = plan[0]["Execution Time"].as_f64().unwrap_or_default();
            Ok(Duration::from_secs_f64(ms / 1000.0))
        })
    }

    /// The rows `sql` answers, with the text parameters `params`, each made a `T` by `make`.
    fn rows<T: Send + 'static>(
        &self,
        sql: String,
        params: Vec<String>,
        make: fn(&Row) -> T,
    ) -> Result<Vec<T>, DocsError> {
        self.with(move |client| async move {
            let params: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            Ok(client
                .query(&sql, &params)
                .await
                .map_err(pg)?
                .iter()
                .map(make)
                .collect())
        })
    }

    /// Every collection in the store.
    pub fn collections(&self) -> Result<Vec<StoredCollection>, DocsError> {
        self.rows(
            "SELECT name, kind, source, root FROM mcp_docs_collections ORDER BY name".into(),
            Vec::new(),
            |row| StoredCollection {
                name: row.get(0),
                kind: row.get(1),
                source: row.get(2),
                root: row.get(3),
            },
        )
    }

    /// The collection `name`: made (with its tables) when `create`, else it must exist.
    pub(super) fn open(
        &self,
        name: &str,
        described: Option<(&str, &str, &str)>,
    ) -> Result<(Stored, Option<ModelId>), DocsError> {
        let collection = name.to_owned();
        let name = name.to_owned();
        let described = described.map(|(k, s, r)| (k.to_owned(), s.to_owned(), r.to_owned()));
        let (id, model) = self.with(move |mut client| async move {
            let tx = client.transaction().await.map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_CLASS])
                .await
                .map_err(pg)?;
            let row = tx
                .query_opt(
                    "SELECT id, model, dim, format FROM mcp_docs_collections WHERE name = $1",
                    &[&name],
                )
                .await
                .map_err(pg)?;
            let (id, model) = match (row, described) {
                (Some(row), described) => {
                    let format: i32 = row.get(3);
                    if format != FORMAT {
                        return Err(DocsError::Postgres(format!(
                            "the collection {name} in the store was written by another version \
                             of mcp-docs; rebuild it with `mcp-docs index --rebuild --store …`"
                        )));
                    }
                    if let Some((kind, source, root)) = described {
                        tx.execute(
                            "UPDATE mcp_docs_collections SET kind = $2, source = $3, root = $4
                             WHERE name = $1",
                            &[&name, &kind, &source, &root],
                        )
                        .await
                        .map_err(pg)?;
                    }
                    let model = match (row.get::<_, Option<String>>(1), row.get::<_, Option<i32>>(2)) {
                        (Some(name), Some(dim)) => Some(ModelId {
                            name,
                            dim: dim as usize,
                        }),
                        _ => None,
                    };
                    (row.get::<_, i32>(0), model)
                }
                (None, Some((kind, source, root))) => {
                    let id: i32 = tx
                        .query_one(
                            "INSERT INTO mcp_docs_collections (name, kind, source, root, format)
                             VALUES ($1, $2, $3, $4, $5) RETURNING id",
                            &[&name, &kind, &source, &root, &FORMAT],
                        )
                        .await
                        .map_err(pg)?
                        .get(0);
                    let t = Tables::of(id);
                    tx.batch_execute(&format!(
                        "CREATE TABLE {files} (
                             path text PRIMARY KEY,
                             hash text NOT NULL,
                             kind text NOT NULL,
                             title text NOT NULL,
                             chunks integer NOT NULL,
                             indexed_at bigint NOT NULL,
                             body text NOT NULL);
                         CREATE TABLE {failures} (
                             path text PRIMARY KEY,
                             reason text NOT NULL,
                             at bigint NOT NULL);
                         CREATE TABLE {chunks} (
                             id bigserial PRIMARY KEY,
                             path text NOT NULL,
                             kind text NOT NULL,
                             extension text NOT NULL,
                             title text NOT NULL,
                             headings text NOT NULL,
                             body text NOT NULL,
                             line_start integer NOT NULL,
                             line_end integer NOT NULL,
                             words tsvector GENERATED ALWAYS AS (
                                 setweight(to_tsvector('english', title), 'A')
                                 || setweight(to_tsvector('english', headings), 'B')
                                 || setweight(to_tsvector('english', body), 'C')
                                 || setweight(to_tsvector('simple', translate(path, '/._-', '    ')), 'D')
                             ) STORED,
                             embedding vector);
                         CREATE INDEX {chunks}_path ON {chunks} (path);
                         CREATE INDEX {chunks}_words ON {chunks} USING gin (words);",
                        files = t.files,
                        failures = t.failures,
                        chunks = t.chunks,
                    ))
                    .await
                    .map_err(pg)?;
                    (id, None)
                }
                (None, None) => {
                    return Err(DocsError::Postgres(format!(
                        "the store has no collection {name}: run `mcp-docs index --store URL \
                         {name}=SOURCE` first"
                    )));
                }
            };
            tx.commit().await.map_err(pg)?;
            Ok((id, model))
        })?;
        Ok((
            Stored {
                database: self.clone(),
                name: collection,
                id,
                tables: Tables::of(id),
            },
            model,
        ))
    }

    /// Drops the collection `name` and its tables, once no update of it runs.
    pub fn remove(&self, name: &str) -> Result<(), DocsError> {
        let name = name.to_owned();
        let lock = self.lock_connection()?;
        let id: Option<i32> = self.with({
            let name = name.clone();
            move |client| async move {
                Ok(client
                    .query_opt(
                        "SELECT id FROM mcp_docs_collections WHERE name = $1",
                        &[&name],
                    )
                    .await
                    .map_err(pg)?
                    .map(|row| row.get(0)))
            }
        })?;
        let Some(id) = id else { return Ok(()) };
        let _held = lock.take(id)?;
        self.with(move |mut client| async move {
            let tx = client.transaction().await.map_err(pg)?;
            let t = Tables::of(id);
            tx.batch_execute(&format!(
                "DROP TABLE IF EXISTS {}, {}, {}",
                t.chunks, t.files, t.failures
            ))
            .await
            .map_err(pg)?;
            tx.execute("DELETE FROM mcp_docs_collections WHERE id = $1", &[&id])
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)
        })
    }

    /// A connection of its own for an advisory lock (closing it releases the lock).
    fn lock_connection(&self) -> Result<LockConnection, DocsError> {
        let config = self.config.clone();
        let client = block(async move {
            let (config, tls) = &*config;
            let (client, connection) = config.connect(connector(tls)?).await.map_err(pg)?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!("store lock connection ended: {error}");
                }
            });
            Ok(client)
        })?;
        Ok(LockConnection {
            client: Arc::new(client),
        })
    }
}

fn connector(
    tls: &mcp_core::pg_tls::TlsOptions,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, DocsError> {
    tls.connector().map_err(|e| DocsError::Postgres(e.message))
}

/// A connection that holds advisory locks.
struct LockConnection {
    client: Arc<Client>,
}

impl LockConnection {
    /// Takes the collection `id`'s update lock, waiting (and saying so) while another process
    /// holds it.
    fn take(self, id: i32) -> Result<UpdateLock, DocsError> {
        let client = self.client.clone();
        let got: bool = block(async move {
            Ok(client
                .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &id])
                .await
                .map_err(pg)?
                .get(0))
        })?;
        if !got {
            tracing::info!("another mcp-docs is updating this collection; waiting for it");
            let client = self.client.clone();
            block(async move {
                client
                    .execute("SELECT pg_advisory_lock($1, $2)", &[&LOCK_CLASS, &id])
                    .await
                    .map_err(pg)
            })?;
        }
        Ok(UpdateLock {
            _client: self.client,
        })
    }
}

/// The right to update one collection, held until dropped (its connection closes).
pub(super) struct UpdateLock {
    _client: Arc<Client>,
}

/// One collection's tables.
#[derive(Clone)]
struct Tables {
    files: String,
    failures: String,
    chunks: String,
}

impl Tables {
    fn of(id: i32) -> Self {
        Self {
            files: format!("mcp_docs_{id}_files"),
            failures: format!("mcp_docs_{id}_failures"),
            chunks: format!("mcp_docs_{id}_chunks"),
        }
    }
}

/// A file to write: its manifest row and its chunks.
pub(super) struct FileRows<'a> {
    pub(super) path: &'a str,
    pub(super) hash: &'a str,
    pub(super) kind: &'static str,
    pub(super) title: &'a str,
    pub(super) body: &'a str,
    pub(super) chunks: Vec<ChunkRow<'a>>,
}

/// A chunk to write.
pub(super) struct ChunkRow<'a> {
    pub(super) headings: String,
    pub(super) text: &'a str,
    pub(super) lines: (usize, usize),
    pub(super) vector: Option<&'a [f32]>,
}

/// Chunks found: id, path, kind and score, best first.
pub(super) type Found = Vec<(u64, String, String, f32)>;

/// `text` as a PostgreSQL text value can hold it: without NUL characters (extraction refuses
/// text files that have any, but a title or heading from another format might).
fn storable(text: &str) -> String {
    text.replace('\0', "")
}

/// A row of [`Found`].
fn found(row: &Row) -> (u64, String, String, f32) {
    (
        row.get::<_, i64>(0) as u64,
        row.get(1),
        row.get(2),
        row.get(3),
    )
}

/// A chunk, as a hit needs it.
pub(super) struct ChunkHit {
    pub(super) id: u64,
    pub(super) path: String,
    pub(super) title: String,
    pub(super) headings: String,
    pub(super) lines: [u64; 2],
    pub(super) text: String,
    pub(super) snippet: String,
}

/// What restricts a query in SQL: kinds or extensions, library folders, exact paths.
#[derive(Clone, Default)]
pub(super) struct SqlFilter {
    pub(super) types: Option<Vec<String>>,
    pub(super) libraries: Option<Vec<String>>,
    pub(super) paths: Option<Vec<String>>,
}

impl SqlFilter {
    /// The condition on `$2` (types), `$3` (library folders) and `$4` (paths).
    const WHERE: &'static str = "($2::text[] IS NULL OR kind = ANY($2) OR extension = ANY($2))
         AND ($3::text[] IS NULL OR EXISTS (SELECT 1 FROM unnest($3::text[]) AS l
                                            WHERE starts_with(path, l || '/')))
         AND ($4::text[] IS NULL OR path = ANY($4))";
}

/// One collection in the store, open.
pub(super) struct Stored {
    database: Database,
    name: String,
    id: i32,
    tables: Tables,
}

impl Stored {
    /// The collection, as errors name it.
    pub(super) fn describe(&self) -> String {
        format!("the collection {} in the PostgreSQL store", self.name)
    }

    /// Takes this collection's update lock (waiting for another process's update to end).
    pub(super) fn lock(&self) -> Result<UpdateLock, DocsError> {
        self.database.lock_connection()?.take(self.id)
    }

    /// Every file's path and content hash.
    pub(super) fn hashes(&self) -> Result<Vec<(String, String)>, DocsError> {
        let sql = format!("SELECT path, hash FROM {}", self.tables.files);
        self.database
            .rows(sql, Vec::new(), |row| (row.get(0), row.get(1)))
    }

    /// Writes one batch of files (their old chunks replaced) in one transaction; a vector's
    /// dimension, the first time, types the column and builds its HNSW index.
    pub(super) fn write(
        &self,
        files: &[FileRows<'_>],
        model: Option<&ModelId>,
    ) -> Result<(), DocsError> {
        if files.is_empty() {
            return Ok(());
        }
        let paths: Vec<String> = files.iter().map(|f| f.path.to_owned()).collect();
        let hashes: Vec<String> = files.iter().map(|f| f.hash.to_owned()).collect();
        let kinds: Vec<String> = files.iter().map(|f| f.kind.to_owned()).collect();
        let titles: Vec<String> = files.iter().map(|f| storable(f.title)).collect();
        let bodies: Vec<String> = files.iter().map(|f| storable(f.body)).collect();
        let counts: Vec<i32> = files.iter().map(|f| f.chunks.len() as i32).collect();
        let mut c_paths = Vec::new();
        let mut c_kinds = Vec::new();
        let mut c_extensions = Vec::new();
        let mut c_titles = Vec::new();
        let mut c_headings = Vec::new();
        let mut c_bodies = Vec::new();
        let mut c_starts = Vec::new();
        let mut c_ends = Vec::new();
        let mut c_vectors: Vec<Option<Vector>> = Vec::new();
        for (file, title) in files.iter().zip(&titles) {
            let extension = std::path::Path::new(file.path)
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            for chunk in &file.chunks {
                c_paths.push(file.path.to_owned());
                c_kinds.push(file.kind.to_owned());
                c_extensions.push(extension.clone());
                c_titles.push(title.clone());
                c_headings.push(storable(&chunk.headings));
                c_bodies.push(storable(chunk.text));
                c_starts.push(chunk.lines.0 as i32);
                c_ends.push(chunk.lines.1 as i32);
                c_vectors.push(chunk.vector.map(|v| Vector::from(v.to_vec())));
            }
        }
        let with_vectors = c_vectors.iter().any(Option::is_some);
        let model = model.filter(|_| with_vectors).cloned();
        let t = self.tables.clone();
        let id = self.id;
        self.database.with(move |mut client| async move {
            let tx = client.transaction().await.map_err(pg)?;
            if let Some(model) = &model {
                type_vectors(&tx, id, &t, model).await?;
            }
            tx.execute(&format!("DELETE FROM {} WHERE path = ANY($1)", t.chunks), &[&paths])
                .await
                .map_err(pg)?;
            tx.execute(&format!("DELETE FROM {} WHERE path = ANY($1)", t.files), &[&paths])
                .await
                .map_err(pg)?;
            let now = super::now();
            tx.execute(
                &format!(
                    "INSERT INTO {} (path, hash, kind, title, chunks, indexed_at, body)
                     SELECT p, h, k, t, c, $7, b
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[])
                          AS x(p, h, k, t, c, b)",
                    t.files
                ),
                &[&paths, &hashes, &kinds, &titles, &counts, &bodies, &now],
            )
            .await
            .map_err(pg)?;
            let statement = tx
                .prepare(&format!(
                    "INSERT INTO {} (path, kind, extension, title, headings, body, line_start,
                                     line_end, embedding)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                          $5::text[], $6::text[], $7::int[], $8::int[],
                                          $9::vector[])",
                    t.chunks
                ))
                .await
                .map_err(pg)?;
            let params: [&(dyn ToSql + Sync); 9] = [
                &c_paths,
                &c_kinds,
                &c_extensions,
                &c_titles,
                &c_headings,
                &c_bodies,
                &c_starts,
                &c_ends,
                &c_vectors,
            ];
            tx.execute(&statement, &params).await.map_err(pg)?;
            tx.commit().await.map_err(pg)
        })
    }

    /// Ends an update: `gone` files dropped, the failures of `selection`'s scope replaced by
    /// `failed`, the model and the time recorded.
    pub(super) fn finish(
        &self,
        gone: Vec<String>,
        failed: Vec<(String, String)>,
        selection: &super::Selection,
        model: Option<&ModelId>,
    ) -> Result<(), DocsError> {
        let t = self.tables.clone();
        let old: Vec<String> = {
            let sql = format!("SELECT path FROM {}", t.failures);
            self.database.with(move |client| async move {
                Ok(client
                    .query(&sql, &[])
                    .await
                    .map_err(pg)?
                    .iter()
                    .map(|row| row.get(0))
                    .collect())
            })?
        };
        let stale: Vec<String> = old.into_iter().filter(|p| selection.in_scope(p)).collect();
        let model = model.cloned();
        let id = self.id;
        self.database.with(move |mut client| async move {
            let tx = client.transaction().await.map_err(pg)?;
            if let Some(model) = &model {
                type_vectors(&tx, id, &t, model).await?;
            }
            for table in [&t.chunks, &t.files] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE path = ANY($1)"),
                    &[&gone],
                )
                .await
                .map_err(pg)?;
            }
            tx.execute(
                &format!("DELETE FROM {} WHERE path = ANY($1)", t.failures),
                &[&stale],
            )
            .await
            .map_err(pg)?;
            let (paths, reasons): (Vec<String>, Vec<String>) = failed.into_iter().unzip();
            tx.execute(
                &format!(
                    "INSERT INTO {} (path, reason, at) SELECT p, r, $3
                     FROM unnest($1::text[], $2::text[]) AS x(p, r)
                     ON CONFLICT (path) DO UPDATE SET reason = excluded.reason, at = excluded.at",
                    t.failures
                ),
                &[&paths, &reasons, &super::now()],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "UPDATE mcp_docs_collections SET updated_at = $2 WHERE id = $1",
                &[&id, &super::now()],
            )
            .await
            .map_err(pg)?;
            // The HNSW index, once there are vectors: built at the end of the update that wrote
            // the first ones (one bulk build, far faster than as many inserts into the graph),
            // kept up by the later ones. The build's graph is held in maintenance_work_mem
            // (64 MB by default: a 1,000,000-vector graph would spill and crawl). Searches
            // keep working meanwhile (an exact scan).
            if model.is_some() {
                tx.batch_execute(&format!(
                    "SET LOCAL maintenance_work_mem = '{HNSW_BUILD_MEMORY}';
                     CREATE INDEX IF NOT EXISTS {chunks}_embedding ON {chunks}
                         USING hnsw (embedding vector_cosine_ops);",
                    chunks = t.chunks
                ))
                .await
                .map_err(pg)?;
            }
            tx.commit().await.map_err(pg)
        })
    }

    /// The model recorded for the collection's vectors (another process may have set it).
    pub(super) fn model(&self) -> Result<Option<ModelId>, DocsError> {
        let id = self.id;
        self.database.with(move |client| async move {
            let row = client
                .query_one(
                    "SELECT model, dim FROM mcp_docs_collections WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(pg)?;
            Ok(
                match (
                    row.get::<_, Option<String>>(0),
                    row.get::<_, Option<i32>>(1),
                ) {
                    (Some(name), Some(dim)) => Some(ModelId {
                        name,
                        dim: dim as usize,
                    }),
                    _ => None,
                },
            )
        })
    }

    /// A file's kind, when it is indexed.
    pub(super) fn kind(&self, path: &str) -> Result<Option<String>, DocsError> {
        let sql = format!("SELECT kind FROM {} WHERE path = $1", self.tables.files);
        Ok(self
            .database
            .rows(sql, vec![path.to_owned()], |row| row.get(0))?
            .pop())
    }

    /// A file's title and extracted text, when it is indexed.
    pub(super) fn document(&self, path: &str) -> Result<Option<(String, String)>, DocsError> {
        let sql = format!(
            "SELECT title, body FROM {} WHERE path = $1",
            self.tables.files
        );
        Ok(self
            .database
            .rows(sql, vec![path.to_owned()], |row| (row.get(0), row.get(1)))?
            .pop())
    }

    /// Every file: path, kind, title, chunks, indexed at.
    pub(super) fn sources(&self) -> Result<Vec<super::Source>, DocsError> {
        let sql = format!(
            "SELECT path, kind, title, chunks, indexed_at FROM {} ORDER BY path",
            self.tables.files
        );
        self.database.rows(sql, Vec::new(), |row| super::Source {
            path: row.get(0),
            kind: row.get(1),
            title: row.get(2),
            chunks: row.get::<_, i32>(3) as usize,
            indexed_at: row.get(4),
        })
    }

    /// Files, chunks, vectors, failures, last update.
    pub(super) fn counts(&self) -> Result<Counts, DocsError> {
        let t = self.tables.clone();
        let id = self.id;
        self.database.with(move |client| async move {
            let counts = client
                .query_one(
                    &format!(
                        "SELECT (SELECT count(*) FROM {}), count(*), count(embedding),
                                (SELECT updated_at FROM mcp_docs_collections WHERE id = $1)
                         FROM {}",
                        t.files, t.chunks
                    ),
                    &[&id],
                )
                .await
                .map_err(pg)?;
            let failures = client
                .query(
                    &format!("SELECT path, reason FROM {} ORDER BY path", t.failures),
                    &[],
                )
                .await
                .map_err(pg)?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect();
            Ok(Counts {
                files: counts.get::<_, i64>(0) as usize,
                chunks: counts.get::<_, i64>(1) as usize,
                vectors: counts.get::<_, i64>(2) as usize,
                updated_at: counts.get(3),
                failures,
            })
        })
    }

    /// Every file's path and kind (for a path glob, which SQL cannot test).
    pub(super) fn files(&self) -> Result<Vec<(String, String)>, DocsError> {
        let sql = format!("SELECT path, kind FROM {}", self.tables.files);
        self.database
            .rows(sql, Vec::new(), |row| (row.get(0), row.get(1)))
    }

    /// The full-text ranking query: `$1` the query, `$2`–`$4` the [`SqlFilter`], `$5` how many.
    fn words_sql(&self) -> String {
        format!(
            "SELECT id, path, kind, ts_rank({WEIGHTS}, words, q, 1) AS score
             FROM {chunks}, {WORDS} AS w(q)
             WHERE words @@ q AND {filter}
             ORDER BY score DESC, id LIMIT $5",
            chunks = self.tables.chunks,
            filter = SqlFilter::WHERE,
        )
    }

    /// The best `n` chunks for the query's words (ranked by `ts_rank` with the parts weighted,
    /// normalised by the log of the length), with their path and kind.
    pub(super) fn words(
        &self,
        query: &str,
        filter: &SqlFilter,
        n: usize,
    ) -> Result<Found, DocsError> {
        let sql = self.words_sql();
        let query = query.to_owned();
        let filter = filter.clone();
        self.database.with(move |client| async move {
            let rows = client
                .query(
                    &sql,
                    &[
                        &query,
                        &filter.types,
                        &filter.libraries,
                        &filter.paths,
                        &(n as i64),
                    ],
                )
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(found).collect())
        })
    }

    /// The `n` chunks nearest `vector` (cosine, through the HNSW index: approximate), with
    /// their path and kind and the cosine similarity.
    pub(super) fn nearest(
        &self,
        vector: &[f32],
        filter: &SqlFilter,
        n: usize,
    ) -> Result<Found, DocsError> {
        let filtered =
            filter.types.is_some() || filter.libraries.is_some() || filter.paths.is_some();
        let sql = format!(
            "SELECT id, path, kind, (1 - (embedding <=> $1))::real AS score
             FROM {chunks}
             WHERE embedding IS NOT NULL AND {filter}
             ORDER BY embedding <=> $1 LIMIT $5",
            chunks = self.tables.chunks,
            filter = SqlFilter::WHERE,
        );
        let vector = Vector::from(vector.to_vec());
        let filter = filter.clone();
        self.database.with(move |mut client| async move {
            let tx = client.transaction().await.map_err(pg)?;
            // ef_search bounds what the index returns; a filtered scan goes on past rows the
            // filter drops (pgvector's iterative scan) instead of returning too few.
            tx.batch_execute(&format!(
                "SET LOCAL hnsw.ef_search = {}; {}",
                n.clamp(EF_SEARCH, 1000),
                if filtered {
                    "SET LOCAL hnsw.iterative_scan = relaxed_order;"
                } else {
                    ""
                }
            ))
            .await
            .map_err(pg)?;
            let statement = tx.prepare(&sql).await.map_err(pg)?;
            let rows = tx
                .query(
                    &statement,
                    &[
                        &vector,
                        &filter.types,
                        &filter.libraries,
                        &filter.paths,
                        &(n as i64),
                    ],
                )
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(rows.iter().map(found).collect())
        })
    }

    /// The chunks `ids` with a snippet for the query (its words in `**bold**`).
    pub(super) fn chunks(&self, query: &str, ids: &[u64]) -> Result<Vec<ChunkHit>, DocsError> {
        let sql = format!(
            "SELECT id, path, title, headings, line_start, line_end, body,
                    ts_headline('english', body, q,
                                'StartSel=**, StopSel=**, MaxWords=40, MinWords=20, MaxFragments=1')
             FROM {chunks}, {WORDS} AS w(q)
             WHERE id = ANY($2)",
            chunks = self.tables.chunks,
        );
        let query = query.to_owned();
        let ids: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
        self.database.with(move |client| async move {
            let rows = client.query(&sql, &[&query, &ids]).await.map_err(pg)?;
            Ok(rows
                .iter()
                .map(|row| ChunkHit {
                    id: row.get::<_, i64>(0) as u64,
                    path: row.get(1),
                    title: row.get(2),
                    headings: row.get(3),
                    lines: [row.get::<_, i32>(4) as u64, row.get::<_, i32>(5) as u64],
                    text: row.get(6),
                    snippet: row.get(7),
                })
                .collect())
        })
    }
}

/// The collection's files, chunks, vectors and failures.
pub(super) struct Counts {
    pub(super) files: usize,
    pub(super) chunks: usize,
    pub(super) vectors: usize,
    pub(super) updated_at: Option<i64>,
    pub(super) failures: Vec<(String, String)>,
}

/// Records `model` as the collection's, the first time typing the vector column with its
/// dimension (a collection's vectors come from one model: opening it with another is refused
/// before any is written).
async fn type_vectors(
    tx: &tokio_postgres::Transaction<'_>,
    id: i32,
    t: &Tables,
    model: &ModelId,
) -> Result<(), DocsError> {
    let dim: Option<i32> = tx
        .query_one("SELECT dim FROM mcp_docs_collections WHERE id = $1", &[&id])
        .await
        .map_err(pg)?
        .get(0);
    if dim.is_none() {
        tx.batch_execute(&format!(
            "ALTER TABLE {chunks} ALTER COLUMN embedding TYPE vector({dim})",
            chunks = t.chunks,
            dim = model.dim,
        ))
        .await
        .map_err(pg)?;
    }
    tx.execute(
        "UPDATE mcp_docs_collections SET model = $2, dim = $3 WHERE id = $1",
        &[&id, &model.name, &(model.dim as i32)],
    )
    .await
    .map_err(pg)?;
    Ok(())
}
