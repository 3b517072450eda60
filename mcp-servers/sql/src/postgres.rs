//! PostgreSQL, pooled. Read-only is the engine's: every `query` (and every look at the catalog)
//! runs in `START TRANSACTION READ ONLY` with `SET LOCAL statement_timeout`, through the extended
//! protocol, where one prepared statement cannot carry a second (`COMMIT; DROP …` is refused by
//! the server's parser), and must be a statement that returns rows (so `COPY`, `DO`, `SET` and
//! friends never run). Names in introspection are bound parameters, never SQL text. A query
//! without parameters runs as a cursor, in one round trip, and only its page is computed.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures::StreamExt as _;
use serde_json::Value;
use tokio_postgres::{
    Client, Statement,
    error::{ErrorPosition, SqlState},
    types::{ToSql, Type},
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{
    config::DenyRule,
    db::{
        Column, ColumnInfo, DbError, ForeignKey, IndexInfo, ObjectMatch, Options, QueryRequest,
        RowSink, RowWriter, Rows, TableDescription, TableSummary,
    },
    value::{Cell, TextParam},
};

/// Connections at most, per server.
const POOL_SIZE: usize = 4;

const RELKINDS: &str = "CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' \
     WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' \
     WHEN 'p' THEN 'partitioned table' END";
const USER_RELATIONS: &str = "c.relkind IN ('r', 'v', 'm', 'f', 'p') \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%'";

/// A PostgreSQL database behind a small pool.
pub struct Postgres {
    pool: Pool,
    /// For cancel requests, which open a connection of their own.
    tls: MakeRustlsConnect,
    options: Options,
}

/// A pooled connection in use by one call. If the call's future is dropped before it finishes
/// (the client cancelled the request, or our own deadline passed), the server is asked to cancel
/// the running statement and the connection is closed rather than returned to the pool, so the
/// cancel can never land on another call's statement.
struct InFlight {
    client: Option<Object>,
    tls: MakeRustlsConnect,
    done: bool,
}

impl InFlight {
    fn client(&mut self) -> Result<&mut Object, DbError> {
        self.client
            .as_mut()
            .ok_or_else(|| DbError::new("the connection was already released"))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (Some(object), Ok(runtime)) =
            (self.client.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let token = object.cancel_token();
        let connection = Object::take(object);
        let tls = self.tls.clone();
        runtime.spawn(async move {
            if let Err(error) = token.cancel_query(tls).await {
                tracing::debug!(%error, "could not cancel an abandoned statement");
            }
            drop(connection);
        });
    }
}

impl Postgres {
    /// Connects once, so a wrong URL or password is reported now. The password may come from
    /// `PGPASSWORD` rather than the URL, to keep it out of host config files.
    pub async fn connect(url: &str, options: Options, deny: &[DenyRule]) -> Result<Self, DbError> {
        let (config, tls) = mcp_core::pg_tls::config(url, "mcp-sql").map_err(DbError::from)?;
        let connector = tls.connector().map_err(DbError::from)?;
        let manager = Manager::from_config(
            config,
            connector.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| DbError::new(format!("cannot build the connection pool: {e}")))?;
        let this = Self {
            pool,
            tls: connector,
            options,
        };
        let client = this.client().await?;
        this.check_role(&client).await?;
        this.check_deny(&client, deny).await?;
        Ok(this)
    }

    /// A deny list PostgreSQL enforces is one the role's privileges already enforce: the server
    /// does not start while the role can read a denied column, directly (a table or column
    /// grant, to it, to a role it is in, or to PUBLIC) or through a view it may read (a view
    /// reads with its owner's privileges). The error shows the statements that fix it.
    async fn check_deny(&self, client: &Client, deny: &[DenyRule]) -> Result<(), DbError> {
        if deny.is_empty() {
            return Ok(());
        }
        let timeout = self.options.timeout;
        let sql = format!(
            "WITH denied AS ( \
               SELECT c.oid AS rel, n.nspname, c.relname, a.attnum, a.attname \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
               WHERE {USER_RELATIONS} AND lower(c.relname) = lower($1) \
                 AND ($2::text IS NULL OR lower(a.attname) = lower($2))) \
             SELECT format('%I.%I', d.nspname, d.relname), d.attname::text, NULL::text, \
               (SELECT string_agg(quote_ident(o.attname), ', ' ORDER BY o.attnum) \
                FROM pg_attribute o WHERE o.attrelid = d.rel AND o.attnum > 0 \
                  AND NOT o.attisdropped AND o.attnum NOT IN (SELECT attnum FROM denied x WHERE x.rel = d.rel)) \
             FROM denied d WHERE has_column_privilege(d.rel, d.attnum, 'SELECT') \
             UNION ALL \
             SELECT DISTINCT format('%I.%I', d.nspname, d.relname), d.attname::text, \
               format('%I.%I', vn.nspname, v.relname), NULL \
             FROM denied d \
             JOIN pg_depend dep ON dep.refobjid = d.rel AND dep.refobjsubid = d.attnum \
               AND dep.classid = 'pg_rewrite'::regclass \
             JOIN pg_rewrite r ON r.oid = dep.objid \
             JOIN pg_class v ON v.oid = r.ev_class AND v.oid <> d.rel \
             JOIN pg_namespace vn ON vn.oid = v.relnamespace \
             WHERE has_table_privilege(v.oid, 'SELECT') OR has_any_column_privilege(v.oid, 'SELECT') \
             ORDER BY 1, 2, 3"
        );
        let role: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .map_err(|e| pg_error(e, timeout))?
            .get(0);
        let mut readable = Vec::new();
        let mut fixes: Vec<String> = Vec::new();
        for rule in deny {
            let rows = client
                .query(&sql, &[&rule.table, &rule.column])
                .await
                .map_err(|e| pg_error(e, timeout))?;
            let names_something = client
                .query_one(
                    &format!(
                        "SELECT EXISTS (SELECT 1 FROM pg_class c \
                           JOIN pg_namespace n ON n.oid = c.relnamespace \
                           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                         WHERE {USER_RELATIONS} AND lower(c.relname) = lower($1) \
                           AND ($2::text IS NULL OR lower(a.attname) = lower($2)))"
                    ),
                    &[&rule.table, &rule.column],
                )
                .await
                .map_err(|e| pg_error(e, timeout))?
                .get::<_, bool>(0);
            if !names_something {
                tracing::warn!(rule = %rule, "a deny rule names no table or column in this database");
            }
            for row in rows {
                let table: String = row.get(0);
                let column: String = row.get(1);
                let view: Option<String> = row.get(2);
                let allowed: Option<String> = row.get(3);
                match view {
                    Some(view) => {
                        readable.push(format!(
                            "{table}.{column} through the view {view} (rule \"{rule}\")"
                        ));
                        fixes.push(format!("REVOKE SELECT ON {view} FROM {role};"));
                    }
                    None => {
                        readable.push(format!("{table}.{column} (rule \"{rule}\")"));
                        fixes.push(format!("REVOKE SELECT ON {table} FROM {role};"));
                        if let Some(allowed) = allowed.filter(|_| rule.column.is_some()) {
                            fixes.push(format!("GRANT SELECT ({allowed}) ON {table} TO {role};"));
                        }
                    }
                }
            }
        }
        if readable.is_empty() {
            return Ok(());
        }
        let mut seen = std::collections::HashSet::new();
        fixes.retain(|fix| seen.insert(fix.clone()));
        Err(DbError::new(format!(
            "refusing to start: the deny list says these must not be read, and {role} can read them:\n  {}",
            readable.join("\n  ")
        ))
        .with_hint(format!(
            "PostgreSQL enforces the deny list through the role's privileges. As the tables' owner, run:\n  {}\n\
             (a grant to PUBLIC or to a role {role} is in is revoked from that role instead)",
            fixes.join("\n  ")
        )))
    }

    /// The database's size (`pg_database_size`); `None` if the role may not ask.
    pub async fn size(&self) -> Option<u64> {
        let client = self.client().await.ok()?;
        let row = client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await
            .ok()?;
        u64::try_from(row.get::<_, i64>(0)).ok()
    }

    /// Runs one read-only statement to its end (in the read-only transaction, under the
    /// timeout), handing each row to `out` as it arrives.
    pub async fn stream<W: RowWriter + 'static>(
        &self,
        sql: String,
        params: Vec<Value>,
        mut out: W,
    ) -> Result<W, DbError> {
        let timeout = self.options.timeout;
        self.read_prepared(&sql, async |t, prepared| {
            let fail = |e| pg_error(e, timeout);
            let statement = prepared.map_err(fail)?;
            if statement.columns().is_empty() {
                return Err(DbError::refused_statement("PostgreSQL"));
            }
            out.columns(&columns_of(statement.columns()))?;
            let params = bind(&statement, &params)?;
            let stream = t
                .query_raw(&statement, params.iter().map(|p| p as &dyn ToSql))
                .await
                .map_err(fail)?;
            let mut stream = std::pin::pin!(stream);
            while let Some(row) = stream.next().await {
                let row = row.map_err(fail)?;
                let values = (0..row.len())
                    .map(|i| row.try_get::<_, Cell>(i).map(|cell| cell.0))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(fail)?;
                out.row(values)?;
            }
            Ok(out)
        })
        .await
    }

    /// Read-only is the read-only transaction's, and a role that can write gets around it
    /// through a second connection (`dblink_exec`, a `postgres_fdw` foreign table), whose
    /// transaction is its own. So a read-only server refuses such a role unless told
    /// `allow_privileged_role`, and says at start whether those extensions are reachable.
    async fn check_role(&self, client: &Client) -> Result<(), DbError> {
        let timeout = self.options.timeout;
        let row = client
            .query_one(
                &format!(
                    "SELECT current_user::text, r.rolsuper, \
                       (SELECT format('%I.%I', n.nspname, c.relname) \
                        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                        WHERE {USER_RELATIONS} AND c.relkind IN ('r', 'p', 'f') \
                          AND (pg_has_role(c.relowner, 'USAGE') \
                               OR has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')) \
                        ORDER BY 1 LIMIT 1), \
                       ARRAY(SELECT e.extname::text FROM pg_extension e \
                             WHERE e.extname IN ('dblink', 'postgres_fdw') ORDER BY 1) \
                     FROM pg_roles r WHERE r.rolname = current_user"
                ),
                &[],
            )
            .await
            .map_err(|e| pg_error(e, timeout))?;
        let role: String = row.get(0);
        let superuser: bool = row.get(1);
        let writable: Option<String> = row.get(2);
        let bridges: Vec<String> = row.get(3);
        if !bridges.is_empty() {
            tracing::warn!(
                extensions = %bridges.join(", "),
                "installed in this database: they open connections of their own, which the \
                 read-only transaction does not cover"
            );
        }
        let can_write = if superuser {
            Some(format!("{role} is a superuser"))
        } else {
            writable.map(|table| format!("{role} can write to {table}"))
        };
        match can_write {
            Some(reason) if !self.options.allow_write && !self.options.allow_privileged_role => {
                Err(DbError::new(format!(
                    "refusing to serve read-only as a role that can write: {reason}, and such a \
                     role can write through dblink or postgres_fdw, whose connections the \
                     read-only transaction does not cover"
                ))
                .with_hint(
                    "connect as a role with only SELECT grants (the README shows how), or start \
                     with --allow-privileged-role to accept the risk",
                ))
            }
            Some(reason) if !self.options.allow_write => {
                tracing::warn!(
                    "{reason}: serving read-only anyway (--allow-privileged-role); writes through \
                     dblink or postgres_fdw are not stopped"
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn client(&self) -> Result<Object, DbError> {
        self.pool.get().await.map_err(|e| {
            // The server's own words ("password authentication failed …") rather than the
            // pool's "db error".
            let reason = match &e {
                deadpool_postgres::PoolError::Backend(error) => match error.as_db_error() {
                    Some(db) => format!("{}: {}", db.severity(), db.message()),
                    None => with_causes(error),
                },
                other => other.to_string(),
            };
            DbError::new(format!("cannot connect to PostgreSQL: {reason}")).with_hint(
                "check that the server is running and the URL, user and password are right",
            )
        })
    }

    fn timeout_ms(&self) -> u128 {
        self.options.timeout.as_millis().max(1)
    }

    /// Opens every read: a read-only transaction with the statement timeout.
    fn begin_read_only(&self) -> String {
        format!(
            "START TRANSACTION READ ONLY; SET LOCAL statement_timeout = {}",
            self.timeout_ms()
        )
    }

    /// Runs `work` in a read-only transaction with the statement timeout, then rolls back.
    async fn read<T>(
        &self,
        work: impl AsyncFnOnce(&Client) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let timeout = self.options.timeout;
        self.in_transaction(async |client, begin| {
            client
                .batch_execute(begin)
                .await
                .map_err(|e| pg_error(e, timeout))?;
            work(client).await
        })
        .await
    }

    /// [`Self::read`] with `sql` prepared in the same round trip as the transaction's start and
    /// handed to `work` (whose error it is to report): a prepared query costs two round trips
    /// (start + prepare, then execute), the rollback riding ahead of the connection's next use.
    async fn read_prepared<T>(
        &self,
        sql: &str,
        work: impl AsyncFnOnce(&Client, Result<Statement, tokio_postgres::Error>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let timeout = self.options.timeout;
        self.in_transaction(async |client, begin| {
            // Parse and Describe run nothing, so they may travel with the start; nothing is
            // executed before the start's answer says the transaction is open and read-only.
            let (began, statement) =
                futures::join!(client.batch_execute(begin), client.prepare(sql));
            began.map_err(|e| pg_error(e, timeout))?;
            work(client, statement).await
        })
        .await
    }

    /// Runs `work` on a pooled connection, which must start its transaction with `begin` (the
    /// second argument) before anything else, and rolls back afterwards.
    async fn in_transaction<T>(
        &self,
        work: impl AsyncFnOnce(&Client, &str) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut in_flight = self.in_flight().await?;
        let client: &Client = in_flight.client()?;
        let timeout = self.options.timeout;
        let begin = self.begin_read_only();
        // The server's timeout should fire first; this one covers a server that stops answering.
        let result =
            tokio::time::timeout(timeout + Duration::from_secs(5), work(client, &begin)).await;
        if result.is_ok() {
            // Queued, not awaited: the requests are on their way once polled, and the
            // connection's next use waits behind their answers. (A call cut short closes the
            // connection instead, which ends the transaction too: see `InFlight`.)
            let rollback = client.batch_execute("ROLLBACK");
            let _ = futures::FutureExt::now_or_never(rollback);
            reset_session(client);
        }
        in_flight.done = result.is_ok();
        result.unwrap_or_else(|_| Err(DbError::timed_out(timeout)))
    }

    async fn in_flight(&self) -> Result<InFlight, DbError> {
        Ok(InFlight {
            client: Some(self.client().await?),
            tls: self.tls.clone(),
            done: false,
        })
    }

    pub async fn list_tables(&self, schema: Option<String>) -> Result<Vec<TableSummary>, DbError> {
        let timeout = self.options.timeout;
        let sql = format!(
            "SELECT n.nspname::text, c.relname::text, {RELKINDS}, \
               CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE {USER_RELATIONS} AND ($1::text IS NULL OR n.nspname = $1) \
             ORDER BY 1, 2"
        );
        self.read(async |t| {
            let rows = t
                .query(&sql, &[&schema])
                .await
                .map_err(|e| pg_error(e, timeout))?;
            Ok(rows
                .iter()
                .map(|row| TableSummary {
                    schema: Some(row.get(0)),
                    name: row.get(1),
                    kind: row.get(2),
                    estimated_rows: row.get(3),
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
        let fail = move |e| pg_error(e, timeout);
        let find = format!(
            "SELECT c.oid, n.nspname::text, c.relname::text, {RELKINDS} \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE {USER_RELATIONS} AND c.relname = $1 \
               AND (($2::text IS NULL AND pg_table_is_visible(c.oid)) OR n.nspname = $2)"
        );
        self.read(async |t| {
            let found = t.query_opt(&find, &[&table, &schema]).await.map_err(fail)?;
            let Some(found) = found else {
                return Err(DbError::new(format!(
                    "no table or view named {table:?}{}",
                    schema
                        .as_deref()
                        .map(|s| format!(" in schema {s:?}"))
                        .unwrap_or_default()
                ))
                .with_hint("list_tables shows the names; search_objects finds them by pattern"));
            };
            let oid: u32 = found.get(0);
            let columns = t
                .query(
                    "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                       NOT a.attnotnull, pg_get_expr(d.adbin, d.adrelid) \
                     FROM pg_attribute a \
                     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                     WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
                     ORDER BY a.attnum",
                    &[&oid],
                )
                .await
                .map_err(fail)?
                .iter()
                .map(|row| ColumnInfo {
                    name: row.get(0),
                    type_name: row.get(1),
                    nullable: row.get(2),
                    default: row.get(3),
                    denied: false,
                })
                .collect();
            let primary_key = t
                .query(
                    "SELECT a.attname::text FROM pg_index i \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                     WHERE i.indrelid = $1 AND i.indisprimary \
                     ORDER BY array_position(i.indkey::int2[], a.attnum)",
                    &[&oid],
                )
                .await
                .map_err(fail)?
                .iter()
                .map(|row| row.get(0))
                .collect();
            let foreign_keys = t
                .query(
                    "SELECT \
                       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o) \
                             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n \
                             ORDER BY k.o), \
                       con.confrelid::regclass::text, \
                       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o) \
                             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n \
                             ORDER BY k.o) \
                     FROM pg_constraint con WHERE con.conrelid = $1 AND con.contype = 'f' \
                     ORDER BY con.conname",
                    &[&oid],
                )
                .await
                .map_err(fail)?
                .iter()
                .map(|row| ForeignKey {
                    columns: row.get(0),
                    references_table: row.get(1),
                    references_columns: row.get(2),
                })
                .collect();
            let indexes = t
                .query(
                    "SELECT ic.relname::text, i.indisunique, \
                       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) \
                             FROM generate_series(1, i.indnatts) k ORDER BY k), \
                       pg_get_indexdef(i.indexrelid) \
                     FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
                     WHERE i.indrelid = $1 ORDER BY ic.relname",
                    &[&oid],
                )
                .await
                .map_err(fail)?
                .iter()
                .map(|row| IndexInfo {
                    name: row.get(0),
                    unique: row.get(1),
                    columns: row.get(2),
                    definition: row.get(3),
                })
                .collect();
            Ok(TableDescription {
                schema: Some(found.get(1)),
                name: found.get(2),
                kind: found.get(3),
                columns,
                primary_key,
                foreign_keys,
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
            "SELECT kind, schema, tbl, col, typ FROM ( \
               SELECT {RELKINDS} AS kind, n.nspname::text AS schema, c.relname::text AS tbl, \
                 NULL::text AS col, NULL::text AS typ, 0 AS rank \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE {USER_RELATIONS} AND c.relname ILIKE $1 \
               UNION ALL \
               SELECT 'column', n.nspname::text, c.relname::text, a.attname::text, \
                 format_type(a.atttypid, a.atttypmod), 1 \
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE {USER_RELATIONS} AND a.attnum > 0 AND NOT a.attisdropped \
                 AND a.attname ILIKE $1 \
             ) found ORDER BY rank, schema, tbl, col LIMIT $2"
        );
        let limit = limit as i64;
        self.read(async |t| {
            let rows = t
                .query(&sql, &[&pattern, &limit])
                .await
                .map_err(|e| pg_error(e, timeout))?;
            Ok(rows
                .iter()
                .map(|row| ObjectMatch {
                    kind: row.get(0),
                    schema: Some(row.get(1)),
                    table: row.get(2),
                    column: row.get(3),
                    type_name: row.get(4),
                })
                .collect())
        })
        .await
    }

    pub async fn query(&self, request: QueryRequest) -> Result<Rows, DbError> {
        if request.params.is_empty()
            && let Some(rows) = self.query_by_cursor(&request).await?
        {
            return Ok(rows);
        }
        self.query_prepared(request).await
    }

    /// A query in one round trip: the transaction's start, `DECLARE … CURSOR FOR` the query and
    /// `FETCH` of one page (and one row more, to know whether there is more) go out together;
    /// the rollback follows without being waited for. Safe to send at once because a cursor is declared only for a query
    /// (SELECT, VALUES, TABLE, WITH without data-modifying parts: never COPY, DO or SET) and only
    /// inside a transaction block, so nothing runs unless the read-only transaction began.
    /// `None` when PostgreSQL would not declare it: [`Self::query_prepared`] then runs it or
    /// says why not, with positions in the caller's own text.
    async fn query_by_cursor(&self, request: &QueryRequest) -> Result<Option<Rows>, DbError> {
        const DECLARE: &str = "DECLARE mcp_query NO SCROLL CURSOR FOR ";
        let timeout = self.options.timeout;
        let fail = |e| pg_error(e, timeout).after_prefix(DECLARE);
        let declare = format!("{DECLARE}{}", request.sql);
        // FETCH counts are 32-bit; a cursor further out than that reads to the end.
        let wanted = request
            .offset
            .saturating_add(request.max_rows)
            .saturating_add(1);
        let fetch = match i32::try_from(wanted) {
            Ok(count) => format!("FETCH FORWARD {count} FROM mcp_query"),
            Err(_) => "FETCH FORWARD ALL FROM mcp_query".to_owned(),
        };
        let no_params = std::iter::empty::<(&dyn ToSql, Type)>;
        self.in_transaction(async |client, begin| {
            let (began, declared, fetched) = futures::join!(
                client.batch_execute(begin),
                client.query_typed_raw(&declare, no_params()),
                client.query_typed_raw(&fetch, no_params()),
            );
            began.map_err(fail)?;
            // The DECLARE's answer is a stream that carries an error of its execution (`FOR
            // UPDATE` in a read-only transaction) only when read; unread, the FETCH would
            // report "current transaction is aborted" instead of it.
            let declared = match declared {
                Ok(answer) => std::pin::pin!(answer).next().await.transpose().map(|_| ()),
                Err(error) => Err(error),
            };
            if declared.is_err() {
                return Ok(None);
            }
            let mut sink = RowSink::new(request);
            let columns = collect(fetched.map_err(fail)?, &mut sink, fail).await?;
            // An empty answer carries no columns; the statement's description does.
            let columns = match columns {
                Some(columns) => columns,
                None => columns_of(client.prepare(&request.sql).await.map_err(fail)?.columns()),
            };
            Ok(Some(sink.finish(columns)))
        })
        .await
    }

    /// A query prepared first (two round trips): with parameters, whose types PostgreSQL infers
    /// from the statement, and for statements a cursor cannot hold.
    async fn query_prepared(&self, request: QueryRequest) -> Result<Rows, DbError> {
        let timeout = self.options.timeout;
        self.read_prepared(&request.sql, async |t, prepared| {
            let fail = |e| pg_error(e, timeout);
            let statement = prepared.map_err(fail)?;
            if statement.columns().is_empty() {
                return Err(DbError::refused_statement("PostgreSQL"));
            }
            let params = bind(&statement, &request.params)?;
            let stream = t
                .query_raw(&statement, params.iter().map(|p| p as &dyn ToSql))
                .await
                .map_err(fail)?;
            let mut sink = RowSink::new(&request);
            collect(stream, &mut sink, fail).await?;
            Ok(sink.finish(columns_of(statement.columns())))
        })
        .await
    }

    pub async fn explain(&self, sql: String, params: Vec<Value>) -> Result<String, DbError> {
        const PREFIX: &str = "EXPLAIN ";
        let timeout = self.options.timeout;
        self.read_prepared(&format!("{PREFIX}{sql}"), async |t, prepared| {
            let fail = |e| pg_error(e, timeout).after_prefix(PREFIX);
            let statement = prepared.map_err(fail)?;
            let count = statement.params().len();
            // Without values, placeholders are planned as NULL: say so.
            let (values, note) = if params.is_empty() && count > 0 {
                (
                    vec![Value::Null; count],
                    "\n(planned with NULL for every placeholder; pass params for a realistic plan)",
                )
            } else {
                (params, "")
            };
            let values = bind(&statement, &values)?;
            let rows = t
                .query_raw(&statement, values.iter().map(|p| p as &dyn ToSql))
                .await
                .map_err(fail)?;
            let mut rows = std::pin::pin!(rows);
            let mut lines = Vec::new();
            while let Some(row) = rows.next().await {
                lines.push(row.map_err(fail)?.get::<_, String>(0));
            }
            Ok(lines.join("\n") + note)
        })
        .await
    }

    pub async fn execute(&self, sql: String, params: Vec<Value>) -> Result<u64, DbError> {
        if !self.options.allow_write {
            return Err(DbError::new("this server is read-only")
                .with_hint("start it with --allow-write to change the database"));
        }
        let timeout = self.options.timeout;
        let fail = move |e| pg_error(e, timeout);
        let mut in_flight = self.in_flight().await?;
        let client = in_flight.client()?;
        let run = async {
            let transaction = client.transaction().await.map_err(fail)?;
            transaction
                .batch_execute(&format!(
                    "SET LOCAL statement_timeout = {}",
                    self.timeout_ms()
                ))
                .await
                .map_err(fail)?;
            let statement = transaction.prepare(&sql).await.map_err(fail)?;
            let params = bind(&statement, &params)?;
            let changed = transaction
                .execute_raw(&statement, params.iter().map(|p| p as &dyn ToSql))
                .await
                .map_err(fail)?;
            transaction.commit().await.map_err(fail)?;
            reset_session(client);
            Ok(changed)
        };
        let result = tokio::time::timeout(timeout + Duration::from_secs(5), run).await;
        in_flight.done = result.is_ok();
        result.unwrap_or_else(|_| Err(DbError::timed_out(timeout)))
    }
}

/// Queues a session reset (not awaited: the connection's next use waits behind it), so nothing
/// a call did to its session outlives it on the pooled connection: advisory locks (which any
/// role may take with a `SELECT` and would otherwise hold forever), settings and roles from
/// `set_config(…, false)`, cursors, temporary tables, `LISTEN`s, cached plans. This is `DISCARD
/// ALL` but for `DEALLOCATE ALL`: the client library keeps prepared statements of its own (its
/// type lookups), and a query cannot prepare one (`PREPARE` returns no rows).
fn reset_session(client: &Client) {
    let discard = client.batch_execute(
        "CLOSE ALL; RESET SESSION AUTHORIZATION; RESET ALL; UNLISTEN *; \
         SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES",
    );
    let _ = futures::FutureExt::now_or_never(discard);
}

/// Rows into the sink until it is full; the columns, if any row came.
async fn collect(
    stream: tokio_postgres::RowStream,
    sink: &mut RowSink,
    fail: impl Fn(tokio_postgres::Error) -> DbError,
) -> Result<Option<Vec<Column>>, DbError> {
    let mut columns = None;
    let mut stream = std::pin::pin!(stream);
    while let Some(row) = stream.next().await {
        let row = row.map_err(&fail)?;
        if columns.is_none() {
            columns = Some(columns_of(row.columns()));
        }
        if !sink.wants() {
            continue;
        }
        let values = (0..row.len())
            .map(|i| row.try_get::<_, Cell>(i).map(|cell| cell.0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(&fail)?;
        if !sink.push(values) {
            break;
        }
    }
    Ok(columns)
}

fn columns_of(columns: &[tokio_postgres::Column]) -> Vec<Column> {
    columns
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            type_name: c.type_().name().to_owned(),
        })
        .collect()
}

/// An error and its causes ("error performing TLS handshake: invalid peer certificate: …").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
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

/// The arguments as text PostgreSQL parses as each parameter's type.
fn bind(statement: &Statement, params: &[Value]) -> Result<Vec<TextParam>, DbError> {
    let types: &[Type] = statement.params();
    if types.len() != params.len() {
        return Err(DbError::new(format!(
            "the statement has {} parameter(s) but params has {}",
            types.len(),
            params.len()
        ))
        .with_hint("params fills $1, $2, … in order"));
    }
    Ok(params
        .iter()
        .zip(types)
        .map(|(value, ty)| TextParam::new(value, ty))
        .collect())
}

/// The server's error as a model can act on it: severity, message, detail, hint, position.
fn pg_error(error: tokio_postgres::Error, timeout: Duration) -> DbError {
    let Some(db) = error.as_db_error() else {
        return DbError::new(format!("PostgreSQL: {}", with_causes(&error)));
    };
    if *db.code() == SqlState::QUERY_CANCELED {
        return DbError::timed_out(timeout);
    }
    let mut message = format!("{}: {}", db.severity(), db.message());
    if let Some(detail) = db.detail() {
        message.push_str(&format!("\nDETAIL: {detail}"));
    }
    let position = match db.position() {
        Some(ErrorPosition::Original(at)) => Some(*at as usize),
        _ => None,
    };
    let mut out = DbError::new(message).at(position);
    if let Some(hint) = db.hint() {
        out = out.with_hint(hint);
    } else if *db.code() == SqlState::READ_ONLY_SQL_TRANSACTION {
        out = out.with_hint(
            "query runs in a read-only transaction; changes go through execute (start the \
             server with --allow-write)",
        );
    } else if db.message().contains("multiple commands") {
        out = out.with_hint("send each statement in its own call");
    }
    out
}
