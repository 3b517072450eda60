//! `mcp flow serve DIR`: an MCP server (on mcp-core, any of its transports) whose tools are the
//! workflows in DIR (`*.yaml`, `*.yml`), each with an input schema made from its `inputs`. A
//! call runs the workflow, recorded in the run store as `mcp flow run` records it; a client
//! that follows Tasks gets a task at once (its status message: the step under way), others the
//! result when the run ends: the last step's text, and the run (every step's result) as
//! structured content.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use mcp_core::tasks::{Exit, Running, TaskOptions, Tasks};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    },
    service::RequestContext,
};
use serde_json::{Map, Value, json};

use crate::config::Server;

use super::{
    file::{Problem, Workflow},
    run::{self, Event, RunOptions},
    store::Store,
};

/// A workflow served, with where it came from.
struct Served {
    workflow: Workflow,
    source: String,
    file: PathBuf,
    tool: Tool,
}

/// The workflows of a directory as tools.
#[derive(Clone)]
pub struct FlowServer {
    served: Arc<Vec<Served>>,
    servers: Arc<Vec<Server>>,
    options: RunOptions,
    store: PathBuf,
    tasks: Tasks,
}

/// Reads every workflow in `dir`; each problem is named with its file and line.
pub fn read_dir(dir: &Path) -> Result<Vec<(Workflow, String, PathBuf)>, Vec<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| vec![format!("{}: {e}", dir.display())])?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut problems = Vec::new();
    let mut out: Vec<(Workflow, String, PathBuf)> = Vec::new();
    for file in files {
        match super::load(&file) {
            Ok((workflow, source)) => {
                if let Some((_, _, other)) = out.iter().find(|(w, _, _)| w.name == workflow.name) {
                    problems.push(format!(
                        "{}: the name {} is {}'s too (a tool name is one workflow's)",
                        file.display(),
                        workflow.name,
                        other.display()
                    ));
                    continue;
                }
                out.push((workflow, source, file));
            }
            Err(found) => problems.extend(
                found
                    .iter()
                    .map(|p: &Problem| format!("{}: {p}", file.display())),
            ),
        }
    }
    if out.is_empty() && problems.is_empty() {
        problems.push(format!(
            "{}: no workflow files (*.yaml, *.yml)",
            dir.display()
        ));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A workflow's tool: its name, description, and an input schema from its inputs.
fn tool(workflow: &Workflow) -> Tool {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for input in &workflow.inputs {
        let mut schema = json!({"type": input.kind.as_str()});
        if let Some(description) = &input.description {
            schema["description"] = Value::String(description.clone());
        }
        match &input.default {
            Some(default) => schema["default"] = default.clone(),
            None => required.push(Value::String(input.name.clone())),
        }
        properties.insert(input.name.clone(), schema);
    }
    let schema = json!({"type": "object", "properties": properties, "required": required,
                        "additionalProperties": false});
    let description = workflow.description.clone().unwrap_or_else(|| {
        let steps: Vec<&str> = workflow.steps.iter().map(|s| s.id.as_str()).collect();
        format!(
            "Runs the workflow {} (steps: {}).",
            workflow.name,
            steps.join(", ")
        )
    });
    let mut tool = Tool::default();
    tool.name = workflow.name.clone().into();
    tool.description = Some(description.into());
    if let Value::Object(schema) = schema {
        tool.input_schema = Arc::new(schema);
    }
    tool
}

impl FlowServer {
    /// The server for `workflows`, running their steps against `servers` with `options`,
    /// recording runs in the store at `store`, and its tasks in `tasks`.
    pub fn new(
        workflows: Vec<(Workflow, String, PathBuf)>,
        servers: Vec<Server>,
        options: RunOptions,
        store: PathBuf,
        tasks: Tasks,
    ) -> Self {
        let served = workflows
            .into_iter()
            .map(|(workflow, source, file)| Served {
                tool: tool(&workflow),
                workflow,
                source,
                file,
            })
            .collect();
        Self {
            served: Arc::new(served),
            servers: Arc::new(servers),
            options,
            store,
            tasks,
        }
    }
}

/// Runs one call's workflow: the run's result as a tool result.
async fn go(
    server: FlowServer,
    index: usize,
    inputs: Value,
    task: Running,
) -> Result<CallToolResult, Exit> {
    let served = &server.served[index];
    let internal = |e: String| Exit::Failed(ErrorData::internal_error(e, None));
    let store = Mutex::new(Store::open(&server.store).map_err(|e| internal(e.to_string()))?);
    let id = run::create(
        &store,
        &served.workflow,
        &served.file,
        &served.source,
        &inputs,
    )
    .map_err(|e| internal(e.to_string()))?;
    task.link(&id);
    let task = Arc::new(task);
    let mut options = server.options.clone();
    let status = task.clone();
    let run_id = id.clone();
    options.on_event = Arc::new(move |event: &Event| match event {
        Event::Started { step, item, .. } => {
            let item = item.map(|i| format!("[{i}]")).unwrap_or_default();
            status.status(format!("run {run_id}: {step}{item}"));
        }
        Event::Ended { .. } => {}
    });
    let report = run::start(
        &id,
        &served.workflow,
        inputs,
        &server.servers,
        &store,
        &options,
    )
    .await
    .map_err(|e| internal(e.to_string()))?;
    let text = match report.status.as_str() {
        "succeeded" => report
            .steps
            .as_object()
            .and_then(|steps| steps.values().next_back())
            .map(|last| {
                last["text"]
                    .as_str()
                    .map_or_else(|| last.to_string(), str::to_owned)
            })
            .unwrap_or_default(),
        status => format!(
            "run {id} {status}: {} (mcp flow show {id}; mcp flow resume {id})",
            report.error.as_deref().unwrap_or("")
        ),
    };
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = serde_json::to_value(&report).ok();
    if report.status != "succeeded" {
        result.is_error = Some(true);
    }
    Ok(result)
}

impl ServerHandler for FlowServer {
    fn get_info(&self) -> ServerConfig {
        let names: Vec<&str> = self
            .served
            .iter()
            .map(|s| s.workflow.name.as_str())
            .collect();
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new("mcp-flow", env!("CARGO_PKG_VERSION")))
        .with_instructions(format!(
            "Workflows as tools ({}): each runs its steps in order, recorded so that a failed run \
             can be resumed with `mcp flow resume RUN`. A client that follows Tasks gets a task \
             whose status names the step under way.",
            names.join(", ")
        ))
    }

    mcp_core::task_methods!(tasks);

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            self.served.iter().map(|s| s.tool.clone()).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(index) = self
            .served
            .iter()
            .position(|s| s.workflow.name == request.name.as_ref())
        else {
            return Err(ErrorData::invalid_params(
                format!("no workflow {}", request.name),
                None,
            ));
        };
        let workflow = &self.served[index].workflow;
        let inputs = run::inputs_from_json(workflow, request.arguments.unwrap_or_default())
            .map_err(|why| ErrorData::invalid_params(why, None))?;
        let server = self.clone();
        self.tasks
            .run(
                &context,
                &workflow.name,
                TaskOptions::default(),
                move |task| go(server, index, inputs, task),
            )
            .await
    }
}
