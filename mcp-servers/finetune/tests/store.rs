//! The job store: what a restarted server finds, and the status moves it refuses.

use mcp_server_finetune::{
    job::{JobSpec, Method, Status},
    store::{EventKind, Level, Store, StoreError},
};

fn spec() -> JobSpec {
    serde_json::from_value(serde_json::json!({
        "method": "sft",
        "model": "/models/tiny",
        "training_file": "/data/train.jsonl",
        "hyperparameters": {"n_epochs": 2, "learning_rate": "auto"},
    }))
    .unwrap()
}

#[test]
fn jobs_events_and_checkpoints_survive_a_reopen() {
    let data = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(data.path()).unwrap();
        let job = store
            .insert("ftjob-a", &spec(), &data.path().join("jobs/ftjob-a"))
            .unwrap();
        assert_eq!(job.status, Status::ValidatingFiles);
        assert_eq!(job.spec.method, Method::Sft);
        store.transition("ftjob-a", Status::Queued, None).unwrap();
        store.transition("ftjob-a", Status::Running, None).unwrap();
        store.set_backend_ref("ftjob-a", "pid:1234").unwrap();
        for step in 1..=3u64 {
            store
                .event(
                    "ftjob-a",
                    Level::Info,
                    EventKind::Metrics,
                    &format!("step {step}"),
                    Some(&serde_json::json!({"step": step, "train_loss": 3.0 / step as f64})),
                )
                .unwrap();
        }
        store
            .checkpoint(
                "ftjob-a",
                2,
                &data.path().join("jobs/ftjob-a/checkpoint-2"),
                &serde_json::json!({"train_loss": 1.5}),
            )
            .unwrap();
    }
    let store = Store::open(data.path()).unwrap();
    let job = store.get("ftjob-a").unwrap();
    assert_eq!(job.status, Status::Running);
    assert_eq!(job.step, 3);
    assert!(job.started_at.is_some());
    assert_eq!(job.backend_ref.as_deref(), Some("pid:1234"));
    assert_eq!(job.spec, spec());
    let events = store.events("ftjob-a", None, 100).unwrap();
    // queued, running, three metrics, one checkpoint.
    assert_eq!(events.len(), 6, "{events:?}");
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let after = events[3].seq;
    let newer = store.events("ftjob-a", Some(after), 100).unwrap();
    assert_eq!(newer.len(), 2);
    assert!(newer.iter().all(|e| e.seq > after));
    let checkpoints = store.checkpoints("ftjob-a").unwrap();
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].step, 2);
    assert_eq!(checkpoints[0].metrics["train_loss"], 1.5);
}

#[test]
fn impossible_moves_are_refused_and_change_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut store = Store::open(data.path()).unwrap();
    store
        .insert("ftjob-b", &spec(), &data.path().join("b"))
        .unwrap();
    let error = store
        .transition("ftjob-b", Status::Succeeded, None)
        .unwrap_err();
    assert!(matches!(error, StoreError::Transition { .. }), "{error}");
    assert_eq!(
        store.get("ftjob-b").unwrap().status,
        Status::ValidatingFiles
    );
    store.transition("ftjob-b", Status::Queued, None).unwrap();
    store.transition("ftjob-b", Status::Running, None).unwrap();
    let done = store
        .transition("ftjob-b", Status::Cancelled, Some("cancelled by the user"))
        .unwrap();
    assert!(done.finished_at.is_some());
    assert_eq!(done.error.as_deref(), Some("cancelled by the user"));
    // A finished job cannot finish again (a late "succeeded" loses the race to the cancel)...
    assert!(
        store
            .transition("ftjob-b", Status::Succeeded, None)
            .is_err()
    );
    // ... but it can be queued again to resume, which clears the ending.
    let again = store.transition("ftjob-b", Status::Queued, None).unwrap();
    assert_eq!(again.finished_at, None);
    assert_eq!(again.error, None);
    assert!(matches!(store.get("nope"), Err(StoreError::NoJob(_))));
    assert!(matches!(
        store.events("nope", None, 10),
        Err(StoreError::NoJob(_))
    ));
}

#[test]
fn two_jobs_never_share_a_directory_and_list_pages() {
    let data = tempfile::tempdir().unwrap();
    let mut store = Store::open(data.path()).unwrap();
    for i in 0..5 {
        store
            .insert(
                &format!("ftjob-{i}"),
                &spec(),
                &data.path().join(format!("d{i}")),
            )
            .unwrap();
    }
    assert!(
        store
            .insert("ftjob-x", &spec(), &data.path().join("d1"))
            .is_err()
    );
    let first = store.list(None, 3).unwrap();
    assert_eq!(first.len(), 3);
    let rest = store.list(Some(&first[2].id), 3).unwrap();
    assert_eq!(rest.len(), 2);
    let mut all: Vec<String> = first.iter().chain(&rest).map(|j| j.id.clone()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 5);
}
