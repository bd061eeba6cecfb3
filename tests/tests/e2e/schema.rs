//! `docs/schema/event-line.schema.json` describes every line runner-metrics
//! writes: each line emitted by the shared conformance fixtures and the e2e
//! fixtures validates, and wrong lines are rejected (so the test can fail).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use runner_metrics::{CollectOptions, GithubJobMetrics, JobConclusion, RunnerMetrics};
use runner_metrics_e2e::schema::{event_line_schema, Schema};
use runner_metrics_e2e::*;
use serde_json::{json, Value};

fn assert_valid(schema: &Schema, line: &str, origin: &str) {
    if let Err(errors) = schema.validate_line(line) {
        panic!("{origin}: line does not validate:\n{line}\n{}", errors.join("\n"));
    }
}

/// GitHub's spelling to the WIT enum, as the GitHub client reads it.
fn conclusion(name: &str) -> JobConclusion {
    runner_metrics::github::conclusion(name).unwrap_or_else(|| panic!("unknown conclusion {name:?}"))
}

const CONCLUSIONS: [&str; 7] =
    ["action_required", "cancelled", "failure", "neutral", "skipped", "success", "timed_out"];

// ---------------------------------------------------------------------------
// The conformance cases (tests/conformance/cases.json), built and collected
// ---------------------------------------------------------------------------

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

/// Builds the entries of `spec` (the cases.json format) in `dir`.
fn build(dir: &Path, spec: &serde_json::Map<String, Value>) {
    for (name, entry) in spec {
        let path = dir.join(name);
        if let Some(children) = entry.get("dir") {
            fs::create_dir(&path).unwrap();
            build(&path, children.as_object().expect("dir entries"));
        } else if let Some(target) = entry.get("symlink") {
            std::os::unix::fs::symlink(target.as_str().unwrap(), &path).unwrap();
        } else if entry.get("fifo").is_some() {
            mkfifo(&path).unwrap();
        } else {
            let mut bytes = if let Some(text) = entry.get("text") {
                text.as_str().unwrap().as_bytes().to_vec()
            } else if let Some(h) = entry.get("hex") {
                hex(h.as_str().unwrap())
            } else if let Some(r) = entry.get("repeat") {
                r.as_str().unwrap().repeat(entry["count"].as_u64().unwrap() as usize).into_bytes()
            } else {
                panic!("unknown entry {entry}");
            };
            if let Some(pad) = entry.get("pad_to").and_then(Value::as_u64) {
                bytes.resize(pad as usize, b' ');
            }
            fs::write(&path, bytes).unwrap();
        }
        if let Some(age) = entry.get("age").and_then(Value::as_f64) {
            set_mtime_ago(&path, Duration::from_secs_f64(age)).unwrap();
        }
    }
}

fn cases() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/cases.json");
    let cases: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    cases["cases"].as_array().unwrap().clone()
}

#[test]
fn every_line_the_conformance_cases_emit_validates() {
    let schema = event_line_schema();
    let mut total = 0;
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let root = StorageRoot::new();
        build(root.path(), case["root"].as_object().unwrap());
        if let Some(outside) = case.get("outside").and_then(Value::as_object) {
            build(root.outside(), outside);
        }
        let mut options = CollectOptions::events(case.get("flavor").and_then(Value::as_str).unwrap_or("small"));
        if let Some(selection) = case.get("selection") {
            let names = |key: &str| -> Option<Vec<String>> {
                selection
                    .get(key)
                    .map(|v| v.as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned()).collect())
            };
            options.selection.exclude = names("exclude").unwrap_or_default();
            options.selection.include = names("include");
            options.selection.min_age_seconds = selection.get("min_age").and_then(Value::as_f64);
        }
        let jobs: BTreeMap<String, GithubJobMetrics> = case
            .get("jobs")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(runner, job)| {
                let metrics = GithubJobMetrics {
                    queue_duration: job["queue_duration"].as_f64().unwrap(),
                    conclusion: job.get("conclusion").and_then(Value::as_str).map(conclusion),
                };
                (runner.clone(), metrics)
            })
            .collect();
        let mut source = |m: &RunnerMetrics| jobs.get(&m.runner_name).cloned();
        let (collected, lines) = run(root.path(), &options, &mut source);
        collected.summary();
        let expected: usize = case["expect"]
            .as_object()
            .unwrap()
            .values()
            .map(|e| e.get("lines").and_then(Value::as_array).map_or(0, Vec::len))
            .sum();
        assert_eq!(lines.len(), expected, "case {name}: {lines:#?}");
        for line in &lines {
            assert_valid(&schema, line, &format!("case {name} (emitted)"));
        }
        for e in case["expect"].as_object().unwrap().values() {
            for line in e.get("lines").and_then(Value::as_array).into_iter().flatten() {
                assert_valid(&schema, line.as_str().unwrap(), &format!("case {name} (expected)"));
            }
        }
        total += lines.len();
    }
    assert!(total >= 20, "the cases emitted only {total} lines");
}

// ---------------------------------------------------------------------------
// The e2e fixtures, with every status and every job conclusion
// ---------------------------------------------------------------------------

#[test]
fn every_line_of_the_e2e_fixtures_validates_with_every_status_and_conclusion() {
    let schema = event_line_schema();
    let root = StorageRoot::new();
    root.fixture_f("f");
    root.valid_runner("valid");
    let neighbour = root.runner(NEIGHBOUR);
    for (file, content) in neighbour_files() {
        neighbour.file(file, content);
    }
    let statuses = [
        r#"{"timestamp": 10, "status": "normal"}"#,
        r#"{"timestamp": 10, "status": "abnormal", "status_info": {"code": 137}}"#,
        r#"{"timestamp": 10, "status": "repo-policy-check-failure", "status_info": {"code": 403}}"#,
        r#"{"timestamp": 10, "status": "external-contributor-check-failure", "status_info": null}"#,
        r#"{"timestamp": 10, "status": "abnormal", "status_info": {"code": -1}}"#,
    ];
    for (i, post) in statuses.iter().enumerate() {
        root.runner(&format!("status-{i}"))
            .file(INSTALLED, "5")
            .file(START, "1")
            .file(PRE_JOB, F_PRE_JOB)
            .file(POST_JOB, post);
    }
    root.runner("no-repo")
        .file(INSTALLED, "5")
        .file(PRE_JOB, r#"{"timestamp": 3, "workflow": "w", "workflow_run_id": 1, "event": "push"}"#);
    // Conclusions round-robin over the runners, plus runners without any.
    let mut n = 0usize;
    let mut jobs = |_: &RunnerMetrics| {
        n += 1;
        (!n.is_multiple_of(8)).then(|| GithubJobMetrics {
            queue_duration: n as f64 * 1.5,
            conclusion: Some(conclusion(CONCLUSIONS[n % 7])),
        })
    };
    let (collected, lines) = run(root.path(), &CollectOptions::events("large"), &mut jobs);
    collected.summary();
    assert!(lines.len() >= 20, "{lines:#?}");
    for line in &lines {
        assert_valid(&schema, line, "e2e fixture");
    }
    // Every conclusion, with the queue-less variant too.
    for (i, name) in CONCLUSIONS.iter().enumerate() {
        let mut jobs =
            |_: &RunnerMetrics| Some(GithubJobMetrics { queue_duration: i as f64, conclusion: Some(conclusion(name)) });
        let root = StorageRoot::new();
        root.fixture_f("f");
        let (_, lines) = run(root.path(), &CollectOptions::events("small"), &mut jobs);
        assert_eq!(lines.len(), 3);
        assert!(lines[2].contains(&format!("\"job_conclusion\": \"{name}\"")), "{}", lines[2]);
        for line in &lines {
            assert_valid(&schema, line, name);
        }
    }
    for line in NEIGHBOUR_LINES {
        assert_valid(&schema, line, "NEIGHBOUR_LINES");
    }
}

// ---------------------------------------------------------------------------
// The schema rejects what is not an event line
// ---------------------------------------------------------------------------

const INSTALLED_LINE: &str = r#"{"timestamp": 2.0, "event": "runner_installed", "flavor": "small", "duration": 1.0}"#;
const START_LINE: &str = r#"{"timestamp": 3.0, "event": "runner_start", "flavor": "small", "workflow": "ci", "repo": "org/repo", "github_event": "push", "idle": 1.0, "queue_duration": 3600.0}"#;
const STOP_LINE: &str = r#"{"timestamp": 5.0, "event": "runner_stop", "flavor": "small", "workflow": "ci", "repo": "org/repo", "github_event": "push", "status": "abnormal", "status_info": {"code": 1}, "job_duration": 2.0, "job_conclusion": "failure"}"#;

fn edited(line: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut value: Value = serde_json::from_str(line).unwrap();
    edit(value.as_object_mut().unwrap());
    value.to_string()
}

#[test]
fn the_spec_examples_validate_and_wrong_lines_are_rejected() {
    let schema = event_line_schema();
    for line in [INSTALLED_LINE, START_LINE, STOP_LINE] {
        assert_valid(&schema, line, "spec example");
    }
    let wrong: Vec<(&str, String)> = vec![
        ("not JSON", "{\"timestamp\": 1".to_owned()),
        ("an array", "[]".to_owned()),
        ("unknown event", edited(INSTALLED_LINE, |m| drop(m.insert("event".into(), json!("runner_gone"))))),
        ("missing duration", edited(INSTALLED_LINE, |m| drop(m.remove("duration")))),
        ("extra key", edited(INSTALLED_LINE, |m| drop(m.insert("extra".into(), json!(1))))),
        ("start-only key on installed", edited(INSTALLED_LINE, |m| drop(m.insert("idle".into(), json!(1.0))))),
        ("negative duration", edited(INSTALLED_LINE, |m| drop(m.insert("duration".into(), json!(-0.5))))),
        ("timestamp as string", edited(INSTALLED_LINE, |m| drop(m.insert("timestamp".into(), json!("2.0"))))),
        ("flavor null", edited(INSTALLED_LINE, |m| drop(m.insert("flavor".into(), json!(null))))),
        ("missing repo", edited(START_LINE, |m| drop(m.remove("repo")))),
        ("queue_duration null", edited(START_LINE, |m| drop(m.insert("queue_duration".into(), json!(null))))),
        ("negative idle", edited(START_LINE, |m| drop(m.insert("idle".into(), json!(-1))))),
        ("stop key on start", edited(START_LINE, |m| drop(m.insert("status".into(), json!("normal"))))),
        ("unknown status", edited(STOP_LINE, |m| drop(m.insert("status".into(), json!("Normal"))))),
        ("unknown conclusion", edited(STOP_LINE, |m| drop(m.insert("job_conclusion".into(), json!("timed-out"))))),
        ("status_info null", edited(STOP_LINE, |m| drop(m.insert("status_info".into(), json!(null))))),
        (
            "status_info extra key",
            edited(STOP_LINE, |m| drop(m.insert("status_info".into(), json!({"code": 1, "x": 2})))),
        ),
        ("status_info without code", edited(STOP_LINE, |m| drop(m.insert("status_info".into(), json!({}))))),
        ("fractional code", edited(STOP_LINE, |m| drop(m.insert("status_info".into(), json!({"code": 1.5}))))),
        ("missing job_duration", edited(STOP_LINE, |m| drop(m.remove("job_duration")))),
    ];
    for (what, line) in wrong {
        assert!(schema.validate_line(&line).is_err(), "{what}: accepted {line}");
    }
    // Integers written as floats are still integers (draft 2020-12).
    assert_valid(
        &schema,
        &edited(STOP_LINE, |m| drop(m.insert("status_info".into(), json!({"code": 1.0})))),
        "code 1.0",
    );
}

#[test]
fn the_validator_refuses_keywords_it_does_not_implement() {
    let unsupported = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"a": {"type": "string", "maxLength": 3}}
    });
    let error = Schema::new(unsupported).err().expect("maxLength is not implemented");
    assert!(error.contains("maxLength"), "{error}");
    let dangling = json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": "#/$defs/nothing"});
    assert!(Schema::new(dangling).is_err());
    let old = json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"});
    assert!(Schema::new(old).is_err());
}
