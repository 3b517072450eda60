//! The MCP face of a database: few tools (so they cost few tokens), the schema as resources.

use std::sync::Arc;

use mcp_core::{
    ToolError,
    resource::{Read, ResourceError, ResourceRouter},
    structured, structured_value,
    tool::truncation_notice,
};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::*,
    schemars,
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::{Database, Options, QueryRequest, Rows, TableSummary, Target};

/// Most matches `search_objects` returns.
const MAX_MATCHES: usize = 1_000;
/// Longest cell shown in the text table (the structured rows carry it whole).
const MAX_CELL_CHARS: usize = 200;

/// The SQL server: one database, shared by every session.
#[derive(Clone)]
pub struct SqlServer {
    db: Arc<Database>,
    target: Arc<Target>,
    options: Options,
    tool_router: ToolRouter<Self>,
    resources: ResourceRouter<Arc<Database>>,
}

impl SqlServer {
    /// The server for an open database; `execute` is offered only with `options.allow_write`.
    pub fn new(db: Database, target: Target, options: Options) -> Self {
        let mut tool_router = Self::tool_router();
        if !options.allow_write {
            tool_router.remove_route("execute");
        }
        Self {
            db: Arc::new(db),
            target: Arc::new(target),
            options,
            tool_router,
            resources: resources(),
        }
    }
}

/// Every table at once, and each table by its schema and name.
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
    /// Only this schema (PostgreSQL); all user schemas when left out.
    schema: Option<String>,
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
}

#[derive(Deserialize, schemars::JsonSchema)]
struct SearchArgs {
    /// A name fragment (matched anywhere, case-insensitively), or a pattern with * and ? (or
    /// SQL's % and _).
    pattern: String,
    /// Most matches to return (default 100).
    limit: Option<usize>,
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
    /// Placeholders: ?1, ?2 (SQLite) or $1, $2 (PostgreSQL).
    sql: String,
    /// Values for the placeholders, in order.
    #[serde(default)]
    params: Vec<Value>,
    /// Most rows to return (the server's limit caps it).
    max_rows: Option<usize>,
    /// From a previous answer's next_cursor: continue after the rows already seen. The
    /// statement runs again, so give it an ORDER BY for stable pages.
    cursor: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ExplainArgs {
    /// The statement to plan (not run).
    sql: String,
    /// Values for the placeholders, for a realistic plan (NULLs when left out).
    #[serde(default)]
    params: Vec<Value>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ExecuteArgs {
    /// One statement that changes the database (INSERT, UPDATE, DELETE, CREATE, …).
    sql: String,
    /// Values for the placeholders, in order.
    #[serde(default)]
    params: Vec<Value>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct ExecuteOutput {
    rows_affected: u64,
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
        description = "List the tables and views, with schema, kind and estimated row count.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_tables(
        &self,
        Parameters(args): Parameters<ListTablesArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let tables = self.db.list_tables(args.schema).await?;
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
        let table = self.db.describe_table(args.table, args.schema).await?;
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
        let mut matches = self.db.search_objects(args.pattern, limit + 1).await?;
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
        let max_rows = args
            .max_rows
            .unwrap_or(self.options.max_rows)
            .clamp(1, self.options.max_rows);
        let rows = self
            .db
            .query(QueryRequest {
                sql: args.sql,
                params: args.params,
                offset,
                max_rows,
                max_bytes: self.options.max_bytes,
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
        Ok(self.db.explain(args.sql, args.params).await?)
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
        let rows_affected = self.db.execute(args.sql, args.params).await?;
        Ok(structured(
            format!("{rows_affected} row(s) affected"),
            &ExecuteOutput { rows_affected },
        ))
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
        let mode = if self.options.allow_write {
            "Writes go through execute."
        } else {
            "Read-only: query runs in a read-only transaction; there is no execute."
        };
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("mcp-sql", env!("CARGO_PKG_VERSION")))
        .with_instructions(format!(
            "SQL access to the {} database {}. {mode} Start with list_tables or search_objects, \
             then describe_table; query takes bound parameters (never paste values into SQL).",
            self.db.engine(),
            self.target.display()
        ))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let tables = self
            .db
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
        self.resources.read(self.db.clone(), &request.uri).await
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
