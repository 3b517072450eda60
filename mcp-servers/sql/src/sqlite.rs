//! SQLite, embedded. Read-only is the engine's: `query` runs on a connection opened
//! `SQLITE_OPEN_READ_ONLY` with `query_only` set, and must be a statement SQLite itself calls
//! read-only (`sqlite3_stmt_readonly`) that returns rows. On every connection an authorizer
//! refuses `ATTACH`, `DETACH` and pragmas that change settings, defensive mode forbids
//! `writable_schema` tricks, extensions cannot be loaded, and a progress handler cancels a
//! statement at the timeout.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rusqlite::{
    Connection, ErrorCode, OpenFlags,
    config::DbConfig,
    hooks::{AuthAction, AuthContext, Authorization},
    limits::Limit,
    types::{Value as SqlValue, ValueRef},
};
use serde_json::Value;

use crate::config::DenyRule;
use crate::db::{
    Column, ColumnInfo, DbError, ForeignKey, IndexInfo, ObjectMatch, Options, QueryRequest,
    RowSink, RowWriter, Rows, TableDescription, TableSummary, row_size,
};

/// Pragmas whose "value" is an argument naming what to report on, not a setting.
const REPORTING_PRAGMAS: [&str; 10] = [
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

/// An SQLite database file.
pub struct Sqlite {
    reader: Arc<Handle>,
    writer: Option<Arc<Handle>>,
    options: Options,
    path: PathBuf,
}

std::thread_local! {
    /// The deny rule the authorizer last refused a statement by, on this thread (the one
    /// preparing it), so that the error can name it.
    static DENIED_BY: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// One connection and the deadline its progress handler watches.
struct Handle {
    connection: Mutex<Connection>,
    deadline: Arc<Deadline>,
}

/// When the running statement must stop: milliseconds after `epoch` (0 for never), or as soon
/// as the call it belongs to is abandoned (the client cancelled it).
struct Deadline {
    epoch: Instant,
    at: AtomicU64,
    abandoned: Mutex<Option<Arc<AtomicBool>>>,
}

impl Deadline {
    fn expired(&self) -> bool {
        let at = self.at.load(Ordering::Relaxed);
        (at != 0 && self.epoch.elapsed().as_millis() as u64 >= at)
            || self
                .abandoned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .is_some_and(|flag| flag.load(Ordering::Relaxed))
    }
}

/// Marks its call abandoned when dropped: when the call's future is dropped (a cancelled
/// request), the statement it started stops at the next progress check, and one that has not
/// started yet never runs. Dropping it after the call finished changes nothing.
struct Abandon(Arc<AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Clears the deadline when the statement is done, however it ends.
struct Armed<'a>(&'a Deadline);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.0.at.store(0, Ordering::Relaxed);
        *self.0.abandoned.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Handle {
    fn new(connection: Connection) -> Result<Self, DbError> {
        let deadline = Arc::new(Deadline {
            epoch: Instant::now(),
            at: AtomicU64::new(0),
            abandoned: Mutex::new(None),
        });
        let mut connection = connection;
        let watched = deadline.clone();
        connection
            .progress_handler(1_000, Some(move || watched.expired()))
            .map_err(|e| DbError::new(e.to_string()))?;
        Ok(Self {
            connection: Mutex::new(connection),
            deadline,
        })
    }

    /// Runs `work` on the connection with the deadline armed, unless the call was abandoned
    /// while it waited for the connection.
    fn with<T>(
        &self,
        timeout: Duration,
        abandoned: Arc<AtomicBool>,
        work: impl FnOnce(&mut Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        DENIED_BY.with(|slot| *slot.borrow_mut() = None);
        if abandoned.load(Ordering::Relaxed) {
            return Err(DbError::new("the call was cancelled"));
        }
        *self
            .deadline
            .abandoned
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(abandoned);
        let at = self.deadline.epoch.elapsed() + timeout;
        self.deadline
            .at
            .store((at.as_millis() as u64).max(1), Ordering::Relaxed);
        let _armed = Armed(&self.deadline);
        work(&mut connection)
    }

    /// [`Self::with`] on a blocking thread; dropping the returned future cancels the call.
    async fn run<T: Send + 'static>(
        self: Arc<Self>,
        timeout: Duration,
        work: impl FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let abandoned = Arc::new(AtomicBool::new(false));
        let _abandon = Abandon(abandoned.clone());
        run_blocking(move || self.with(timeout, abandoned, work)).await
    }
}

/// The longest string or blob the read-only connection handles (SQLite's own default is 1 GB).
const MAX_VALUE_BYTES: i32 = 64 * 1024 * 1024;

fn harden(
    connection: &mut Connection,
    read_only: bool,
    timeout: Duration,
    deny: Arc<[DenyRule]>,
) -> rusqlite::Result<()> {
    connection.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    connection.busy_timeout(timeout)?;
    if read_only {
        connection.execute_batch("PRAGMA query_only = ON")?;
        // No value a query makes or reads may pass this: `zeroblob(999000000)` or
        // `randomblob(5e8)` fail in the engine ("string or blob too big") instead of
        // allocating gigabytes that the row-size check below would only refuse afterwards.
        connection.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)?;
    }
    connection.authorizer(Some(move |context: AuthContext<'_>| {
        match context.action {
            AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
            AuthAction::Pragma {
                pragma_name,
                pragma_value: Some(_),
            } if !REPORTING_PRAGMAS.contains(&pragma_name.to_ascii_lowercase().as_str()) => {
                Authorization::Deny
            }
            // `count(*)` reads a table with an empty column name: a table rule covers it.
            AuthAction::Read {
                table_name,
                column_name,
            } => refuse_denied(&deny, table_name, Some(column_name)),
            AuthAction::Update {
                table_name,
                column_name,
            } => refuse_denied(&deny, table_name, Some(column_name)),
            AuthAction::Insert { table_name } | AuthAction::Delete { table_name } => {
                refuse_denied(&deny, table_name, None)
            }
            _ => Authorization::Allow,
        }
    }))?;
    Ok(())
}

/// Deny when a rule covers the table (and column, when one is read), and note which rule.
fn refuse_denied(deny: &[DenyRule], table: &str, column: Option<&str>) -> Authorization {
    let rule = deny.iter().find(|rule| match column {
        Some(column) => rule.covers(table, column),
        None => rule.covers_table(table),
    });
    match rule {
        Some(rule) => {
            DENIED_BY.with(|slot| *slot.borrow_mut() = Some(rule.to_string()));
            Authorization::Deny
        }
        None => Authorization::Allow,
    }
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| DbError::new(format!("the database task failed: {e}")))?
}

impl Sqlite {
    /// Opens the file read-only (and, with `allow_write`, a second connection that may write,
    /// creating the file if needed).
    pub async fn open(path: &Path, options: Options, deny: &[DenyRule]) -> Result<Self, DbError> {
        let path = path.to_owned();
        let deny: Arc<[DenyRule]> = deny.into();
        run_blocking(move || Self::open_blocking(path, options, deny)).await
    }

    fn open_blocking(
        path: PathBuf,
        options: Options,
        deny: Arc<[DenyRule]>,
    ) -> Result<Self, DbError> {
        let opening = |e: rusqlite::Error| {
            DbError::new(format!(
                "cannot open SQLite database {}: {e}",
                path.display()
            ))
        };
        let writer = if options.allow_write {
            let mut connection = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(opening)?;
            harden(&mut connection, false, options.timeout, deny.clone()).map_err(opening)?;
            Some(Arc::new(Handle::new(connection)?))
        } else {
            if !path.is_file() {
                return Err(DbError::new(format!(
                    "no SQLite database at {}",
                    path.display()
                ))
                .with_hint(
                    "check the path; to create a new database, start the server with --allow-write",
                ));
            }
            None
        };
        let mut connection = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(opening)?;
        harden(&mut connection, true, options.timeout, deny.clone()).map_err(opening)?;
        // A file that is not a database fails here, at startup, rather than at the first call.
        connection
            .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(opening)?;
        // A rule that names nothing protects nothing: most likely a typo.
        for rule in deny.iter() {
            let named: bool = connection
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_schema m JOIN pragma_table_info(m.name) p \
                     WHERE m.type IN ('table', 'view') AND lower(m.name) = lower(?1) \
                       AND (?2 IS NULL OR lower(p.name) = lower(?2)))",
                    rusqlite::params![rule.table, rule.column],
                    |row| row.get(0),
                )
                .map_err(opening)?;
            if !named {
                tracing::warn!(rule = %rule, "a deny rule names no table or column in this database");
            }
        }
        Ok(Self {
            reader: Arc::new(Handle::new(connection)?),
            writer,
            options,
            path,
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.reader.clone().run(self.options.timeout, work).await
    }

    /// The file's size, with its write-ahead log.
    pub fn size(&self) -> Option<u64> {
        let size = std::fs::metadata(&self.path).ok()?.len();
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        Some(size + std::fs::metadata(wal).map_or(0, |m| m.len()))
    }

    /// Runs one read-only statement to its end, handing each row to `out`.
    pub async fn stream<W: RowWriter + 'static>(
        &self,
        sql: String,
        params: Vec<Value>,
        mut out: W,
    ) -> Result<W, DbError> {
        let timeout = self.options.timeout;
        self.read(move |c| {
            let fail = |e: rusqlite::Error| engine_error(e, &sql, timeout);
            let mut statement = c.prepare(&sql).map_err(fail)?;
            if statement.column_count() == 0 || !statement.readonly() {
                return Err(DbError::refused_statement("SQLite"));
            }
            bind(&mut statement, &params).map_err(fail)?;
            let columns: Vec<Column> = statement
                .columns()
                .map(|column| Column {
                    name: column.name().to_owned(),
                    type_name: column.decl_type().unwrap_or_default().to_owned(),
                })
                .collect();
            out.columns(&columns)?;
            let width = columns.len();
            let mut rows = statement.raw_query();
            while let Some(row) = rows.next().map_err(fail)? {
                let cells = (0..width)
                    .map(|i| row.get_ref(i).map(to_json))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(fail)?;
                out.row(cells)?;
            }
            Ok(out)
        })
        .await
    }

    pub async fn list_tables(&self) -> Result<Vec<TableSummary>, DbError> {
        let timeout = self.options.timeout;
        self.read(move |c| {
            let mut statement = c
                .prepare(
                    "SELECT name, type FROM sqlite_schema \
                     WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                     ORDER BY name",
                )
                .map_err(|e| engine_error(e, "", timeout))?;
            let tables: Vec<(String, String)> = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .and_then(Iterator::collect)
                .map_err(|e| engine_error(e, "", timeout))?;
            Ok(tables
                .into_iter()
                .map(|(name, kind)| {
                    // The largest rowid: an upper bound found in one index probe. Views and
                    // WITHOUT ROWID tables have none.
                    let estimated_rows = (kind == "table")
                        .then(|| {
                            c.query_row(
                                &format!("SELECT max(_rowid_) FROM {}", quote_identifier(&name)),
                                [],
                                |row| row.get::<_, Option<i64>>(0),
                            )
                            .ok()
                            .map(|max| max.unwrap_or(0))
                        })
                        .flatten();
                    TableSummary {
                        schema: None,
                        name,
                        kind,
                        estimated_rows,
                    }
                })
                .collect())
        })
        .await
    }

    pub async fn describe_table(&self, table: String) -> Result<TableDescription, DbError> {
        let timeout = self.options.timeout;
        self.read(move |c| {
            let fail = |e: rusqlite::Error| engine_error(e, "", timeout);
            // The name is bound, never pasted into SQL.
            let kind: Option<String> = c
                .query_row(
                    "SELECT type FROM sqlite_schema WHERE name = ?1 AND type IN ('table', 'view')",
                    [&table],
                    |row| row.get(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    other => Err(fail(other)),
                })?;
            let Some(kind) = kind else {
                return Err(
                    DbError::new(format!("no table or view named {table:?}")).with_hint(
                        "list_tables shows the names; search_objects finds them by pattern",
                    ),
                );
            };
            let mut keyed: Vec<(i64, String)> = Vec::new();
            let mut statement = c
                .prepare(
                    "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1) \
                     ORDER BY cid",
                )
                .map_err(fail)?;
            let columns = statement
                .query_map([&table], |row| {
                    let name: String = row.get(0)?;
                    let pk: i64 = row.get(4)?;
                    Ok((
                        ColumnInfo {
                            name: name.clone(),
                            type_name: row.get(1)?,
                            nullable: row.get::<_, i64>(2)? == 0,
                            default: row.get(3)?,
                            denied: false,
                        },
                        (pk > 0).then_some((pk, name)),
                    ))
                })
                .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
                .map_err(fail)?
                .into_iter()
                .map(|(column, key)| {
                    keyed.extend(key);
                    column
                })
                .collect();
            keyed.sort();
            let primary_key = keyed.into_iter().map(|(_, name)| name).collect();

            let mut statement = c
                .prepare(
                    "SELECT id, \"from\", \"table\", \"to\" FROM pragma_foreign_key_list(?1) \
                     ORDER BY id, seq",
                )
                .map_err(fail)?;
            let mut foreign_keys: Vec<(i64, ForeignKey)> = Vec::new();
            let links = statement
                .query_map([&table], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Option<String>>(3)?,
                    ))
                })
                .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
                .map_err(fail)?;
            for (id, from, target, to) in links {
                if foreign_keys.last().is_none_or(|(last, _)| *last != id) {
                    foreign_keys.push((
                        id,
                        ForeignKey {
                            columns: Vec::new(),
                            references_table: target,
                            references_columns: Vec::new(),
                        },
                    ));
                }
                if let Some((_, key)) = foreign_keys.last_mut() {
                    key.columns.push(from);
                    // A missing target column means the referenced table's primary key.
                    key.references_columns.extend(to);
                }
            }

            let mut statement = c
                .prepare(
                    "SELECT l.name, l.\"unique\", m.sql FROM pragma_index_list(?1) l \
                     LEFT JOIN sqlite_schema m ON m.type = 'index' AND m.name = l.name \
                     ORDER BY l.name",
                )
                .map_err(fail)?;
            let listed = statement
                .query_map([&table], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)? != 0,
                        row.get::<_, Option<String>>(2)?,
                    ))
                })
                .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
                .map_err(fail)?;
            let mut indexes = Vec::new();
            for (name, unique, definition) in listed {
                let mut statement = c
                    .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                    .map_err(fail)?;
                let columns = statement
                    .query_map([&name], |row| {
                        Ok(row
                            .get::<_, Option<String>>(0)?
                            .unwrap_or_else(|| "<expression>".into()))
                    })
                    .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
                    .map_err(fail)?;
                indexes.push(IndexInfo {
                    name,
                    unique,
                    columns,
                    definition,
                });
            }
            Ok(TableDescription {
                schema: None,
                name: table,
                kind,
                columns,
                primary_key,
                foreign_keys: foreign_keys.into_iter().map(|(_, key)| key).collect(),
                indexes,
            })
        })
        .await
    }

    pub async fn search_objects(
        &self,
        pattern: String,
        limit: usize,
    ) -> Result<Vec<ObjectMatch>, DbError> {
        let timeout = self.options.timeout;
        self.read(move |c| {
            let fail = |e: rusqlite::Error| engine_error(e, "", timeout);
            let mut statement = c
                .prepare(
                    "SELECT m.type, m.name, NULL, NULL FROM sqlite_schema m \
                     WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                       AND m.name LIKE ?1 \
                     UNION ALL \
                     SELECT 'column', m.name, p.name, p.type FROM sqlite_schema m \
                       JOIN pragma_table_info(m.name) p \
                     WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                       AND p.name LIKE ?1 \
                     LIMIT ?2",
                )
                .map_err(fail)?;
            statement
                .query_map(rusqlite::params![pattern, limit as i64], |row| {
                    Ok(ObjectMatch {
                        kind: row.get(0)?,
                        schema: None,
                        table: row.get(1)?,
                        column: row.get(2)?,
                        type_name: row.get(3)?,
                    })
                })
                .and_then(Iterator::collect)
                .map_err(fail)
        })
        .await
    }

    pub async fn query(&self, request: QueryRequest) -> Result<Rows, DbError> {
        let timeout = self.options.timeout;
        self.read(move |c| {
            let sql = request.sql.as_str();
            let fail = |e: rusqlite::Error| engine_error(e, sql, timeout);
            let mut statement = c.prepare(sql).map_err(fail)?;
            if statement.column_count() == 0 || !statement.readonly() {
                return Err(DbError::refused_statement("SQLite"));
            }
            bind(&mut statement, &request.params).map_err(fail)?;
            let mut columns: Vec<Column> = statement
                .columns()
                .map(|column| Column {
                    name: column.name().to_owned(),
                    type_name: column.decl_type().unwrap_or_default().to_owned(),
                })
                .collect();
            let width = columns.len();
            let mut sink = RowSink::new(&request);
            let mut rows = statement.raw_query();
            while let Some(row) = rows.next().map_err(fail)? {
                if !sink.wants() {
                    continue;
                }
                let cells = (0..width)
                    .map(|i| row.get_ref(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(fail)?;
                // Measured before anything is converted: a row too big for any answer is never
                // turned into JSON (a blob doubles as hex), whatever page it would start.
                let size = row_size(cells.iter().map(|cell| json_size(*cell)));
                if !sink.may_hold(size)? {
                    break;
                }
                if !sink.push_measured(cells.into_iter().map(to_json).collect(), size) {
                    break;
                }
            }
            // Expressions have no declared type: name the storage class of the first value.
            for (i, column) in columns.iter_mut().enumerate() {
                if column.type_name.is_empty() {
                    column.type_name = sink
                        .rows
                        .iter()
                        .map(|row| &row[i])
                        .find(|v| !v.is_null())
                        .map_or("", |v| match v {
                            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
                            Value::Number(_) => "real",
                            _ => "text",
                        })
                        .to_owned();
                }
            }
            Ok(sink.finish(columns))
        })
        .await
    }

    pub async fn explain(&self, sql: String, params: Vec<Value>) -> Result<String, DbError> {
        let timeout = self.options.timeout;
        self.read(move |c| {
            const PREFIX: &str = "EXPLAIN QUERY PLAN ";
            let plan_sql = format!("{PREFIX}{sql}");
            let fail =
                |e: rusqlite::Error| engine_error(e, &plan_sql, timeout).after_prefix(PREFIX);
            let mut statement = c.prepare(&plan_sql).map_err(fail)?;
            // Without values, placeholders are planned as NULL.
            if params.is_empty() {
                for i in 1..=statement.parameter_count() {
                    statement
                        .raw_bind_parameter(i, SqlValue::Null)
                        .map_err(fail)?;
                }
            } else {
                bind(&mut statement, &params).map_err(fail)?;
            }
            let steps: Vec<(i64, i64, String)> = statement
                .raw_query()
                .mapped(|row| Ok((row.get(0)?, row.get(1)?, row.get(3)?)))
                .collect::<rusqlite::Result<_>>()
                .map_err(fail)?;
            let mut depth: std::collections::HashMap<i64, usize> = Default::default();
            let mut out = String::from("QUERY PLAN");
            for (id, parent, detail) in steps {
                let level = depth.get(&parent).map_or(1, |d| d + 1);
                depth.insert(id, level);
                out.push_str(&format!("\n{}{detail}", "  ".repeat(level)));
            }
            Ok(out)
        })
        .await
    }

    pub async fn execute(&self, sql: String, params: Vec<Value>) -> Result<u64, DbError> {
        let Some(handle) = self.writer.clone() else {
            return Err(DbError::new("this server is read-only")
                .with_hint("start it with --allow-write to change the database"));
        };
        let timeout = self.options.timeout;
        handle
            .run(timeout, move |c| {
                let fail = |e: rusqlite::Error| engine_error(e, &sql, timeout);
                let transaction = c.transaction().map_err(fail)?;
                let changed = {
                    let mut statement = transaction.prepare(&sql).map_err(fail)?;
                    bind(&mut statement, &params).map_err(fail)?;
                    statement.raw_execute().map_err(fail)?
                };
                transaction.commit().map_err(fail)?;
                Ok(changed as u64)
            })
            .await
    }
}

fn bind(statement: &mut rusqlite::Statement<'_>, params: &[Value]) -> rusqlite::Result<()> {
    let expected = statement.parameter_count();
    if expected != params.len() {
        return Err(rusqlite::Error::InvalidParameterCount(
            params.len(),
            expected,
        ));
    }
    for (i, value) in params.iter().enumerate() {
        statement.raw_bind_parameter(i + 1, from_json(value))?;
    }
    Ok(())
}

fn from_json(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

/// About how many bytes `value` takes as JSON, without converting it: what
/// `approximate_size` says of [`to_json`]'s value (a blob becomes a hex string).
fn json_size(value: ValueRef<'_>) -> usize {
    match value {
        ValueRef::Null => 4,
        ValueRef::Integer(_) | ValueRef::Real(_) => 12,
        ValueRef::Text(bytes) => bytes.len() + 2,
        ValueRef::Blob(bytes) => 2 * bytes.len() + 2,
    }
}

fn to_json(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => {
            serde_json::Number::from_f64(f).map_or_else(|| f.to_string().into(), Value::Number)
        }
        ValueRef::Text(bytes) => String::from_utf8_lossy(bytes).into_owned().into(),
        ValueRef::Blob(bytes) => crate::value::hex(bytes).into(),
    }
}

/// `"name"`, with embedded quotes doubled: the one way an identifier reaches SQL text.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The engine's error in words a model can act on.
fn engine_error(error: rusqlite::Error, sql: &str, timeout: Duration) -> DbError {
    match error {
        rusqlite::Error::SqlInputError { msg, offset, .. } => {
            let position = usize::try_from(offset)
                .ok()
                .and_then(|offset| sql.get(..offset))
                .map(|before| before.chars().count() + 1);
            DbError::new(msg).at(position)
        }
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == ErrorCode::OperationInterrupted =>
        {
            DbError::timed_out(timeout)
        }
        rusqlite::Error::SqliteFailure(failure, message) => {
            let text = message.unwrap_or_else(|| failure.to_string());
            match failure.code {
                ErrorCode::AuthorizationForStatementDenied => {
                    match DENIED_BY.with(|slot| slot.borrow_mut().take()) {
                        Some(rule) => DbError::new(format!(
                            "{text}: the server's deny rule \"{rule}\" covers it"
                        ))
                        .with_hint(
                            "denied tables and columns cannot be read in any part of a statement \
                             (SELECT *, WHERE, functions, views); name the other columns",
                        ),
                        None => DbError::new(text).with_hint(
                            "this server refuses ATTACH, DETACH, load_extension and pragmas that change settings",
                        ),
                    }
                }
                ErrorCode::ReadOnly => DbError::new(text).with_hint(
                    "query is read-only; changes go through execute (start the server with --allow-write)",
                ),
                _ => DbError::new(text),
            }
        }
        rusqlite::Error::MultipleStatement => {
            DbError::new("one statement per call: there is more SQL after the first statement")
                .with_hint("send each statement in its own call")
        }
        rusqlite::Error::InvalidParameterCount(given, expected) => DbError::new(format!(
            "the statement has {expected} parameter(s) but params has {given}"
        ))
        .with_hint("params fills ?1, ?2, … (or ?) in order"),
        other => DbError::new(other.to_string()),
    }
}
