//! A run's trace as one self-contained HTML page (`mcp flow show ID --html FILE`): the step
//! graph (each step and the earlier steps it reads), then every step with its status, timing,
//! tries, and its full input and output. Everything a server or a model sent is escaped by the
//! template engine (minijinja's HTML auto-escaping), so a result holding markup shows as text.

use std::collections::BTreeSet;

use minijinja::{Environment, context};
use serde::Serialize;
use serde_json::Value;

use super::{
    check::texts,
    expr::Engine,
    store::{Run, StepRecord},
};

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ run.workflow }} · {{ run.id }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
h1 { font-size: 1.3em; } code, pre { font: 12px/1.4 ui-monospace, monospace; }
pre { background: #f6f6f6; padding: .6em; overflow: auto; max-height: 30em; white-space: pre-wrap; word-break: break-word; }
.succeeded { color: #17692f; } .failed { color: #b3261e; } .skipped, .running { color: #8a6d00; }
.stopped, .cancelled, .cancelling { color: #8a6d00; }
details { border-top: 1px solid #ddd; padding: .4em 0; } summary { cursor: pointer; }
svg text { font: 12px system-ui, sans-serif; }
</style></head><body>
<h1>{{ run.workflow }} <small>{{ run.id }}</small></h1>
<p>From <code>{{ run.file }}</code>: <b class="{{ run.status }}">{{ run.status }}</b>{% if run.error %}: {{ run.error }}{% endif %}
in {{ seconds }} s.</p>
<p>Inputs:</p><pre>{{ inputs }}</pre>
<h2>Steps</h2>
<svg width="{{ width }}" height="{{ height }}" role="img" aria-label="step graph">
{% for edge in edges %}<path d="M 40 {{ edge.from_y }} C {{ 40 - edge.bend }} {{ edge.from_y }}, {{ 40 - edge.bend }} {{ edge.to_y }}, 40 {{ edge.to_y }}" fill="none" stroke="#999"/>
{% endfor %}{% for node in nodes %}<rect x="40" y="{{ node.y - 12 }}" width="240" height="24" rx="4" fill="#fff" stroke="#555"/>
<text x="50" y="{{ node.y + 4 }}">{{ node.id }} · {{ node.kind }}</text>
<text x="290" y="{{ node.y + 4 }}" class="{{ node.status }}">{{ node.status }}</text>
{% endfor %}</svg>
{% for step in steps %}<details{% if step.status == "failed" %} open{% endif %}>
<summary><b>{{ step.name }}</b> · <span class="{{ step.status }}">{{ step.status }}</span> · {{ step.seconds }}{% if step.attempts > 1 %} · {{ step.attempts }} tries{% endif %}</summary>
{% if step.error %}<p class="failed">{{ step.error }}</p>{% endif %}
{% if step.input %}<p>Input</p><pre>{{ step.input }}</pre>{% endif %}
{% if step.result %}<p>Output</p><pre>{{ step.result }}</pre>{% endif %}
</details>
{% endfor %}
</body></html>
"##;

#[derive(Serialize)]
struct Node {
    id: String,
    kind: &'static str,
    status: String,
    y: usize,
}

#[derive(Serialize)]
struct Edge {
    from_y: usize,
    to_y: usize,
    bend: usize,
}

#[derive(Serialize)]
struct Shown {
    name: String,
    status: String,
    seconds: String,
    attempts: u32,
    error: Option<String>,
    input: Option<String>,
    result: Option<String>,
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// The page.
pub fn html(run: &Run, records: &[StepRecord]) -> Result<String, String> {
    let status_of = |id: &str| {
        records
            .iter()
            .find(|r| r.step == id && r.item.is_none())
            .map_or_else(|| "not run".to_owned(), |r| r.status.clone())
    };
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    // The graph from the workflow as the run read it.
    if let Ok(workflow) = super::file::parse(&run.source) {
        let engine = Engine::new();
        let y = |i: usize| 20 + i * 34;
        for (i, step) in workflow.steps.iter().enumerate() {
            nodes.push(Node {
                id: step.id.clone(),
                kind: step.action.kind(),
                status: status_of(&step.id),
                y: y(i),
            });
            let mut read = BTreeSet::new();
            for (_, text) in texts(step) {
                for name in engine.references(text).unwrap_or_default() {
                    if let Some(id) = name.strip_prefix("steps.") {
                        read.insert(id.split('.').next().unwrap_or_default().to_owned());
                    }
                }
            }
            for id in read {
                if let Some(from) = workflow.steps.iter().position(|s| s.id == id) {
                    edges.push(Edge {
                        from_y: y(from),
                        to_y: y(i),
                        bend: 10 + 6 * (i - from).min(5),
                    });
                }
            }
        }
    }
    let steps: Vec<Shown> = records
        .iter()
        .map(|r| Shown {
            name: match r.item {
                Some(i) => format!("{}[{i}]", r.step),
                None => r.step.clone(),
            },
            status: r.status.clone(),
            seconds: r
                .ended
                .map_or_else(|| "…".to_owned(), |e| format!("{:.2} s", e - r.started)),
            attempts: r.attempts,
            error: r.error.clone(),
            input: r.input.as_ref().map(pretty),
            result: r.result.as_ref().map(pretty),
        })
        .collect();
    let mut env = Environment::new();
    env.add_template("trace.html", PAGE)
        .map_err(|e| e.to_string())?;
    let template = env.get_template("trace.html").map_err(|e| e.to_string())?;
    template
        .render(context! {
            run => minijinja::Value::from(minijinja::value::Serde(run)),
            seconds => run.ended.map_or_else(|| "…".to_owned(), |e| format!("{:.2}", e - run.started)),
            inputs => pretty(&run.inputs),
            width => 400,
            height => 40 + nodes.len() * 34,
            nodes => minijinja::Value::from(minijinja::value::Serde(&nodes)),
            edges => minijinja::Value::from(minijinja::value::Serde(&edges)),
            steps => minijinja::Value::from(minijinja::value::Serde(&steps)),
        })
        .map_err(|e| e.to_string())
}
