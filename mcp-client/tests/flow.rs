//! `mcp flow`: workflow files checked with their lines, run durably over a real server of ours
//! (mcp-fs) and the fake model API, resumed without running again what ended.

use std::path::Path;

use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, text};
use crate::support::{mcp, workspace_binary, write_config};

/// A config with mcp-fs over `root`.
fn fs_config(dir: &Path, root: &Path) {
    write_config(
        dir,
        json!({"fs": {"command": workspace_binary("mcp-fs").display().to_string(),
                      "args": [root.display().to_string()]}}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    fs_config(&root, &root);
    let bad = root.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad
inputs:
  path: string
steps:
  - id: first
    call: fs.read_text_file
    with:
      path: ${{ steps.later.text }}
  - id: typo
    call: fs.read_txt_file
  - id: wrong
    call: fs.read_text_file
    with:
      path: 12
  - id: missing
    llm: Summarize ${{ steps.nowhere.text }}
  - id: later
    call: fs.read_text_file
    with: {path: \"${{ inputs.path }}\"}
",
    )
    .unwrap();
    let run = mcp(
        &root,
        &["--json", "flow", "check", bad.to_str().unwrap()],
        "",
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let problems: Vec<(u64, String)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["line"].as_u64().unwrap(),
                p["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // The graph and the templates first (no server needed): a reference to a later step is a
    // cycle, one to no step at all is named.
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(problems[0].0, 8, "{problems:#?}");
    assert!(problems[0].1.contains("runs after first"), "{problems:#?}");
    assert_eq!(problems[1].0, 16, "{problems:#?}");
    assert!(problems[1].1.contains("no step nowhere"), "{problems:#?}");

    // With the graph mended, the server's side: the unknown tool, the argument of the wrong type.
    let text = std::fs::read_to_string(&bad)
        .unwrap()
        .replace("${{ steps.later.text }}", "${{ inputs.path }}")
        .replace("${{ steps.nowhere.text }}", "${{ steps.wrong.text }}");
    std::fs::write(&bad, text).unwrap();
    let run = mcp(&root, &["flow", "check", bad.to_str().unwrap()], "").await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines[0].ends_with("bad.yaml:9: step typo: fs has no tool read_txt_file (it has: ")
            || lines[0].contains("bad.yaml:9: step typo: fs has no tool read_txt_file"),
        "{}",
        run.stdout
    );
    assert!(
        lines[1].contains("bad.yaml:14: step wrong: argument path = 12"),
        "{}",
        run.stdout
    );
    // A run starts only from a file that checks.
    let refused = mcp(
        &root,
        &["flow", "run", bad.to_str().unwrap(), "-i", "path=x"],
        "",
    )
    .await;
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("does not check"),
        "{}",
        refused.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_recorded_and_resumed_without_running_again_what_ended() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    fs_config(&root, &root);
    std::fs::create_dir(root.join("notes")).unwrap();
    std::fs::write(root.join("notes/a.txt"), "Apples are red.").unwrap();
    let flow = root.join("digest.yaml");
    std::fs::write(
        &flow,
        "name: digest
inputs:
  dir: {type: string}
  files: {type: array, description: the files to read}
steps:
  - id: read
    for_each: ${{ inputs.files }}
    concurrency: 2
    call: fs.read_text_file
    with: {path: \"${{ inputs.dir }}/${{ item }}\"}
  - id: summary
    llm: \"Summarize in one line: ${{ steps.read.items | map(attribute='text') | join(' / ') }}\"
    schema: {type: object, required: [summary], properties: {summary: {type: string}}}
  - id: save
    call: fs.write_file
    with:
      path: ${{ inputs.dir }}/summary.txt
      content: ${{ steps.summary.structured.summary }}
  - id: skipped
    if: ${{ steps.read.items | length > 5 }}
    call: fs.read_text_file
    with: {path: \"${{ inputs.dir }}/a.txt\"}
",
    )
    .unwrap();
    let llm = FakeLlm::start(vec![
        // Not the schema's JSON: told so, the model answers again.
        text("Here is a summary: fruit."),
        text("{\"summary\": \"Fruit is colourful.\"}"),
    ])
    .await;
    let store = root.join("runs.sqlite");
    let notes = root.join("notes");
    let args = |command: &'static str| -> Vec<String> {
        vec![
            "flow".into(),
            command.into(),
            "--store".into(),
            store.display().to_string(),
            "--base-url".into(),
            llm.base_url.clone(),
            "--model".into(),
            "fake-model".into(),
            "--api-key-env".into(),
            "FAKE_KEY".into(),
        ]
    };
    let mut first = args("run");
    first.extend([
        flow.display().to_string(),
        "-i".into(),
        format!("dir={}", notes.display()),
        "-i".into(),
        "files=[\"a.txt\", \"b.txt\"]".into(),
    ]);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    // b.txt is not there yet: the second item fails, the run fails there.
    let run = mcp(&root, &first, "").await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("mcp flow resume"), "{}", run.stderr);
    assert!(
        llm.requests().is_empty(),
        "nothing after the failed step ran"
    );

    std::fs::write(root.join("notes/b.txt"), "Bananas are yellow.").unwrap();
    let mut again = args("resume");
    again.extend(["--last".to_owned(), "--json".to_owned()]);
    let again: Vec<&str> = again.iter().map(String::as_str).collect();
    let run = mcp(&root, &again, "").await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        std::fs::read_to_string(root.join("notes/summary.txt")).unwrap(),
        "Fruit is colourful."
    );
    let requests = llm.requests();
    assert_eq!(requests.len(), 2);
    let asked = requests[1].body["messages"].to_string();
    assert!(
        asked.contains("does not satisfy the JSON Schema"),
        "{asked}"
    );
    assert!(
        requests[0].body["messages"]
            .to_string()
            .contains("Apples are red. / Bananas are yellow.")
    );

    // The trace: a.txt was read once (in the first run), b.txt twice (failed, then read).
    let show: Vec<String> = vec![
        "--json".into(),
        "flow".into(),
        "list".into(),
        "--store".into(),
        store.display().to_string(),
    ];
    let listed = mcp(
        &root,
        &show.iter().map(String::as_str).collect::<Vec<_>>(),
        "",
    )
    .await;
    let runs: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs["runs"][0]["status"], "succeeded");
    let id = runs["runs"][0]["id"].as_str().unwrap().to_owned();
    let shown = mcp(
        &root,
        &[
            "--json",
            "flow",
            "show",
            &id,
            "--store",
            store.to_str().unwrap(),
        ],
        "",
    )
    .await;
    let trace: Value = serde_json::from_str(&shown.stdout).unwrap();
    let attempts = |step: &str, item: Option<u64>| -> (u64, String) {
        let record = trace["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == step && s["item"].as_u64() == item)
            .unwrap_or_else(|| panic!("no {step} {item:?} in {trace}"));
        (
            record["attempts"].as_u64().unwrap(),
            record["status"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(attempts("read", Some(0)), (1, "succeeded".to_owned()));
    assert_eq!(attempts("read", Some(1)), (2, "succeeded".to_owned()));
    assert_eq!(attempts("summary", None), (1, "succeeded".to_owned()));
    assert_eq!(attempts("save", None), (1, "succeeded".to_owned()));
    assert_eq!(attempts("skipped", None).1, "skipped");
    let text_trace = mcp(
        &root,
        &["flow", "show", &id, "--store", store.to_str().unwrap()],
        "",
    )
    .await;
    assert!(
        text_trace.stdout.contains("summary"),
        "{}",
        text_trace.stdout
    );
    assert!(
        text_trace.stdout.contains("Fruit is colourful."),
        "{}",
        text_trace.stdout
    );
}
