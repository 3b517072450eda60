//! `mcp flow check`: a workflow checked before it runs. Without connecting: unique step ids,
//! every text compiles, and refers only to declared inputs, to steps that run before it (a
//! reference to itself or a later step would be a cycle), and to `item`/`index` under
//! `for_each`. Then against the servers: each exists in the config files, has the tool or prompt
//! named, and each literal argument satisfies the tool's input schema (required arguments
//! given, known names, the right types).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::{
    config::Server,
    connect::{ConnectOptions, connect},
};

use super::{
    expr::{Engine, ROOTS},
    file::{Action, Problem, Step, Text, Tree, Workflow},
};

/// The texts of a step, each with what it is for.
pub fn texts(step: &Step) -> Vec<(&'static str, &Text)> {
    let mut out = Vec::new();
    if let Some(when) = &step.when {
        out.push(("if", when));
    }
    if let Some(each) = &step.for_each {
        out.push(("for_each", each));
    }
    match &step.action {
        Action::Call { with, .. } | Action::Prompt { with, .. } => {
            out.extend(with.texts().into_iter().map(|t| ("with", t)));
        }
        Action::Llm { prompt, system, .. } => {
            out.push(("llm", prompt));
            if let Some(system) = system {
                out.push(("system", system));
            }
        }
        Action::Read { uri, .. } => out.push(("read", uri)),
        Action::Approve { question } => out.push(("approve", question)),
    }
    out
}

/// The checks that need no server.
pub fn static_problems(workflow: &Workflow, engine: &Engine) -> Vec<Problem> {
    let mut problems = Vec::new();
    let inputs: HashSet<&str> = workflow.inputs.iter().map(|i| i.name.as_str()).collect();
    let order: HashMap<&str, usize> = workflow
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (position, step) in workflow.steps.iter().enumerate() {
        if let Some(first) = seen.insert(step.id.as_str(), step.line) {
            problems.push(Problem {
                line: step.line,
                message: format!("step id {} is taken (line {first})", step.id),
            });
        }
        for (what, text) in texts(step) {
            let names = match engine.references(text) {
                Ok(names) => names,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            for name in names {
                let mut parts = name.split('.');
                let root = parts.next().unwrap_or_default();
                let second = parts.next();
                let problem = |message: String| Problem {
                    line: text.line,
                    message,
                };
                match (root, second) {
                    ("inputs", Some(input)) if !inputs.contains(input) => problems.push(problem(
                        format!(
                            "{what}: no input {input} (declared: {})",
                            sorted(inputs.iter().copied())
                        ),
                    )),
                    ("steps", Some(id)) => match order.get(id) {
                        None => problems.push(problem(format!("{what}: no step {id}"))),
                        Some(&at) if at == position => problems.push(problem(format!(
                            "{what}: step {id} refers to itself (a cycle)"
                        ))),
                        Some(&at) if at > position => problems.push(problem(format!(
                            "{what}: step {id} runs after {} (steps read only the steps before them; a cycle otherwise)",
                            step.id
                        ))),
                        Some(_) => {}
                    },
                    ("item" | "index", _) if step.for_each.is_none() || what == "for_each" => {
                        problems.push(problem(format!(
                            "{what}: {root} is defined only in a step with for_each (and not in for_each itself)"
                        )));
                    }
                    (root, _) if !ROOTS.contains(&root) => problems.push(problem(format!(
                        "{what}: unknown name {root} (a text reads inputs, steps, and item and index under for_each)"
                    ))),
                    _ => {}
                }
            }
        }
    }
    problems
}

/// Names, sorted and joined, for a message that lists what there is.
fn sorted<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut names: Vec<&str> = names.into_iter().collect();
    names.sort_unstable();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// What the servers offer, for the checks that need them.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Every server of the config files.
    pub configured: HashSet<String>,
    /// Tools (name → input schema) of the servers that answered.
    pub tools: HashMap<String, HashMap<String, Value>>,
    /// Prompts (name → argument names and whether each is required).
    pub prompts: HashMap<String, HashMap<String, Vec<(String, bool)>>>,
    /// Servers that could not be reached, and why.
    pub unreachable: HashMap<String, String>,
}

/// Connects to the servers `workflow` names (at once) and lists what they offer.
pub async fn catalog(workflow: &Workflow, servers: &[Server], options: &ConnectOptions) -> Catalog {
    let mut catalog = Catalog {
        configured: servers.iter().map(|s| s.name.clone()).collect(),
        ..Catalog::default()
    };
    let mut named: Vec<&str> = workflow
        .steps
        .iter()
        .filter_map(|step| match &step.action {
            Action::Call { server, .. } | Action::Prompt { server, .. } => Some(server.as_str()),
            Action::Read { server, .. } => server.as_deref(),
            _ => None,
        })
        .collect();
    named.sort_unstable();
    named.dedup();
    let wanted: Vec<&Server> = servers
        .iter()
        .filter(|s| named.contains(&s.name.as_str()))
        .collect();
    let answers = futures::future::join_all(wanted.iter().map(|server| async move {
        let listed = async {
            let connected = connect(server, options).await.map_err(|e| e.to_string())?;
            let tools = connected
                .client
                .list_all_tools()
                .await
                .map_err(|e| e.to_string())?;
            // A server without prompts answers the listing with an error: none, then.
            let prompts = connected
                .client
                .list_all_prompts()
                .await
                .unwrap_or_default();
            let _ = connected.client.cancel().await;
            Ok::<_, String>((tools, prompts))
        };
        (server, listed.await)
    }))
    .await;
    for (server, answer) in answers {
        match answer {
            Ok((tools, prompts)) => {
                catalog.tools.insert(
                    server.name.clone(),
                    tools
                        .into_iter()
                        .filter(|t| server.tools.permits(&t.name))
                        .map(|t| (t.name.to_string(), Value::Object((*t.input_schema).clone())))
                        .collect(),
                );
                catalog.prompts.insert(
                    server.name.clone(),
                    prompts
                        .into_iter()
                        .map(|p| {
                            let arguments = p
                                .arguments
                                .unwrap_or_default()
                                .into_iter()
                                .map(|a| (a.name, a.required.unwrap_or(false)))
                                .collect();
                            (p.name, arguments)
                        })
                        .collect(),
                );
            }
            Err(why) => {
                catalog.unreachable.insert(server.name.clone(), why);
            }
        }
    }
    catalog
}

/// The checks against the servers.
pub fn live_problems(workflow: &Workflow, catalog: &Catalog) -> Vec<Problem> {
    let mut problems = Vec::new();
    for step in &workflow.steps {
        let problem = |message: String| Problem {
            line: step.line,
            message,
        };
        let server = match &step.action {
            Action::Call { server, .. } | Action::Prompt { server, .. } => Some(server),
            Action::Read { server, .. } => server.as_ref(),
            _ => None,
        };
        let Some(server) = server else { continue };
        if !catalog.configured.contains(server) {
            problems.push(problem(format!(
                "step {}: no server {server} in the config files (known: {})",
                step.id,
                sorted(catalog.configured.iter().map(String::as_str))
            )));
            continue;
        }
        if let Some(why) = catalog.unreachable.get(server) {
            problems.push(problem(format!(
                "step {}: server {server} could not be reached to check: {why}",
                step.id
            )));
            continue;
        }
        match &step.action {
            Action::Call { tool, with, .. } => {
                let Some(schema) = catalog.tools.get(server).and_then(|t| t.get(tool)) else {
                    problems.push(problem(format!(
                        "step {}: {server} has no tool {tool} (it has: {})",
                        step.id,
                        sorted(
                            catalog
                                .tools
                                .get(server)
                                .into_iter()
                                .flat_map(|t| t.keys().map(String::as_str))
                        )
                    )));
                    continue;
                };
                problems.extend(argument_problems(&step.id, tool, with, schema));
            }
            Action::Prompt { name, with, .. } => {
                let Some(arguments) = catalog.prompts.get(server).and_then(|p| p.get(name)) else {
                    problems.push(problem(format!(
                        "step {}: {server} has no prompt {name}",
                        step.id
                    )));
                    continue;
                };
                let given: HashSet<&str> = match with {
                    Tree::Map(entries, _) => entries.iter().map(|(k, _)| k.as_str()).collect(),
                    _ => HashSet::new(),
                };
                for (argument, required) in arguments {
                    if *required && !given.contains(argument.as_str()) {
                        problems.push(problem(format!(
                            "step {}: prompt {name} needs the argument {argument}",
                            step.id
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    problems
}

/// The literal arguments of a call against the tool's input schema: required ones given,
/// unknown ones refused when the schema refuses them, literal values of the right shape. A
/// text's value is only known when the step runs; the server checks it then.
fn argument_problems(step: &str, tool: &str, with: &Tree, schema: &Value) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Tree::Map(entries, line) = with else {
        return problems;
    };
    let properties = schema["properties"].as_object();
    let given: HashSet<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    for required in schema["required"].as_array().into_iter().flatten() {
        if let Some(name) = required.as_str()
            && !given.contains(name)
        {
            problems.push(Problem {
                line: *line,
                message: format!("step {step}: {tool} needs the argument {name}"),
            });
        }
    }
    for (name, tree) in entries {
        let property = properties.and_then(|p| p.get(name));
        if property.is_none() && schema["additionalProperties"] == Value::Bool(false) {
            problems.push(Problem {
                line: tree.line(),
                message: format!(
                    "step {step}: {tool} takes no argument {name} (it takes: {})",
                    sorted(
                        properties
                            .into_iter()
                            .flat_map(|p| p.keys().map(String::as_str))
                    )
                ),
            });
            continue;
        }
        let (Some(property), Tree::Literal(value, at)) = (property, tree) else {
            continue;
        };
        // The property's schema alone (a $ref into the whole schema's $defs is left to the
        // server).
        if let Ok(validator) = jsonschema::validator_for(property)
            && let Err(error) = validator.validate(value)
        {
            problems.push(Problem {
                line: *at,
                message: format!("step {step}: argument {name} = {value}: {error}"),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::file::parse;

    fn check(yaml: &str) -> Vec<String> {
        let workflow = parse(yaml).unwrap();
        static_problems(&workflow, &Engine::new())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn references_go_to_inputs_and_earlier_steps_only() {
        let problems = check(
            "name: w\ninputs:\n  q: string\nsteps:\n  - id: a\n    call: s.t\n    with: {x: \"${{ steps.b.text }}\"}\n  - id: b\n    call: s.t\n    with: {x: \"${{ steps.b.text }}\", y: \"${{ inputs.nope }}\", z: \"${{ item }}\"}\n  - id: c\n    llm: \"${{ steps.gone.text }} ${{ os.environ }}\"\n  - id: c\n    approve: \"${{ inputs.q }}\"\n",
        );
        assert_eq!(problems.len(), 7, "{problems:#?}");
        assert!(
            problems[0].starts_with("line 7:") && problems[0].contains("runs after a"),
            "{problems:#?}"
        );
        for (line, text) in [
            (10, "refers to itself"),
            (10, "no input nope"),
            (10, "for_each"),
            (12, "no step gone"),
            (12, "unknown name os"),
            (13, "taken"),
        ] {
            assert!(has(&problems, line, text), "{line} {text}: {problems:#?}");
        }
    }

    fn has(problems: &[String], line: usize, text: &str) -> bool {
        problems
            .iter()
            .any(|p| p.starts_with(&format!("line {line}:")) && p.contains(text))
    }

    #[test]
    fn literal_arguments_meet_the_tools_schema() {
        let workflow = parse(
            "name: w\nsteps:\n  - id: a\n    call: fs.read\n    with:\n      path: 12\n      mode: fast\n  - id: b\n    call: fs.nope\n  - id: c\n    call: other.x\n",
        )
        .unwrap();
        let mut catalog = Catalog::default();
        catalog.configured.extend(["fs".to_owned()]);
        catalog.tools.insert(
            "fs".to_owned(),
            HashMap::from([(
                "read".to_owned(),
                serde_json::json!({"type": "object", "properties": {"path": {"type": "string"},
                    "head": {"type": "integer"}}, "required": ["path", "head"],
                    "additionalProperties": false}),
            )]),
        );
        let problems: Vec<String> = live_problems(&workflow, &catalog)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(problems.len(), 5, "{problems:#?}");
        for (line, text) in [
            (6, "needs the argument head"),
            (6, "path = 12"),
            (7, "no argument mode"),
            (8, "no tool nope"),
            (10, "no server other"),
        ] {
            assert!(has(&problems, line, text), "{line} {text}: {problems:#?}");
        }
    }
}
