//! `validate_dataset`'s checks, line by line, on files written here.

use std::path::PathBuf;

use mcp_server_finetune::{
    dataset::{Report, TokenCounter, validate},
    job::{Hyperparameters, Method, Setting},
};

fn chat(i: usize) -> String {
    serde_json::json!({"messages": [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": format!("What is {i} plus one?")},
        {"role": "assistant", "content": format!("{}", i + 1)},
    ]})
    .to_string()
}

fn write(lines: &[String]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (dir, path)
}

fn check(lines: &[String], method: Method) -> Report {
    let (_dir, path) = write(lines);
    validate(&path, method, &TokenCounter::Estimate, 2048).unwrap()
}

#[test]
fn a_good_chat_file_is_valid_with_statistics() {
    let lines: Vec<String> = (0..12).map(chat).collect();
    let report = check(&lines, Method::Sft);
    assert!(report.valid, "{}", report.render());
    assert_eq!(report.examples, 12);
    assert_eq!(report.error_count, 0);
    assert!(report.tokens.min > 0 && report.tokens.max >= report.tokens.min);
    assert!(report.trained_tokens.total < report.tokens.total);
    assert_eq!(report.duplicate_count, 0);
}

#[test]
fn every_broken_line_is_named() {
    let mut lines: Vec<String> = (0..12).map(chat).collect();
    lines[1] = "{\"messages\": [".to_owned();
    lines[3] = r#"{"text_only": "hello"}"#.to_owned();
    lines[5] = r#"{"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]}"#.to_owned();
    lines[7] =
        r#"{"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}"#.to_owned();
    lines[9] = r#"{"messages": [{"role": "user", "content": "hi"}]}"#.to_owned();
    lines[10] = "[1, 2]".to_owned();
    let report = check(&lines, Method::Sft);
    assert!(!report.valid);
    let by_line: Vec<(usize, &str)> = report
        .errors
        .iter()
        .map(|p| (p.line, p.message.as_str()))
        .collect();
    let find = |line: usize| {
        by_line
            .iter()
            .find(|(l, _)| *l == line)
            .map(|(_, m)| *m)
            .unwrap_or_else(|| panic!("no error on line {line}: {by_line:?}"))
    };
    assert!(find(2).contains("not valid JSON"), "{}", find(2));
    assert!(find(4).contains("missing \"messages\""), "{}", find(4));
    assert!(find(6).contains("unknown role \"bot\""), "{}", find(6));
    assert!(find(8).contains("no \"content\""), "{}", find(8));
    assert!(find(10).contains("no assistant turn"), "{}", find(10));
    assert!(find(11).contains("expected a JSON object"), "{}", find(11));
    // Six bad lines leave six good ones: too few, said once, on no line.
    assert!(
        report
            .errors
            .iter()
            .any(|p| p.line == 0 && p.message.contains("at least 10"))
    );
    assert_eq!(report.error_count, 7);
    assert!(
        report
            .render()
            .contains("error: line 6: messages[0]: unknown role")
    );
}

#[test]
fn fewer_than_ten_examples_is_an_error() {
    let lines: Vec<String> = (0..9).map(chat).collect();
    let report = check(&lines, Method::Sft);
    assert!(!report.valid);
    assert_eq!(report.error_count, 1);
    assert!(report.errors[0].message.contains("9 valid examples"));
}

#[test]
fn duplicates_blank_lines_and_bad_bytes() {
    let mut lines: Vec<String> = (0..12).map(chat).collect();
    lines.push(chat(3));
    lines.push(String::new());
    lines.push(chat(4));
    let (_dir, path) = write(&lines);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"text\": \"\xff\xfe\"}\n");
    std::fs::write(&path, bytes).unwrap();
    let report = validate(&path, Method::Sft, &TokenCounter::Estimate, 2048).unwrap();
    assert_eq!(report.duplicates, vec![(13, 4), (15, 5)]);
    assert_eq!(report.duplicate_count, 2);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.message.contains("blank line"))
    );
    assert!(
        report
            .errors
            .iter()
            .any(|p| p.line == 16 && p.message.contains("not UTF-8")),
        "{}",
        report.render()
    );
}

#[test]
fn preference_pairs_in_both_shapes() {
    let openai = |i: usize| {
        serde_json::json!({
            "input": {"messages": [{"role": "user", "content": format!("Say {i}")}]},
            "preferred_output": [{"role": "assistant", "content": format!("{i}")}],
            "non_preferred_output": [{"role": "assistant", "content": "no"}],
        })
        .to_string()
    };
    let trl = |i: usize| {
        serde_json::json!({"prompt": format!("Say {i}"), "chosen": format!("{i}"), "rejected": "no"})
            .to_string()
    };
    let mut lines: Vec<String> = (0..6).map(openai).chain((6..12).map(trl)).collect();
    let report = check(&lines, Method::Dpo);
    assert!(report.valid, "{}", report.render());
    assert_eq!(report.examples, 12);

    lines[2] = r#"{"prompt": "Say 2", "chosen": "2"}"#.to_owned();
    lines[8] = r#"{"prompt": "Say 8", "chosen": "8", "rejected": "8"}"#.to_owned();
    let report = check(&lines, Method::Dpo);
    assert!(!report.valid);
    assert_eq!(report.errors[0].line, 3);
    assert!(report.errors[0].message.contains("missing \"rejected\""));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.line == 9 && w.message.contains("same answer"))
    );
    // A chat file is not a preference file.
    let report = check(&(0..12).map(chat).collect::<Vec<_>>(), Method::Dpo);
    assert_eq!(report.error_count, 13);
    assert!(
        report.errors[0].message.contains("preferred"),
        "{}",
        report.render()
    );
}

#[test]
fn prompt_completion_and_text_shapes_are_sft_too() {
    let lines: Vec<String> = (0..12)
        .map(|i| {
            if i % 2 == 0 {
                serde_json::json!({"prompt": format!("{i}+1="), "completion": format!("{}", i + 1)})
                    .to_string()
            } else {
                serde_json::json!({"text": format!("{i} plus one is {}", i + 1)}).to_string()
            }
        })
        .collect();
    let report = check(&lines, Method::Distill);
    assert!(report.valid, "{}", report.render());
}

#[test]
fn long_examples_are_counted_against_max_seq_len() {
    let lines: Vec<String> = (0..12)
        .map(|i| {
            serde_json::json!({"messages": [
                {"role": "user", "content": "word ".repeat(100 * (i + 1))},
                {"role": "assistant", "content": "ok"},
            ]})
            .to_string()
        })
        .collect();
    let (_dir, path) = write(&lines);
    let report = validate(&path, Method::Sft, &TokenCounter::Estimate, 512).unwrap();
    // 125 tokens per 100 words in the estimate: examples from 5 on are over 512.
    assert_eq!(report.over_max_len, 8, "{}", report.render());
    assert!(report.tokens.p95 >= report.tokens.p50);
}

#[test]
fn unreadable_paths_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let error = validate(
        &dir.path().join("missing.jsonl"),
        Method::Sft,
        &TokenCounter::Estimate,
        2048,
    )
    .unwrap_err();
    assert!(error.contains("cannot open"), "{error}");
    let error = validate(dir.path(), Method::Sft, &TokenCounter::Estimate, 2048).unwrap_err();
    assert!(error.contains("directory"), "{error}");
}

#[test]
fn hyperparameters_take_auto_or_numbers() {
    let parsed: Hyperparameters =
        serde_json::from_str(r#"{"n_epochs": "auto", "learning_rate": 0.001, "lora_rank": 4}"#)
            .unwrap();
    assert_eq!(parsed.n_epochs, Setting::Auto);
    assert_eq!(parsed.learning_rate, Setting::Value(0.001));
    let error = serde_json::from_str::<Hyperparameters>(r#"{"n_epochs": "many"}"#).unwrap_err();
    assert!(error.to_string().contains("auto"), "{error}");
    let error = serde_json::from_str::<Hyperparameters>(r#"{"epochs": 3}"#).unwrap_err();
    assert!(error.to_string().contains("unknown field"), "{error}");
    // Small files get more epochs, as OpenAI's "auto" does; big ones fewer.
    let small = parsed.resolve(Method::Sft, 20, 100);
    assert_eq!(small.n_epochs, 5);
    assert_eq!(small.learning_rate, 0.001);
    assert_eq!(small.lora_rank, 4);
    assert_eq!(small.max_seq_len, 128);
    let big = Hyperparameters::default().resolve(Method::Sft, 100_000, 5000);
    assert_eq!(big.n_epochs, 1);
    assert_eq!(big.max_seq_len, 2048);
    assert_eq!(big.batch_size, 8);
}
