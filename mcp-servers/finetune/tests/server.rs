//! `mcp-finetune` through the protocol, from rmcp as a real client over stdio: validate, create
//! (dry run and real, waiting with progress), watch, cancel and resume, artifacts and resources;
//! and a server killed with SIGKILL mid-job that finds the job again on restart.

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, GetTaskParams, GetTaskResult,
    NumberOrString, ProgressToken, ReadResourceRequestParams, RequestParamsMeta as _, TaskPayload,
    TaskStatus,
};
use std::time::Duration;

use crate::support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_launch_watch_cancel_resume_and_quantize() {
    let dir = tempfile::tempdir().unwrap();
    let (model, train) = fixtures(dir.path());
    let bad = dir.path().join("bad.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&train)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines[2] = r#"{"messages": [{"role": "user", "content": "hi"}"#.to_owned();
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let data_dir = dir.path().join("data");
    let server = start(&data_dir).await;
    let client = &server.client;

    let mut tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    tools.sort();
    assert_eq!(
        tools,
        [
            "cancel_job",
            "create_job",
            "evaluate_job",
            "generate",
            "get_job",
            "list_backends",
            "list_checkpoints",
            "list_events",
            "list_jobs",
            "resume_job",
            "validate_dataset"
        ]
    );
    let backends = data(&call(client, "list_backends", json!({})).await);
    assert_eq!(backends["backends"][0]["name"], "local");
    assert_eq!(backends["backends"][0]["available"], true);

    // Validation: the broken line by number; exact token counts with the model's tokenizer.
    let report = data(
        &call(
            client,
            "validate_dataset",
            json!({"path": bad, "method": "sft"}),
        )
        .await,
    );
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"][0]["line"], 3);
    let report = data(
        &call(
            client,
            "validate_dataset",
            json!({"path": train, "model": model}),
        )
        .await,
    );
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["examples"], 12);
    assert_eq!(report["tokenizer"], "the model's tokenizer");

    // Bad data: an error naming the line, and no job.
    let refused = call(
        client,
        "create_job",
        json!({"method": "sft", "model": model, "training_file": bad}),
    )
    .await;
    assert_eq!(refused.is_error, Some(true));
    assert!(text(&refused).contains("line 3"), "{}", text(&refused));
    let jobs = data(&call(client, "list_jobs", json!({})).await);
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0);

    // A dry run shows the config and the command, and launches nothing.
    let dry = data(
        &call(
            client,
            "create_job",
            json!({"method": "sft", "model": model, "training_file": train, "dry_run": true}),
        )
        .await,
    );
    assert!(dry["job"].is_null());
    assert!(
        dry["command"].as_str().unwrap().contains("train --config"),
        "{dry}"
    );
    assert_eq!(dry["files"][0][0], "config.json");
    assert_eq!(dry["config"]["hyperparameters"]["lora_rank"], 8);
    assert_eq!(
        data(&call(client, "list_jobs", json!({})).await)["jobs"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // External recipes from the same job: TRL's and Axolotl's configs and commands.
    let trl = data(&call(client, "create_job", json!({"method": "sft", "model": model, "training_file": train, "trainer": "trl", "dry_run": true})).await);
    assert!(
        trl["command"]
            .as_str()
            .unwrap()
            .starts_with("trl sft --config "),
        "{trl}"
    );
    let yaml = trl["files"][1][1].as_str().unwrap();
    assert_eq!(trl["files"][1][0], "trl.yaml");
    assert!(
        yaml.contains("use_peft: true") && yaml.contains("lora_target_modules: all-linear"),
        "{yaml}"
    );
    let prefs = dir.path().join("prefs.jsonl");
    let pairs: Vec<String> = (0..12)
        .map(|i| {
            json!({"prompt": format!("Say {i}"), "chosen": format!("{i}"), "rejected": "no"})
                .to_string()
        })
        .collect();
    std::fs::write(&prefs, pairs.join("\n")).unwrap();
    let axolotl = data(&call(client, "create_job", json!({"method": "dpo", "model": model, "training_file": prefs, "trainer": "axolotl", "dry_run": true})).await);
    assert!(
        axolotl["command"]
            .as_str()
            .unwrap()
            .starts_with("axolotl train "),
        "{axolotl}"
    );
    assert!(
        axolotl["files"][1][1].as_str().unwrap().contains("rl: dpo"),
        "{axolotl}"
    );
    // Without dry_run, an external trainer that is not installed is an error that says so.
    if which_not("axolotl") {
        let refused = call(
            client,
            "create_job",
            json!({"method": "dpo", "model": model, "training_file": prefs, "trainer": "axolotl"}),
        )
        .await;
        assert_eq!(refused.is_error, Some(true));
        assert!(text(&refused).contains("not on PATH"), "{}", text(&refused));
    }

    // A LoRA run to the end, waited on with progress, with a GGUF artifact.
    let hyperparameters = json!({"n_epochs": 10, "batch_size": 4, "learning_rate": 0.01, "lora_rank": 8, "checkpoint_every": 10});
    let mut request = CallToolRequestParams::new("create_job").with_arguments(
        json!({"method": "sft", "model": model, "training_file": train, "hyperparameters": hyperparameters,
               "quantize": "q8_0", "suffix": "counting", "wait_seconds": 300})
        .as_object()
        .unwrap()
        .clone(),
    );
    request.set_progress_token(ProgressToken(NumberOrString::Number(1)));
    let created = data(&client.call_tool(request).await.unwrap());
    let job = created["job"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["job"]["status"], "succeeded", "{created}");
    let kinds: Vec<&str> = created["job"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["lora_adapter", "model", "gguf"]);
    let gguf = created["job"]["artifacts"][2]["path"].as_str().unwrap();
    assert!(std::fs::read(gguf).unwrap().starts_with(b"GGUF"));
    assert!(gguf.ends_with("model-counting-q8_0.gguf"), "{gguf}");
    // rmcp hands notifications to the client's handler in tasks of their own, so the last one
    // may be recorded just after the answer arrives.
    let mut progress = server.recorder.received();
    for _ in 0..100 {
        if progress.len() >= 2 && progress.last().is_some_and(|p| p.progress >= 30.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        progress = server.recorder.received();
    }
    assert!(progress.len() >= 2, "{progress:?}");
    assert!(
        progress.windows(2).all(|w| w[0].progress < w[1].progress),
        "{progress:?}"
    );
    assert_eq!(progress.last().unwrap().total, Some(30.0));

    let events = data(&call(client, "list_events", json!({"job": job, "limit": 1000})).await);
    assert_eq!(metric_steps(&events), (1..=30).collect::<Vec<_>>());
    // The GGUF file was read back and measured against the merged model.
    let perplexity = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("q8_0 perplexity")
        })
        .unwrap_or_else(|| panic!("no perplexity check in {events}"));
    let (merged, quantized) = (
        perplexity["data"]["merged"].as_f64().unwrap(),
        perplexity["data"]["quantized"].as_f64().unwrap(),
    );
    assert!((quantized / merged - 1.0).abs() < 0.01, "{perplexity}");
    let last_seq = events["events"].as_array().unwrap()[5]["seq"]
        .as_u64()
        .unwrap();
    let newer = data(
        &call(
            client,
            "list_events",
            json!({"job": job, "after": last_seq}),
        )
        .await,
    );
    assert!(
        newer["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["seq"].as_u64().unwrap() > last_seq)
    );
    let checkpoints = data(&call(client, "list_checkpoints", json!({"job": job})).await);
    let steps: Vec<u64> = checkpoints["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [10, 20, 30]);
    let csv = client
        .read_resource(ReadResourceRequestParams::new(format!(
            "finetune://jobs/{job}/metrics.csv"
        )))
        .await
        .unwrap();
    let csv = match &csv.contents[0] {
        rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("{other:?}"),
    };
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("step,epoch,train_loss"));
    assert_eq!(rows.len(), 31);
    let loss = |row: &str| row.split(',').nth(2).unwrap().parse::<f64>().unwrap();
    let first: f64 = rows[1..4].iter().map(|r| loss(r)).sum::<f64>() / 3.0;
    let last: f64 = rows[28..31].iter().map(|r| loss(r)).sum::<f64>() / 3.0;
    assert!(last < 0.8 * first, "{csv}");

    // A long run cancelled mid-way stops at a checkpoint; resumed, it carries on from there.
    let long =
        json!({"n_epochs": 400, "batch_size": 4, "learning_rate": 0.01, "checkpoint_every": 1000});
    let created = data(&call(client, "create_job", json!({"method": "sft", "model": model, "training_file": train, "hyperparameters": long})).await);
    let job = created["job"]["id"].as_str().unwrap().to_owned();
    until_step(client, &job, 5).await;
    // One local job at a time (--max-concurrent 1): a second one waits in the queue.
    let short = json!({"n_epochs": 2, "batch_size": 4, "learning_rate": 0.01});
    let second = data(&call(client, "create_job", json!({"method": "sft", "model": model, "training_file": train, "hyperparameters": short})).await);
    let second = second["job"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(
        data(&call(client, "get_job", json!({"job": second})).await)["status"],
        "queued"
    );
    let cancelled = data(
        &call(
            client,
            "cancel_job",
            json!({"job": job, "wait_seconds": 120}),
        )
        .await,
    );
    // The first stopped: the second runs.
    let finished = data(
        &call(
            client,
            "get_job",
            json!({"job": second, "wait_seconds": 120}),
        )
        .await,
    );
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let stopped_at = cancelled["step"].as_u64().unwrap();
    assert!((5..1200).contains(&stopped_at), "{cancelled}");
    let checkpoints = data(&call(client, "list_checkpoints", json!({"job": job})).await);
    assert_eq!(
        checkpoints["checkpoints"][0]["step"].as_u64().unwrap(),
        stopped_at
    );
    let again = call(client, "cancel_job", json!({"job": job})).await;
    assert_eq!(again.is_error, Some(true));
    resume_to_end(client, &job, stopped_at, 1200).await;
    let messages = event_messages(client, &job).await;
    assert!(
        messages
            .iter()
            .any(|m| m.contains(&format!("resumed from step {stopped_at}"))),
        "{messages:?}"
    );
    server.client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_finds_its_jobs_again() {
    let dir = tempfile::tempdir().unwrap();
    let (model, train) = fixtures(dir.path());
    let data_dir = dir.path().join("data");
    let long =
        json!({"n_epochs": 150, "batch_size": 4, "learning_rate": 0.01, "checkpoint_every": 25});

    // 1. The server dies, the trainer lives: the restarted server follows the job to its end.
    let server = start(&data_dir).await;
    let created = data(&call(&server.client, "create_job", json!({"method": "sft", "model": model, "training_file": train, "hyperparameters": long})).await);
    let job = created["job"]["id"].as_str().unwrap().to_owned();
    until_step(&server.client, &job, 3).await;
    kill9(server.pid);
    drop(server);
    let server = start(&data_dir).await;
    let done = data(
        &call(
            &server.client,
            "get_job",
            json!({"job": job, "wait_seconds": 600}),
        )
        .await,
    );
    assert_eq!(done["status"], "succeeded", "{done}");
    let steps = all_metric_steps(&server.client, &job).await;
    // Every step once: nothing lost while no server watched, nothing read twice.
    assert_eq!(steps, (1..=450).collect::<Vec<_>>());

    // 2. Both die: the restarted server reports the job failed, with the reason; resumed, it
    //    finishes from its last checkpoint.
    let created = data(&call(&server.client, "create_job", json!({"method": "sft", "model": model, "training_file": train, "hyperparameters": long})).await);
    let job = created["job"]["id"].as_str().unwrap().to_owned();
    until_step(&server.client, &job, 30).await;
    let trainer: u32 =
        data(&call(&server.client, "get_job", json!({"job": job})).await)["backend_ref"]
            .as_str()
            .unwrap()
            .trim_start_matches("pid:")
            .parse()
            .unwrap();
    kill9(server.pid);
    kill9(trainer);
    drop(server);
    let server = start(&data_dir).await;
    let failed = data(
        &call(
            &server.client,
            "get_job",
            json!({"job": job, "wait_seconds": 30}),
        )
        .await,
    );
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("without a final report"),
        "{failed}"
    );
    let resumed = data(
        &call(
            &server.client,
            "resume_job",
            json!({"job": job, "wait_seconds": 600}),
        )
        .await,
    );
    assert_eq!(resumed["status"], "succeeded", "{resumed}");
    server.client.cancel().await.unwrap();
}

fn which_not(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| !std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (model, train) = fixtures(dir.path());
    let data_dir = dir.path().join("data");
    let first = start(&data_dir).await;
    // Let the first take the queue before the second starts.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let second = start(&data_dir).await;
    let long =
        json!({"n_epochs": 100, "batch_size": 4, "learning_rate": 0.01, "checkpoint_every": 50});
    // A job recorded through the second server is run once, by the first.
    let created = data(&call(&second.client, "create_job", json!({"method": "sft", "model": model, "training_file": train, "hyperparameters": long})).await);
    let job = created["job"]["id"].as_str().unwrap().to_owned();
    until_step(&second.client, &job, 3).await;
    let seen_by_first = data(&call(&first.client, "get_job", json!({"job": job})).await);
    assert_eq!(seen_by_first["status"], "running");
    // The first dies: the second takes the queue over and follows the job to its end.
    kill9(first.pid);
    drop(first);
    let done = data(
        &call(
            &second.client,
            "get_job",
            json!({"job": job, "wait_seconds": 300}),
        )
        .await,
    );
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        all_metric_steps(&second.client, &job).await,
        (1..=300).collect::<Vec<_>>()
    );
    second.client.cancel().await.unwrap();
}

/// Finding 4 of the attack run: `validate_dataset` (and `create_job`) on files outside the
/// allowed directories, through a link out, on a FIFO; then SIGTERM is honoured at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_and_models_are_confined_and_a_fifo_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let (model, train) = fixtures(dir.path());
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("keys.jsonl");
    std::fs::write(
        &secret,
        "{\"messages\": [{\"role\": \"sk-live-TOPSECRET\", \"content\": \"x\"}]}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(&secret, dir.path().join("link.jsonl")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).unwrap();
    let fifo = dir.path().join("fifo.jsonl");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let server = start(&dir.path().join("data")).await;
    let client = &server.client;

    let outside_paths = [
        secret.display().to_string(),
        "/etc/shadow".to_owned(),
        "/proc/self/environ".to_owned(),
        "/dev/zero".to_owned(),
        dir.path().join("link.jsonl").display().to_string(),
        dir.path().join("linkdir/keys.jsonl").display().to_string(),
        dir.path().join("../../etc/passwd").display().to_string(),
    ];
    for path in &outside_paths {
        let refused = call(client, "validate_dataset", json!({"path": path})).await;
        assert_eq!(refused.is_error, Some(true), "{path}: {}", text(&refused));
        let message = text(&refused);
        assert!(!message.contains("TOPSECRET"), "{path}: {message}");
        assert!(message.contains("access denied"), "{path}: {message}");
        assert!(message.contains("--allow-dir"), "{path}: {message}");
    }
    // A model or a training file outside: no job, not even a dry run.
    for arguments in [
        json!({"method": "sft", "model": "/etc", "training_file": train, "dry_run": true}),
        json!({"method": "sft", "model": model, "training_file": secret, "dry_run": true}),
        json!({"method": "sft", "model": model, "training_file": train,
               "validation_file": "/etc/shadow", "dry_run": true}),
    ] {
        let refused = call(client, "create_job", arguments.clone()).await;
        assert_eq!(
            refused.is_error,
            Some(true),
            "{arguments}: {}",
            text(&refused)
        );
        assert!(
            text(&refused).contains("access denied"),
            "{}",
            text(&refused)
        );
    }
    // A FIFO inside: refused by kind, at once.
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        call(client, "validate_dataset", json!({"path": fifo})),
    )
    .await
    .expect("validate_dataset on a FIFO never answered");
    assert_eq!(refused.is_error, Some(true), "{}", text(&refused));
    assert!(text(&refused).contains("FIFO"), "{}", text(&refused));
    // A FIFO named like a model: refused too, not read forever.
    let fifo_model = dir.path().join("fifo.gguf");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo_model)
            .status()
            .unwrap()
            .success()
    );
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        call(
            client,
            "validate_dataset",
            json!({"path": train, "model": fifo_model}),
        ),
    )
    .await
    .expect("validate_dataset with a FIFO model never answered");
    assert_eq!(refused.is_error, Some(true), "{}", text(&refused));
    assert!(
        text(&refused).contains("not a regular file"),
        "{}",
        text(&refused)
    );
    // What is inside still works.
    let report = data(&call(client, "validate_dataset", json!({"path": train})).await);
    assert_eq!(report["valid"], true, "{report}");

    assert!(
        signal_and_wait(server.pid, "TERM"),
        "the server did not stop on SIGTERM"
    );
}

/// Finding 11 (mcp-finetune): absurd hyperparameters were accepted (`lora_rank` 100000,
/// `learning_rate` -1 or 1e308, `lora_alpha` -5, `checkpoint_every` 0), and `n_epochs: -1` gave
/// "did not match any variant of untagged enum Either". Each is refused, naming the field and
/// its range, before anything is launched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_hyperparameters_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (model, train) = fixtures(dir.path());
    let server = start(&dir.path().join("data")).await;
    let client = &server.client;
    for (field, value) in [
        ("lora_rank", json!(100_000)),
        ("learning_rate", json!(-1)),
        ("learning_rate", json!(1e308)),
        ("lora_alpha", json!(-5)),
        ("checkpoint_every", json!(0)),
        ("n_epochs", json!(-1)),
        ("n_epochs", json!(2.5)),
        ("batch_size", json!("many")),
        ("warmup_ratio", json!(1.5)),
        ("gradient_accumulation_steps", json!(0)),
        ("eval_steps", json!(0)),
        ("early_stopping_patience", json!(-1)),
        ("seed", json!(-3)),
        ("lr_scheduler", json!("exponential")),
        ("packing", json!("yes")),
    ] {
        let refused = call(
            client,
            "create_job",
            json!({"method": "sft", "model": model, "training_file": train, "dry_run": true,
                   "hyperparameters": {field: value}}),
        )
        .await;
        let message = text(&refused);
        assert_eq!(refused.is_error, Some(true), "{field}={value}: {message}");
        assert!(
            message.contains(&format!("hyperparameter {field}")),
            "{field}={value}: {message}"
        );
        assert!(
            message.contains("\"auto\" or"),
            "{field}={value}: {message}"
        );
        assert!(!message.contains("untagged"), "{field}={value}: {message}");
    }
    let unknown = call(
        client,
        "create_job",
        json!({"method": "sft", "model": model, "training_file": train, "dry_run": true,
               "hyperparameters": {"epochs": 3}}),
    )
    .await;
    assert!(
        text(&unknown).contains("unknown field \"epochs\" in hyperparameters"),
        "{}",
        text(&unknown)
    );
    // In range, and "auto", still go through.
    let dry = data(
        &call(
            client,
            "create_job",
            json!({"method": "sft", "model": model, "training_file": train, "dry_run": true,
                   "hyperparameters": {"n_epochs": 2, "learning_rate": 0.001, "lora_rank": "auto"}}),
        )
        .await,
    );
    assert_eq!(dry["dry_run"], true);

    // The training settings are resolved into the config the trainer reads, and the same job's
    // Axolotl recipe carries them under Axolotl's names.
    let valid = dir.path().join("valid.jsonl");
    std::fs::copy(&train, &valid).unwrap();
    let settings = json!({"seed": 42, "warmup_ratio": 0.1, "lr_scheduler": "linear",
                          "gradient_accumulation_steps": 2, "packing": true, "eval_steps": 3,
                          "early_stopping_patience": 2});
    let dry = data(
        &call(
            client,
            "create_job",
            json!({"method": "sft", "model": model, "training_file": train, "dry_run": true,
                   "validation_file": valid, "hyperparameters": settings}),
        )
        .await,
    );
    let config = &dry["config"];
    assert_eq!(config["seed"], 42, "{dry}");
    let resolved = &config["hyperparameters"];
    assert_eq!(resolved["warmup_ratio"], 0.1, "{dry}");
    assert_eq!(resolved["lr_scheduler"], "linear", "{dry}");
    assert_eq!(resolved["gradient_accumulation_steps"], 2, "{dry}");
    assert_eq!(resolved["packing"], true, "{dry}");
    assert_eq!(resolved["eval_steps"], 3, "{dry}");
    assert_eq!(resolved["early_stopping_patience"], 2, "{dry}");
    let auto = data(
        &call(
            client,
            "create_job",
            json!({"method": "sft", "model": model, "training_file": train, "dry_run": true}),
        )
        .await,
    );
    let resolved = &auto["config"]["hyperparameters"];
    assert_eq!(resolved["lr_scheduler"], "cosine", "{auto}");
    assert_eq!(resolved["gradient_accumulation_steps"], 1, "{auto}");
    assert_eq!(resolved["early_stopping_patience"], 0, "{auto}");
    let axolotl = data(
        &call(
            client,
            "create_job",
            json!({"method": "sft", "model": model, "training_file": train, "dry_run": true,
                   "trainer": "axolotl", "validation_file": valid, "hyperparameters": settings}),
        )
        .await,
    );
    let yaml = axolotl["files"][1][1].as_str().unwrap();
    for line in [
        "seed: 42",
        "warmup_ratio: 0.1",
        "lr_scheduler: linear",
        "gradient_accumulation_steps: 2",
        "sample_packing: true",
        "eval_steps: 3",
        "early_stopping_patience: 2",
        "test_datasets:",
    ] {
        assert!(yaml.lines().any(|l| l == line), "{line} not in {yaml}");
    }
    // Settings that cannot work together are refused before anything runs.
    let prefs = dir.path().join("prefs.jsonl");
    std::fs::write(
        &prefs,
        json!({"prompt": "Hi", "chosen": "Hello", "rejected": "Go"}).to_string(),
    )
    .unwrap();
    for (arguments, expected) in [
        (
            json!({"method": "sft", "model": model, "training_file": train, "dry_run": true,
                   "hyperparameters": {"early_stopping_patience": 2}}),
            "give a validation_file",
        ),
        (
            json!({"method": "dpo", "model": model, "training_file": prefs, "dry_run": true,
                   "hyperparameters": {"packing": true}}),
            "not to dpo",
        ),
        (
            json!({"method": "sft", "model": model, "training_file": train, "dry_run": true,
                   "trainer": "trl", "validation_file": valid,
                   "hyperparameters": {"early_stopping_patience": 2}}),
            "no early stopping",
        ),
    ] {
        let refused = call(client, "create_job", arguments.clone()).await;
        assert_eq!(refused.is_error, Some(true), "{arguments}");
        assert!(text(&refused).contains(expected), "{}", text(&refused));
    }
    // A Qwen2 model trains, but its GGUF export is not written yet: quantize is refused at once,
    // not after the training.
    let qwen2 = dir.path().join("qwen2");
    let status = std::process::Command::new(MCP_FINETUNE)
        .args(["create-tiny-model", "--arch", "qwen2"])
        .arg(&qwen2)
        .status()
        .unwrap();
    assert!(status.success());
    let refused = call(
        client,
        "create_job",
        json!({"method": "sft", "model": qwen2, "training_file": train, "dry_run": true,
               "quantize": "q8_0"}),
    )
    .await;
    assert_eq!(refused.is_error, Some(true));
    assert!(
        text(&refused).contains("GGUF export of qwen2"),
        "{}",
        text(&refused)
    );
    let dry = call(
        client,
        "create_job",
        json!({"method": "sft", "model": qwen2, "training_file": train, "dry_run": true}),
    )
    .await;
    assert_ne!(dry.is_error, Some(true), "{}", text(&dry));
}

/// A task id from `create_job` for a client that declared the Tasks extension.
async fn create_task(client: &Client, arguments: serde_json::Value) -> String {
    let mut request = CallToolRequestParams::new("create_job");
    if let serde_json::Value::Object(map) = arguments {
        request = request.with_arguments(map);
    }
    match client.call_tool_once(request).await.unwrap() {
        CallToolResponse::Task(created) => created.task.task_id,
        other => panic!("expected a task: {other:?}"),
    }
}

/// Polls `tasks/get` until the task ends (a training run takes seconds; 600 s at most).
async fn task_end(client: &Client, id: &str) -> GetTaskResult {
    for _ in 0..3000 {
        let task = client.get_task(GetTaskParams::new(id)).await.unwrap();
        if task.task.status().is_terminal() {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("task {id} did not end");
}

/// The one running job, once it is past step 3 (jobs created in the same second tie in
/// `list_jobs`' order, so the newest is not the way to find it).
async fn running_job(client: &Client) -> String {
    for _ in 0..1200 {
        let jobs = data(&call(client, "list_jobs", json!({"limit": 10})).await);
        let running: Vec<&serde_json::Value> = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|job| job["status"] == "running" && job["step"].as_u64().unwrap_or(0) >= 3)
            .collect();
        if let [job] = running.as_slice() {
            return job["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no job ran past step 3");
}

/// Jobs as Tasks (SEP-2663): a client that declared the extension gets a task from
/// `create_job` whose status message follows the job and whose result is the finished job with
/// its artifacts; `tasks/cancel` stops the trainer at a checkpoint (the job `cancelled`, the task
/// too); a server killed with SIGKILL mid-task, restarted, still answers `tasks/get` for the task,
/// which follows the job to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_as_a_task_follows_the_job_through_cancel_and_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (model, train) = fixtures(dir.path());
    let data_dir = dir.path().join("data");
    let server = start_following_tasks(&data_dir).await;
    let client = &server.client;
    let short = json!({"n_epochs": 2, "batch_size": 4, "learning_rate": 0.01});
    let long =
        json!({"n_epochs": 150, "batch_size": 4, "learning_rate": 0.01, "checkpoint_every": 25});
    let job = |hyperparameters: &serde_json::Value| json!({"method": "sft", "model": model, "training_file": train, "hyperparameters": hyperparameters});

    let id = create_task(client, job(&short)).await;
    let done = task_end(client, &id).await;
    let TaskPayload::Completed { result } = &done.task.payload else {
        panic!("{done:?}");
    };
    assert_ne!(result.get("isError"), Some(&json!(true)), "{result:?}");
    assert_eq!(
        result["structuredContent"]["status"], "succeeded",
        "{result:?}"
    );
    assert!(
        result["structuredContent"]["artifacts"]
            .as_array()
            .is_some_and(|artifacts| !artifacts.is_empty()),
        "{result:?}"
    );
    assert!(
        done.task
            .task
            .status_message
            .as_deref()
            .unwrap()
            .contains("succeeded"),
        "{done:?}"
    );

    // Cancelled: the trainer stops at a checkpoint, the job and the task end cancelled.
    let id = create_task(client, job(&long)).await;
    let running = client
        .get_task(GetTaskParams::new(id.clone()))
        .await
        .unwrap();
    assert_eq!(running.task.status(), TaskStatus::Working);
    let job_id = running_job(client).await;
    client
        .cancel_task(CancelTaskParams::new(id.clone()))
        .await
        .unwrap();
    let cancelled = task_end(client, &id).await;
    assert_eq!(
        cancelled.task.status(),
        TaskStatus::Cancelled,
        "{cancelled:?}"
    );
    let stopped = data(&call(client, "get_job", json!({"job": job_id})).await);
    assert_eq!(stopped["status"], "cancelled", "{stopped}");
    let checkpoints = data(&call(client, "list_checkpoints", json!({"job": job_id})).await);
    assert!(
        checkpoints["checkpoints"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "the trainer left a checkpoint to resume from: {checkpoints}"
    );

    // SIGKILL mid-task: the restarted server answers for the task, which follows the job (its
    // trainer lived on) to its end.
    let id = create_task(client, job(&long)).await;
    let job_id = running_job(client).await;
    kill9(server.pid);
    drop(server);
    let server = start_following_tasks(&data_dir).await;
    let client = &server.client;
    let after = client
        .get_task(GetTaskParams::new(id.clone()))
        .await
        .unwrap();
    assert!(!after.task.status().is_terminal(), "{after:?}");
    let done = task_end(client, &id).await;
    let TaskPayload::Completed { result } = &done.task.payload else {
        panic!("{done:?}");
    };
    assert_eq!(result["structuredContent"]["id"], job_id.as_str());
    assert_eq!(result["structuredContent"]["status"], "succeeded");
    server.client.cancel().await.unwrap();
}

/// Chat examples whose answer is always `answer`, whatever is asked: a pattern a tiny model
/// learns in seconds and its base does not know.
fn constant_answers(path: &std::path::Path, prompts: &[String], answer: &str) {
    let lines: Vec<String> = prompts
        .iter()
        .map(|prompt| {
            json!({"messages": [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": answer},
            ]})
            .to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tuned_model_answers_and_scores_above_its_base() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = fixtures(dir.path());
    let train = dir.path().join("always.jsonl");
    let asked: Vec<String> = (0..12).map(|i| format!("Question number {i}?")).collect();
    constant_answers(&train, &asked, "Paris");
    let held_out = dir.path().join("held-out.jsonl");
    let unseen: Vec<String> = ["What now?", "Where to?", "Any idea?", "Tell me more."]
        .map(str::to_owned)
        .to_vec();
    constant_answers(&held_out, &unseen, "Paris");
    let server = start(&dir.path().join("data")).await;
    let client = &server.client;

    // Nothing to answer with before the job has run, and requests that make no sense.
    for (arguments, expected) in [
        (json!({"job": "ftjob-nope", "prompt": "hi"}), "no job"),
        (json!({"model": "/etc", "prompt": "hi"}), "allowed"),
        (
            json!({"model": model, "job": "x", "prompt": "hi"}),
            "either job",
        ),
        (json!({"model": model}), "either messages"),
        (
            json!({"model": model, "prompt": "hi", "max_tokens": 100_000}),
            "max_tokens",
        ),
        (
            json!({"model": model, "prompt": "hi", "temperature": -1}),
            "temperature",
        ),
    ] {
        let refused = call(client, "generate", arguments.clone()).await;
        assert_eq!(refused.is_error, Some(true), "{arguments}");
        assert!(
            text(&refused).contains(expected),
            "{arguments}: {}",
            text(&refused)
        );
    }
    // The base model answers (not what the job will teach it).
    let asked_base = data(
        &call(
            client,
            "generate",
            json!({"model": model, "messages": [{"role": "user", "content": "What now?"}], "max_tokens": 12}),
        )
        .await,
    );
    assert!(
        !asked_base["text"].as_str().unwrap().contains("Paris"),
        "{asked_base}"
    );
    assert!(
        asked_base["prompt_tokens"].as_u64().unwrap() > 5,
        "{asked_base}"
    );

    // A fixed seed: the job id would draw another run each time.
    let hyperparameters =
        json!({"n_epochs": 16, "batch_size": 4, "learning_rate": 0.01, "seed": 1});
    let created = data(
        &call(
            client,
            "create_job",
            json!({"method": "sft", "model": model, "training_file": train,
                   "validation_file": held_out, "hyperparameters": hyperparameters,
                   "quantize": "q8_0", "wait_seconds": 300}),
        )
        .await,
    );
    let job = created["job"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["job"]["status"], "succeeded", "{created}");

    // Evaluated on the validation file as it ended: an event, and the evaluation resource.
    let events = data(&call(client, "list_events", json!({"job": job, "limit": 1000})).await);
    let evaluated = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["message"].as_str().unwrap().starts_with("evaluation on"))
        .unwrap_or_else(|| panic!("{events}"));
    let automatic = &evaluated["data"];
    assert_eq!(automatic["scored"], 4, "{automatic}");
    assert!(
        automatic["tuned"]["loss"].as_f64().unwrap() < automatic["base"]["loss"].as_f64().unwrap(),
        "{automatic}"
    );
    assert!(
        automatic["tuned"]["contains"].as_f64().unwrap()
            > automatic["base"]["contains"].as_f64().unwrap(),
        "{automatic}"
    );
    let resource = client
        .read_resource(ReadResourceRequestParams::new(format!(
            "finetune://jobs/{job}/evaluation.json"
        )))
        .await
        .unwrap();
    let rmcp::model::ResourceContents::TextResourceContents { text: report, .. } =
        &resource.contents[0]
    else {
        panic!("{resource:?}")
    };
    let report: serde_json::Value = serde_json::from_str(report).unwrap();
    assert_eq!(&report, automatic);

    // The tuned model answers with what it learned, on a question it never saw; so does its
    // GGUF file.
    for gguf in [false, true] {
        let answer = data(
            &call(
                client,
                "generate",
                json!({"job": job, "gguf": gguf, "max_tokens": 16,
                       "messages": [{"role": "user", "content": "Where should we go?"}]}),
            )
            .await,
        );
        assert!(
            answer["text"].as_str().unwrap().contains("Paris"),
            "{answer}"
        );
        assert_eq!(answer["finish_reason"], "stop", "{answer}");
    }

    // evaluate_job on held-out data, by a metric asked for: tuned above base.
    for metric in ["exact_match", "rouge_l", "contains"] {
        let evaluation = data(
            &call(
                client,
                "evaluate_job",
                json!({"job": job, "file": held_out, "metric": metric}),
            )
            .await,
        );
        assert_eq!(evaluation["scored"], 4, "{evaluation}");
        let (base, tuned) = (
            evaluation["base"][metric].as_f64().unwrap(),
            evaluation["tuned"][metric].as_f64().unwrap(),
        );
        assert!(tuned > base && tuned >= 0.75, "{metric}: {evaluation}");
        let example = &evaluation["examples"][0];
        assert_eq!(example["expected"], "Paris", "{evaluation}");
        assert!(
            example["tuned_answer"].as_str().unwrap().contains("Paris"),
            "{evaluation}"
        );
    }
    let refused = call(
        client,
        "evaluate_job",
        json!({"job": job, "file": "/etc/passwd", "metric": "loss"}),
    )
    .await;
    assert_eq!(refused.is_error, Some(true));
    assert!(text(&refused).contains("allowed"), "{}", text(&refused));
    server.client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_flight_predicts_the_run_and_refuses_a_job_too_big() {
    let dir = tempfile::tempdir().unwrap();
    let (model, train) = fixtures(dir.path());
    let server = start(&dir.path().join("data")).await;
    let client = &server.client;
    let hyperparameters = json!({"n_epochs": 5, "batch_size": 2, "gradient_accumulation_steps": 2});
    let dry = data(
        &call(
            client,
            "create_job",
            json!({"method": "sft", "model": model, "training_file": train, "dry_run": true,
                   "hyperparameters": hyperparameters}),
        )
        .await,
    );
    let preflight = &dry["preflight"];
    // 12 examples, 4 a step: 3 steps an epoch.
    assert_eq!(preflight["total_steps"], 15, "{dry}");
    let step = preflight["step_seconds"].as_f64().unwrap();
    let predicted = preflight["predicted_seconds"].as_f64().unwrap();
    assert!(
        step > 0.0 && predicted > 0.0 && predicted <= 15.0 * step * 1.01,
        "{preflight}"
    );
    let (peak, machine) = (
        preflight["peak_bytes"].as_u64().unwrap(),
        preflight["machine_bytes"].as_u64().unwrap(),
    );
    assert!(peak > 1_000_000 && peak < machine, "{preflight}");
    // Nothing of the pre-flight is left behind.
    let scratch = dir.path().join("data/preflight");
    assert_eq!(std::fs::read_dir(&scratch).map_or(0, |d| d.count()), 0);
    // A created job carries it as an event.
    let created = data(
        &call(
            client,
            "create_job",
            json!({"method": "sft", "model": model, "training_file": train,
                   "hyperparameters": hyperparameters, "wait_seconds": 120}),
        )
        .await,
    );
    let job = created["job"]["id"].as_str().unwrap();
    assert_eq!(created["job"]["total_steps"], 15, "{created}");
    let messages = event_messages(client, job).await;
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("pre-flight: two steps")),
        "{messages:?}"
    );
    server.client.cancel().await.unwrap();

    // A server whose jobs may take 10 MB refuses the job with the numbers.
    let server =
        start_with_flags(&dir.path().join("data2"), &["--max-job-memory-gb", "0.01"]).await;
    let refused = call(
        &server.client,
        "create_job",
        json!({"method": "sft", "model": model, "training_file": train, "dry_run": true}),
    )
    .await;
    assert_eq!(refused.is_error, Some(true));
    let message = text(&refused);
    assert!(
        message.contains("will not fit in this server's --max-job-memory-gb")
            && message.contains("and there are 0.01 GB"),
        "{message}"
    );
    server.client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpo_job_samples_scores_and_reports_its_rewards() {
    let dir = tempfile::tempdir().unwrap();
    let (base, train) = fixtures(dir.path());
    let prompts: Vec<String> = (0..12)
        .map(|i| {
            json!({"prompt": format!("Count from {i}."), "pattern": "^[0-9 ]+$",
                   "schema": {"type": "string"}})
            .to_string()
        })
        .collect();
    let grpo = dir.path().join("grpo.jsonl");
    std::fs::write(&grpo, prompts.join("\n")).unwrap();
    let mut bad = prompts.clone();
    bad[3] = json!({"prompt": "Count.", "pattern": "([0-9]"}).to_string();
    bad[5] = json!({"prompt": "Count."}).to_string();
    let bad_file = dir.path().join("bad.jsonl");
    std::fs::write(&bad_file, bad.join("\n")).unwrap();
    let server = start(&dir.path().join("data")).await;
    let client = &server.client;
    // GRPO after SFT, the model named by the SFT job's id.
    let sft = data(
        &call(
            client,
            "create_job",
            json!({"method": "sft", "model": base, "training_file": train,
                   "hyperparameters": {"n_epochs": 1}, "wait_seconds": 300}),
        )
        .await,
    );
    assert_eq!(sft["job"]["status"], "succeeded", "{sft}");
    let model = sft["job"]["id"].as_str().unwrap().to_owned();
    for (missing, why) in [("ftjob-0000", "no job"), ("ftjob-x/../../..", "allow-dir")] {
        let refused = call(
            client,
            "create_job",
            json!({"method": "grpo", "model": missing, "training_file": grpo, "dry_run": true}),
        )
        .await;
        assert_eq!(refused.is_error, Some(true), "{missing}");
        assert!(
            text(&refused).contains(why),
            "{missing}: {}",
            text(&refused)
        );
    }

    // The rewards are checked with the dataset, each bad line named.
    let report = data(
        &call(
            client,
            "validate_dataset",
            json!({"path": bad_file, "method": "grpo"}),
        )
        .await,
    );
    assert_eq!(report["valid"], false, "{report}");
    let errors = report["errors"].to_string();
    assert!(
        errors.contains("not a regular expression") && errors.contains("no reward"),
        "{report}"
    );
    let lines: Vec<u64> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [4, 6], "{report}");
    let refused = call(
        client,
        "create_job",
        json!({"method": "grpo", "model": model, "training_file": grpo, "trainer": "trl", "dry_run": true}),
    )
    .await;
    assert_eq!(refused.is_error, Some(true));
    assert!(
        text(&refused).contains("built-in trainer"),
        "{}",
        text(&refused)
    );

    // A short run: every step reports the mean reward of its sampled answers.
    let hyperparameters = json!({"n_epochs": 1, "batch_size": 4, "num_generations": 2,
                                 "max_completion_tokens": 4, "learning_rate": 0.001});
    let created = data(
        &call(
            client,
            "create_job",
            json!({"method": "grpo", "model": model, "training_file": grpo,
                   "validation_file": grpo, "hyperparameters": hyperparameters,
                   "wait_seconds": 300}),
        )
        .await,
    );
    assert_eq!(created["job"]["status"], "succeeded", "{created}");
    let job = created["job"]["id"].as_str().unwrap();
    assert_eq!(created["job"]["resolved"]["beta"], 0.04, "{created}");
    let started_from = created["job"]["spec"]["model"].as_str().unwrap();
    assert!(
        started_from.ends_with("/model") && started_from.contains(&model),
        "{created}"
    );
    let got = data(&call(client, "get_job", json!({"job": job})).await);
    let metrics = &got["latest_metrics"];
    let reward = metrics["reward"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&reward), "{metrics}");
    assert!(metrics["valid_reward"].is_f64(), "{metrics}");
    assert!(metrics.get("token_accuracy").is_none(), "{metrics}");
    let messages = event_messages(client, job).await;
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("reward of the greedy answers to 12 validation prompts")),
        "{messages:?}"
    );
    server.client.cancel().await.unwrap();
}
