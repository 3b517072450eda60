//! `mcp`: the terminal client.
use std::{io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use mcp_client::{
    config::{self, ProcessVariables, Server, Transport, UrlKind},
    connect::{self, ConnectOptions, Connected, Era},
};
use serde_json::{Map, Value, json};

/// Connect to the MCP servers your hosts already know (Claude Desktop, Cursor, Claude Code,
/// VS Code) and work with them from the terminal.
///
/// Exit codes: 0 success; 1 the tool answered with an error; 2 bad usage or config; 3 a server
/// could not be reached, or the call failed or timed out on the way; 130 interrupted (Ctrl-C
/// cancels the call on the server too).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A config file to read (repeatable). Without it, the search path is read: ./.mcp.json,
    /// ./.cursor/mcp.json, ./.vscode/mcp.json, ~/.cursor/mcp.json, then Claude Desktop's file.
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Vec<PathBuf>,

    /// Print JSON for scripts.
    #[arg(long, global = true)]
    json: bool,

    /// Seconds a server may take to start and answer, and a call to finish.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60)]
    timeout: u64,

    /// Protocol era to speak.
    #[arg(long, global = true, value_enum, default_value_t = Era::Auto)]
    era: Era,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The configured servers, where each comes from and how it is reached (no connection).
    Servers,
    /// Connect and list the tools of every server, or of one.
    Tools {
        /// Only this server.
        server: Option<String>,
    },
    /// Connect and list the resources of every server, or of one.
    Resources {
        /// Only this server.
        server: Option<String>,
    },
    /// Read a resource: `mcp read URI` (the server that has it) or `mcp read SERVER URI`.
    Read {
        #[arg(num_args = 1..=2, value_name = "[SERVER] URI")]
        target: Vec<String>,
    },
    /// Connect and list the prompts of every server, or of one.
    Prompts {
        /// Only this server.
        server: Option<String>,
    },
    /// Get a prompt: `mcp prompt SERVER NAME key=value…`.
    Prompt {
        server: String,
        name: String,
        /// The prompt's arguments, as key=value.
        arguments: Vec<String>,
    },
    /// Call a tool: `mcp call SERVER TOOL '{"path": "a.txt"}'` or `mcp call SERVER TOOL path=a.txt`.
    Call {
        server: String,
        tool: String,
        /// One JSON object, or key=value pairs (a value that parses as JSON is taken as JSON).
        arguments: Vec<String>,
    },
}

const TOOL_ERROR: u8 = 1;
const USAGE: u8 = 2;
const CONNECTION: u8 = 3;
/// Ctrl-C, as shells report SIGINT.
const INTERRUPTED: u8 = 130;

/// A failure and the exit code it means.
struct Failure(u8, String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure(USAGE, error.to_string())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Our errors say what failed; rmcp's own ERROR lines about the same transport would repeat
    // it. RUST_LOG brings them back.
    mcp_core::init_logging_with("warn,rmcp=off");
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(Failure(code, message)) => {
            eprintln!("mcp: {message}");
            ExitCode::from(code)
        }
    }
}

fn servers(cli: &Cli) -> Result<Vec<Server>, Failure> {
    let files: Vec<PathBuf> = if cli.config.is_empty() {
        config::search_path(&std::env::current_dir()?)
            .into_iter()
            .filter(|p| p.is_file())
            .collect()
    } else {
        cli.config.clone()
    };
    if files.is_empty() {
        return Err(Failure(
            USAGE,
            "no config file found; pass --config FILE (a Claude Desktop, Cursor, Claude Code or VS Code MCP config)".into(),
        ));
    }
    let loaded = config::load_all(&files, &ProcessVariables)?;
    for (name, source) in &loaded.shadowed {
        eprintln!(
            "note: {name} in {} is shadowed by an earlier file",
            source.display()
        );
    }
    Ok(loaded.servers)
}

fn pick<'a>(servers: &'a [Server], name: &str) -> Result<&'a Server, Failure> {
    servers.iter().find(|s| s.name == name).ok_or_else(|| {
        let known: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        Failure(
            USAGE,
            format!("no server named {name:?}; configured: {}", known.join(", ")),
        )
    })
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let servers = servers(&cli)?;
    let options = ConnectOptions {
        timeout: Duration::from_secs(cli.timeout.max(1)),
        era: cli.era,
        ..ConnectOptions::default()
    };
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Servers => {
            if cli.json {
                let list: Vec<Value> = servers
                    .iter()
                    .map(|s| {
                        let (transport, target) = describe(&s.transport);
                        json!({
                            "name": s.name, "transport": transport, "target": target,
                            "source": s.source.display().to_string(),
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                for s in &servers {
                    let (transport, target) = describe(&s.transport);
                    writeln!(
                        out,
                        "{}\t{transport}\t{target}\t({})",
                        s.name,
                        s.source.display()
                    )?;
                }
            }
            Ok(0)
        }
        Command::Tools { server } => {
            let chosen = chosen(&servers, server.as_deref())?;
            let (listed, failed) = list_each(&chosen, &options, "tools", async |c| {
                c.list_all_tools().await
            })
            .await;
            if cli.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&tagged(&listed))?)?;
            } else {
                for (server, tool) in &listed {
                    let summary = first_line(tool.description.as_deref());
                    writeln!(out, "{server}\t{}\t{summary}", tool.name)?;
                }
            }
            Ok(if failed { CONNECTION } else { 0 })
        }
        Command::Resources { server } => {
            let chosen = chosen(&servers, server.as_deref())?;
            let (listed, failed) = list_each(&chosen, &options, "resources", async |c| {
                c.list_all_resources().await
            })
            .await;
            if cli.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&tagged(&listed))?)?;
            } else {
                for (server, resource) in &listed {
                    writeln!(
                        out,
                        "{server}\t{}\t{}\t{}",
                        resource.uri,
                        resource.name,
                        resource.mime_type.as_deref().unwrap_or("")
                    )?;
                }
            }
            Ok(if failed { CONNECTION } else { 0 })
        }
        Command::Read { target } => {
            let (only, uri) = match target.as_slice() {
                [uri] => (None, uri.clone()),
                [server, uri] => (Some(server.as_str()), uri.clone()),
                _ => return Err(Failure(USAGE, "read takes [SERVER] URI".into())),
            };
            let candidates = chosen(&servers, only)?;
            // Without a server, each is asked in turn; the first that can read it answers.
            for (name, result) in connect::connect_all(&candidates, &options).await {
                let connected = match result {
                    Ok(connected) => connected,
                    Err(error) => {
                        eprintln!("mcp: {error}");
                        continue;
                    }
                };
                let read = connected
                    .client
                    .read_resource(rmcp::model::ReadResourceRequestParams::new(uri.clone()))
                    .await;
                let _ = connected.client.cancel().await;
                match read {
                    Ok(contents) => {
                        if cli.json {
                            writeln!(out, "{}", serde_json::to_string_pretty(&contents)?)?;
                        } else {
                            for content in &contents.contents {
                                match content {
                                    rmcp::model::ResourceContents::TextResourceContents {
                                        text,
                                        ..
                                    } => writeln!(out, "{text}")?,
                                    rmcp::model::ResourceContents::BlobResourceContents {
                                        blob,
                                        mime_type,
                                        ..
                                    } => writeln!(
                                        out,
                                        "<{} blob, {} base64 characters; use --json>",
                                        mime_type.as_deref().unwrap_or("binary"),
                                        blob.len()
                                    )?,
                                    other => writeln!(out, "{}", serde_json::to_string(other)?)?,
                                }
                            }
                        }
                        return Ok(0);
                    }
                    Err(error) if only.is_some() => {
                        return Err(Failure(
                            CONNECTION,
                            format!("{name}: reading {uri}: {error}"),
                        ));
                    }
                    Err(_) => continue,
                }
            }
            Err(Failure(
                CONNECTION,
                format!("no server could read {uri}; `mcp resources` lists what they have"),
            ))
        }
        Command::Prompts { server } => {
            let chosen = chosen(&servers, server.as_deref())?;
            let (listed, failed) = list_each(&chosen, &options, "prompts", async |c| {
                c.list_all_prompts().await
            })
            .await;
            if cli.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&tagged(&listed))?)?;
            } else {
                for (server, prompt) in &listed {
                    let arguments: Vec<String> = prompt
                        .arguments
                        .iter()
                        .flatten()
                        .map(|a| {
                            if a.required == Some(true) {
                                a.name.clone()
                            } else {
                                format!("[{}]", a.name)
                            }
                        })
                        .collect();
                    writeln!(
                        out,
                        "{server}\t{}\t{}\t{}",
                        prompt.name,
                        arguments.join(" "),
                        first_line(prompt.description.as_deref())
                    )?;
                }
            }
            Ok(if failed { CONNECTION } else { 0 })
        }
        Command::Prompt {
            server,
            name,
            arguments,
        } => {
            let server = pick(&servers, server)?;
            let mut values = serde_json::Map::new();
            for pair in arguments {
                let Some((key, value)) = pair.split_once('=') else {
                    return Err(Failure(
                        USAGE,
                        format!("prompt arguments are key=value, not {pair:?}"),
                    ));
                };
                values.insert(key.to_owned(), Value::String(value.to_owned()));
            }
            let Connected { client, .. } = connect::connect(server, &options)
                .await
                .map_err(|e| Failure(CONNECTION, e.to_string()))?;
            let mut request = rmcp::model::GetPromptRequestParams::new(name.clone());
            if !values.is_empty() {
                request = request.with_arguments(values);
            }
            let result = client.get_prompt(request).await;
            let _ = client.cancel().await;
            let prompt = result
                .map_err(|e| Failure(CONNECTION, format!("{}: prompt {name}: {e}", server.name)))?;
            if cli.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&prompt)?)?;
            } else {
                for message in &prompt.messages {
                    let role = serde_json::to_value(&message.role)?;
                    let content = serde_json::to_value(&message.content)?;
                    let text = content["text"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| content.to_string());
                    writeln!(out, "{}: {text}", role.as_str().unwrap_or("?"))?;
                }
            }
            Ok(0)
        }
        Command::Call {
            server,
            tool,
            arguments,
        } => {
            let server = pick(&servers, server)?;
            let arguments = parse_arguments(arguments)?;
            let Connected { client, .. } = connect::connect(server, &options)
                .await
                .map_err(|e| Failure(CONNECTION, e.to_string()))?;
            let mut request = rmcp::model::CallToolRequestParams::new(tool.clone());
            request = request.with_arguments(arguments);
            // rmcp sends `notifications/cancelled` when a call's future is dropped: on the
            // timeout and on Ctrl-C alike, the server is told to stop.
            let outcome = tokio::select! {
                result = tokio::time::timeout(options.timeout, client.call_tool(request)) => Some(result),
                _ = tokio::signal::ctrl_c() => None,
            };
            let _ = client.cancel().await;
            let Some(result) = outcome else {
                eprintln!("mcp: {}: {tool} cancelled", server.name);
                return Ok(INTERRUPTED);
            };
            let result = result
                .map_err(|_| {
                    Failure(
                        CONNECTION,
                        format!(
                            "{}: {tool} did not answer within {} s (--timeout); it was cancelled",
                            server.name, cli.timeout
                        ),
                    )
                })?
                .map_err(|e| Failure(CONNECTION, format!("{}: {tool}: {e}", server.name)))?;
            if cli.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
            } else {
                for block in &result.content {
                    match block.as_text() {
                        Some(text) => writeln!(out, "{}", text.text)?,
                        None => writeln!(out, "{}", serde_json::to_string(block)?)?,
                    }
                }
            }
            Ok(if result.is_error == Some(true) {
                TOOL_ERROR
            } else {
                0
            })
        }
    }
}

fn chosen(servers: &[Server], only: Option<&str>) -> Result<Vec<Server>, Failure> {
    Ok(match only {
        Some(name) => vec![pick(servers, name)?.clone()],
        None => servers.to_vec(),
    })
}

fn first_line(text: Option<&str>) -> &str {
    text.and_then(|d| d.lines().next()).unwrap_or("")
}

/// Connects to every server and collects what `list` returns from each, tagged with the
/// server's name; failures are reported on stderr and make the second value true.
async fn list_each<T>(
    servers: &[Server],
    options: &ConnectOptions,
    what: &str,
    list: impl AsyncFn(&connect::Client) -> Result<Vec<T>, rmcp::ServiceError>,
) -> (Vec<(String, T)>, bool) {
    let mut listed = Vec::new();
    let mut failed = false;
    for (name, result) in connect::connect_all(servers, options).await {
        let connected = match result {
            Ok(connected) => connected,
            Err(error) => {
                eprintln!("mcp: {error}");
                failed = true;
                continue;
            }
        };
        match list(&connected.client).await {
            Ok(items) => listed.extend(items.into_iter().map(|item| (name.clone(), item))),
            // A server without the capability is not a failure: it has none.
            Err(rmcp::ServiceError::McpError(error))
                if error.code == rmcp::model::ErrorCode::METHOD_NOT_FOUND => {}
            Err(error) => {
                eprintln!("mcp: {name}: listing {what} failed: {error}");
                failed = true;
            }
        }
        let _ = connected.client.cancel().await;
    }
    (listed, failed)
}

/// Items as JSON objects with a `server` field.
fn tagged<T: serde::Serialize>(listed: &[(String, T)]) -> Vec<Value> {
    listed
        .iter()
        .map(|(server, item)| {
            let mut value = serde_json::to_value(item).unwrap_or_default();
            if let Value::Object(map) = &mut value {
                map.insert("server".into(), server.clone().into());
            }
            value
        })
        .collect()
}

/// One JSON object, or `key=value` pairs whose values are JSON when they parse as JSON.
fn parse_arguments(arguments: &[String]) -> Result<Map<String, Value>, Failure> {
    if let [only] = arguments
        && only.trim_start().starts_with('{')
    {
        return match serde_json::from_str(only) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(Failure(USAGE, format!("not a JSON object: {only}"))),
        };
    }
    let mut map = Map::new();
    for pair in arguments {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Failure(
                USAGE,
                format!("argument {pair:?} is neither key=value nor a JSON object"),
            ));
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        map.insert(key.to_owned(), value);
    }
    Ok(map)
}

fn describe(transport: &Transport) -> (&'static str, String) {
    match transport {
        Transport::Stdio { command, args, .. } => {
            let mut line = command.clone();
            for arg in args {
                line.push(' ');
                line.push_str(arg);
            }
            ("stdio", line)
        }
        Transport::Url { url, kind, .. } => (
            match kind {
                UrlKind::Http => "http",
                UrlKind::Sse => "sse",
                UrlKind::Auto => "http|sse",
            },
            url.clone(),
        ),
    }
}
