//! The config file, `mcp-sql --config sql.toml`: several databases, each with its own limits,
//! deny list and SSH tunnel, and tools declared as named SQL whose parameters are always bound.
//!
//! ```toml
//! export_dir = "~/exports"
//!
//! [databases.shop]
//! url = "postgres://reader:${SHOP_PASSWORD}@db.internal/shop"
//! deny = ["customers.email", "payment_methods"]
//! ssh = "me@bastion.example.com:22"
//!
//! [[tools]]
//! name = "orders_of_customer"
//! description = "A customer's orders, newest first"
//! database = "shop"
//! sql = "SELECT id, total_cents, placed_at FROM orders WHERE customer_id = :customer ORDER BY placed_at DESC"
//! [tools.params.customer]
//! type = "integer"
//! description = "The customer's id"
//! ```
//!
//! `${VAR}` in a string is the environment variable's value; the value never appears in an
//! error or a log line (messages show the text as written, with any password masked).

use std::{collections::HashSet, path::PathBuf, time::Duration};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::db::{DbError, Target};

/// Built-in tools, whose names a config tool may not take.
pub const BUILT_IN_TOOLS: [&str; 8] = [
    "list_databases",
    "list_tables",
    "describe_table",
    "search_objects",
    "query",
    "explain",
    "execute",
    "export_query",
];

/// A read config file.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Where `export_query` may write (no exports without it).
    pub export_dir: Option<PathBuf>,
    /// Largest file one export may write.
    pub max_export_bytes: Option<u64>,
    /// The databases, in the file's order: the first is the default.
    pub databases: Vec<DatabaseConfig>,
    /// Tools declared as SQL.
    pub tools: Vec<ToolConfig>,
}

/// One `[databases.NAME]`.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// The name tools take as `database`.
    pub name: String,
    /// What the URL names (variables expanded).
    pub target: Target,
    /// The URL as written (variables not expanded, any password masked), for messages.
    pub shown: String,
    /// Whether writes are refused (the default).
    pub read_only: bool,
    /// PostgreSQL: serve read-only as a role that could write.
    pub allow_privileged_role: bool,
    /// Most rows one answer carries.
    pub max_rows: Option<usize>,
    /// Longest a statement may run.
    pub timeout: Option<Duration>,
    /// Tables and columns no statement may read.
    pub deny: Vec<DenyRule>,
    /// The SSH tunnel the connection goes through.
    pub ssh: Option<SshConfig>,
}

/// `ssh = "user@host:port"` and its companions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfig {
    /// The login name on the SSH host.
    pub user: String,
    /// The SSH host.
    pub host: String,
    /// Its port (22 unless given).
    pub port: u16,
    /// A private key file; the SSH agent (`SSH_AUTH_SOCK`) when left out.
    pub key: Option<PathBuf>,
    /// The known_hosts file (`~/.ssh/known_hosts` when left out).
    pub known_hosts: Option<PathBuf>,
    /// Learn the host key of a host known_hosts does not list (and record it there), rather
    /// than refuse it.
    pub accept_new_host: bool,
}

/// A `deny` entry: a whole table, or one column of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyRule {
    /// The table (any schema), compared without regard to case.
    pub table: String,
    /// The column, or every column when `None`.
    pub column: Option<String>,
}

impl DenyRule {
    /// Reads `table` or `table.column`.
    pub fn parse(rule: &str) -> Result<Self, String> {
        let parts: Vec<&str> = rule.split('.').map(str::trim).collect();
        let named = |s: &&str| !s.is_empty();
        match parts.as_slice() {
            [table] if named(table) => Ok(Self {
                table: (*table).to_owned(),
                column: None,
            }),
            [table, column] if named(table) && named(column) => Ok(Self {
                table: (*table).to_owned(),
                column: Some((*column).to_owned()),
            }),
            _ => Err(format!(
                "deny entry {rule:?} is neither \"table\" nor \"table.column\""
            )),
        }
    }

    /// Whether reading `column` of `table` falls under this rule (`column` empty: the table
    /// read without any column, as `count(*)` reads it).
    pub fn covers(&self, table: &str, column: &str) -> bool {
        self.table.eq_ignore_ascii_case(table)
            && self
                .column
                .as_deref()
                .is_none_or(|denied| denied.eq_ignore_ascii_case(column))
    }

    /// Whether this rule denies the whole of `table`.
    pub fn covers_table(&self, table: &str) -> bool {
        self.column.is_none() && self.table.eq_ignore_ascii_case(table)
    }
}

impl std::fmt::Display for DenyRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(column) => write!(f, "{}.{column}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

/// One `[[tools]]`.
#[derive(Debug, Clone)]
pub struct ToolConfig {
    /// The tool's name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// The database it runs on.
    pub database: String,
    /// The statement, with `:name` parameters.
    pub sql: String,
    /// Whether it changes the database (runs as `execute` does).
    pub write: bool,
    /// Its parameters, in the file's order.
    pub params: Vec<ParamConfig>,
}

/// One `[tools.params.NAME]`.
#[derive(Debug, Clone)]
pub struct ParamConfig {
    /// The name `:name` refers to.
    pub name: String,
    /// Its JSON type.
    pub kind: ParamType,
    /// What it means, for the model.
    pub description: Option<String>,
    /// The only values allowed.
    pub choices: Option<Vec<Value>>,
    /// Its value when left out (a parameter without one is required).
    pub default: Option<Value>,
}

/// The types a config tool's parameter may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// A JSON string.
    String,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// true or false.
    Boolean,
}

impl ParamType {
    /// Its name in JSON Schema.
    pub fn json_name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }

    /// Whether `value` is of this type.
    pub fn admits(self, value: &Value) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Integer => value.is_i64() || value.is_u64(),
            Self::Number => value.is_number(),
            Self::Boolean => value.is_boolean(),
        }
    }
}

impl ParamConfig {
    /// The parameter's JSON Schema.
    pub fn schema(&self) -> Value {
        let mut schema = Map::new();
        schema.insert("type".into(), self.kind.json_name().into());
        if let Some(description) = &self.description {
            schema.insert("description".into(), description.clone().into());
        }
        if let Some(choices) = &self.choices {
            schema.insert("enum".into(), Value::Array(choices.clone()));
        }
        if let Some(default) = &self.default {
            schema.insert("default".into(), default.clone());
        }
        Value::Object(schema)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    export_dir: Option<String>,
    max_export_bytes: Option<u64>,
    #[serde(default)]
    databases: ordered::Ordered<RawDatabase>,
    #[serde(default)]
    tools: Vec<RawTool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: String,
    #[serde(default = "yes")]
    read_only: bool,
    #[serde(default)]
    allow_privileged_role: bool,
    max_rows: Option<usize>,
    timeout: Option<f64>,
    #[serde(default)]
    deny: Vec<String>,
    ssh: Option<String>,
    ssh_key: Option<String>,
    ssh_known_hosts: Option<String>,
    #[serde(default)]
    ssh_accept_new_host: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    name: String,
    description: String,
    database: Option<String>,
    sql: String,
    #[serde(default)]
    write: bool,
    #[serde(default)]
    params: ordered::Ordered<RawParam>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    #[serde(rename = "type")]
    kind: ParamType,
    description: Option<String>,
    #[serde(rename = "enum")]
    choices: Option<Vec<toml::Value>>,
    default: Option<toml::Value>,
}

/// A map read in the file's order.
mod ordered {
    use serde::{Deserialize, Deserializer, de};

    pub struct Ordered<T>(pub Vec<(String, T)>);

    impl<T> Default for Ordered<T> {
        fn default() -> Self {
            Self(Vec::new())
        }
    }

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visitor<T>(std::marker::PhantomData<T>);
            impl<'de, T: Deserialize<'de>> de::Visitor<'de> for Visitor<T> {
                type Value = Ordered<T>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a table")
                }
                fn visit_map<A: de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Self::Value, A::Error> {
                    let mut entries = Vec::new();
                    while let Some((key, value)) = map.next_entry::<String, T>()? {
                        entries.push((key, value));
                    }
                    Ok(Ordered(entries))
                }
            }
            deserializer.deserialize_map(Visitor(std::marker::PhantomData))
        }
    }
}

/// A name a tool, database or parameter may have: what MCP tool names allow, less the dot
/// (which would be ambiguous in messages) and the hyphen for parameters (`:a-b` is not a name).
fn valid_name(name: &str, hyphen: bool) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || (hyphen && c == '-'))
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &std::path::Path) -> Result<Self, DbError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            DbError::new(format!(
                "cannot read the config file {}: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text, &|name| std::env::var(name).ok()).map_err(|e| e.context(path.display()))
    }

    /// Reads and checks a config file's text; `env` looks up `${VAR}`s.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, DbError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            DbError::new(e.to_string().trim_end().to_owned())
                .with_hint("the README's mcp-sql section shows every key, with an example")
        })?;
        let expand = |value: &str, key: &str| expand_vars(value, key, env);

        let export_dir = raw
            .export_dir
            .as_deref()
            .map(|dir| expand(dir, "export_dir").map(|dir| mcp_core::sandbox::expand_home(&dir)))
            .transpose()?;

        let mut databases = Vec::new();
        for (name, db) in raw.databases.0 {
            let key = |k: &str| format!("databases.{name}.{k}");
            if !valid_name(&name, true) {
                return Err(DbError::new(format!(
                    "database name {name:?}: use letters, digits, _ and - (at most 64)"
                )));
            }
            let target = match Target::parse(&expand(&db.url, &key("url"))?)
                .map_err(|e| e.context(key("url")))?
            {
                // `sqlite:~/notes.db`: a path in the home directory.
                Target::Sqlite(path) => {
                    Target::Sqlite(mcp_core::sandbox::expand_home(&path.to_string_lossy()))
                }
                other => other,
            };
            let shown = Target::parse(&db.url)
                .map(|t| t.display())
                .unwrap_or_else(|_| db.url.clone());
            let timeout = match db.timeout {
                None => None,
                Some(seconds) if seconds.is_finite() && seconds > 0.0 => {
                    Some(Duration::from_secs_f64(seconds))
                }
                Some(_) => {
                    return Err(DbError::new(format!(
                        "{}: a positive number of seconds",
                        key("timeout")
                    )));
                }
            };
            let deny = db
                .deny
                .iter()
                .map(|rule| {
                    DenyRule::parse(rule).map_err(|e| DbError::new(format!("{}: {e}", key("deny"))))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let ssh = match db.ssh {
                None => {
                    if db.ssh_key.is_some()
                        || db.ssh_known_hosts.is_some()
                        || db.ssh_accept_new_host
                    {
                        return Err(DbError::new(format!(
                            "databases.{name}: ssh_key, ssh_known_hosts and ssh_accept_new_host \
                             go with ssh = \"user@host:port\""
                        )));
                    }
                    None
                }
                Some(spec) => {
                    let spec = expand(&spec, &key("ssh"))?;
                    let (user, host, port) = parse_ssh(&spec).ok_or_else(|| {
                        DbError::new(format!(
                            "{}: the form is user@host or user@host:port",
                            key("ssh")
                        ))
                    })?;
                    let path = |value: Option<String>, k: &str| {
                        value
                            .map(|v| {
                                expand(&v, &key(k)).map(|v| mcp_core::sandbox::expand_home(&v))
                            })
                            .transpose()
                    };
                    Some(SshConfig {
                        user,
                        host,
                        port,
                        key: path(db.ssh_key, "ssh_key")?,
                        known_hosts: path(db.ssh_known_hosts, "ssh_known_hosts")?,
                        accept_new_host: db.ssh_accept_new_host,
                    })
                }
            };
            databases.push(DatabaseConfig {
                name,
                target,
                shown,
                read_only: db.read_only,
                allow_privileged_role: db.allow_privileged_role,
                max_rows: db.max_rows.map(|n| n.max(1)),
                timeout,
                deny,
                ssh,
            });
        }
        if databases.is_empty() {
            return Err(DbError::new("the config names no database")
                .with_hint("add a [databases.NAME] table with a url"));
        }

        let mut names: HashSet<String> = BUILT_IN_TOOLS.iter().map(|s| (*s).to_owned()).collect();
        let mut tools = Vec::new();
        for tool in raw.tools {
            let at = format!("tool {:?}", tool.name);
            if !valid_name(&tool.name, true) {
                return Err(DbError::new(format!(
                    "{at}: a tool name is letters, digits, _ and - (at most 64)"
                )));
            }
            if !names.insert(tool.name.clone()) {
                return Err(DbError::new(format!(
                    "{at}: the name is taken (by a built-in tool or an earlier [[tools]])"
                )));
            }
            let database = match tool.database {
                Some(database) => database,
                None => databases[0].name.clone(),
            };
            let Some(db) = databases.iter().find(|d| d.name == database) else {
                return Err(DbError::new(format!(
                    "{at}: no database named {database:?} (the config has {})",
                    databases
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            if tool.write && db.read_only {
                return Err(DbError::new(format!(
                    "{at}: write = true on database {database:?}, which is read-only"
                ))
                .with_hint(format!(
                    "set read_only = false under [databases.{database}]"
                )));
            }
            let mut params = Vec::new();
            for (name, param) in tool.params.0 {
                let at = format!("{at}, parameter {name:?}");
                if !valid_name(&name, false) {
                    return Err(DbError::new(format!(
                        "{at}: a parameter name is letters, digits and _"
                    )));
                }
                let to_json = |value: toml::Value, what: &str| {
                    let json = toml_to_json(value);
                    if param.kind.admits(&json) {
                        Ok(json)
                    } else {
                        Err(DbError::new(format!(
                            "{at}: {what} {json} is not of type {}",
                            param.kind.json_name()
                        )))
                    }
                };
                let choices = param
                    .choices
                    .map(|values| {
                        values
                            .into_iter()
                            .map(|v| to_json(v, "the enum value"))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()?;
                let default = param
                    .default
                    .map(|v| to_json(v, "the default"))
                    .transpose()?;
                if let (Some(choices), Some(default)) = (&choices, &default)
                    && !choices.contains(default)
                {
                    return Err(DbError::new(format!(
                        "{at}: the default {default} is not one of the enum's values"
                    )));
                }
                params.push(ParamConfig {
                    name,
                    kind: param.kind,
                    description: param.description,
                    choices,
                    default,
                });
            }
            // Every :name the SQL uses is declared, and every declared one is used.
            let used = crate::named::names(&tool.sql);
            for name in &used {
                if !params.iter().any(|p| &p.name == name) {
                    return Err(DbError::new(format!(
                        "{at}: the SQL uses :{name}, which has no [tools.params.{name}]"
                    )));
                }
            }
            if let Some(unused) = params.iter().find(|p| !used.contains(&p.name)) {
                return Err(DbError::new(format!(
                    "{at}: parameter {:?} is declared but the SQL never uses :{}",
                    unused.name, unused.name
                )));
            }
            tools.push(ToolConfig {
                name: tool.name,
                description: tool.description,
                database,
                sql: tool.sql,
                write: tool.write,
                params,
            });
        }

        Ok(Self {
            export_dir,
            max_export_bytes: raw.max_export_bytes,
            databases,
            tools,
        })
    }
}

/// `user@host[:port]`, or `user@[v6]:port`.
fn parse_ssh(spec: &str) -> Option<(String, String, u16)> {
    let (user, rest) = spec.trim().split_once('@')?;
    if user.is_empty() || rest.is_empty() {
        return None;
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if after.is_empty() => 22,
            None => return None,
        };
        (host.to_owned(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().ok()?),
            None => (rest.to_owned(), 22),
        }
    };
    (!host.is_empty()).then(|| (user.to_owned(), host, port))
}

/// `value` with each `${NAME}` replaced by the variable's value. A variable that is not set is
/// an error naming it and the key (never a value).
fn expand_vars(
    value: &str,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, DbError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(DbError::new(format!("{key}: a ${{ without its }}")));
        };
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(DbError::new(format!(
                "{key}: ${{{name}}} is not an environment variable's name"
            )));
        }
        match env(name) {
            Some(found) => out.push_str(&found),
            None => {
                return Err(
                    DbError::new(format!("{key} uses ${{{name}}}, which is not set")).with_hint(
                        format!("set {name} in the server's environment (the host's env block)"),
                    ),
                );
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn toml_to_json(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(items) => items.into_iter().map(toml_to_json).collect(),
        toml::Value::Table(table) => table
            .into_iter()
            .map(|(k, v)| (k, toml_to_json(v)))
            .collect::<Map<_, _>>()
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "PW").then(|| "s3cret".to_owned())
    }

    const FULL: &str = r#"
export_dir = "/tmp/exports"

[databases.zeta]
url = "postgres://reader:${PW}@127.0.0.1/shop"
deny = ["customers.email", "payments"]
timeout = 5
max_rows = 50

[databases.alpha]
url = "sqlite:notes.db"
read_only = false

[[tools]]
name = "orders_of"
description = "A customer's orders"
sql = "SELECT * FROM orders WHERE customer_id = :customer AND status = :status"
[tools.params.customer]
type = "integer"
[tools.params.status]
type = "string"
enum = ["open", "shipped"]
default = "open"

[[tools]]
name = "add_note"
description = "Adds a note"
database = "alpha"
write = true
sql = "INSERT INTO notes (body) VALUES (:body)"
[tools.params.body]
type = "string"
"#;

    #[test]
    fn a_full_config_reads_in_order_with_variables_expanded() {
        let config = Config::parse(FULL, &env).unwrap();
        let names: Vec<&str> = config.databases.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha"], "the file's order, not sorted");
        let zeta = &config.databases[0];
        assert_eq!(
            zeta.target,
            Target::Postgres("postgres://reader:s3cret@127.0.0.1/shop".into())
        );
        assert!(!zeta.shown.contains("s3cret"), "{}", zeta.shown);
        assert!(zeta.read_only);
        assert_eq!(zeta.timeout, Some(Duration::from_secs(5)));
        assert_eq!(zeta.deny[0].to_string(), "customers.email");
        assert!(zeta.deny[1].covers("PAYMENTS", "anything"));
        assert!(!config.databases[1].read_only);
        assert_eq!(
            config.tools[0].database, "zeta",
            "the first database is the default"
        );
        let status = &config.tools[0].params[1];
        assert_eq!(status.default, Some(Value::from("open")));
        assert_eq!(
            status.schema(),
            serde_json::json!({"type": "string", "enum": ["open", "shipped"], "default": "open"})
        );
    }

    #[test]
    fn mistakes_are_named_and_secrets_are_not_echoed() {
        let fail = |text: &str| Config::parse(text, &env).unwrap_err().to_string();
        let unset = fail("[databases.a]\nurl = \"postgres://u:${NOPE}@h/db\"\n");
        assert!(
            unset.contains("${NOPE}") && unset.contains("databases.a.url"),
            "{unset}"
        );
        let typo = fail("[databases.a]\nurl = \"x.db\"\nread_onyl = true\n");
        assert!(
            typo.contains("read_onyl") && typo.contains("line 3"),
            "{typo}"
        );
        let writes = fail(&FULL.replace("read_only = false", ""));
        assert!(writes.contains("read-only"), "{writes}");
        let undeclared = fail(&FULL.replace("[tools.params.body]\ntype = \"string\"\n", ""));
        assert!(undeclared.contains(":body"), "{undeclared}");
        let taken = fail(&FULL.replace("name = \"add_note\"", "name = \"query\""));
        assert!(taken.contains("taken"), "{taken}");
        let bad_default = fail(&FULL.replace("default = \"open\"", "default = 3"));
        assert!(bad_default.contains("not of type string"), "{bad_default}");
        assert!(fail("").contains("no database"));
        let deny = fail("[databases.a]\nurl = \"x.db\"\ndeny = [\"a.b.c\"]\n");
        assert!(deny.contains("a.b.c"), "{deny}");
        // A variable's value stays out of every message, even of a bad URL it made.
        let odd = Config::parse("[databases.a]\nurl = \"oracle://${PW}@h/db\"\n", &env)
            .unwrap_err()
            .to_string();
        assert!(!odd.contains("s3cret"), "{odd}");
    }

    #[test]
    fn the_readmes_example_is_a_valid_config() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("### The config file").unwrap()..];
        let start = section.find("```toml\n").unwrap() + "```toml\n".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let config = Config::parse(example, &|name| {
            (name == "SHOP_PASSWORD").then(|| "pw".to_owned())
        })
        .unwrap();
        assert_eq!(config.databases.len(), 3);
        assert_eq!(config.databases[0].deny.len(), 3);
        assert!(config.databases[0].ssh.is_some());
        assert_eq!(config.tools.len(), 2);
        assert!(matches!(
            &config.databases[2].target,
            Target::Sqlite(path) if !path.starts_with("~")
        ));
    }

    #[test]
    fn ssh_specs_read_user_host_and_port() {
        assert_eq!(
            parse_ssh("me@bastion:2222"),
            Some(("me".into(), "bastion".into(), 2222))
        );
        assert_eq!(
            parse_ssh("me@bastion"),
            Some(("me".into(), "bastion".into(), 22))
        );
        assert_eq!(
            parse_ssh("me@[::1]:22"),
            Some(("me".into(), "::1".into(), 22))
        );
        assert_eq!(parse_ssh("bastion:22"), None);
        assert_eq!(parse_ssh("me@h:port"), None);
    }
}
