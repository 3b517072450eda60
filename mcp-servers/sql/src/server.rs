//! The MCP face of one or more databases: few tools (so they cost few tokens), each taking an
//! optional `database`; the tools a config file declares; the default database's schema as
//! resources.

use std::sync::Arc;

use mcp_core::{
    ToolError,
    resource::{Read, ResourceError, ResourceRouter},
    structured, structured_value,
    tool::truncation_notice,
};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::{
        router::tool::{ToolRoute, ToolRouter},
        tool::ToolCallContext,
        wrapper::Parameters,
    },
    model::*,
    schemars,
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    config::{Config, DenyRule, ToolConfig},
    db::{Database, Options, QueryRequest, Rows, TableSummary, Target},
    export::{Export, ExportFormat},
};

/// Most matches `search_objects` returns.
const MAX_MATCHES: usize = 1_000;
/// Longest cell shown in the text table (the structured rows carry it whole).
const MAX_CELL_CHARS: usize = 200;

/// One database the server serves, by name.
pub struct Served {
    name: String,
    db: Arc<Database>,
    shown: String,
    options: Options,
    deny: Vec<DenyRule>,
    /// Kept open while the database is served (an SSH tunnel).
    _keep: Option<crate::ssh::Keep>,
}

impl Served {
    /// A database opened under `options`, named `name` in tools; `shown` is how messages name
    /// it (no password).
    pub fn new(
        name: impl Into<String>,
        db: Database,
        shown: impl Into<String>,
        options: Options,
    ) -> Self {
        Self {
            name: name.into(),
            db: Arc::new(db),
            shown: shown.into(),
            options,
            deny: Vec::new(),
            _keep: None,
        }
    }

    /// With the deny list it was opened with (shown in `list_databases` and `describe_table`).
    pub fn with_deny(mut self, deny: Vec<DenyRule>) -> Self {
        self.deny = deny;
        self
    }

    /// With something to keep alive as long as the database is served.
    pub fn keeping(mut self, keep: crate::ssh::Keep) -> Self {
        self._keep = Some(keep);
        self
    }

    fn denies_column(&self, table: &str, column: &str) -> bool {
        self.deny.iter().any(|rule| rule.covers(table, column))
    }
}

struct Shared {
    databases: Vec<Served>,
    export: Option<Export>,
}

/// The SQL server: its databases, shared by every session.
#[derive(Clone)]
pub struct SqlServer {
    shared: Arc<Shared>,
    tool_router: ToolRouter<Self>,
    resources: ResourceRouter<Arc<Database>>,
}

impl SqlServer {
    /// The server for one open database; `execute` is offered only with `options.allow_write`.
    pub fn new(db: Database, target: Target, options: Options) -> Self {
        let shown = target.display();
        let served = Served::new("main", db, shown, options);
        Self::build(vec![served], None)
    }

    /// The server for several databases (the first is the default), with exports into
    /// `export` when given. `execute` is offered when any database allows writes.
    pub fn serving(databases: Vec<Served>, export: Option<Export>) -> Result<Self, crate::DbError> {
        if databases.is_empty() {
            return Err(crate::DbError::new("a server needs at least one database"));
        }
        Ok(Self::build(databases, export))
    }

    /// [`Self::serving`] for a list known not to be empty.
    fn build(databases: Vec<Served>, export: Option<Export>) -> Self {
        let mut tool_router = Self::tool_router();
        if !databases.iter().any(|d| d.options.allow_write) {
            tool_router.remove_route("execute");
        }
        if export.is_none() {
            tool_router.remove_route("export_query");
        }
        if databases.len() == 1 {
            // One database: `database` would only cost tokens.
            for route in tool_router.map.values_mut() {
                let mut schema = (*route.attr.input_schema).clone();
                if let Some(Value::Object(properties)) = schema.get_mut("properties") {
                    properties.remove("database");
                }
                route.attr.input_schema = Arc::new(schema);
            }
        }
        Self {
            shared: Arc::new(Shared { databases, export }),
            tool_router,
            resources: resources(),
        }
    }

    /// With the tools a config file declares, each prepared once for its database's engine.
    pub fn with_tools(mut self, tools: &[ToolConfig]) -> Result<Self, crate::DbError> {
        for tool in tools {
            let database = self
                .shared
                .databases
                .iter()
                .position(|d| d.name == tool.database)
                .ok_or_else(|| {
                    crate::DbError::new(format!(
                        "tool {:?}: no database named {:?}",
                        tool.name, tool.database
                    ))
                })?;
            let style = self.shared.databases[database].db.placeholder_style();
            let (sql, order) = crate::named::rewrite(&tool.sql, style);
            let binds = order
                .iter()
                .map(|name| tool.params.iter().position(|p| &p.name == name))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    crate::DbError::new(format!(
                        "tool {:?}: its SQL uses a parameter it does not declare",
                        tool.name
                    ))
                })?;
            self.tool_router.add_route(config_tool(Prepared {
                tool: tool.clone(),
                database,
                sql,
                binds,
            }));
        }
        Ok(self)
    }

    /// Opens every database a config file names (through its SSH tunnel, if any), each under
    /// `defaults` as the file's keys change them.
    pub async fn open(config: &Config, defaults: Options) -> Result<Self, crate::DbError> {
        let mut databases = Vec::new();
        for entry in &config.databases {
            let options = Options {
                allow_write: !entry.read_only,
                allow_privileged_role: entry.allow_privileged_role,
                timeout: entry.timeout.unwrap_or(defaults.timeout),
                max_rows: entry.max_rows.unwrap_or(defaults.max_rows),
                ..defaults
            };
            let named = |e: crate::DbError| e.context(format_args!("database {:?}", entry.name));
            let (target, keep) = crate::ssh::through_tunnel(entry).await.map_err(named)?;
            let db = Database::open_denying(&target, options, &entry.deny)
                .await
                .map_err(named)?;
            tracing::info!(database = %entry.name, url = %entry.shown, write = options.allow_write, "opened");
            let mut served =
                Served::new(&entry.name, db, &entry.shown, options).with_deny(entry.deny.clone());
            if let Some(keep) = keep {
                served = served.keeping(keep);
            }
            databases.push(served);
        }
        let export = match &config.export_dir {
            Some(dir) => Some(Export::new(dir, config.max_export_bytes)?),
            None => None,
        };
        Self::serving(databases, export)?.with_tools(&config.tools)
    }

    fn served(&self, name: Option<&str>) -> Result<&Served, ToolError> {
        let databases = &self.shared.databases;
        match name {
            None => Ok(&databases[0]),
            Some(name) => databases.iter().find(|d| d.name == name).ok_or_else(|| {
                ToolError::new(format!("no database named {name:?}")).with_hint(format!(
                    "this server has {}; list_databases describes them",
                    databases
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }),
        }
    }

    fn default_db(&self) -> Arc<Database> {
        self.shared.databases[0].db.clone()
    }
}

/// A `[[tools]]` entry ready to run: its SQL in its database's placeholders, and for each
/// placeholder the parameter that fills it.
struct Prepared {
    tool: ToolConfig,
    database: usize,
    sql: String,
    binds: Vec<usize>,
}

/// A `[[tools]]` entry as an MCP tool: its parameters' schema, read-only unless `write`.
fn config_tool(prepared: Prepared) -> ToolRoute<SqlServer> {
    let tool = &prepared.tool;
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for param in &tool.params {
        properties.insert(param.name.clone(), param.schema());
        if param.default.is_none() {
            required.push(Value::from(param.name.clone()));
        }
    }
    let mut schema = serde_json::Map::new();
    schema.insert("type".into(), "object".into());
    schema.insert("properties".into(), properties.into());
    if !required.is_empty() {
        schema.insert("required".into(), required.into());
    }
    schema.insert("additionalProperties".into(), false.into());
    let annotations = if tool.write {
        ToolAnnotations::new()
            .read_only(false)
            .destructive(true)
            .idempotent(false)
            .open_world(false)
    } else {
        ToolAnnotations::new().read_only(true).open_world(false)
    };
    let attr = Tool::new(
        tool.name.clone(),
        tool.description.clone(),
        Arc::new(schema),
    )
    .with_annotations(annotations);
    let prepared = Arc::new(prepared);
    ToolRoute::new_dyn(attr, move |context: ToolCallContext<'_, SqlServer>| {
        let prepared = prepared.clone();
        Box::pin(async move {
            let result = context
                .service
                .run_config_tool(&prepared, context.arguments.unwrap_or_default())
                .await
                .unwrap_or_else(|error| {
                    CallToolResult::error(vec![ContentBlock::text(error.to_string())])
                });
            Ok(CallToolResponse::Complete(result))
        })
    })
}

impl SqlServer {
    async fn run_config_tool(
        &self,
        prepared: &Prepared,
        mut arguments: serde_json::Map<String, Value>,
    ) -> Result<CallToolResult, ToolError> {
        let tool = &prepared.tool;
        if let Some(unknown) = arguments
            .keys()
            .find(|k| !tool.params.iter().any(|p| &p.name == *k))
        {
            return Err(
                ToolError::new(format!("{} takes no argument {unknown:?}", tool.name)).with_hint(
                    format!(
                        "its arguments are: {}",
                        tool.params
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            );
        }
        // Each parameter's value, in the order the parameters are declared.
        let mut values = Vec::with_capacity(tool.params.len());
        for param in &tool.params {
            let value = match arguments.remove(&param.name).filter(|v| !v.is_null()) {
                Some(value) => value,
                None => match &param.default {
                    Some(default) => default.clone(),
                    None => {
                        return Err(ToolError::new(format!(
                            "{} needs {:?}",
                            tool.name, param.name
                        )));
                    }
                },
            };
            if !param.kind.admits(&value) {
                return Err(ToolError::new(format!(
                    "{:?} must be of type {}, not {value}",
                    param.name,
                    param.kind.json_name()
                )));
            }
            if let Some(choices) = &param.choices
                && !choices.contains(&value)
            {
                return Err(ToolError::new(format!(
                    "{:?} must be one of {}",
                    param.name,
                    Value::Array(choices.clone())
                )));
            }
            values.push(value);
        }
        let served = &self.shared.databases[prepared.database];
        let sql = prepared.sql.clone();
        let params: Vec<Value> = prepared.binds.iter().map(|&i| values[i].clone()).collect();
        if tool.write {
            let rows_affected = served.db.execute(sql, params).await?;
            return Ok(structured(
                format!("{rows_affected} row(s) affected"),
                &ExecuteOutput { rows_affected },
            ));
        }
        let mut rows = served
            .db
            .query(QueryRequest {
                sql,
                params,
                offset: 0,
                max_rows: served.options.max_rows,
                max_bytes: served.options.max_bytes,
            })
            .await?;
        // The tool's SQL is fixed: no cursor to a next page, only the note that there is more.
        rows.next_cursor = None;
        let mut text = text_table(&rows);
        if rows.truncated {
            text.push('\n');
            text.push_str(&truncation_notice(
                format_args!("the first {} rows", rows.rows.len()),
                None,
                Some("narrow the arguments"),
            ));
        }
        Ok(structured_value(text, rows.into_value()))
    }
}

/// Every table of the default database at once, and each table by its schema and name.
fn resources() -> ResourceRouter<Arc<Database>> {
    ResourceRouter::new()
        .route(
            ResourceTemplate::new(TABLES_URI, "tables")
                .with_description("Every table and view, as JSON")
                .with_mime_type("application/json"),
            |db: Arc<Database>, read: Read| async move {
                let tables = db.list_tables(None).await.map_err(ResourceError::failed)?;
                json_resource(read.uri(), &TableList { tables })
            },
        )
        .route(
            ResourceTemplate::new(TABLE_TEMPLATE, "table")
                .with_description("A table's description (SQLite's schema is main)")
                .with_mime_type("application/json"),
            |db: Arc<Database>, read: Read| async move {
                let (schema, name) = parse_table_uri(read.var("schema"), read.var("name"))
                    .ok_or_else(|| {
                        ResourceError::not_found(format!("{} is not a table URI", read.uri()))
                    })?;
                let table = db
                    .describe_table(name, schema)
                    .await
                    .map_err(ResourceError::not_found)?;
                json_resource(read.uri(), &table)
            },
        )
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ListTablesArgs {
    /// Only this schema (PostgreSQL, MariaDB); all user schemas when left out.
    schema: Option<String>,
    /// Which database (list_databases names them); the first when left out.
    database: Option<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct TableList {
    tables: Vec<TableSummary>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct DescribeArgs {
    /// The table or view name, exactly as stored (no quotes).
    table: String,
    /// Its schema (PostgreSQL); the search path decides when left out.
    schema: Option<String>,
    /// Which database (list_databases names them); the first when left out.
    database: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct SearchArgs {
    /// A name fragment (matched anywhere, case-insensitively), or a pattern with * and ? (or
    /// SQL's % and _).
    pattern: String,
    /// Most matches to return (default 100).
    limit: Option<usize>,
    /// Which database (list_databases names them); the first when left out.
    database: Option<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct SearchOutput {
    matches: Vec<crate::db::ObjectMatch>,
    /// Whether there were more matches than the limit.
    truncated: bool,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct QueryArgs {
    /// One read-only statement that returns rows (SELECT, WITH … SELECT, VALUES, EXPLAIN).
    /// Placeholders: ?1, ?2 (SQLite), $1, $2 (PostgreSQL) or ? (MariaDB).
    sql: String,
    /// Values for the placeholders, in order.
    #[serde(default)]
    params: Vec<Value>,
    /// Most rows to return (the server's limit caps it).
    max_rows: Option<usize>,
    /// From a previous answer's next_cursor: continue after the rows already seen. The
    /// statement runs again, so give it an ORDER BY for stable pages.
    cursor: Option<String>,
    /// Which database (list_databases names them); the first when left out.
    database: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ExplainArgs {
    /// The statement to plan (not run).
    sql: String,
    /// Values for the placeholders, for a realistic plan (NULLs when left out).
    #[serde(default)]
    params: Vec<Value>,
    /// Which database (list_databases names them); the first when left out.
    database: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ExecuteArgs {
    /// One statement that changes the database (INSERT, UPDATE, DELETE, CREATE, …).
    sql: String,
    /// Values for the placeholders, in order.
    #[serde(default)]
    params: Vec<Value>,
    /// Which database (list_databases names them); the first when left out.
    database: Option<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct ExecuteOutput {
    rows_affected: u64,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ExportArgs {
    /// One read-only statement that returns rows; every row is written, however many.
    sql: String,
    /// Values for the placeholders, in order.
    #[serde(default)]
    params: Vec<Value>,
    /// csv (a header line, RFC 4180 quoting, NULL as an empty field) or jsonl (an object per
    /// row).
    format: ExportFormat,
    /// The file to write, relative to the export directory (which it may not leave).
    path: String,
    /// Replace the file if it exists (refused otherwise).
    #[serde(default)]
    overwrite: bool,
    /// Which database (list_databases names them); the first when left out.
    database: Option<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct DatabaseInfo {
    /// The name tools take as `database`.
    name: String,
    /// sqlite, postgresql or mariadb.
    engine: String,
    /// The URL, without its password.
    url: String,
    /// Whether writes are refused.
    read_only: bool,
    /// Whether tools use it when `database` is left out.
    default: bool,
    /// Its size in bytes, when cheap to know.
    #[serde(skip_serializing_if = "Option::is_none")]
    size_bytes: Option<u64>,
    /// Tables and columns no statement may read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    denied: Vec<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct DatabaseList {
    databases: Vec<DatabaseInfo>,
}

/// Rows as a compact table: a header, one line per row, ` | ` between cells. Written into one
/// buffer: a 10,000-row answer is built without a string per cell.
fn text_table(rows: &Rows) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(64 * (rows.rows.len() + 1));
    for (i, column) in rows.columns.iter().enumerate() {
        if i > 0 {
            out.push_str(" | ");
        }
        out.push_str(&column.name);
    }
    // A long result's second half is written on another thread meanwhile.
    if rows.rows.len() >= PARALLEL_TABLE_ROWS {
        let (first, second) = rows.rows.split_at(rows.rows.len() / 2);
        let rest = std::thread::scope(|scope| {
            let rest = scope.spawn(|| {
                let mut rest = String::with_capacity(64 * second.len());
                push_lines(&mut rest, second);
                rest
            });
            push_lines(&mut out, first);
            rest.join()
        });
        match rest {
            Ok(rest) => out.push_str(&rest),
            Err(_) => push_lines(&mut out, second),
        }
    } else {
        push_lines(&mut out, &rows.rows);
    }
    let count = rows.rows.len();
    let _ = write!(out, "\n({count} row{})", if count == 1 { "" } else { "s" });
    if let Some(cursor) = &rows.next_cursor {
        out.push('\n');
        out.push_str(&truncation_notice(
            format_args!("{count} row{}", if count == 1 { "" } else { "s" }),
            Some(cursor),
            Some("narrow the query"),
        ));
    }
    out
}

/// Results this long have their text table written on two threads.
const PARALLEL_TABLE_ROWS: usize = 2_000;

/// Rows as lines of the text table, each after a newline.
fn push_lines(out: &mut String, rows: &[Vec<Value>]) {
    for row in rows {
        out.push('\n');
        for (i, value) in row.iter().enumerate() {
            if i > 0 {
                out.push_str(" | ");
            }
            push_cell(out, value);
        }
    }
}

/// One cell as text: NULL, a string with its newlines escaped, or the JSON of anything else;
/// at most [`MAX_CELL_CHARS`] characters (the structured rows carry it whole).
fn push_cell(out: &mut String, value: &Value) {
    use std::fmt::Write as _;
    let start = out.len();
    match value {
        Value::Null => out.push_str("NULL"),
        Value::String(s) => {
            for (i, line) in s.split('\n').enumerate() {
                if i > 0 {
                    out.push_str("\\n");
                }
                out.push_str(line);
            }
        }
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
    if out.len() - start > MAX_CELL_CHARS
        && let Some((cut, _)) = out[start..].char_indices().nth(MAX_CELL_CHARS)
    {
        out.truncate(start + cut);
        out.push('…');
    }
}

fn table_line(table: &TableSummary) -> String {
    let name = match &table.schema {
        Some(schema) => format!("{schema}.{}", table.name),
        None => table.name.clone(),
    };
    match table.estimated_rows {
        Some(rows) => format!("{name} ({}, ~{rows} rows)", table.kind),
        None => format!("{name} ({})", table.kind),
    }
}

#[tool_router]
impl SqlServer {
    #[tool(
        description = "List the databases this server offers: name, engine, read-only, size and denied tables/columns. Every tool takes one of these names as `database`.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_databases(&self) -> Result<CallToolResult, ToolError> {
        let mut databases = Vec::new();
        let mut lines = Vec::new();
        for (i, served) in self.shared.databases.iter().enumerate() {
            let size_bytes = served.db.size().await;
            let info = DatabaseInfo {
                name: served.name.clone(),
                engine: served.db.engine().to_owned(),
                url: served.shown.clone(),
                read_only: !served.options.allow_write,
                default: i == 0,
                size_bytes,
                denied: served.deny.iter().map(ToString::to_string).collect(),
            };
            let mut line = format!(
                "{} ({}, {}{}){}",
                info.name,
                info.engine,
                if info.read_only {
                    "read-only"
                } else {
                    "writable"
                },
                size_bytes
                    .map(|b| format!(", {b} bytes"))
                    .unwrap_or_default(),
                if info.default { " default" } else { "" }
            );
            if !info.denied.is_empty() {
                line.push_str(&format!(" denied: {}", info.denied.join(", ")));
            }
            lines.push(line);
            databases.push(info);
        }
        Ok(structured(lines.join("\n"), &DatabaseList { databases }))
    }

    #[tool(
        description = "List the tables and views, with schema, kind and estimated row count.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_tables(
        &self,
        Parameters(args): Parameters<ListTablesArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let tables = self
            .served(args.database.as_deref())?
            .db
            .list_tables(args.schema)
            .await?;
        let text = if tables.is_empty() {
            "(no tables)".to_owned()
        } else {
            tables.iter().map(table_line).collect::<Vec<_>>().join("\n")
        };
        Ok(structured(text, &TableList { tables }))
    }

    #[tool(
        description = "Describe a table or view: columns (type, nullability, default), primary key, foreign keys and indexes.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn describe_table(
        &self,
        Parameters(args): Parameters<DescribeArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let served = self.served(args.database.as_deref())?;
        let mut table = served.db.describe_table(args.table, args.schema).await?;
        for column in &mut table.columns {
            column.denied = served.denies_column(&table.name, &column.name);
        }
        let mut lines = vec![format!(
            "{} {}",
            table.kind,
            match &table.schema {
                Some(schema) => format!("{schema}.{}", table.name),
                None => table.name.clone(),
            }
        )];
        for column in &table.columns {
            let mut line = format!("  {} {}", column.name, column.type_name);
            if !column.nullable {
                line.push_str(" NOT NULL");
            }
            if let Some(default) = &column.default {
                line.push_str(&format!(" DEFAULT {default}"));
            }
            if column.denied {
                line.push_str(" (denied: no statement may read it)");
            }
            lines.push(line);
        }
        if !table.primary_key.is_empty() {
            lines.push(format!("primary key ({})", table.primary_key.join(", ")));
        }
        for key in &table.foreign_keys {
            lines.push(format!(
                "foreign key ({}) references {} ({})",
                key.columns.join(", "),
                key.references_table,
                key.references_columns.join(", ")
            ));
        }
        for index in &table.indexes {
            lines.push(format!(
                "{}index {} ({})",
                if index.unique { "unique " } else { "" },
                index.name,
                index.columns.join(", ")
            ));
        }
        Ok(structured(lines.join("\n"), &table))
    }

    #[tool(
        description = "Find tables, views and columns by name across the whole schema, without listing all of it.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn search_objects(
        &self,
        Parameters(args): Parameters<SearchArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let limit = args.limit.unwrap_or(100).clamp(1, MAX_MATCHES);
        let mut matches = self
            .served(args.database.as_deref())?
            .db
            .search_objects(args.pattern, limit + 1)
            .await?;
        let truncated = matches.len() > limit;
        matches.truncate(limit);
        let mut lines: Vec<String> = matches
            .iter()
            .map(|m| {
                let table = match &m.schema {
                    Some(schema) => format!("{schema}.{}", m.table),
                    None => m.table.clone(),
                };
                match &m.column {
                    Some(column) => format!(
                        "column {table}.{column} {}",
                        m.type_name.as_deref().unwrap_or_default()
                    ),
                    None => format!("{} {table}", m.kind),
                }
            })
            .collect();
        if lines.is_empty() {
            lines.push("(no matches)".to_owned());
        }
        if truncated {
            lines.push(truncation_notice(
                format_args!("the first {limit} matches"),
                None,
                Some("narrow the pattern"),
            ));
        }
        Ok(structured(
            lines.join("\n"),
            &SearchOutput { matches, truncated },
        ))
    }

    #[tool(
        description = "Run one read-only SQL statement that returns rows, with bound parameters. Answers with the rows (structured) and a compact table; long results come in pages (next_cursor).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn query(
        &self,
        Parameters(args): Parameters<QueryArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let offset = mcp_core::tool::parse_offset(args.cursor.as_deref())?;
        let served = self.served(args.database.as_deref())?;
        let max_rows = args
            .max_rows
            .unwrap_or(served.options.max_rows)
            .clamp(1, served.options.max_rows);
        let rows = served
            .db
            .query(QueryRequest {
                sql: args.sql,
                params: args.params,
                offset,
                max_rows,
                max_bytes: served.options.max_bytes,
            })
            .await?;
        Ok(structured_value(text_table(&rows), rows.into_value()))
    }

    #[tool(
        description = "Show the engine's plan for a statement without running it.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn explain(
        &self,
        Parameters(args): Parameters<ExplainArgs>,
    ) -> Result<String, ToolError> {
        Ok(self
            .served(args.database.as_deref())?
            .db
            .explain(args.sql, args.params)
            .await?)
    }

    #[tool(
        description = "Run one statement that changes the database (INSERT, UPDATE, DELETE, DDL) in a transaction, with bound parameters; answers with the number of rows affected.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn execute(
        &self,
        Parameters(args): Parameters<ExecuteArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let served = self.served(args.database.as_deref())?;
        if !served.options.allow_write {
            return Err(
                ToolError::new(format!("database {:?} is read-only", served.name))
                    .with_hint("list_databases shows which databases take writes"),
            );
        }
        let rows_affected = served.db.execute(args.sql, args.params).await?;
        Ok(structured(
            format!("{rows_affected} row(s) affected"),
            &ExecuteOutput { rows_affected },
        ))
    }

    #[tool(
        description = "Write a read-only statement's whole result to a CSV or JSON Lines file in the export directory, however many rows: for results too big to read here. Answers with a summary (rows, bytes, columns, the first rows).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn export_query(
        &self,
        Parameters(args): Parameters<ExportArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let Some(export) = &self.shared.export else {
            return Err(ToolError::new(
                "exports are off: the server has no export_dir",
            ));
        };
        let served = self.served(args.database.as_deref())?;
        let summary = export
            .run(
                &served.db,
                args.sql,
                args.params,
                args.format,
                &args.path,
                args.overwrite,
            )
            .await?;
        Ok(structured(summary.text(), &summary))
    }
}

const TABLES_URI: &str = "sql://tables";
const TABLE_TEMPLATE: &str = "sql://table/{schema}/{name}";

fn table_uri(table: &TableSummary) -> String {
    let segment = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "sql://table/{}/{}",
        segment(table.schema.as_deref().unwrap_or("main")),
        segment(&table.name)
    )
}

/// The schema (`None` for SQLite's `main`) and name of a table URI's segments, decoded.
fn parse_table_uri(schema: &str, name: &str) -> Option<(Option<String>, String)> {
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let schema = decode(schema)?;
    Some(((schema != "main").then_some(schema), decode(name)?))
}

fn json_resource(uri: &str, value: &impl Serialize) -> Result<ResourceContents, ResourceError> {
    let text = serde_json::to_string_pretty(value).map_err(ResourceError::failed)?;
    Ok(ResourceContents::text(text, uri).with_mime_type("application/json"))
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SqlServer {
    fn get_info(&self) -> ServerConfig {
        let databases = &self.shared.databases;
        let writable = databases.iter().any(|d| d.options.allow_write);
        let mode = if !writable {
            "Read-only: query runs in a read-only transaction; there is no execute."
        } else if databases.len() == 1 {
            "Writes go through execute."
        } else {
            "Writes go through execute, on the databases list_databases shows as writable."
        };
        let databases = match databases.as_slice() {
            [one] => format!("the {} database {}", one.db.engine(), one.shown),
            many => format!(
                "{} databases ({}; the first is the default, every tool takes `database`)",
                many.len(),
                many.iter()
                    .map(|d| format!("{}: {}", d.name, d.db.engine()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("mcp-sql", env!("CARGO_PKG_VERSION")))
        .with_instructions(format!(
            "SQL access to {databases}. {mode} Start with list_tables or search_objects, \
             then describe_table; query takes bound parameters (never paste values into SQL).",
        ))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let tables = self
            .default_db()
            .list_tables(None)
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let mut resources = self.resources.fixed();
        resources.extend(tables.iter().map(|table| {
            Resource::new(table_uri(table), table_line(table)).with_mime_type("application/json")
        }));
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(self.resources.templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.resources.read(self.default_db(), &request.uri).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_table_is_compact_and_cuts_long_cells() {
        let rows = Rows {
            columns: vec![
                crate::db::Column {
                    name: "id".into(),
                    type_name: "integer".into(),
                },
                crate::db::Column {
                    name: "note".into(),
                    type_name: "text".into(),
                },
            ],
            rows: vec![
                vec![1.into(), "two\nlines".into()],
                vec![2.into(), Value::Null],
                vec![3.into(), "é".repeat(300).into()],
            ],
            truncated: true,
            next_cursor: Some("3".into()),
        };
        let text = text_table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "id | note");
        assert_eq!(lines[1], "1 | two\\nlines");
        assert_eq!(lines[2], "2 | NULL");
        assert_eq!(lines[3], format!("3 | {}…", "é".repeat(MAX_CELL_CHARS)));
        assert_eq!(lines[4], "(3 rows)");
        assert!(lines[5].contains("cursor \"3\""));
    }

    #[test]
    fn a_long_table_written_on_two_threads_keeps_its_order() {
        let rows = |count: usize| Rows {
            columns: vec![crate::db::Column {
                name: "n".into(),
                type_name: "integer".into(),
            }],
            rows: (0..count).map(|n| vec![n.into()]).collect(),
            truncated: false,
            next_cursor: None,
        };
        for count in [
            PARALLEL_TABLE_ROWS - 1,
            PARALLEL_TABLE_ROWS,
            2 * PARALLEL_TABLE_ROWS + 1,
        ] {
            let text = text_table(&rows(count));
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), count + 2);
            assert_eq!(lines[0], "n");
            for (n, line) in lines[1..=count].iter().enumerate() {
                assert_eq!(*line, n.to_string());
            }
            assert_eq!(lines[count + 1], format!("({count} rows)"));
        }
    }

    #[test]
    fn config_tools_may_not_take_a_built_in_name() {
        let mut routed: Vec<String> = SqlServer::tool_router()
            .list_all()
            .into_iter()
            .map(|tool| tool.name.to_string())
            .collect();
        routed.sort();
        let mut reserved = crate::config::BUILT_IN_TOOLS.map(str::to_owned).to_vec();
        reserved.sort();
        assert_eq!(routed, reserved);
    }

    #[test]
    fn table_uris_round_trip_odd_names() {
        let table = TableSummary {
            schema: Some("my schema".into()),
            name: "x\"/; DROP".into(),
            kind: "table".into(),
            estimated_rows: None,
        };
        let uri = table_uri(&table);
        // TABLE_TEMPLATE's {schema} takes up to the next `/`, {name} the rest: neither segment
        // may hold a `/` of its own.
        let (schema, name) = uri
            .strip_prefix("sql://table/")
            .and_then(|rest| rest.split_once('/'))
            .unwrap();
        assert!(!name.contains('/'), "{uri}");
        assert_eq!(
            parse_table_uri(schema, name),
            Some((Some("my schema".into()), "x\"/; DROP".into()))
        );
        assert_eq!(parse_table_uri("main", "t"), Some((None, "t".into())));
    }
}
