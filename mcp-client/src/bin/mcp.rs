//! `mcp`: the terminal client.
use std::{io::Write as _, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::{Parser, Subcommand};
use mcp_client::say;
use mcp_client::{
    agent::{Agent, AgentError, AgentOptions, Approval, Ended, Limits},
    config::{self, ProcessVariables, Server, Transport, UrlKind},
    connect::{self, ConnectOptions, Connected, Era},
    flow, install,
    keyring::{Keyring, TokenStore},
    oauth::{AuthOptions, Authorizer, KeptTokens, TokenFile, UserAgent},
    provider::{Api, Provider, ProviderConfig},
    terminal::{StreamJsonUi, TerminalUi},
};
use mcp_core::text::{Output, SafeWriter};
use serde_json::{Map, Value, json};

/// Connect to the MCP servers your hosts already know (Claude Desktop, Cursor, Claude Code,
/// VS Code) and work with them from the terminal.
///
/// Exit codes: 0 success; 1 the tool answered with an error; 2 bad usage or config; 3 a server
/// or the model API could not be reached, or the call failed or timed out on the way; 4 the
/// agent stopped without an answer (step limit, a model that cannot call tools); 74 standard
/// output could not be written (a reader that closed it, as `| head` does, is success); 130
/// interrupted (Ctrl-C cancels the call on the server too).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A config file to read (repeatable). Without it, the search path is read: ./.mcp.json,
    /// ./.cursor/mcp.json, ./.vscode/mcp.json, ~/.cursor/mcp.json, then Claude Desktop's file.
    #[arg(long, short, global = true, value_name = "FILE", env = "MCP_CONFIG")]
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

    /// Where OAuth tokens are kept: the OS keyring when one answers (Secret Service, macOS
    /// Keychain, Windows Credential Manager), else the owner-only token file
    /// $XDG_CONFIG_HOME/mcp-toolkit/credentials.json, which always holds the rest (client id,
    /// scopes, issuer); `keyring` refuses the file, `file` leaves the keyring alone.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = TokenStore::Auto,
        env = "MCP_TOKEN_STORE"
    )]
    token_store: TokenStore,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
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
        /// Print the task's id and return at once when the server runs the call as a task
        /// (follow it with `mcp tasks get`).
        #[arg(long)]
        detach: bool,
        server: String,
        tool: String,
        /// One JSON object, or key=value pairs (a value that parses as JSON is taken as JSON).
        arguments: Vec<String>,
    },
    /// Add a server to a host's config file, in the host's format (the file's old text is kept
    /// beside as FILE.bak): `mcp add NAME --host cursor -- COMMAND ARGS…` or
    /// `mcp add NAME --host vscode --url URL`.
    Add {
        name: String,
        /// Whose config file to write.
        #[arg(long, value_enum)]
        host: install::Host,
        /// The file, if not the host's usual one (Claude Code and VS Code: this project's).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// A Streamable HTTP server's URL, instead of a command.
        #[arg(long, conflicts_with = "command")]
        url: Option<String>,
        /// An environment variable for the command (repeat for more).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// A header for the URL (repeat for more).
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
        /// Replace an entry of the same name.
        #[arg(long)]
        force: bool,
        /// The command and its arguments, after `--` (the command is written with its absolute
        /// path).
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Remove a server from a host's config file (the old text kept beside as FILE.bak).
    Remove {
        name: String,
        #[arg(long, value_enum)]
        host: install::Host,
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Workflows: declared multi-step pipelines over the servers' tools and the model, in a
    /// YAML file (the README's "Workflows" section has the format).
    Flow {
        #[command(subcommand)]
        action: FlowAction,
    },
    /// Follow or stop a task a server runs for a call (`mcp call` without --detach waits for it).
    Tasks {
        #[command(subcommand)]
        action: TaskAction,
    },
    /// OAuth for HTTP servers: log in ahead of use (any command also logs in when a server
    /// asks and a terminal is there to approve), log out, see what is kept.
    Auth {
        #[command(subcommand)]
        action: AuthAction,
    },
    /// Chat with a model that can use every server's tools (/help inside for commands).
    Chat {
        /// Take up a saved conversation: the last one, or the one with this id (each chat says
        /// its id; sessions are kept in $XDG_STATE_HOME/mcp-toolkit/sessions).
        #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "")]
        resume: Option<String>,
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Give a model one task, let it use the servers' tools, print its final answer. Only tools
    /// marked read-only run unless --approve says otherwise.
    Run {
        /// The task, in words.
        task: String,
        /// `text`: the final answer (or, with --json, one JSON object at the end);
        /// `stream-json`: every event as it happens, one JSON object a line (text deltas, tool
        /// calls and results, progress, notices, then the answer or the error; the schema is
        /// mcp-client/schema/stream-json.schema.json).
        #[arg(long, value_enum, default_value_t = RunOutput::Text)]
        output: RunOutput,
        #[command(flatten)]
        agent: AgentArgs,
    },
}

/// How `mcp run` reports.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RunOutput {
    /// The final answer.
    Text,
    /// Every event, a JSON object a line.
    StreamJson,
}

/// What to do with a workflow.
#[derive(clap::Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum FlowAction {
    /// Check a workflow file: its structure, every expression, the step graph, and (connecting
    /// to the servers it names) each tool, prompt and literal argument. Prints every problem
    /// with its line; exit 2 when there is one.
    Check {
        /// The workflow file (YAML).
        file: PathBuf,
        /// Skip the checks that connect to the servers.
        #[arg(long)]
        offline: bool,
    },
    /// Run a workflow (after its check), each step recorded as it starts and ends; prints the
    /// last step's text (--json: the run with every step's result). Ctrl-C cancels the calls
    /// under way and leaves the run to resume.
    Run {
        /// The workflow file (YAML).
        file: PathBuf,
        /// An input (repeat for more); a value that reads as JSON is taken as JSON unless the
        /// input is a string.
        #[arg(long = "input", short = 'i', value_name = "KEY=VALUE")]
        inputs: Vec<String>,
        #[command(flatten)]
        run: FlowRunArgs,
    },
    /// Resume a run that failed, stopped or died: what ended is not run again.
    Resume {
        /// The run's id (`mcp flow list`).
        #[arg(required_unless_present = "last")]
        id: Option<String>,
        /// The newest run.
        #[arg(long, conflicts_with = "id")]
        last: bool,
        /// Run a step that was in flight when the run died again, even when it is not
        /// idempotent (check first that it did not take effect).
        #[arg(long)]
        retry_in_flight: bool,
        #[command(flatten)]
        run: FlowRunArgs,
    },
    /// The runs, newest first.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        store: FlowStore,
    },
    /// A run's trace: each step with its status, timing, input and result.
    Show {
        /// The run's id.
        id: String,
        /// Also write the trace as one self-contained HTML page: the step graph, and each
        /// step's full input and output.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        #[command(flatten)]
        store: FlowStore,
    },
    /// Serve the workflows in DIR (*.yaml, *.yml) as an MCP server's tools, each with an input
    /// schema from its inputs; runs are recorded as `mcp flow run` records them, and a client
    /// that follows Tasks gets each run as a task.
    Serve {
        /// The directory of workflow files.
        dir: PathBuf,
        #[command(flatten)]
        run: FlowRunArgs,
        #[command(flatten)]
        serve: mcp_core::ServeArgs,
    },
    /// Ask a running run to stop before its next step (the step under way ends first).
    Cancel {
        /// The run's id.
        id: String,
        #[command(flatten)]
        store: FlowStore,
    },
}

/// Where runs are recorded.
#[derive(clap::Args)]
struct FlowStore {
    /// The run store [default: $XDG_STATE_HOME/mcp-toolkit/flows.sqlite].
    #[arg(long = "store", value_name = "FILE", env = "MCP_FLOW_STORE")]
    path: Option<PathBuf>,
}

impl FlowStore {
    fn open(&self) -> Result<flow::store::Store, Failure> {
        let path = self.path.clone().unwrap_or_else(flow::store::default_path);
        flow::store::Store::open(&path).map_err(|e| Failure::Usage(e.to_string()))
    }
}

/// How a workflow runs.
#[derive(clap::Args)]
struct FlowRunArgs {
    /// Answer yes to every `approve:` step (without it, they are asked on the terminal; with
    /// no terminal, the run stops there, to be resumed).
    #[arg(long)]
    yes: bool,
    /// Longest one try of a step may take when the step sets no timeout [default: --timeout].
    #[arg(long, value_name = "SECONDS")]
    step_timeout: Option<u64>,
    /// The model `llm:` steps ask (as for mcp run).
    #[arg(long, short, env = "MCP_MODEL")]
    model: Option<String>,
    /// The model's API.
    #[arg(long, value_enum, env = "MCP_API", default_value_t = Api::Openai)]
    api: Api,
    /// Where the model's API is (for local and other OpenAI-compatible servers).
    #[arg(long, env = "MCP_BASE_URL", value_name = "URL")]
    base_url: Option<String>,
    /// The environment variable that holds the API key [default: OPENAI_API_KEY or
    /// ANTHROPIC_API_KEY].
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
    /// Most tokens per model answer.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_tokens: u32,
    #[command(flatten)]
    store: FlowStore,
}

/// What to do with a task.
#[derive(clap::Subcommand)]
enum TaskAction {
    /// A task's status, and its result once it has ended.
    Get {
        server: String,
        id: String,
        /// Wait until it ends (up to --timeout).
        #[arg(long)]
        wait: bool,
    },
    /// Ask the server to stop a task.
    Cancel { server: String, id: String },
    /// The tasks mcp started (on every server, or one), newest first, each with its status
    /// now (the protocol cannot list a server's tasks; mcp remembers the last 1000 it started,
    /// in $XDG_STATE_HOME/mcp-toolkit/tasks.jsonl).
    List {
        server: Option<String>,
        /// How many, at most.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
    },
}

/// What to do about a server's OAuth tokens.
#[derive(clap::Subcommand)]
enum AuthAction {
    /// Authorize now: the server's authorization server is found, mcp registers (or uses the
    /// entry's "oauth": {"clientId": …}), your browser opens for you to approve, and the tokens
    /// are kept for later runs (refreshed without asking while the server allows).
    Login {
        server: String,
        /// Do not open a browser here: print the address, and take the address the browser
        /// is sent back to when it is pasted (for a machine without a browser, over SSH).
        #[arg(long)]
        no_browser: bool,
        /// Ask for this scope too, beside those already granted (repeatable): for a tool the
        /// server refuses with "insufficient_scope" [default: the scopes the server names].
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// Forget a server's tokens (and its registration).
    Logout { server: String },
    /// What is kept for each configured server: issuer, scopes, expiry, refresh (never the
    /// tokens themselves).
    Status { server: Option<String> },
}

/// The model and the agent's bounds (`chat` and `run`).
#[derive(clap::Args)]
struct AgentArgs {
    /// The model's API: OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, llama.cpp,
    /// LM Studio) or Anthropic Messages.
    #[arg(long, value_enum, env = "MCP_API", default_value_t = Api::Openai)]
    api: Api,

    /// The model (gpt-4.1-mini, claude-sonnet-4-5, qwen2.5:7b, …).
    #[arg(long, short, env = "MCP_MODEL")]
    model: String,

    /// Where the API is, for local and other OpenAI-compatible servers: Ollama
    /// http://127.0.0.1:11434/v1, llama.cpp http://127.0.0.1:8080/v1, LM Studio
    /// http://127.0.0.1:1234/v1, vLLM http://127.0.0.1:8000/v1.
    #[arg(long, env = "MCP_BASE_URL", value_name = "URL")]
    base_url: Option<String>,

    /// The environment variable that holds the API key [default: OPENAI_API_KEY or
    /// ANTHROPIC_API_KEY]. A local server with --base-url needs none.
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,

    /// Which tool calls run without asking [default: ask in chat, read-only in run].
    #[arg(long, value_enum)]
    approve: Option<Approval>,

    /// Model requests per task before the agent gives up.
    #[arg(long, default_value_t = 20, value_name = "N")]
    max_steps: usize,

    /// Bytes of one tool result the model sees; longer results keep their head and tail.
    #[arg(long, default_value_t = 20_000, value_name = "BYTES")]
    max_result_bytes: usize,

    /// Most tokens per model answer.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_tokens: u32,

    /// Replace the default system prompt.
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
}

/// The tool answered with an error.
const TOOL_ERROR: u8 = 1;
const USAGE: u8 = 2;
/// A server or the model API could not be reached (for a listing: some servers could not,
/// and what the others said was printed).
const CONNECTION: u8 = 3;
const STOPPED: u8 = 4;
/// sysexits' EX_IOERR.
const OUTPUT: u8 = 74;
/// Ctrl-C, as shells report SIGINT.
const INTERRUPTED: u8 = 130;

/// Why `mcp` stopped without doing what it was asked, each with its exit code.
#[derive(Debug)]
enum Failure {
    /// Bad usage or configuration: exit 2.
    Usage(String),
    /// A server or the model API could not be reached, or a call failed or timed out on the
    /// way: exit 3.
    Connection(String),
    /// The agent stopped without an answer (step limit, a model that cannot call tools): exit 4.
    Stopped(String),
    /// Standard output could not be written: exit 74 (sysexits' EX_IOERR). A reader that went
    /// away (`mcp tools | head -1`) is not a failure: it has what it wanted.
    Output(std::io::Error),
}

impl Failure {
    /// Says why on stderr, and the exit code.
    fn exit(self) -> ExitCode {
        let (code, message) = match self {
            Failure::Usage(message) => (USAGE, message),
            Failure::Connection(message) => (CONNECTION, message),
            Failure::Stopped(message) => (STOPPED, message),
            Failure::Output(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                return ExitCode::SUCCESS;
            }
            Failure::Output(error) => (OUTPUT, format!("writing the output: {error}")),
        };
        say!("mcp: {message}");
        ExitCode::from(code)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Our errors say what failed; rmcp's own ERROR lines about the same transport would repeat
    // it, and genai's about the model API (it also warns about the empty deltas every OpenAI
    // stream starts and ends with). RUST_LOG brings them back.
    mcp_core::init_logging_with("warn,rmcp=off,genai=off");
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(failure) => failure.exit(),
    }
}

/// Standard output for what servers and models sent: nothing in it reaches the terminal as an
/// escape sequence ([`SafeWriter`]); with `json`, the JSON stays valid. Every write that fails
/// is a [`Failure::Output`].
struct Stdout(SafeWriter<std::io::StdoutLock<'static>>);

impl Stdout {
    fn new(json: bool) -> Self {
        let output = if json { Output::Json } else { Output::Text };
        Self(SafeWriter::new(std::io::stdout().lock(), output))
    }

    /// `text` and a newline.
    fn line(&mut self, text: impl std::fmt::Display) -> Result<(), Failure> {
        writeln!(self.0, "{text}").map_err(Failure::Output)
    }

    /// `value` as pretty JSON, and a newline.
    fn json(&mut self, value: &impl serde::Serialize) -> Result<(), Failure> {
        let text = serde_json::to_string_pretty(value).map_err(|e| Failure::Output(e.into()))?;
        self.line(text)
    }
}

/// What every command is given: the configured servers and how to reach them.
struct Context {
    servers: Vec<Server>,
    options: ConnectOptions,
    json: bool,
}

impl Context {
    fn stdout(&self) -> Stdout {
        Stdout::new(self.json)
    }

    /// The server called `name`.
    fn pick(&self, name: &str) -> Result<&Server, Failure> {
        self.servers.iter().find(|s| s.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.servers.iter().map(|s| s.name.as_str()).collect();
            Failure::Usage(format!(
                "no server named {name:?}; configured: {}",
                known.join(", ")
            ))
        })
    }

    /// That server, or every one.
    fn chosen(&self, only: Option<&str>) -> Result<Vec<Server>, Failure> {
        Ok(match only {
            Some(name) => vec![self.pick(name)?.clone()],
            None => self.servers.clone(),
        })
    }

    async fn connect(&self, server: &Server) -> Result<connect::Client, Failure> {
        connect::connect(server, &self.options)
            .await
            .map(|Connected { client, .. }| client)
            .map_err(|e| Failure::Connection(e.to_string()))
    }

    /// [`Self::connect`], declaring the Tasks extension.
    async fn connect_following_tasks(&self, server: &Server) -> Result<connect::Client, Failure> {
        let mut options = self.options.clone();
        options.handler.tasks = true;
        connect::connect(server, &options)
            .await
            .map(|Connected { client, .. }| client)
            .map_err(|e| Failure::Connection(e.to_string()))
    }
}

/// The servers of the config files given, or else of the hosts' files on the search path.
fn servers(cli: &Cli) -> Result<Vec<Server>, Failure> {
    let files: Vec<PathBuf> = if cli.config.is_empty() {
        let here = std::env::current_dir()
            .map_err(|e| Failure::Usage(format!("the current directory: {e}")))?;
        config::search_path(&here)
            .into_iter()
            .filter(|p| p.is_file())
            .collect()
    } else {
        cli.config.clone()
    };
    if files.is_empty() {
        return Err(Failure::Usage(
            "no config file found; pass --config FILE (a Claude Desktop, Cursor, Claude Code or VS Code MCP config)".into(),
        ));
    }
    let loaded =
        config::load_all(&files, &ProcessVariables).map_err(|e| Failure::Usage(e.to_string()))?;
    for (name, source) in &loaded.shadowed {
        say!(
            "note: {name} in {} is shadowed by an earlier file",
            source.display()
        );
    }
    Ok(loaded.servers)
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    // Writing a host's file needs no servers loaded.
    match &cli.command {
        Command::Add {
            name,
            host,
            file,
            url,
            env,
            headers,
            force,
            command,
        } => {
            let entry = match url {
                Some(url) => install::Entry::Url {
                    url: url.clone(),
                    headers: pairs(headers, "--header")?,
                },
                None if command.is_empty() => {
                    return Err(Failure::Usage(
                        "give the command after `--` (mcp add NAME --host H -- COMMAND ARGS…), or --url"
                            .to_owned(),
                    ));
                }
                None => install::Entry::Command {
                    argv: install::absolute_command(command.clone())
                        .map_err(|e| Failure::Usage(e.to_string()))?,
                    env: pairs(env, "--env")?,
                },
            };
            let path = host_file(*host, file.as_deref())?;
            install::add(*host, &path, name, &entry, *force)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            say!("mcp: added {name} to {}", path.display());
            return Ok(0);
        }
        Command::Remove { name, host, file } => {
            let path = host_file(*host, file.as_deref())?;
            install::remove(*host, &path, name).map_err(|e| Failure::Usage(e.to_string()))?;
            say!("mcp: removed {name} from {}", path.display());
            return Ok(0);
        }
        _ => {}
    }
    // A server that asks for a login gets one when someone is at the terminal to approve in
    // a browser; otherwise its error says to run `mcp auth login`.
    use std::io::IsTerminal as _;
    let agent = if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        UserAgent::Browser {
            open: true,
            paste: false,
        }
    } else {
        UserAgent::Refuse
    };
    // Reading the run store, or checking a file offline, needs no config file.
    let servers = match &cli.command {
        Command::Flow {
            action:
                FlowAction::List { .. }
                | FlowAction::Show { .. }
                | FlowAction::Cancel { .. }
                | FlowAction::Check { offline: true, .. },
        } => servers(&cli).unwrap_or_default(),
        _ => servers(&cli)?,
    };
    let context = Context {
        servers,
        options: ConnectOptions {
            timeout: Duration::from_secs(cli.timeout.max(1)),
            era: cli.era,
            auth: AuthOptions {
                agent,
                store: match cli.token_store {
                    TokenStore::File => TokenFile::new(TokenFile::default_path()),
                    store => TokenFile::with_keyring(
                        TokenFile::default_path(),
                        Keyring::os(store == TokenStore::Keyring),
                    ),
                },
                ..AuthOptions::default()
            },
            ..ConnectOptions::default()
        },
        json: cli.json,
    };
    match &cli.command {
        Command::Servers => list_servers(&context),
        Command::Tools { server } => list_tools(&context, server.as_deref()).await,
        Command::Resources { server } => list_resources(&context, server.as_deref()).await,
        Command::Read { target } => read(&context, target).await,
        Command::Prompts { server } => list_prompts(&context, server.as_deref()).await,
        Command::Prompt {
            server,
            name,
            arguments,
        } => prompt(&context, server, name, arguments).await,
        Command::Call {
            detach,
            server,
            tool,
            arguments,
        } => call(&context, server, tool, arguments, *detach).await,
        Command::Tasks { action } => tasks(&context, action).await,
        Command::Flow { action } => flow(&context, action).await,
        Command::Auth { action } => auth(&context, action).await,
        // Done above, before the servers were loaded.
        Command::Add { .. } | Command::Remove { .. } => Ok(0),
        Command::Chat { resume, agent } => chat(&context, agent, resume.as_deref()).await,
        Command::Run {
            task,
            output,
            agent,
        } => run_task(&context, task, *output, agent).await,
    }
}

/// `KEY=VALUE` options as a map.
fn pairs(
    given: &[String],
    option: &str,
) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    given
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(Failure::Usage(format!(
                "{option} {pair:?}: expected NAME=VALUE"
            ))),
        })
        .collect()
}

/// The file `mcp add`/`remove` writes: `--file`, or the host's own.
fn host_file(host: install::Host, file: Option<&std::path::Path>) -> Result<PathBuf, Failure> {
    if let Some(file) = file {
        return Ok(file.to_owned());
    }
    let here = std::env::current_dir()
        .map_err(|e| Failure::Usage(format!("the current directory: {e}")))?;
    host.default_file(&here).ok_or_else(|| {
        Failure::Usage(
            "this host's config file has no place here (no home directory); pass --file".to_owned(),
        )
    })
}

/// `mcp servers`: no connection.
fn list_servers(context: &Context) -> Result<u8, Failure> {
    let mut out = context.stdout();
    if context.json {
        let list: Vec<Value> = context
            .servers
            .iter()
            .map(|s| {
                let (transport, target) = describe(&s.transport);
                json!({
                    "name": s.name, "transport": transport, "target": target,
                    "source": s.source.display().to_string(),
                })
            })
            .collect();
        out.json(&list)?;
    } else {
        for s in &context.servers {
            let (transport, target) = describe(&s.transport);
            out.line(format_args!(
                "{}\t{transport}\t{target}\t({})",
                s.name,
                s.source.display()
            ))?;
        }
    }
    Ok(0)
}

/// `mcp tools [SERVER]`.
async fn list_tools(context: &Context, only: Option<&str>) -> Result<u8, Failure> {
    // Only the tools the config lets `mcp` use (`tools.allow` / `tools.deny`).
    let list = async |server: &Server, c: &connect::Client| {
        let mut tools = c.list_all_tools().await?;
        tools.retain(|tool| server.tools.permits(&tool.name));
        Ok(tools)
    };
    print_listing(context, only, "tools", list, |server, tool| {
        let summary = first_line(tool.description.as_deref());
        format!("{server}\t{}\t{summary}", tool.name)
    })
    .await
}

/// `mcp resources [SERVER]`.
async fn list_resources(context: &Context, only: Option<&str>) -> Result<u8, Failure> {
    let list = async |_: &Server, c: &connect::Client| c.list_all_resources().await;
    print_listing(context, only, "resources", list, |server, resource| {
        format!(
            "{server}\t{}\t{}\t{}",
            resource.uri,
            resource.name,
            resource.mime_type.as_deref().unwrap_or("")
        )
    })
    .await
}

/// `mcp read [SERVER] URI`: without a server, each is asked in turn; the first that can read
/// it answers.
async fn read(context: &Context, target: &[String]) -> Result<u8, Failure> {
    let (only, uri) = match target {
        [uri] => (None, uri),
        [server, uri] => (Some(server.as_str()), uri),
        _ => return Err(Failure::Usage("read takes [SERVER] URI".into())),
    };
    let candidates = context.chosen(only)?;
    for (name, result) in connect::connect_all(&candidates, &context.options).await {
        let connected = match result {
            Ok(connected) => connected,
            Err(error) => {
                say!("mcp: {error}");
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
                print_contents(context, &contents)?;
                return Ok(0);
            }
            Err(error) if only.is_some() => {
                return Err(Failure::Connection(format!(
                    "{name}: reading {uri}: {error}"
                )));
            }
            Err(_) => continue,
        }
    }
    Err(Failure::Connection(format!(
        "no server could read {uri}; `mcp resources` lists what they have"
    )))
}

fn print_contents(
    context: &Context,
    contents: &rmcp::model::ReadResourceResult,
) -> Result<(), Failure> {
    use rmcp::model::ResourceContents;
    let mut out = context.stdout();
    if context.json {
        return out.json(contents);
    }
    for content in &contents.contents {
        match content {
            ResourceContents::TextResourceContents { text, .. } => out.line(text)?,
            ResourceContents::BlobResourceContents {
                blob, mime_type, ..
            } => out.line(format_args!(
                "<{} blob, {} base64 characters; use --json>",
                mime_type.as_deref().unwrap_or("binary"),
                blob.len()
            ))?,
            other => out.line(json!(other))?,
        }
    }
    Ok(())
}

/// `mcp prompts [SERVER]`.
async fn list_prompts(context: &Context, only: Option<&str>) -> Result<u8, Failure> {
    let list = async |_: &Server, c: &connect::Client| c.list_all_prompts().await;
    print_listing(context, only, "prompts", list, |server, prompt| {
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
        format!(
            "{server}\t{}\t{}\t{}",
            prompt.name,
            arguments.join(" "),
            first_line(prompt.description.as_deref())
        )
    })
    .await
}

/// `mcp prompt SERVER NAME key=value…`.
async fn prompt(
    context: &Context,
    server: &str,
    name: &str,
    arguments: &[String],
) -> Result<u8, Failure> {
    let server = context.pick(server)?;
    let mut values = serde_json::Map::new();
    for pair in arguments {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Failure::Usage(format!(
                "prompt arguments are key=value, not {pair:?}"
            )));
        };
        values.insert(key.to_owned(), Value::String(value.to_owned()));
    }
    let client = context.connect(server).await?;
    let mut request = rmcp::model::GetPromptRequestParams::new(name.to_owned());
    if !values.is_empty() {
        request = request.with_arguments(values);
    }
    let result = client.get_prompt(request).await;
    let _ = client.cancel().await;
    let prompt =
        result.map_err(|e| Failure::Connection(format!("{}: prompt {name}: {e}", server.name)))?;
    let mut out = context.stdout();
    if context.json {
        out.json(&prompt)?;
    } else {
        for message in &prompt.messages {
            let role = json!(message.role);
            let content = json!(message.content);
            let text = content["text"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| content.to_string());
            out.line(format_args!("{}: {text}", role.as_str().unwrap_or("?")))?;
        }
    }
    Ok(0)
}

/// `mcp call SERVER TOOL ARGUMENTS`: exit 1 when the tool answers with an error. A server that
/// runs the call as a task (the client declares the Tasks extension) is followed until the task
/// ends, its status on stderr; `--detach` prints the task instead.
async fn flow(context: &Context, action: &FlowAction) -> Result<u8, Failure> {
    match action {
        FlowAction::Run { file, inputs, run } => {
            let (workflow, source) = checked_workflow(context, file).await?;
            let given = inputs
                .iter()
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .ok_or_else(|| Failure::Usage(format!("--input {pair}: KEY=VALUE")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let values =
                flow::run::inputs(&workflow, &given).map_err(|e| Failure::Usage(e.to_string()))?;
            let options = flow_options(context, run, &workflow, false)?;
            let store = std::sync::Mutex::new(run.store.open()?);
            let id = flow::run::create(&store, &workflow, file, &source, &values)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            say!("mcp: flow {}: run {id}", workflow.name);
            let going =
                flow::run::start(&id, &workflow, values, &context.servers, &store, &options);
            flow_report(context, &store, &id, going).await
        }
        FlowAction::Resume {
            id,
            last,
            retry_in_flight,
            run,
        } => {
            let store = std::sync::Mutex::new(run.store.open()?);
            let id = match (id, last) {
                (Some(id), _) => id.clone(),
                (None, _) => store
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .runs(1)
                    .map_err(|e| Failure::Usage(e.to_string()))?
                    .first()
                    .map(|r| r.id.clone())
                    .ok_or_else(|| Failure::Usage("no runs yet".to_owned()))?,
            };
            let (_, workflow) =
                flow::run::recorded(&store, &id).map_err(|e| Failure::Usage(e.to_string()))?;
            say!("mcp: flow {}: resuming run {id}", workflow.name);
            let options = flow_options(context, run, &workflow, *retry_in_flight)?;
            let going = flow::run::resume(&id, &context.servers, &store, &options);
            flow_report(context, &store, &id, going).await
        }
        FlowAction::Serve { dir, run, serve } => {
            let workflows = flow::serve::read_dir(dir).map_err(|problems| {
                Failure::Usage(format!(
                    "{} does not check:\n  {}",
                    dir.display(),
                    problems.join("\n  ")
                ))
            })?;
            // The union of the workflows' needs: a model when any has llm steps.
            let mut options = None;
            for (workflow, _, _) in &workflows {
                let needs = flow_options(context, run, workflow, false)?;
                if needs.model.is_some() || options.is_none() {
                    options = Some(needs);
                }
            }
            let mut options = options.ok_or_else(|| Failure::Usage("no workflows".to_owned()))?;
            // A server's standard input is its transport (or nobody's): approvals are --yes or
            // stop the run.
            options.approver = Arc::new(TerminalApprover {
                yes: run.yes,
                terminal: false,
            });
            let store = run
                .store
                .path
                .clone()
                .unwrap_or_else(flow::store::default_path);
            let tasks_file = mcp_core::dirs::toolkit_dir(mcp_core::dirs::BaseDir::State)
                .join("flow-tasks.sqlite");
            // A run that was going when the server died is left to `mcp flow resume`.
            let tasks = mcp_core::tasks::Tasks::open(&tasks_file, |_| None)
                .map_err(|e| Failure::Usage(format!("{}: {e}", tasks_file.display())))?;
            let server = flow::serve::FlowServer::new(
                workflows,
                context.servers.clone(),
                options,
                store,
                tasks,
            );
            mcp_core::serve(server, serve.clone())
                .await
                .map_err(|e| Failure::Connection(e.to_string()))?;
            Ok(0)
        }
        FlowAction::List { limit, store } => {
            let runs = store
                .open()?
                .runs(*limit)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            let mut out = context.stdout();
            if context.json {
                out.json(&json!({"runs": runs}))?;
            } else {
                for run in runs {
                    out.line(format_args!(
                        "{}  {:<10} {}  {}{}",
                        run.id,
                        run.status,
                        run.workflow,
                        run.file,
                        run.error
                            .map(|e| format!("  ({})", mcp_core::text::visible_line(&e)))
                            .unwrap_or_default()
                    ))?;
                }
            }
            Ok(0)
        }
        FlowAction::Show { id, html, store } => {
            let store = store.open()?;
            let run = store
                .run(id)
                .map_err(|e| Failure::Usage(e.to_string()))?
                .ok_or_else(|| Failure::Usage(format!("no run {id} (mcp flow list shows them)")))?;
            let steps = store.steps(id).map_err(|e| Failure::Usage(e.to_string()))?;
            if let Some(path) = html {
                let page = flow::trace::html(&run, &steps).map_err(Failure::Usage)?;
                // What the steps read and wrote: for its owner's eyes.
                mcp_client::write_whole(path, page.as_bytes(), mcp_client::Readers::Owner)
                    .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
                say!("mcp: wrote {}", path.display());
            }
            let mut out = context.stdout();
            if context.json {
                out.json(&json!({"run": run, "steps": steps}))?;
                return Ok(0);
            }
            out.line(format_args!(
                "run {} of {} ({}): {}{}",
                run.id,
                run.workflow,
                run.file,
                run.status,
                run.error
                    .as_deref()
                    .map(|e| format!(": {}", mcp_core::text::visible_line(e)))
                    .unwrap_or_default()
            ))?;
            out.line(format_args!("inputs: {}", short(&run.inputs)))?;
            for step in steps {
                let name = match step.item {
                    Some(i) => format!("{}[{i}]", step.step),
                    None => step.step.clone(),
                };
                let seconds = step
                    .ended
                    .map(|e| format!("{:.2} s", e - step.started))
                    .unwrap_or_else(|| "…".to_owned());
                let tries = if step.attempts > 1 {
                    format!(", {} tries", step.attempts)
                } else {
                    String::new()
                };
                out.line(format_args!(
                    "  {name:<24} {:<9} {seconds}{tries}",
                    step.status
                ))?;
                if let Some(input) = &step.input {
                    out.line(format_args!("    in:  {}", short(input)))?;
                }
                if let Some(result) = &step.result {
                    out.line(format_args!("    out: {}", short(result)))?;
                }
                if let Some(error) = &step.error {
                    out.line(format_args!(
                        "    error: {}",
                        mcp_core::text::visible_line(error)
                    ))?;
                }
            }
            Ok(0)
        }
        FlowAction::Cancel { id, store } => {
            let store = store.open()?;
            let run = store
                .run(id)
                .map_err(|e| Failure::Usage(e.to_string()))?
                .ok_or_else(|| Failure::Usage(format!("no run {id}")))?;
            if run.status != "running" {
                return Err(Failure::Usage(format!(
                    "run {id} is {}, not running",
                    run.status
                )));
            }
            store
                .set_status(id, "cancelling", None)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            say!("mcp: run {id} stops before its next step");
            Ok(0)
        }
        FlowAction::Check { file, offline } => {
            let problems = match flow::load(file) {
                Ok(_) if *offline => Vec::new(),
                Ok((workflow, _)) => {
                    let catalog =
                        flow::check::catalog(&workflow, &context.servers, &context.options).await;
                    flow::check::live_problems(&workflow, &catalog)
                }
                Err(problems) => problems,
            };
            let mut out = context.stdout();
            if context.json {
                let listed: Vec<serde_json::Value> = problems
                    .iter()
                    .map(|p| serde_json::json!({"line": p.line, "message": p.message}))
                    .collect();
                out.json(&serde_json::json!({
                    "file": file, "ok": problems.is_empty(), "problems": listed,
                }))?;
            } else if problems.is_empty() {
                out.line(format_args!("{}: ok", file.display()))?;
            } else {
                for problem in &problems {
                    let at = if problem.line == 0 {
                        String::new()
                    } else {
                        format!("{}:", problem.line)
                    };
                    out.line(format_args!(
                        "{}:{at} {}",
                        file.display(),
                        mcp_core::text::visible(&problem.message)
                    ))?;
                }
            }
            Ok(if problems.is_empty() { 0 } else { USAGE })
        }
    }
}

/// One line of a value, cut to 160 characters, with nothing a terminal would act on.
fn short(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let line = mcp_core::text::visible_line(&text);
    match line.char_indices().nth(160) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.into_owned(),
    }
}

/// A workflow file that passes `mcp flow check` (both parts); its problems otherwise.
async fn checked_workflow(
    context: &Context,
    file: &std::path::Path,
) -> Result<(flow::file::Workflow, String), Failure> {
    let listed = |problems: Vec<flow::file::Problem>| {
        Failure::Usage(format!(
            "{} does not check:\n{}",
            file.display(),
            problems
                .iter()
                .map(|p| format!("  {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ))
    };
    let (workflow, source) = flow::load(file).map_err(listed)?;
    let catalog = flow::check::catalog(&workflow, &context.servers, &context.options).await;
    let problems = flow::check::live_problems(&workflow, &catalog);
    if !problems.is_empty() {
        return Err(listed(problems));
    }
    Ok((workflow, source))
}

/// Answers `approve:` steps: yes to all, or on the terminal (when there is one to ask), or
/// nobody.
struct TerminalApprover {
    yes: bool,
    terminal: bool,
}

impl flow::run::Approver for TerminalApprover {
    fn ask(&self, question: &str) -> Option<bool> {
        use std::io::IsTerminal as _;
        if self.yes {
            return Some(true);
        }
        if !self.terminal || !std::io::stdin().is_terminal() {
            return None;
        }
        say!("mcp: {question} [y/N] ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).ok()?;
        Some(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
    }
}

fn flow_options(
    context: &Context,
    args: &FlowRunArgs,
    workflow: &flow::file::Workflow,
    retry_in_flight: bool,
) -> Result<flow::run::RunOptions, Failure> {
    let needs_model = workflow
        .steps
        .iter()
        .any(|s| matches!(s.action, flow::file::Action::Llm { .. }));
    let model = match (&args.model, needs_model) {
        (Some(model), true) => {
            let key_variable = args
                .api_key_env
                .clone()
                .unwrap_or_else(|| args.api.key_variable().to_owned());
            let api_key = std::env::var(&key_variable).ok().filter(|k| !k.is_empty());
            Some(
                Provider::new(ProviderConfig {
                    api: args.api,
                    model: model.clone(),
                    base_url: args.base_url.clone(),
                    api_key,
                    max_tokens: args.max_tokens,
                })
                .map_err(|e| Failure::Usage(e.to_string()))?,
            )
        }
        (None, true) => {
            return Err(Failure::Usage(format!(
                "{} has llm steps: give the model with --model (or MCP_MODEL)",
                workflow.name
            )));
        }
        _ => None,
    };
    let progress = |event: &flow::run::Event| match event {
        flow::run::Event::Started {
            step,
            item,
            attempt,
        } if *attempt > 1 => {
            let item = item.map(|i| format!("[{i}]")).unwrap_or_default();
            say!("mcp: flow: {step}{item}: try {attempt}");
        }
        flow::run::Event::Ended {
            step,
            item: None,
            status,
            seconds,
            error,
        } => {
            let why = error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            say!("mcp: flow: {step}: {status} ({seconds:.2} s){why}");
        }
        _ => {}
    };
    Ok(flow::run::RunOptions {
        connect: context.options.clone(),
        model,
        step_timeout: args
            .step_timeout
            .map(std::time::Duration::from_secs)
            .unwrap_or(context.options.timeout),
        retry_in_flight,
        approver: Arc::new(TerminalApprover {
            yes: args.yes,
            terminal: true,
        }),
        on_event: Arc::new(progress),
    })
}

/// Waits for a run (Ctrl-C cancels its calls and leaves it to resume), then reports it.
async fn flow_report(
    context: &Context,
    store: &std::sync::Mutex<flow::store::Store>,
    id: &str,
    going: impl std::future::Future<Output = Result<flow::run::Report, flow::run::RunError>>,
) -> Result<u8, Failure> {
    let report = tokio::select! {
        report = going => report.map_err(|e| Failure::Usage(e.to_string()))?,
        _ = tokio::signal::ctrl_c() => {
            let _ = store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .set_status(id, "cancelled", Some("interrupted (Ctrl-C)"));
            say!("mcp: run {id} interrupted; resume it with: mcp flow resume {id}");
            return Ok(INTERRUPTED);
        }
    };
    let mut out = context.stdout();
    if context.json {
        out.json(&report)?;
    } else if report.status == "succeeded" {
        let last = report
            .steps
            .as_object()
            .and_then(|steps| steps.values().next_back());
        if let Some(last) = last {
            match last["text"].as_str() {
                Some(text) => out.line(text)?,
                None => out.line(last)?,
            }
        }
    }
    match report.status.as_str() {
        "succeeded" => Ok(0),
        status => {
            say!(
                "mcp: run {id} {status}: {}; see it with: mcp flow show {id}{}",
                report
                    .error
                    .as_deref()
                    .map(mcp_core::text::visible_line)
                    .unwrap_or_default(),
                if status == "cancelled" {
                    String::new()
                } else {
                    format!("; resume it with: mcp flow resume {id}")
                }
            );
            Ok(if status == "failed" {
                TOOL_ERROR
            } else {
                STOPPED
            })
        }
    }
}

async fn call(
    context: &Context,
    server: &str,
    tool: &str,
    arguments: &[String],
    detach: bool,
) -> Result<u8, Failure> {
    let server = context.pick(server)?;
    if !server.tools.permits(tool) {
        return Err(Failure::Usage(format!(
            "{}: the tool {tool} is left out by the tools.allow / tools.deny of its entry in {}",
            server.name,
            server.source.display()
        )));
    }
    let arguments = parse_arguments(arguments)?;
    let client = context.connect_following_tasks(server).await?;
    let request =
        rmcp::model::CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
    // rmcp sends `notifications/cancelled` when a call's future is dropped: on the timeout and
    // on Ctrl-C alike, the server is told to stop.
    let timeout = context.options.timeout;
    let started = tokio::time::Instant::now();
    let outcome = tokio::select! {
        result = tokio::time::timeout(timeout, mcp_client::agent::answer(&client, request)) => Some(result),
        _ = tokio::signal::ctrl_c() => None,
    };
    let Some(result) = outcome else {
        let _ = client.cancel().await;
        say!("mcp: {}: {tool} cancelled", server.name);
        return Ok(INTERRUPTED);
    };
    let answer = result
        .map_err(|_| {
            Failure::Connection(format!(
                "{}: {tool} did not answer within {} s (--timeout); it was cancelled",
                server.name,
                timeout.as_secs()
            ))
        })?
        .map_err(|e| {
            let why = mcp_client::oauth::auth_failure(&e).unwrap_or_else(|| e.to_string());
            Failure::Connection(format!("{}: {tool}: {why}", server.name))
        });
    let answer = match answer {
        Ok(answer) => answer,
        Err(failure) => {
            let _ = client.cancel().await;
            return Err(failure);
        }
    };
    if let rmcp::model::CallToolResponse::Task(created) = &answer {
        mcp_client::started::record(&server.name, &created.task.task_id, tool);
    }
    let code = match answer {
        rmcp::model::CallToolResponse::Task(created) if detach => {
            let mut out = context.stdout();
            if context.json {
                out.json(&created)?;
            } else {
                out.line(format_args!(
                    "task {} ({}); follow it with: mcp tasks get {} {} --wait",
                    created.task.task_id,
                    status_name(created.task.status),
                    server.name,
                    created.task.task_id
                ))?;
            }
            0
        }
        rmcp::model::CallToolResponse::Task(created) => {
            let left = timeout.saturating_sub(started.elapsed());
            follow_task(context, server, &client, &created.task.task_id, left).await?
        }
        rmcp::model::CallToolResponse::Complete(result) => print_result(context, &result)?,
        // `answer` drives input-required rounds to the end.
        _ => {
            let _ = client.cancel().await;
            return Err(Failure::Connection(format!(
                "{}: {tool}: an answer mcp cannot use",
                server.name
            )));
        }
    };
    let _ = client.cancel().await;
    Ok(code)
}

fn status_name(status: rmcp::model::TaskStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A tool's result on stdout; the exit code (1 for an error result).
fn print_result(context: &Context, result: &rmcp::model::CallToolResult) -> Result<u8, Failure> {
    let mut out = context.stdout();
    if context.json {
        out.json(result)?;
    } else {
        for block in &result.content {
            match block.as_text() {
                Some(text) => out.line(&text.text)?,
                None => out.line(json!(block))?,
            }
        }
    }
    Ok(if result.is_error == Some(true) {
        TOOL_ERROR
    } else {
        0
    })
}

/// Polls task `id` until it ends (or `left` runs out, or Ctrl-C, which cancels it), its status
/// message on stderr as it changes; then its result, as `mcp call` prints one.
async fn follow_task(
    context: &Context,
    server: &Server,
    client: &connect::Client,
    id: &str,
    left: std::time::Duration,
) -> Result<u8, Failure> {
    let deadline = tokio::time::Instant::now() + left;
    let mut said = String::new();
    loop {
        let task = client
            .get_task(rmcp::model::GetTaskParams::new(id.to_owned()))
            .await
            .map_err(|e| Failure::Connection(format!("{}: task {id}: {e}", server.name)))?
            .task;
        let line = format!(
            "{}{}",
            status_name(task.status()),
            task.task
                .status_message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
        if line != said {
            say!(
                "mcp: {}: task {id}: {}",
                server.name,
                mcp_core::text::visible_line(&line)
            );
            said = line;
        }
        let poll_interval_ms = task.task.poll_interval_ms;
        match mcp_client::agent::ended(task.payload) {
            Some(Ended::Result(result)) => return print_result(context, &result),
            Some(Ended::Failed(why)) => {
                return Err(Failure::Connection(format!(
                    "{}: task {id} failed: {}",
                    server.name,
                    mcp_core::text::visible_line(&why)
                )));
            }
            Some(Ended::Cancelled) => {
                say!("mcp: {}: task {id} was cancelled", server.name);
                return Ok(TOOL_ERROR);
            }
            None => {}
        }
        let interval = poll_interval_ms
            .map(std::time::Duration::from_millis)
            .unwrap_or(std::time::Duration::from_secs(1))
            .clamp(
                std::time::Duration::from_millis(100),
                std::time::Duration::from_secs(5),
            );
        if tokio::time::Instant::now() + interval > deadline {
            return Err(Failure::Connection(format!(
                "{}: task {id} is still running after --timeout; it goes on: mcp tasks get {} {id} --wait",
                server.name, server.name
            )));
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => {
                let _ = client
                    .cancel_task(rmcp::model::CancelTaskParams::new(id.to_owned()))
                    .await;
                say!("mcp: {}: task {id} cancelled", server.name);
                return Ok(INTERRUPTED);
            }
        }
    }
}

/// `mcp tasks list [SERVER]`: what was recorded, with each task's status asked of its server
/// (one connection per server).
async fn list_tasks(context: &Context, only: Option<&str>, limit: usize) -> Result<u8, Failure> {
    let path = mcp_client::started::default_path();
    let recorded = mcp_client::started::read(&path)
        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let servers = context.chosen(only)?;
    let wanted: Vec<_> = recorded
        .into_iter()
        .rev()
        .filter(|r| servers.iter().any(|s| s.name == r.server))
        .take(limit)
        .collect();
    let mut rows = Vec::new();
    let mut failed = false;
    for server in &servers {
        let mine: Vec<_> = wanted.iter().filter(|r| r.server == server.name).collect();
        if mine.is_empty() {
            continue;
        }
        let client = match context.connect_following_tasks(server).await {
            Ok(client) => Some(client),
            Err(Failure::Connection(why)) => {
                failed = true;
                say!("mcp: {why}");
                None
            }
            Err(other) => return Err(other),
        };
        for record in mine {
            let (status, message) = match &client {
                None => ("unreachable".to_owned(), String::new()),
                Some(client) => match client
                    .get_task(rmcp::model::GetTaskParams::new(record.task.clone()))
                    .await
                {
                    Ok(task) => {
                        let wire = json!(task.task);
                        (
                            status_name(task.task.status()),
                            wire["statusMessage"].as_str().unwrap_or("").to_owned(),
                        )
                    }
                    Err(rmcp::ServiceError::McpError(error)) => (
                        "gone".to_owned(),
                        format!("the server no longer knows it ({})", error.message),
                    ),
                    Err(error) => ("unknown".to_owned(), error.to_string()),
                },
            };
            rows.push(json!({
                "server": record.server,
                "task": record.task,
                "tool": record.tool,
                "started": record.started,
                "status": status,
                "statusMessage": message,
            }));
        }
        if let Some(client) = client {
            let _ = client.cancel().await;
        }
    }
    rows.sort_by_key(|row| std::cmp::Reverse(row["started"].as_u64().unwrap_or_default()));
    let mut out = context.stdout();
    if context.json {
        out.json(&rows)?;
    } else if rows.is_empty() {
        out.line("no tasks started by mcp")?;
    } else {
        for row in &rows {
            out.line(format_args!(
                "{}\t{}\t{}\t{}\t{}",
                row["server"].as_str().unwrap_or_default(),
                row["task"].as_str().unwrap_or_default(),
                row["tool"].as_str().unwrap_or_default(),
                row["status"].as_str().unwrap_or_default(),
                mcp_core::text::visible_line(row["statusMessage"].as_str().unwrap_or_default())
            ))?;
        }
    }
    Ok(if failed { CONNECTION } else { 0 })
}

/// `mcp tasks get|cancel SERVER ID`, `mcp tasks list [SERVER]`.
async fn tasks(context: &Context, action: &TaskAction) -> Result<u8, Failure> {
    let (name, id) = match action {
        TaskAction::Get { server, id, .. } | TaskAction::Cancel { server, id } => (server, id),
        TaskAction::List { server, limit } => {
            return list_tasks(context, server.as_deref(), *limit).await;
        }
    };
    let server = context.pick(name)?;
    let client = context.connect_following_tasks(server).await?;
    let code = match action {
        TaskAction::Get { wait: true, .. } => {
            follow_task(context, server, &client, id, context.options.timeout).await
        }
        TaskAction::Get { .. } => {
            let task = client
                .get_task(rmcp::model::GetTaskParams::new(id.clone()))
                .await
                .map_err(|e| Failure::Connection(format!("{}: task {id}: {e}", server.name)));
            match task {
                Ok(task) => {
                    let mut out = context.stdout();
                    if context.json {
                        out.json(&task)?;
                    } else {
                        let wire = json!(task.task);
                        out.line(format_args!(
                            "{}\t{}\t{}",
                            id,
                            status_name(task.task.status()),
                            mcp_core::text::visible_line(
                                wire["statusMessage"].as_str().unwrap_or("")
                            )
                        ))?;
                        if let Some(result) = wire.get("result") {
                            out.line(result)?;
                        }
                        if let Some(error) = wire.get("error") {
                            out.line(error)?;
                        }
                    }
                    Ok(0)
                }
                Err(failure) => Err(failure),
            }
        }
        TaskAction::List { .. } => Ok(0),
        TaskAction::Cancel { .. } => client
            .cancel_task(rmcp::model::CancelTaskParams::new(id.clone()))
            .await
            .map(|()| 0)
            .map_err(|e| Failure::Connection(format!("{}: task {id}: {e}", server.name))),
    };
    let _ = client.cancel().await;
    code
}

/// Connects the agent to every server (reporting the ones that fail).
async fn agent(
    context: &Context,
    args: &AgentArgs,
    default_approval: Approval,
    ui: Arc<dyn mcp_client::agent::Ui>,
) -> Result<Agent, Failure> {
    let options = &context.options;
    let key_variable = args
        .api_key_env
        .clone()
        .unwrap_or_else(|| args.api.key_variable().to_owned());
    let api_key = std::env::var(&key_variable).ok().filter(|k| !k.is_empty());
    if args.api_key_env.is_some() && api_key.is_none() {
        return Err(Failure::Usage(format!(
            "--api-key-env: {key_variable} is not set"
        )));
    }
    let provider = Provider::new(ProviderConfig {
        api: args.api,
        model: args.model.clone(),
        base_url: args.base_url.clone(),
        api_key,
        max_tokens: args.max_tokens,
    })
    .map_err(|e| Failure::Usage(e.to_string()))?;
    let agent_options = AgentOptions {
        approval: args.approve.unwrap_or(default_approval),
        limits: Limits {
            max_steps: args.max_steps.max(1),
            max_result_bytes: args.max_result_bytes.max(512),
            tool_timeout: options.timeout,
        },
        system: args.system.clone(),
        connect: options.clone(),
    };
    let (agent, failed) = Agent::connect(&context.servers, provider, ui, agent_options).await;
    for error in failed {
        say!("mcp: {error}");
    }
    Ok(agent)
}

/// Why a task ended without an answer.
fn stopped(error: &AgentError) -> Failure {
    match error {
        AgentError::Model(_) => Failure::Connection(error.to_string()),
        _ => Failure::Stopped(error.to_string()),
    }
}

/// `mcp run TASK`: the final answer on stdout (with `--json`, with the transcript).
async fn run_task(
    context: &Context,
    task: &str,
    output: RunOutput,
    args: &AgentArgs,
) -> Result<u8, Failure> {
    if output == RunOutput::StreamJson {
        return run_streaming(context, task, args).await;
    }
    let ui = Arc::new(TerminalUi::new(false));
    let mut agent = agent(context, args, Approval::ReadOnly, ui).await?;
    let outcome = tokio::select! {
        result = agent.turn(task) => Some(result),
        _ = tokio::signal::ctrl_c() => None,
    };
    if outcome.is_none() {
        agent.discard_incomplete();
    }
    let transcript = agent.transcript().to_vec();
    agent.close().await;
    let mut out = context.stdout();
    let answer = match outcome {
        None => {
            say!("mcp: interrupted; the running calls were cancelled");
            if context.json {
                out.json(&json!({"transcript": transcript}))?;
            }
            return Ok(INTERRUPTED);
        }
        Some(Err(error)) => {
            if context.json {
                out.json(&json!({"error": error.to_string(), "transcript": transcript}))?;
            }
            return Err(stopped(&error));
        }
        Some(Ok(answer)) => answer,
    };
    if context.json {
        out.json(&json!({"answer": answer, "transcript": transcript}))?;
    } else {
        out.line(answer.trim_end())?;
    }
    Ok(0)
}

/// `mcp run --output stream-json`: the events as they happen, then the answer or the error, a
/// JSON object a line on stdout; the exit code as for `run`.
async fn run_streaming(context: &Context, task: &str, args: &AgentArgs) -> Result<u8, Failure> {
    let ui = Arc::new(StreamJsonUi::new());
    let mut agent = agent(context, args, Approval::ReadOnly, ui.clone()).await?;
    let outcome = tokio::select! {
        result = agent.turn(task) => Some(result),
        _ = tokio::signal::ctrl_c() => None,
    };
    if outcome.is_none() {
        agent.discard_incomplete();
    }
    agent.close().await;
    match outcome {
        None => {
            ui.emit(json!({ "type": "error", "message": "interrupted; the running calls were cancelled" }));
            Ok(INTERRUPTED)
        }
        Some(Err(error)) => {
            ui.emit(json!({ "type": "error", "message": error.to_string() }));
            Err(stopped(&error))
        }
        Some(Ok(answer)) => {
            ui.emit(json!({ "type": "answer", "text": answer }));
            Ok(0)
        }
    }
}

const CHAT_HELP: &str = "/tools  the tools the model can call
/servers  the connected servers
/clear  forget the conversation
/save [FILE]  write the transcript as JSON
/exit  leave (or Ctrl-D); Ctrl-C stops the current answer and its tool calls";

/// Where chat history is kept between sessions.
fn history_file() -> Option<PathBuf> {
    let dir = mcp_core::dirs::toolkit_dir(mcp_core::dirs::BaseDir::State);
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join("chat_history"))
}

/// `mcp chat`: a conversation at the terminal.
async fn chat(context: &Context, args: &AgentArgs, resume: Option<&str>) -> Result<u8, Failure> {
    let sessions = mcp_client::agent::sessions_dir();
    // The conversation to take up, read before connecting: a bad id costs no connection.
    let resumed = match resume {
        None => None,
        Some(id) => Some(
            mcp_client::agent::load_session(&sessions, (!id.is_empty()).then_some(id))
                .map_err(|e| Failure::Usage(format!("--resume: {e}")))?,
        ),
    };
    let mut agent = agent(
        context,
        args,
        Approval::Ask,
        Arc::new(TerminalUi::new(true)),
    )
    .await?;
    let session_id = match &resumed {
        Some((id, session)) => {
            let messages = agent
                .resume(session)
                .map_err(|e| Failure::Usage(format!("--resume {id}: {e}")))?;
            say!("mcp: resumed session {id} ({messages} messages)");
            id.clone()
        }
        None => format!("{}-{}", unix_seconds(), std::process::id()),
    };
    let summary: Vec<String> = agent
        .servers()
        .iter()
        .map(|(name, tools)| format!("{name} ({tools} tools)"))
        .collect();
    say!(
        "mcp chat with {} (session {session_id}: mcp chat --resume {session_id}); servers: {}. /help for commands.",
        args.model,
        if summary.is_empty() {
            "none".to_owned()
        } else {
            summary.join(", ")
        }
    );
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| Failure::Usage(format!("reading input: {e}")))?;
    let history = history_file();
    if let Some(history) = &history {
        let _ = editor.load_history(history);
    }
    loop {
        let line = tokio::task::block_in_place(|| editor.readline("you> "));
        let line = match line {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(error) => return Err(Failure::Usage(format!("reading input: {error}"))),
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line);
        let mut out = Stdout::new(false);
        match line
            .split_once(' ')
            .map_or((line, ""), |(c, rest)| (c, rest.trim()))
        {
            ("/exit" | "/quit", _) => break,
            ("/help", _) => out.line(CHAT_HELP)?,
            ("/servers", _) => {
                for (name, tools) in agent.servers() {
                    out.line(format_args!("{name}\t{tools} tools"))?;
                }
            }
            ("/tools", _) => {
                for tool in agent.tools() {
                    out.line(format_args!(
                        "{}\t{}",
                        tool.name,
                        first_line(Some(tool.description))
                    ))?;
                }
            }
            ("/clear", _) => {
                agent.clear();
                out.line("(conversation cleared)")?;
            }
            ("/save", file) => {
                let path = if file.is_empty() {
                    PathBuf::from(format!("mcp-chat-{}.json", unix_seconds()))
                } else {
                    PathBuf::from(file)
                };
                match mcp_client::agent::save_transcript(&path, agent.transcript()) {
                    Ok(()) => out.line(format_args!("(saved to {})", path.display()))?,
                    Err(error) => say!("mcp: saving {}: {error}", path.display()),
                }
            }
            (command, _) if command.starts_with('/') => {
                out.line(format_args!("unknown command {command}; /help lists them"))?
            }
            _ => {
                drop(out);
                let outcome = tokio::select! {
                    result = agent.turn(line) => Some(result),
                    _ = tokio::signal::ctrl_c() => None,
                };
                Stdout::new(false).line("")?;
                match outcome {
                    None => {
                        agent.discard_incomplete();
                        say!("(interrupted; the running calls were cancelled)");
                    }
                    Some(Err(error)) => say!("mcp: {error}"),
                    Some(Ok(_)) => {}
                }
                if let Err(error) =
                    mcp_client::agent::save_session(&sessions, &session_id, &agent.session())
                {
                    say!("mcp: saving the session in {}: {error}", sessions.display());
                }
            }
        }
    }
    if let Some(history) = &history {
        let _ = editor.save_history(history);
    }
    agent.close().await;
    Ok(0)
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn first_line(text: Option<&str>) -> &str {
    text.and_then(|d| d.lines().next()).unwrap_or("")
}

/// Connects to every server (or the one named), collects what `list` returns from each and
/// prints it: as JSON objects with a `server` field, or a line each made by `line`. Failures are
/// reported on stderr and make the exit code [`CONNECTION`]; what the others said is printed.
async fn print_listing<T: serde::Serialize>(
    context: &Context,
    only: Option<&str>,
    what: &str,
    list: impl AsyncFn(&Server, &connect::Client) -> Result<Vec<T>, rmcp::ServiceError>,
    line: impl Fn(&str, &T) -> String,
) -> Result<u8, Failure> {
    let servers = context.chosen(only)?;
    let mut listed = Vec::new();
    let mut failed = false;
    let results = connect::connect_all(&servers, &context.options).await;
    for (server, (name, result)) in servers.iter().zip(results) {
        let connected = match result {
            Ok(connected) => connected,
            Err(error) => {
                say!("mcp: {error}");
                failed = true;
                continue;
            }
        };
        match list(server, &connected.client).await {
            Ok(items) => listed.extend(items.into_iter().map(|item| (name.clone(), item))),
            // A server without the capability is not a failure: it has none.
            Err(rmcp::ServiceError::McpError(error))
                if error.code == rmcp::model::ErrorCode::METHOD_NOT_FOUND => {}
            Err(error) => {
                say!("mcp: {name}: listing {what} failed: {error}");
                failed = true;
            }
        }
        let _ = connected.client.cancel().await;
    }
    let mut out = context.stdout();
    if context.json {
        out.json(&tagged(&listed))?;
    } else {
        for (server, item) in &listed {
            out.line(line(server, item))?;
        }
    }
    Ok(if failed { CONNECTION } else { 0 })
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
            _ => Err(Failure::Usage(format!("not a JSON object: {only}"))),
        };
    }
    let mut map = Map::new();
    for pair in arguments {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Failure::Usage(format!(
                "argument {pair:?} is neither key=value nor a JSON object"
            )));
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

/// `mcp auth login|logout|status`.
async fn auth(context: &Context, action: &AuthAction) -> Result<u8, Failure> {
    let store = &context.options.auth.store;
    let http = |server: &Server| match &server.transport {
        Transport::Url { url, oauth, .. } => Ok((url.clone(), oauth.clone())),
        Transport::Stdio { .. } => Err(Failure::Usage(format!(
            "{} is a stdio server: OAuth is for servers reached over HTTP (a stdio server takes its credentials from its environment)",
            server.name
        ))),
    };
    match action {
        AuthAction::Login {
            server,
            no_browser,
            scopes,
        } => {
            let server = context.pick(server)?;
            let (url, mut oauth) = http(server)?;
            if !scopes.is_empty() {
                // What is held, and what is asked for now.
                use rmcp::transport::auth::CredentialStore as _;
                let held = store
                    .for_server(&url)
                    .load()
                    .await
                    .ok()
                    .flatten()
                    .map(|kept| kept.granted_scopes)
                    .unwrap_or_default();
                for scope in held
                    .into_iter()
                    .chain(oauth.scopes.clone())
                    .chain(scopes.clone())
                {
                    if !oauth.scopes.contains(&scope) {
                        oauth.scopes.push(scope);
                    }
                }
            }
            let agent = UserAgent::Browser {
                open: !no_browser,
                paste: *no_browser,
            };
            let options = AuthOptions {
                agent,
                ..context.options.auth.clone()
            };
            let authorizer = Authorizer::new(&server.name, &url, oauth, &options)
                .await
                .map_err(|e| Failure::Connection(format!("{}: {e}", server.name)))?;
            authorizer
                .authorize(None, false, authorizer.generation())
                .await
                .map_err(|e| Failure::Connection(format!("{}: {e}", server.name)))?;
            // Proof that the tokens work: the server answers with them.
            let client = context.connect(server).await?;
            let tools = client
                .list_all_tools()
                .await
                .map_err(|e| Failure::Connection(format!("{}: tools/list: {e}", server.name)))?;
            let _ = client.cancel().await;
            say!(
                "mcp: logged in to {} ({} tools); the tokens are in {}",
                server.name,
                tools.len(),
                store.describe().await
            );
            Ok(0)
        }
        AuthAction::Logout { server } => {
            let server = context.pick(server)?;
            let (url, _) = http(server)?;
            use rmcp::transport::auth::CredentialStore as _;
            let tokens = store.for_server(&url);
            // Tokens that cannot be read (a locked keyring) are still there to forget.
            let had = tokens.load().await.map_or(true, |kept| kept.is_some());
            tokens
                .clear()
                .await
                .map_err(|e| Failure::Usage(e.to_string()))?;
            say!(
                "mcp: {} {}",
                server.name,
                if had {
                    "logged out: its tokens are forgotten"
                } else {
                    "had no tokens kept"
                }
            );
            Ok(0)
        }
        AuthAction::Status { server } => {
            let kept = store
                .list()
                .await
                .map_err(|e| Failure::Usage(e.to_string()))?;
            let mut rows = Vec::new();
            for server in context.chosen(server.as_deref())? {
                let Transport::Url { url, .. } = &server.transport else {
                    continue;
                };
                rows.push(token_status(&server.name, url, kept.get(url)));
            }
            let mut out = context.stdout();
            if context.json {
                out.json(&json!({
                    "file": store.path(),
                    "new_tokens_go_to": store.describe().await,
                    "servers": rows,
                }))?;
            } else {
                for row in &rows {
                    let line = if let Some(problem) = row["problem"].as_str() {
                        format!(
                            "{}  {}  tokens unreadable: {problem}",
                            row["server"].as_str().unwrap_or_default(),
                            row["url"].as_str().unwrap_or_default(),
                        )
                    } else if row["logged_in"] == true {
                        format!(
                            "{}  {}  issuer {}  scopes [{}]  {}  {}  (in the {})",
                            row["server"].as_str().unwrap_or_default(),
                            row["url"].as_str().unwrap_or_default(),
                            row["issuer"].as_str().unwrap_or("(unknown)"),
                            row["scopes"].as_str().unwrap_or_default(),
                            match row["expires_in_seconds"].as_i64() {
                                Some(s) if s > 0 => format!("expires in {s} s"),
                                Some(_) => "expired".to_owned(),
                                None => "no expiry given".to_owned(),
                            },
                            if row["refresh"] == true {
                                "refreshable"
                            } else {
                                "no refresh token"
                            },
                            row["kept_in"].as_str().unwrap_or_default(),
                        )
                    } else {
                        format!(
                            "{}  {}  not logged in",
                            row["server"].as_str().unwrap_or_default(),
                            row["url"].as_str().unwrap_or_default()
                        )
                    };
                    out.line(line)?;
                }
                out.line(format!(
                    "(new tokens are kept in {})",
                    store.describe().await
                ))?;
            }
            Ok(0)
        }
    }
}

/// One server's row of `mcp auth status`: what is kept, never the tokens themselves.
fn token_status(name: &str, url: &str, kept: Option<&KeptTokens>) -> Value {
    if let Some(KeptTokens {
        place,
        problem: Some(problem),
        ..
    }) = kept
    {
        return json!({"server": name, "url": url, "logged_in": false, "kept_in": place, "problem": problem});
    }
    let Some((kept, place)) = kept
        .filter(|k| k.credentials.token_response.is_some())
        .map(|k| (&k.credentials, k.place))
    else {
        return json!({"server": name, "url": url, "logged_in": false});
    };
    let token = serde_json::to_value(&kept.token_response).unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let expires = token["expires_in"]
        .as_u64()
        .zip(kept.token_received_at)
        .map(|(lifetime, at)| (at + lifetime) as i64 - now as i64);
    let scopes = if kept.granted_scopes.is_empty() {
        token["scope"].as_str().unwrap_or_default().to_owned()
    } else {
        kept.granted_scopes.join(" ")
    };
    json!({
        "server": name,
        "url": url,
        "logged_in": true,
        "issuer": kept.issuer,
        "client_id": kept.client_id,
        "scopes": scopes,
        "expires_in_seconds": expires,
        "refresh": token.get("refresh_token").is_some_and(|r| !r.is_null()),
        "kept_in": place,
    })
}
