//! What both engines share: the database a URL names, the limits every call runs under, and the
//! shapes of what comes back.

use std::{path::PathBuf, time::Duration};

use rmcp::schemars;
use serde::Serialize;
use serde_json::Value;

use crate::{config::DenyRule, mariadb::MariaDb, named::Style, postgres::Postgres, sqlite::Sqlite};

/// Where an export's rows go, one at a time, as the engine reads them.
pub trait RowWriter: Send {
    /// The result's columns, before any row.
    fn columns(&mut self, columns: &[Column]) -> Result<(), DbError>;
    /// One row, a value per column.
    fn row(&mut self, row: Vec<Value>) -> Result<(), DbError>;
    /// After the last row: everything written is flushed and on disk.
    fn end(&mut self) -> Result<(), DbError>;
}

/// Limits every call runs under.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Whether `execute` exists (and SQLite is opened writable).
    pub allow_write: bool,
    /// Serve read-only on PostgreSQL even as a role that could write (a superuser, a table's
    /// owner, a role with INSERT/UPDATE/DELETE/TRUNCATE grants). Refused without it: such a role
    /// can write through a second connection (`dblink_exec`, `postgres_fdw`) that the read-only
    /// transaction does not cover.
    pub allow_privileged_role: bool,
    /// Longest a statement may run.
    pub timeout: Duration,
    /// Most rows one `query` returns (a call may ask for fewer).
    pub max_rows: usize,
    /// Most bytes of row data one `query` returns; more rows come with a cursor.
    pub max_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allow_write: false,
            allow_privileged_role: false,
            timeout: Duration::from_secs(30),
            max_rows: 1_000,
            max_bytes: 256 * 1024,
        }
    }
}

/// The database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `sqlite:path`, `sqlite://path`, `sqlite:///abs/path` or a plain path.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`, as libpq takes it.
    Postgres(String),
    /// `mysql://…` or `mariadb://…`: MariaDB or MySQL.
    MariaDb(String),
}

impl Target {
    /// Reads a database URL (or a plain path, for SQLite).
    pub fn parse(url: &str) -> Result<Self, DbError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(DbError::new("no database given").with_hint(
                "pass a SQLite file (sqlite:path/to.db or a plain path) or postgres://user@host/db",
            ));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            return Ok(Self::MariaDb(url.to_owned()));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            // sqlite:///abs, sqlite://rel and sqlite:rel all name a file.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(DbError::new(
                    "sqlite: needs a file path, e.g. sqlite:data.db",
                ));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(
                DbError::new(format!("unsupported database scheme {scheme}://"))
                    .with_hint("use sqlite:path, postgres://user@host/db or mysql://user@host/db"),
            );
        }
        Ok(Self::Sqlite(PathBuf::from(url)))
    }

    /// The URL with any password masked, for logs and messages.
    pub fn display(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite:{}", path.display()),
            Self::Postgres(url) | Self::MariaDb(url) => match url::Url::parse(url) {
                Ok(mut parsed) if parsed.password().is_some() => {
                    let _ = parsed.set_password(Some("***"));
                    parsed.to_string()
                }
                _ => url.clone(),
            },
        }
    }
}

/// An open database, either engine.
pub struct Database(Engine);

enum Engine {
    Sqlite(Sqlite),
    Postgres(Postgres),
    MariaDb(MariaDb),
}

impl Database {
    /// Opens what `target` names. PostgreSQL connects once here so a bad URL or password is
    /// reported at startup, not at the first call.
    pub async fn open(target: &Target, options: Options) -> Result<Self, DbError> {
        Self::open_denying(target, options, &[]).await
    }

    /// [`Self::open`], with tables and columns no statement may read. SQLite refuses them in
    /// its authorizer; PostgreSQL is not opened while the role can still read one of them.
    pub async fn open_denying(
        target: &Target,
        options: Options,
        deny: &[DenyRule],
    ) -> Result<Self, DbError> {
        Ok(Self(match target {
            Target::Sqlite(path) => Engine::Sqlite(Sqlite::open(path, options, deny).await?),
            Target::Postgres(url) => Engine::Postgres(Postgres::connect(url, options, deny).await?),
            Target::MariaDb(url) => Engine::MariaDb(MariaDb::connect(url, options, deny).await?),
        }))
    }

    /// How the engine writes placeholders.
    pub(crate) fn placeholder_style(&self) -> Style {
        match &self.0 {
            Engine::Sqlite(_) => Style::QuestionNumbered,
            Engine::Postgres(_) => Style::Dollar,
            Engine::MariaDb(_) => Style::Question,
        }
    }

    /// The database's size in bytes, where that is cheap to know.
    pub async fn size(&self) -> Option<u64> {
        match &self.0 {
            Engine::Sqlite(db) => db.size(),
            Engine::Postgres(db) => db.size().await,
            Engine::MariaDb(db) => db.size().await,
        }
    }

    /// Runs one read-only statement to its end, handing each row to `out` (for exports: no
    /// row limit, the statement timeout still applies).
    pub async fn stream<W: RowWriter + 'static>(
        &self,
        sql: String,
        params: Vec<Value>,
        out: W,
    ) -> Result<W, DbError> {
        let statement = sql.clone();
        match &self.0 {
            Engine::Sqlite(db) => db.stream(sql, params, out).await,
            Engine::Postgres(db) => db.stream(sql, params, out).await,
            Engine::MariaDb(db) => db.stream(sql, params, out).await,
        }
        .map_err(|e| e.in_sql(&statement))
    }

    /// `sqlite`, `postgresql` or `mariadb` (MariaDB or MySQL).
    pub fn engine(&self) -> &'static str {
        match &self.0 {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgresql",
            Engine::MariaDb(_) => "mariadb",
        }
    }

    /// The tables and views (of `schema`, or every user schema), with estimated row counts.
    pub async fn list_tables(&self, schema: Option<String>) -> Result<Vec<TableSummary>, DbError> {
        match &self.0 {
            Engine::Sqlite(db) => db.list_tables().await,
            Engine::Postgres(db) => db.list_tables(schema).await,
            Engine::MariaDb(db) => db.list_tables(schema).await,
        }
    }

    /// A table's or view's columns, keys and indexes.
    pub async fn describe_table(
        &self,
        table: String,
        schema: Option<String>,
    ) -> Result<TableDescription, DbError> {
        match &self.0 {
            Engine::Sqlite(db) => db.describe_table(table).await,
            Engine::Postgres(db) => db.describe_table(table, schema).await,
            Engine::MariaDb(db) => db.describe_table(table, schema).await,
        }
    }

    /// Tables, views and columns whose names match `pattern` (a `LIKE` pattern or a glob).
    pub async fn search_objects(
        &self,
        pattern: String,
        limit: usize,
    ) -> Result<Vec<ObjectMatch>, DbError> {
        let pattern = like_pattern(&pattern);
        match &self.0 {
            Engine::Sqlite(db) => db.search_objects(pattern, limit).await,
            Engine::Postgres(db) => db.search_objects(pattern, limit).await,
            Engine::MariaDb(db) => db.search_objects(pattern, limit).await,
        }
    }

    // The three below keep the statement on a failure, so that the error points into it.

    /// Runs one read-only statement and pages its rows as `request` says.
    pub async fn query(&self, request: QueryRequest) -> Result<Rows, DbError> {
        let sql = request.sql.clone();
        match &self.0 {
            Engine::Sqlite(db) => db.query(request).await,
            Engine::Postgres(db) => db.query(request).await,
            Engine::MariaDb(db) => db.query(request).await,
        }
        .map_err(|e| e.in_sql(&sql))
    }

    /// The engine's plan for a statement, without running it.
    pub async fn explain(&self, sql: String, params: Vec<Value>) -> Result<String, DbError> {
        let statement = sql.clone();
        match &self.0 {
            Engine::Sqlite(db) => db.explain(sql, params).await,
            Engine::Postgres(db) => db.explain(sql, params).await,
            Engine::MariaDb(db) => db.explain(sql, params).await,
        }
        .map_err(|e| e.in_sql(&statement))
    }

    /// Runs one changing statement in a transaction; the rows affected.
    pub async fn execute(&self, sql: String, params: Vec<Value>) -> Result<u64, DbError> {
        let statement = sql.clone();
        match &self.0 {
            Engine::Sqlite(db) => db.execute(sql, params).await,
            Engine::Postgres(db) => db.execute(sql, params).await,
            Engine::MariaDb(db) => db.execute(sql, params).await,
        }
        .map_err(|e| e.in_sql(&statement))
    }
}

/// A `LIKE` pattern from what a user typed: `%` and `_` are kept as wildcards, `*` and `?` are
/// read as the glob wildcards people type, and a pattern without wildcards matches anywhere.
fn like_pattern(pattern: &str) -> String {
    let converted: String = pattern
        .chars()
        .map(|c| match c {
            '*' => '%',
            '?' => '_',
            other => other,
        })
        .collect();
    if converted.contains('%') || converted.contains('_') {
        converted
    } else {
        format!("%{converted}%")
    }
}

/// One `query` call.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    /// The statement.
    pub sql: String,
    /// Its bound parameters, in order (`$1`/`?1`, …).
    pub params: Vec<Value>,
    /// Rows to skip (from a cursor).
    pub offset: usize,
    /// Most rows to return.
    pub max_rows: usize,
    /// Most bytes of row data to return.
    pub max_bytes: usize,
}

/// A column of a result.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// The engine's type name, when it knows one.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// Rows of a `query`: at most the limits, with a cursor to the rest.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Rows {
    /// The result's columns.
    pub columns: Vec<Column>,
    /// The rows, each a value per column.
    pub rows: Vec<Vec<Value>>,
    /// Whether more rows follow (call again with `cursor`).
    pub truncated: bool,
    /// Pass as `cursor` to get the next rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl Rows {
    /// The same JSON as serializing it, built by moving the rows rather than copying them.
    pub fn into_value(self) -> Value {
        let mut object = serde_json::Map::with_capacity(4);
        object.insert(
            "columns".to_owned(),
            serde_json::to_value(&self.columns).unwrap_or_default(),
        );
        object.insert(
            "rows".to_owned(),
            self.rows.into_iter().map(Value::Array).collect(),
        );
        object.insert("truncated".to_owned(), self.truncated.into());
        if let Some(cursor) = self.next_cursor {
            object.insert("next_cursor".to_owned(), cursor.into());
        }
        object.into()
    }
}

/// Collects rows under the request's limits: skips `offset`, stops at `max_rows` or
/// `max_bytes` of JSON, and notes whether there was more.
pub struct RowSink {
    offset: usize,
    max_rows: usize,
    max_bytes: usize,
    seen: usize,
    bytes: usize,
    pub rows: Vec<Vec<Value>>,
    pub truncated: bool,
}

impl RowSink {
    pub fn new(request: &QueryRequest) -> Self {
        Self {
            offset: request.offset,
            max_rows: request.max_rows.max(1),
            max_bytes: request.max_bytes,
            seen: 0,
            bytes: 0,
            rows: Vec::new(),
            truncated: false,
        }
    }

    /// Whether the row at this position is wanted at all (rows before the cursor are not).
    pub fn wants(&mut self) -> bool {
        self.seen += 1;
        self.seen > self.offset
    }

    /// Whether a row of about `size` bytes can be taken, before it is converted: a row bigger
    /// than a whole answer ends this page (and so starts the next, where it is refused), and
    /// as a page's first row it is refused with an error that says what to select instead.
    pub fn may_hold(&mut self, size: usize) -> Result<bool, DbError> {
        if size <= self.max_bytes {
            return Ok(true);
        }
        if !self.rows.is_empty() {
            self.truncated = true;
            return Ok(false);
        }
        Err(DbError::new(format!(
            "row {} is about {size} bytes as JSON, more than the {} bytes one answer carries",
            self.seen, self.max_bytes
        ))
        .with_hint(
            "select a part of its large values (substr(col, 1, 1000), length(col)), or start the \
             server with a larger --max-bytes",
        ))
    }

    /// Takes a wanted row; returns false when the sink is full (the row is then dropped and
    /// the result marked truncated), so the caller stops reading.
    pub fn push(&mut self, row: Vec<Value>) -> bool {
        let size = row_size(row.iter().map(approximate_size));
        self.push_measured(row, size)
    }

    /// [`Self::push`] for a row whose size (by [`row_size`]) was measured before it was
    /// converted, so it is not measured twice.
    pub fn push_measured(&mut self, row: Vec<Value>, size: usize) -> bool {
        let full = self.rows.len() >= self.max_rows
            || (!self.rows.is_empty() && self.bytes + size > self.max_bytes);
        if full {
            self.truncated = true;
            return false;
        }
        self.bytes += size;
        self.rows.push(row);
        true
    }

    pub fn finish(self, columns: Vec<Column>) -> Rows {
        let next = self.offset + self.rows.len();
        Rows {
            columns,
            next_cursor: self.truncated.then(|| next.to_string()),
            rows: self.rows,
            truncated: self.truncated,
        }
    }
}

/// About how many bytes a row takes as JSON: its values' sizes, commas and brackets.
pub fn row_size(values: impl ExactSizeIterator<Item = usize>) -> usize {
    let count = values.len();
    values.sum::<usize>() + count + 2
}

/// About how many bytes `value` takes as JSON.
fn approximate_size(value: &Value) -> usize {
    match value {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(_) => 12,
        Value::String(s) => s.len() + 2,
        other => other.to_string().len(),
    }
}

/// A table or view, as `list_tables` shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TableSummary {
    /// Its schema (PostgreSQL); none for SQLite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Its name.
    pub name: String,
    /// table, view, materialized view, foreign table, partitioned table.
    pub kind: String,
    /// The engine's estimate (PostgreSQL statistics; SQLite's largest rowid); null when unknown.
    pub estimated_rows: Option<i64>,
}

/// A column as `describe_table` shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ColumnInfo {
    /// The column's name.
    pub name: String,
    /// The engine's type name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Whether it may be null.
    pub nullable: bool,
    /// Its default expression, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Whether the server's deny list forbids reading it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub denied: bool,
}

/// A foreign key: columns of this table that reference another's.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ForeignKey {
    /// This table's columns.
    pub columns: Vec<String>,
    /// The table referenced.
    pub references_table: String,
    /// Its columns, in the same order.
    pub references_columns: Vec<String>,
}

/// An index on the table.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct IndexInfo {
    /// Its name.
    pub name: String,
    /// Whether it enforces uniqueness.
    pub unique: bool,
    /// The columns it covers, in order.
    pub columns: Vec<String>,
    /// The engine's own definition, when it has one (PostgreSQL's `CREATE INDEX …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
}

/// Everything `describe_table` tells about a table.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TableDescription {
    /// Its schema (PostgreSQL); none for SQLite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Its name.
    pub name: String,
    /// table, view, materialized view, …
    pub kind: String,
    /// Its columns, in order.
    pub columns: Vec<ColumnInfo>,
    /// The primary key's columns, in order.
    pub primary_key: Vec<String>,
    /// Its foreign keys.
    pub foreign_keys: Vec<ForeignKey>,
    /// Its indexes.
    pub indexes: Vec<IndexInfo>,
}

/// A table or column whose name matched `search_objects`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ObjectMatch {
    /// `table`, `view`, … or `column`.
    pub kind: String,
    /// The schema (PostgreSQL); none for SQLite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The table or view.
    pub table: String,
    /// The column, when a column matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The column's type, when a column matched.
    #[serde(skip_serializing_if = "Option::is_none", rename = "type")]
    pub type_name: Option<String>,
}

/// An error from the engine or from us, with where in the SQL it happened when the engine says.
/// Shown ([`Display`](std::fmt::Display)) as a model reads it: the engine's words, then the line
/// and column in the statement; the hint goes with it into a tool's error
/// ([`Hinted`](mcp_core::tool::Hinted)).
#[derive(Debug, Clone)]
pub struct DbError {
    /// What went wrong, in the engine's words or ours.
    pub message: String,
    /// 1-based character position in the SQL.
    pub position: Option<usize>,
    /// What to do about it.
    pub hint: Option<String>,
    /// The statement `position` points into, once known.
    sql: Option<String>,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe(self.sql.as_deref()))
    }
}

impl std::error::Error for DbError {}

impl mcp_core::tool::Hinted for DbError {
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}

impl DbError {
    /// An error with only a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            position: None,
            hint: None,
            sql: None,
        }
    }

    /// The statement this error came from (kept only when the error points into it).
    pub fn in_sql(mut self, sql: &str) -> Self {
        if self.position.is_some() && self.sql.is_none() {
            self.sql = Some(sql.to_owned());
        }
        self
    }

    /// Named after what it happened to (`database "shop": …`), keeping the rest.
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// With what to do about it.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// At this 1-based character position of the statement.
    pub fn at(mut self, position: Option<usize>) -> Self {
        self.position = position;
        self
    }

    /// The message a model reads: the engine's words, then where in `sql` (line and column).
    fn describe(&self, sql: Option<&str>) -> String {
        let mut out = self.message.clone();
        if let Some(position) = self.position {
            match sql.and_then(|sql| line_and_column(sql, position)) {
                Some((line, column, text)) => out.push_str(&format!(
                    "\nat line {line}, column {column}:\n  {text}\n  {}^",
                    " ".repeat(column.saturating_sub(1))
                )),
                None => out.push_str(&format!(" (at character {position})")),
            }
        }
        out
    }

    /// For SQL we sent behind `prefix` (`EXPLAIN …`): the position in the caller's SQL.
    pub(crate) fn after_prefix(mut self, prefix: &str) -> Self {
        let skipped = prefix.chars().count();
        self.position = self
            .position
            .and_then(|p| p.checked_sub(skipped))
            .filter(|p| *p > 0);
        self
    }

    pub(crate) fn refused_statement(engine: &str) -> Self {
        Self::new(format!(
            "query runs one read-only statement that returns rows; {engine} says this one does not"
        ))
        .with_hint(
            "use SELECT (or WITH … SELECT, VALUES, EXPLAIN); changes go through execute, which the \
             server offers only when started with --allow-write",
        )
    }

    pub(crate) fn timed_out(timeout: Duration) -> Self {
        Self::new(format!(
            "the statement was cancelled after the {} s timeout",
            timeout.as_secs_f64()
        ))
        .with_hint("narrow the query (a WHERE clause, a LIMIT) or ask for a longer --timeout")
    }
}

impl From<mcp_core::pg_tls::TlsError> for DbError {
    fn from(error: mcp_core::pg_tls::TlsError) -> Self {
        let mut db = DbError::new(error.message);
        db.hint = error.hint;
        db
    }
}

/// The line, column (both 1-based) and text of the line holding character `position`.
fn line_and_column(sql: &str, position: usize) -> Option<(usize, usize, &str)> {
    let mut seen = 0;
    for (index, line) in sql.split('\n').enumerate() {
        let length = line.chars().count();
        if position <= seen + length + 1 {
            return Some((index + 1, position - seen, line.trim_end_matches('\r')));
        }
        seen += length + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_engine() {
        assert_eq!(
            Target::parse("sqlite:data/app.db").unwrap(),
            Target::Sqlite("data/app.db".into())
        );
        assert_eq!(
            Target::parse("sqlite:///tmp/a.db").unwrap(),
            Target::Sqlite("/tmp/a.db".into())
        );
        assert_eq!(
            Target::parse("./a.sqlite").unwrap(),
            Target::Sqlite("./a.sqlite".into())
        );
        assert!(matches!(
            Target::parse("postgresql://u@127.0.0.1/db").unwrap(),
            Target::Postgres(_)
        ));
        assert!(matches!(
            Target::parse("mysql://u@h/db").unwrap(),
            Target::MariaDb(_)
        ));
        assert!(Target::parse("mssql://u@h/db").is_err());
        assert!(Target::parse("  ").is_err());
        assert!(Target::parse("sqlite:").is_err());
    }

    #[test]
    fn passwords_are_masked_for_display() {
        let target = Target::parse("postgres://app:s3cret@127.0.0.1:5432/db").unwrap();
        let shown = target.display();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("app:***@127.0.0.1"), "{shown}");
    }

    #[test]
    fn search_patterns_read_globs_and_substrings() {
        assert_eq!(like_pattern("user"), "%user%");
        assert_eq!(like_pattern("user*"), "user%");
        assert_eq!(like_pattern("us_r"), "us_r");
    }

    #[test]
    fn errors_point_at_the_line_and_column() {
        let error = DbError::new("syntax error").at(Some(12));
        assert_eq!(error.to_string(), "syntax error (at character 12)");
        let shown = error.in_sql("SELECT 1\nFROM x y z").to_string();
        assert!(shown.contains("at line 2, column 3"), "{shown}");
        assert!(shown.ends_with("  FROM x y z\n    ^"), "{shown}");
        // An error that points nowhere keeps no copy of the statement.
        assert!(DbError::new("gone").in_sql("SELECT 1").sql.is_none());
    }

    #[test]
    fn the_sink_pages_by_rows_and_bytes() {
        let request = QueryRequest {
            sql: String::new(),
            params: Vec::new(),
            offset: 2,
            max_rows: 3,
            max_bytes: 1 << 20,
        };
        let mut sink = RowSink::new(&request);
        for i in 0..10 {
            if sink.wants() && !sink.push(vec![Value::from(i)]) {
                break;
            }
        }
        let rows = sink.finish(Vec::new());
        assert_eq!(
            rows.rows,
            vec![vec![Value::from(2)], vec![3.into()], vec![4.into()]]
        );
        assert!(rows.truncated);
        assert_eq!(rows.next_cursor.as_deref(), Some("5"));

        let small = QueryRequest {
            max_bytes: 30,
            offset: 0,
            ..request
        };
        let mut sink = RowSink::new(&small);
        for _ in 0..10 {
            if sink.wants() && !sink.push(vec![Value::from("0123456789")]) {
                break;
            }
        }
        let rows = sink.finish(Vec::new());
        assert_eq!(rows.rows.len(), 2);
        assert!(rows.truncated);
    }

    #[test]
    fn rows_moved_into_json_are_rows_serialized() {
        let rows = Rows {
            columns: vec![Column {
                name: "a".into(),
                type_name: "text".into(),
            }],
            rows: vec![
                vec![Value::from("x"), Value::Null],
                vec![1.into(), 2.5.into()],
            ],
            truncated: true,
            next_cursor: Some("2".into()),
        };
        let serialized = serde_json::to_value(&rows).unwrap();
        assert_eq!(rows.into_value(), serialized);
    }
}
