//! MariaDB and MySQL, pooled. Read-only is the engine's: every `query` (and every look at the
//! catalog) runs in `START TRANSACTION READ ONLY` under the session's statement timeout
//! (`max_statement_time` on MariaDB, `max_execution_time` on MySQL), as one prepared statement
//! (the binary protocol takes one statement: `SELECT 1; DROP …` is a syntax error), and must be
//! a statement that returns rows, so DDL (which would commit the transaction implicitly), `SET`,
//! `CALL`, `LOCK`, `HANDLER` and `… INTO OUTFILE` never run. A timeout of our own backs the
//! engine's (a `SET STATEMENT max_statement_time=0 FOR …` prefix lifts the engine's): a call
//! that passes it is killed on the server (`KILL QUERY`). Connections are reset when they go
//! back to the pool, so no lock, variable or temporary table outlives a call.

use std::time::Duration;

use mysql_async::{
    Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, Statement, Value as MyValue,
    consts::{ColumnFlags, ColumnType},
    prelude::Queryable,
};
use serde_json::Value;

use crate::{
    config::DenyRule,
    db::{
        Column, ColumnInfo, DbError, ForeignKey, IndexInfo, ObjectMatch, Options, QueryRequest,
        RowSink, RowWriter, Rows, TableDescription, TableSummary, row_size,
    },
};

/// Connections at most, per server.
const POOL_SIZE: usize = 4;
/// Schemas that are the server's, not the user's.
const SYSTEM_SCHEMAS: &str = "('mysql', 'information_schema', 'performance_schema', 'sys')";

/// kind, schema, table, column, type: a `search_objects` match as the catalog gives it.
type ObjectRow = (String, String, String, Option<String>, Option<String>);

/// A MariaDB or MySQL database behind a small pool.
pub struct MariaDb {
    pool: Pool,
    options: Options,
    /// MariaDB (`max_statement_time`, seconds) or MySQL (`max_execution_time`, ms).
    mariadb: bool,
}

/// A pooled connection in use by one call: if the call is dropped before it finishes, the
/// statement is killed on the server (from another connection) and this one is closed.
struct InFlight {
    conn: Option<Conn>,
    pool: Pool,
    done: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (Some(conn), Ok(runtime)) = (self.conn.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let id = conn.id();
        let pool = self.pool.clone();
        runtime.spawn(async move {
            match pool.get_conn().await {
                Ok(mut killer) => {
                    if let Err(error) = killer.query_drop(format!("KILL QUERY {id}")).await {
                        tracing::debug!(%error, "could not kill an abandoned statement");
                    }
                }
                Err(error) => tracing::debug!(%error, "could not kill an abandoned statement"),
            }
            let _ = conn.disconnect().await;
        });
    }
}

impl MariaDb {
    /// Connects once, so a wrong URL or password is reported now. The password may come from
    /// `MYSQL_PWD` rather than the URL.
    pub async fn connect(url: &str, options: Options, deny: &[DenyRule]) -> Result<Self, DbError> {
        let url = match url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => url.to_owned(),
        };
        // Through an SSH tunnel the URL names 127.0.0.1; TLS still checks the real host name.
        let (url, tls_host) = take_param(&url, TLS_HOST_PARAM);
        let opts = Opts::from_url(&url).map_err(|e| {
            DbError::new(format!("invalid MariaDB/MySQL URL: {e}"))
                .with_hint("the form is mysql://user[:password]@host[:port]/database")
        })?;
        let mut builder = OptsBuilder::from_opts(opts.clone())
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(PoolConstraints::new(0, POOL_SIZE).unwrap_or_default())
                    .with_reset_connection(true),
            )
            .init(vec!["SET NAMES utf8mb4"]);
        if let (Some(ssl), Some(host)) = (opts.ssl_opts(), tls_host) {
            builder = builder.ssl_opts(ssl.clone().with_danger_tls_hostname_override(Some(host)));
        }
        if opts.pass().is_none()
            && let Ok(password) = std::env::var("MYSQL_PWD")
        {
            builder = builder.pass(Some(password));
        }
        let pool = Pool::new(builder);
        let mut this = Self {
            pool,
            options,
            mariadb: true,
        };
        let mut conn = tokio::time::timeout(Duration::from_secs(10), this.pool.get_conn())
            .await
            .map_err(|_| {
                DbError::new("cannot connect to MariaDB/MySQL: no answer in 10 s")
                    .with_hint("check that the server is running and the host and port are right")
            })?
            .map_err(|e| {
                DbError::new(format!("cannot connect to MariaDB/MySQL: {}", describe(&e)))
                    .with_hint(
                        "check that the server is running and the URL, user and password are right",
                    )
            })?;
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| my_error(e, options.timeout))?;
        this.mariadb = version.is_some_and(|v| v.contains("MariaDB"));
        this.check_role(&mut conn).await?;
        this.check_deny(&mut conn, deny).await?;
        Ok(this)
    }

    /// A role that can write gets around the read-only transaction: an implicit commit from a
    /// statement we refuse anyway is not the risk, tables of other engines (CONNECT,
    /// FEDERATED) that write through their own connections are. As on PostgreSQL, a read-only
    /// server refuses such a role unless told `allow_privileged_role`.
    async fn check_role(&self, conn: &mut Conn) -> Result<(), DbError> {
        let timeout = self.options.timeout;
        let rows: Vec<(String, String)> = conn
            .query(
                "SELECT PRIVILEGE_TYPE, 'on every database' FROM information_schema.USER_PRIVILEGES \
                 WHERE PRIVILEGE_TYPE IN ('INSERT', 'UPDATE', 'DELETE', 'CREATE', 'DROP', 'ALTER', 'FILE', 'SUPER') \
                 UNION ALL \
                 SELECT PRIVILEGE_TYPE, concat('on ', TABLE_SCHEMA) FROM information_schema.SCHEMA_PRIVILEGES \
                 WHERE PRIVILEGE_TYPE IN ('INSERT', 'UPDATE', 'DELETE', 'CREATE', 'DROP', 'ALTER') \
                 UNION ALL \
                 SELECT PRIVILEGE_TYPE, concat('on ', TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.TABLE_PRIVILEGES \
                 WHERE PRIVILEGE_TYPE IN ('INSERT', 'UPDATE', 'DELETE', 'DROP', 'ALTER') \
                 LIMIT 1",
            )
            .await
            .map_err(|e| my_error(e, timeout))?;
        let user = self.current_user(conn).await?;
        match rows.first() {
            Some((privilege, scope)) if !self.options.allow_write && !self.options.allow_privileged_role => {
                Err(DbError::new(format!(
                    "refusing to serve read-only as a user that can write: {user} has {privilege} \
                     {scope}, and such a user can write through tables of the CONNECT or FEDERATED \
                     engines, whose connections the read-only transaction does not cover"
                ))
                .with_hint(
                    "connect as a user with only SELECT grants (the README shows how), or start \
                     with --allow-privileged-role (allow_privileged_role = true) to accept the risk",
                ))
            }
            Some((privilege, scope)) if !self.options.allow_write => {
                tracing::warn!(
                    "{user} has {privilege} {scope}: serving read-only anyway \
                     (--allow-privileged-role)"
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn current_user(&self, conn: &mut Conn) -> Result<String, DbError> {
        let user: Option<String> = conn
            .query_first("SELECT CURRENT_USER()")
            .await
            .map_err(|e| my_error(e, self.options.timeout))?;
        // user@host as a grant names it: 'user'@'host'.
        Ok(match user.as_deref().and_then(|u| u.rsplit_once('@')) {
            Some((name, host)) => format!("'{name}'@'{host}'"),
            None => user.unwrap_or_default(),
        })
    }

    /// The server does not start while the user can read a denied column, directly or through
    /// a view whose definition reads it; the error shows the statements that fix it. Whether a
    /// column can be read is asked of the server itself: `SELECT col FROM t LIMIT 0` runs or is
    /// refused.
    async fn check_deny(&self, conn: &mut Conn, deny: &[DenyRule]) -> Result<(), DbError> {
        if deny.is_empty() {
            return Ok(());
        }
        let timeout = self.options.timeout;
        let user = self.current_user(conn).await?;
        let mut readable = Vec::new();
        let mut fixes: Vec<String> = Vec::new();
        // Every view, once: its definition (lowercased), or none when hidden from this user
        // (without SHOW VIEW), and then a view it may read may read anything.
        let views: Vec<(String, String, String)> = conn
            .query(format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS \
                 WHERE TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS}"
            ))
            .await
            .map_err(|e| my_error(e, timeout))?;
        let mut visible = Vec::new();
        for (schema, view, definition) in views {
            if !definition.is_empty() {
                visible.push((schema, view, definition.to_ascii_lowercase()));
            } else if readable_relation(conn, &schema, &view).await {
                readable.push(format!(
                    "perhaps through the view {schema}.{view}, whose definition {user} may not see"
                ));
                fixes.push(format!(
                    "GRANT SHOW VIEW ON {}.{} TO {user};  -- so that the check can read it",
                    quote(&schema),
                    quote(&view)
                ));
            }
        }
        for rule in deny {
            let columns: Vec<(String, String, String)> = conn
                .exec(
                    format!(
                        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS \
                         WHERE TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS} AND lower(TABLE_NAME) = lower(?) \
                           AND (? IS NULL OR lower(COLUMN_NAME) = lower(?)) \
                         ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
                    ),
                    (&rule.table, &rule.column, &rule.column),
                )
                .await
                .map_err(|e| my_error(e, timeout))?;
            if columns.is_empty() {
                tracing::warn!(rule = %rule, "a deny rule names no table this user can see");
            }
            for (schema, table, column) in &columns {
                let probe = format!(
                    "SELECT {} FROM {}.{} LIMIT 0",
                    quote(column),
                    quote(schema),
                    quote(table)
                );
                if conn.query_drop(probe).await.is_ok() {
                    readable.push(format!("{schema}.{table}.{column} (rule \"{rule}\")"));
                    let others: Vec<String> = conn
                        .exec(
                            "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
                             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                            (schema, table),
                        )
                        .await
                        .map_err(|e| my_error(e, timeout))?;
                    let allowed: Vec<String> = others
                        .iter()
                        .filter(|other| !deny.iter().any(|r| r.covers(table, other)))
                        .map(|other| quote(other))
                        .collect();
                    fixes.push(format!(
                        "REVOKE SELECT ON {}.{} FROM {user};",
                        quote(schema),
                        quote(table)
                    ));
                    if rule.column.is_some() && !allowed.is_empty() {
                        fixes.push(format!(
                            "GRANT SELECT ({}) ON {}.{} TO {user};",
                            allowed.join(", "),
                            quote(schema),
                            quote(table)
                        ));
                    }
                }
            }
            // Views that read the column with their definer's rights.
            for (schema, view, definition) in &visible {
                let mentions =
                    |name: &str| definition.contains(&format!("`{}`", name.to_ascii_lowercase()));
                let reads = mentions(&rule.table) && rule.column.as_deref().is_none_or(mentions);
                if reads && readable_relation(conn, schema, view).await {
                    readable.push(format!(
                        "through the view {schema}.{view} (rule \"{rule}\")"
                    ));
                    fixes.push(format!(
                        "REVOKE SELECT ON {}.{} FROM {user};",
                        quote(schema),
                        quote(view)
                    ));
                }
            }
        }
        if readable.is_empty() {
            return Ok(());
        }
        let mut seen = std::collections::HashSet::new();
        fixes.retain(|fix| seen.insert(fix.clone()));
        Err(DbError::new(format!(
            "refusing to start: the deny list says these must not be read, and {user} can read them:\n  {}",
            readable.join("\n  ")
        ))
        .with_hint(format!(
            "MariaDB enforces the deny list through the user's privileges. As an administrator, \
             run:\n  {}\n(a grant on the whole database, db.*, is revoked there instead, and \
             SELECT granted table by table)",
            fixes.join("\n  ")
        )))
    }

    /// The statement timeout, as this server sets it for the session.
    fn set_timeout(&self) -> String {
        if self.mariadb {
            format!(
                "SET SESSION max_statement_time = {}",
                self.options.timeout.as_secs_f64().max(0.001)
            )
        } else {
            format!(
                "SET SESSION max_execution_time = {}",
                self.options.timeout.as_millis().max(1)
            )
        }
    }

    /// Runs `work` on a pooled connection in a read-only transaction under the timeout, then
    /// rolls back.
    async fn read<T>(
        &self,
        work: impl AsyncFnOnce(&mut Conn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let timeout = self.options.timeout;
        let set_timeout = self.set_timeout();
        self.in_flight(async |conn| {
            conn.query_drop(set_timeout)
                .await
                .map_err(|e| my_error(e, timeout))?;
            conn.query_drop("START TRANSACTION READ ONLY")
                .await
                .map_err(|e| my_error(e, timeout))?;
            let result = work(conn).await;
            if result.is_ok() {
                conn.query_drop("ROLLBACK")
                    .await
                    .map_err(|e| my_error(e, timeout))?;
            }
            result
        })
        .await
    }

    /// Runs `work` on a pooled connection under our own timeout (a little longer than the
    /// engine's); a call cut short kills its statement and closes the connection.
    async fn in_flight<T>(
        &self,
        work: impl AsyncFnOnce(&mut Conn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let timeout = self.options.timeout;
        let conn = tokio::time::timeout(timeout, self.pool.get_conn())
            .await
            .map_err(|_| DbError::timed_out(timeout))?
            .map_err(|e| {
                DbError::new(format!("cannot connect to MariaDB/MySQL: {}", describe(&e)))
            })?;
        let mut in_flight = InFlight {
            conn: Some(conn),
            pool: self.pool.clone(),
            done: false,
        };
        let result = {
            let Some(conn) = in_flight.conn.as_mut() else {
                return Err(DbError::new("the connection was already released"));
            };
            tokio::time::timeout(timeout + Duration::from_secs(2), work(conn)).await
        };
        match result {
            Ok(result) => {
                in_flight.done = true;
                // An error may leave the transaction open: the pool's reset ends it.
                result
            }
            // `in_flight` is dropped undone: the statement is killed.
            Err(_) => Err(DbError::timed_out(timeout)),
        }
    }

    pub async fn size(&self) -> Option<u64> {
        let mut conn = self.pool.get_conn().await.ok()?;
        let size: Option<Option<u64>> = conn
            .query_first(
                "SELECT CAST(SUM(DATA_LENGTH + INDEX_LENGTH) AS UNSIGNED) \
                 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()",
            )
            .await
            .ok()?;
        size.flatten()
    }

    pub async fn list_tables(&self, schema: Option<String>) -> Result<Vec<TableSummary>, DbError> {
        let timeout = self.options.timeout;
        let sql = format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, \
               CASE TABLE_TYPE WHEN 'BASE TABLE' THEN 'table' WHEN 'VIEW' THEN 'view' \
                 WHEN 'SEQUENCE' THEN 'sequence' ELSE lower(TABLE_TYPE) END, \
               CAST(TABLE_ROWS AS SIGNED) \
             FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS} \
               AND TABLE_SCHEMA = COALESCE(?, DATABASE(), TABLE_SCHEMA) \
             ORDER BY 1, 2"
        );
        self.read(async |conn| {
            let rows: Vec<(String, String, String, Option<i64>)> = conn
                .exec(sql, (schema,))
                .await
                .map_err(|e| my_error(e, timeout))?;
            Ok(rows
                .into_iter()
                .map(|(schema, name, kind, rows)| TableSummary {
                    schema: Some(schema),
                    name,
                    kind,
                    estimated_rows: rows,
                })
                .collect())
        })
        .await
    }

    pub async fn describe_table(
        &self,
        table: String,
        schema: Option<String>,
    ) -> Result<TableDescription, DbError> {
        let timeout = self.options.timeout;
        let fail = move |e| my_error(e, timeout);
        self.read(async |conn| {
            let found: Option<(String, String, String)> = conn
                .exec_first(
                    format!(
                        "SELECT TABLE_SCHEMA, TABLE_NAME, \
                           CASE TABLE_TYPE WHEN 'BASE TABLE' THEN 'table' WHEN 'VIEW' THEN 'view' \
                             ELSE lower(TABLE_TYPE) END \
                         FROM information_schema.TABLES \
                         WHERE TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS} AND TABLE_NAME = ? \
                           AND TABLE_SCHEMA = COALESCE(?, DATABASE(), TABLE_SCHEMA) \
                         ORDER BY TABLE_SCHEMA LIMIT 1"
                    ),
                    (&table, &schema),
                )
                .await
                .map_err(fail)?;
            let Some((schema, name, kind)) = found else {
                return Err(DbError::new(format!(
                    "no table or view named {table:?}{}",
                    schema
                        .as_deref()
                        .map(|s| format!(" in schema {s:?}"))
                        .unwrap_or_default()
                ))
                .with_hint("list_tables shows the names; search_objects finds them by pattern"));
            };
            let columns: Vec<(String, String, String, Option<String>)> = conn
                .exec(
                    "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT \
                     FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
                     ORDER BY ORDINAL_POSITION",
                    (&schema, &name),
                )
                .await
                .map_err(fail)?;
            let keys: Vec<(String, String, Option<String>, Option<String>)> = conn
                .exec(
                    "SELECT CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME \
                     FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
                     ORDER BY CONSTRAINT_NAME, ORDINAL_POSITION",
                    (&schema, &name),
                )
                .await
                .map_err(fail)?;
            let mut primary_key = Vec::new();
            let mut foreign_keys: Vec<(String, ForeignKey)> = Vec::new();
            for (constraint, column, referenced, referenced_column) in keys {
                if constraint == "PRIMARY" {
                    primary_key.push(column);
                    continue;
                }
                let Some(referenced) = referenced else { continue };
                if foreign_keys.last().is_none_or(|(last, _)| *last != constraint) {
                    foreign_keys.push((
                        constraint.clone(),
                        ForeignKey {
                            columns: Vec::new(),
                            references_table: referenced,
                            references_columns: Vec::new(),
                        },
                    ));
                }
                if let Some((_, key)) = foreign_keys.last_mut() {
                    key.columns.push(column);
                    key.references_columns.extend(referenced_column);
                }
            }
            let statistics: Vec<(String, i64, Option<String>)> = conn
                .exec(
                    "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                    (&schema, &name),
                )
                .await
                .map_err(fail)?;
            let mut indexes: Vec<IndexInfo> = Vec::new();
            for (index, non_unique, column) in statistics {
                if indexes.last().is_none_or(|last| last.name != index) {
                    indexes.push(IndexInfo {
                        name: index,
                        unique: non_unique == 0,
                        columns: Vec::new(),
                        definition: None,
                    });
                }
                if let Some(last) = indexes.last_mut() {
                    last.columns
                        .push(column.unwrap_or_else(|| "<expression>".to_owned()));
                }
            }
            Ok(TableDescription {
                schema: Some(schema),
                name,
                kind,
                columns: columns
                    .into_iter()
                    .map(|(name, type_name, nullable, default)| ColumnInfo {
                        name,
                        type_name,
                        nullable: nullable == "YES",
                        default: default.filter(|d| d != "NULL"),
                        denied: false,
                    })
                    .collect(),
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
        let sql = format!(
            "SELECT kind, sch, tbl, col, typ FROM ( \
               SELECT CASE TABLE_TYPE WHEN 'BASE TABLE' THEN 'table' WHEN 'VIEW' THEN 'view' \
                   ELSE lower(TABLE_TYPE) END AS kind, TABLE_SCHEMA AS sch, TABLE_NAME AS tbl, \
                 NULL AS col, NULL AS typ, 0 AS rnk \
               FROM information_schema.TABLES \
               WHERE TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS} \
                 AND TABLE_SCHEMA = COALESCE(DATABASE(), TABLE_SCHEMA) AND lower(TABLE_NAME) LIKE lower(?) \
               UNION ALL \
               SELECT 'column', TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, 1 \
               FROM information_schema.COLUMNS \
               WHERE TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS} \
                 AND TABLE_SCHEMA = COALESCE(DATABASE(), TABLE_SCHEMA) AND lower(COLUMN_NAME) LIKE lower(?) \
             ) found ORDER BY rnk, sch, tbl, col LIMIT ?"
        );
        self.read(async |conn| {
            let rows: Vec<ObjectRow> = conn
                .exec(sql, (&pattern, &pattern, limit as u64))
                .await
                .map_err(|e| my_error(e, timeout))?;
            Ok(rows
                .into_iter()
                .map(|(kind, schema, table, column, type_name)| ObjectMatch {
                    kind,
                    schema: Some(schema),
                    table,
                    column,
                    type_name,
                })
                .collect())
        })
        .await
    }

    /// Prepares `sql` and refuses it unless it returns rows.
    async fn prepare_query(&self, conn: &mut Conn, sql: &str) -> Result<Statement, DbError> {
        let statement = conn
            .prep(sql)
            .await
            .map_err(|e| my_error(e, self.options.timeout))?;
        if statement.num_columns() == 0 {
            let _ = conn.close(statement).await;
            return Err(DbError::refused_statement("MariaDB"));
        }
        Ok(statement)
    }

    pub async fn query(&self, request: QueryRequest) -> Result<Rows, DbError> {
        let timeout = self.options.timeout;
        self.read(async |conn| {
            let statement = self.prepare_query(conn, &request.sql).await?;
            let params = bind(&statement, &request.params)?;
            let columns = columns_of(&statement);
            let mut sink = RowSink::new(&request);
            let mut result = conn
                .exec_iter(&statement, params)
                .await
                .map_err(|e| my_error(e, timeout))?;
            while let Some(row) = result.next().await.map_err(|e| my_error(e, timeout))? {
                if !sink.wants() {
                    continue;
                }
                let size = row_size((0..row.len()).map(|i| row.as_ref(i).map_or(4, value_size)));
                if !sink.may_hold(size)? {
                    break;
                }
                if !sink.push_measured(to_json_row(row), size) {
                    break;
                }
            }
            // The rest of the result is read and dropped before the connection's next use.
            drop(result);
            Ok(sink.finish(columns))
        })
        .await
    }

    pub async fn stream<W: RowWriter + 'static>(
        &self,
        sql: String,
        params: Vec<Value>,
        mut out: W,
    ) -> Result<W, DbError> {
        let timeout = self.options.timeout;
        self.read(async |conn| {
            let statement = self.prepare_query(conn, &sql).await?;
            let params = bind(&statement, &params)?;
            out.columns(&columns_of(&statement))?;
            let mut result = conn
                .exec_iter(&statement, params)
                .await
                .map_err(|e| my_error(e, timeout))?;
            while let Some(row) = result.next().await.map_err(|e| my_error(e, timeout))? {
                out.row(to_json_row(row))?;
            }
            drop(result);
            Ok(out)
        })
        .await
    }

    pub async fn explain(&self, sql: String, params: Vec<Value>) -> Result<String, DbError> {
        let timeout = self.options.timeout;
        self.read(async |conn| {
            let statement = conn
                .prep(format!("EXPLAIN {sql}"))
                .await
                .map_err(|e| my_error(e, timeout))?;
            let count = usize::from(statement.num_params());
            let (values, note) = if params.is_empty() && count > 0 {
                (
                    vec![Value::Null; count],
                    "\n(planned with NULL for every placeholder; pass params for a realistic plan)",
                )
            } else {
                (params, "")
            };
            let params = bind(&statement, &values)?;
            let columns = columns_of(&statement);
            let rows: Vec<Row> = conn
                .exec(&statement, params)
                .await
                .map_err(|e| my_error(e, timeout))?;
            let mut out = columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(" | ");
            for row in rows {
                out.push('\n');
                let cells: Vec<String> = to_json_row(row)
                    .into_iter()
                    .map(|v| match v {
                        Value::Null => "NULL".to_owned(),
                        Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect();
                out.push_str(&cells.join(" | "));
            }
            Ok(out + note)
        })
        .await
    }

    pub async fn execute(&self, sql: String, params: Vec<Value>) -> Result<u64, DbError> {
        if !self.options.allow_write {
            return Err(DbError::new("this server is read-only")
                .with_hint("start it with --allow-write to change the database"));
        }
        let timeout = self.options.timeout;
        let set_timeout = self.set_timeout();
        self.in_flight(async |conn| {
            let fail = |e| my_error(e, timeout);
            conn.query_drop(set_timeout).await.map_err(fail)?;
            conn.query_drop("START TRANSACTION").await.map_err(fail)?;
            let statement = conn.prep(&sql).await.map_err(fail)?;
            let params = bind(&statement, &params)?;
            conn.exec_drop(&statement, params).await.map_err(fail)?;
            let changed = conn.affected_rows();
            conn.query_drop("COMMIT").await.map_err(fail)?;
            Ok(changed)
        })
        .await
    }
}

/// The query parameter an SSH tunnel adds to say which host name TLS should verify.
pub const TLS_HOST_PARAM: &str = "mcp_tls_host";

/// The URL without the query parameter `name`, and its value.
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_owned(), None);
    };
    let mut value = None;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(k, v)| {
            if k == name {
                value = Some(v.into_owned());
                None
            } else {
                Some((k.into_owned(), v.into_owned()))
            }
        })
        .collect();
    if value.is_none() {
        return (url.to_owned(), None);
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    (parsed.to_string(), value)
}

/// Whether the user may read `schema.relation` (the server answers, not the catalog).
async fn readable_relation(conn: &mut Conn, schema: &str, relation: &str) -> bool {
    conn.query_drop(format!(
        "SELECT * FROM {}.{} LIMIT 0",
        quote(schema),
        quote(relation)
    ))
    .await
    .is_ok()
}

/// `` `name` ``, with embedded backticks doubled.
fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn columns_of(statement: &Statement) -> Vec<Column> {
    statement
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name_str().into_owned(),
            type_name: type_name(c.column_type(), c.flags(), c.character_set()).to_owned(),
        })
        .collect()
}

/// MariaDB's binary character set: bytes, not text.
const BINARY_CHARSET: u16 = 63;

fn type_name(ty: ColumnType, flags: ColumnFlags, charset: u16) -> &'static str {
    use ColumnType::*;
    let unsigned = flags.contains(ColumnFlags::UNSIGNED_FLAG);
    match ty {
        MYSQL_TYPE_TINY if unsigned => "tinyint unsigned",
        MYSQL_TYPE_TINY => "tinyint",
        MYSQL_TYPE_SHORT => "smallint",
        MYSQL_TYPE_INT24 => "mediumint",
        MYSQL_TYPE_LONG if unsigned => "int unsigned",
        MYSQL_TYPE_LONG => "int",
        MYSQL_TYPE_LONGLONG if unsigned => "bigint unsigned",
        MYSQL_TYPE_LONGLONG => "bigint",
        MYSQL_TYPE_FLOAT => "float",
        MYSQL_TYPE_DOUBLE => "double",
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => "decimal",
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => "date",
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => "datetime",
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => "timestamp",
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => "time",
        MYSQL_TYPE_YEAR => "year",
        MYSQL_TYPE_BIT => "bit",
        MYSQL_TYPE_JSON => "json",
        MYSQL_TYPE_ENUM => "enum",
        MYSQL_TYPE_SET => "set",
        MYSQL_TYPE_GEOMETRY => "geometry",
        MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB | MYSQL_TYPE_BLOB
            if charset == BINARY_CHARSET =>
        {
            "blob"
        }
        MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB | MYSQL_TYPE_BLOB => {
            "text"
        }
        MYSQL_TYPE_VAR_STRING | MYSQL_TYPE_VARCHAR if charset == BINARY_CHARSET => "varbinary",
        MYSQL_TYPE_STRING if charset == BINARY_CHARSET => "binary",
        MYSQL_TYPE_VAR_STRING | MYSQL_TYPE_VARCHAR => "varchar",
        MYSQL_TYPE_STRING => "char",
        MYSQL_TYPE_NULL => "null",
        _ => "unknown",
    }
}

/// About how many bytes a value takes as JSON, before it is converted.
fn value_size(value: &MyValue) -> usize {
    match value {
        MyValue::NULL => 4,
        MyValue::Bytes(bytes) => 2 * bytes.len() + 2,
        MyValue::Date(..) | MyValue::Time(..) => 28,
        _ => 12,
    }
}

fn to_json_row(row: Row) -> Vec<Value> {
    let columns = row.columns();
    row.unwrap_raw()
        .into_iter()
        .zip(columns.iter())
        .map(|(value, column)| to_json(value.unwrap_or(MyValue::NULL), column))
        .collect()
}

fn to_json(value: MyValue, column: &mysql_async::Column) -> Value {
    let ty = column.column_type();
    match value {
        MyValue::NULL => Value::Null,
        MyValue::Int(i) => i.into(),
        MyValue::UInt(u) => u.into(),
        MyValue::Float(f) => {
            serde_json::Number::from_f64(f64::from(f)).map_or(Value::Null, Value::Number)
        }
        MyValue::Double(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        MyValue::Date(year, month, day, hour, minute, second, micros) => {
            if matches!(
                ty,
                ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE
            ) {
                format!("{year:04}-{month:02}-{day:02}").into()
            } else if micros > 0 {
                format!(
                    "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}.{micros:06}"
                )
                .into()
            } else {
                format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}").into()
            }
        }
        MyValue::Time(negative, days, hours, minutes, seconds, micros) => {
            let hours = u64::from(days) * 24 + u64::from(hours);
            let sign = if negative { "-" } else { "" };
            if micros > 0 {
                format!("{sign}{hours:02}:{minutes:02}:{seconds:02}.{micros:06}").into()
            } else {
                format!("{sign}{hours:02}:{minutes:02}:{seconds:02}").into()
            }
        }
        MyValue::Bytes(bytes) => {
            let binary = column.character_set() == BINARY_CHARSET
                && !matches!(
                    ty,
                    ColumnType::MYSQL_TYPE_DECIMAL
                        | ColumnType::MYSQL_TYPE_NEWDECIMAL
                        | ColumnType::MYSQL_TYPE_JSON
                );
            if binary
                || matches!(
                    ty,
                    ColumnType::MYSQL_TYPE_BIT | ColumnType::MYSQL_TYPE_GEOMETRY
                )
            {
                return crate::value::hex(&bytes).into();
            }
            if ty == ColumnType::MYSQL_TYPE_JSON
                && let Ok(parsed) = serde_json::from_slice(&bytes)
            {
                return parsed;
            }
            String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
                .into()
        }
    }
}

/// The arguments as MariaDB values, one per `?`.
fn bind(statement: &Statement, params: &[Value]) -> Result<mysql_async::Params, DbError> {
    let expected = usize::from(statement.num_params());
    if expected != params.len() {
        return Err(DbError::new(format!(
            "the statement has {expected} parameter(s) but params has {}",
            params.len()
        ))
        .with_hint("params fills each ? in order"));
    }
    if params.is_empty() {
        return Ok(mysql_async::Params::Empty);
    }
    Ok(mysql_async::Params::Positional(
        params
            .iter()
            .map(|value| match value {
                Value::Null => MyValue::NULL,
                Value::Bool(b) => MyValue::Int(i64::from(*b)),
                Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                    (Some(i), _) => MyValue::Int(i),
                    (None, Some(u)) => MyValue::UInt(u),
                    _ => MyValue::Double(n.as_f64().unwrap_or(f64::NAN)),
                },
                Value::String(s) => MyValue::Bytes(s.clone().into_bytes()),
                other => MyValue::Bytes(other.to_string().into_bytes()),
            })
            .collect(),
    ))
}

/// An error and its causes, for connection failures.
fn describe(error: &mysql_async::Error) -> String {
    match error {
        mysql_async::Error::Server(server) => format!("ERROR {}: {}", server.code, server.message),
        other => {
            let mut out = other.to_string();
            let mut cause = std::error::Error::source(other);
            while let Some(next) = cause {
                let text = next.to_string();
                if !out.contains(&text) {
                    out.push_str(": ");
                    out.push_str(&text);
                }
                cause = next.source();
            }
            out
        }
    }
}

/// The server's error in words a model can act on.
fn my_error(error: mysql_async::Error, timeout: Duration) -> DbError {
    let mysql_async::Error::Server(server) = &error else {
        return DbError::new(format!("MariaDB: {}", describe(&error)));
    };
    match server.code {
        // max_statement_time (MariaDB), max_execution_time (MySQL), KILL QUERY.
        1969 | 3024 | 1317 => DbError::timed_out(timeout),
        1792 => DbError::new(format!("ERROR 1792: {}", server.message)).with_hint(
            "query runs in a read-only transaction; changes go through execute (start the \
             server with --allow-write)",
        ),
        1064 if server.message.contains(';') => {
            DbError::new(format!("ERROR 1064: {}", server.message))
                .with_hint("one statement per call: send each statement in its own call")
        }
        1142 | 1143 => DbError::new(format!("ERROR {}: {}", server.code, server.message))
            .with_hint("the server's user may not read this (a denied table or column?)"),
        code => DbError::new(format!("ERROR {code}: {}", server.message)),
    }
}
