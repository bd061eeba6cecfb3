//! Spec sections 5 and 6: the event lines, field by field and byte for byte,
//! from real storages through the real component.

use std::cell::RefCell;
use std::fs;

use runner_metrics::{
    CollectOptions, Emit, GithubJobMetrics, JobConclusion, MetricsLog, NoJobMetrics, OutcomeKind, RunnerMetrics,
};
use runner_metrics_e2e::*;
use serde_json::json;

/// Runs one storage through `collect` and returns its lines, checking that
/// it was extracted and deleted with that many events.
fn lines_of(root: &StorageRoot, name: &str, jobs: &mut dyn runner_metrics::JobMetricsSource) -> Vec<String> {
    let (collected, lines) = run(root.path(), &CollectOptions::events("small"), jobs);
    let report = collected.report(name);
    assert_eq!((report.outcome, report.detail.as_str()), (OutcomeKind::Extracted, "deleted"), "{report:?}");
    assert_eq!(report.events as usize, lines.len());
    assert_eq!(collected.reports.len(), 1);
    assert!(!exists(&root.join(name)));
    lines
}

/// Compares lines byte for byte, then (for a readable failure) field by field.
fn assert_lines(lines: &[String], expected: &[&str]) {
    let parsed: Vec<_> = lines.iter().map(|l| json(l)).collect();
    let wanted: Vec<_> = expected.iter().map(|l| json(l)).collect();
    assert_eq!(parsed, wanted, "values differ");
    assert_eq!(lines, expected, "bytes differ");
}

/// The keys of a JSON object line, in the order written.
fn key_order(line: &str) -> Vec<String> {
    // Values in these lines never contain `": ` inside strings at top level
    // except as keys, so a scan of `"key": ` at depth 1 is enough.
    let mut keys = Vec::new();
    let mut depth = 0;
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b'"' => {
                let end = i + 1 + line[i + 1..].find('"').unwrap();
                if depth == 1 && line[end + 1..].starts_with(": ") {
                    keys.push(line[i + 1..end].to_owned());
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    keys
}

const F_INSTALLED_LINE: &str = r#"{"timestamp": 2.0, "event": "runner_installed", "flavor": "small", "duration": 1.0}"#;
const F_START_LINE: &str = r#"{"timestamp": 3.0, "event": "runner_start", "flavor": "small", "workflow": "workflow1", "repo": "org1/repository1", "github_event": "push", "idle": 1.0, "queue_duration": 3600.0}"#;
const F_STOP_LINE: &str = r#"{"timestamp": 3.0, "event": "runner_stop", "flavor": "small", "workflow": "workflow1", "repo": "org1/repository1", "github_event": "push", "status": "normal", "job_duration": 0.0, "job_conclusion": "success"}"#;

#[test]
fn fixture_f_gives_exactly_the_three_reference_events_in_order() {
    let root = StorageRoot::new();
    root.fixture_f("runner-n-0123456789ab");
    let seen = RefCell::new(Vec::<RunnerMetrics>::new());
    let mut jobs = |m: &RunnerMetrics| {
        seen.borrow_mut().push(m.clone());
        Some(GithubJobMetrics { queue_duration: 3600.0, conclusion: Some(JobConclusion::Success) })
    };
    let lines = lines_of(&root, "runner-n-0123456789ab", &mut jobs);

    // Field by field, as values.
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        json(&lines[0]),
        json!({"timestamp": 2.0, "event": "runner_installed", "flavor": "small", "duration": 1.0})
    );
    assert_eq!(
        json(&lines[1]),
        json!({"timestamp": 3.0, "event": "runner_start", "flavor": "small", "workflow": "workflow1",
               "repo": "org1/repository1", "github_event": "push", "idle": 1.0, "queue_duration": 3600.0})
    );
    assert_eq!(
        json(&lines[2]),
        json!({"timestamp": 3.0, "event": "runner_stop", "flavor": "small", "workflow": "workflow1",
               "repo": "org1/repository1", "github_event": "push", "status": "normal", "job_duration": 0.0,
               "job_conclusion": "success"})
    );
    // Byte for byte, which also pins key order, separators and float spelling.
    assert_lines(&lines, &[F_INSTALLED_LINE, F_START_LINE, F_STOP_LINE]);
    assert_eq!(
        key_order(&lines[2]),
        [
            "timestamp",
            "event",
            "flavor",
            "workflow",
            "repo",
            "github_event",
            "status",
            "job_duration",
            "job_conclusion"
        ]
    );

    // The job source was asked once, about this runner's job.
    let seen = seen.into_inner();
    assert_eq!(seen.len(), 1);
    let m = &seen[0];
    assert_eq!(m.runner_name, "runner-n-0123456789ab");
    assert_eq!((m.installation_start_timestamp, m.installed_timestamp), (Some(1.0), 2.0));
    let pre = m.pre_job.as_ref().expect("pre-job");
    assert_eq!(
        (pre.workflow_run_id.as_str(), pre.repository.as_deref()),
        ("workflow_run_id1", Some("org1/repository1"))
    );
    assert!(m.post_job.as_ref().expect("post-job").status_info.is_none());
}

#[test]
fn the_spec_section_5_example_lines_are_reproduced_byte_for_byte() {
    let root = StorageRoot::new();
    root.runner("r-example")
        .file(START, "1\n")
        .file(INSTALLED, "2\n")
        .file(
            PRE_JOB,
            r#"{"workflow": "ci", "repository": "org/repo", "event": "push", "timestamp": 3, "workflow_run_id": "42"}"#,
        )
        .file(POST_JOB, r#"{"timestamp": 5, "status": "abnormal", "status_info": {"code": 1}}"#);
    let mut jobs =
        |_: &RunnerMetrics| Some(GithubJobMetrics { queue_duration: 3600.0, conclusion: Some(JobConclusion::Failure) });
    let lines = lines_of(&root, "r-example", &mut jobs);
    assert_lines(
        &lines,
        &[
            r#"{"timestamp": 2.0, "event": "runner_installed", "flavor": "small", "duration": 1.0}"#,
            r#"{"timestamp": 3.0, "event": "runner_start", "flavor": "small", "workflow": "ci", "repo": "org/repo", "github_event": "push", "idle": 1.0, "queue_duration": 3600.0}"#,
            r#"{"timestamp": 5.0, "event": "runner_stop", "flavor": "small", "workflow": "ci", "repo": "org/repo", "github_event": "push", "status": "abnormal", "status_info": {"code": 1}, "job_duration": 2.0, "job_conclusion": "failure"}"#,
        ],
    );
}

#[test]
fn without_job_metrics_queue_duration_and_conclusion_are_left_out() {
    let root = StorageRoot::new();
    root.fixture_f("r-f");
    let lines = lines_of(&root, "r-f", &mut NoJobMetrics);
    assert_lines(
        &lines,
        &[
            F_INSTALLED_LINE,
            r#"{"timestamp": 3.0, "event": "runner_start", "flavor": "small", "workflow": "workflow1", "repo": "org1/repository1", "github_event": "push", "idle": 1.0}"#,
            r#"{"timestamp": 3.0, "event": "runner_stop", "flavor": "small", "workflow": "workflow1", "repo": "org1/repository1", "github_event": "push", "status": "normal", "job_duration": 0.0}"#,
        ],
    );
    // A conclusion that is unknown is left out; a negative queue is clamped.
    let root = StorageRoot::new();
    root.fixture_f("r-f");
    let mut jobs = |_: &RunnerMetrics| Some(GithubJobMetrics { queue_duration: -5.0, conclusion: None });
    let lines = lines_of(&root, "r-f", &mut jobs);
    assert_eq!(json(&lines[1])["queue_duration"], json!(0.0));
    assert!(lines[1].ends_with(r#""idle": 1.0, "queue_duration": 0.0}"#), "{}", lines[1]);
    assert!(json(&lines[2]).get("job_conclusion").is_none(), "{}", lines[2]);
}

#[test]
fn pre_job_timestamp_zero_gives_idle_zero_and_post_job_zero_gives_job_duration_zero() {
    let root = StorageRoot::new();
    root.fixture_f("r-zero")
        .file(PRE_JOB, r#"{"timestamp": 0, "workflow": "workflow1", "workflow_run_id": "1", "repository": "org1/repository1", "event": "push"}"#)
        .file(POST_JOB, r#"{"timestamp": 0, "status": "normal"}"#);
    let lines = lines_of(&root, "r-zero", &mut NoJobMetrics);
    assert_lines(
        &lines,
        &[
            F_INSTALLED_LINE,
            r#"{"timestamp": 0.0, "event": "runner_start", "flavor": "small", "workflow": "workflow1", "repo": "org1/repository1", "github_event": "push", "idle": 0.0}"#,
            r#"{"timestamp": 0.0, "event": "runner_stop", "flavor": "small", "workflow": "workflow1", "repo": "org1/repository1", "github_event": "push", "status": "normal", "job_duration": 0.0}"#,
        ],
    );
}

#[test]
fn negative_differences_are_clamped_to_zero() {
    let root = StorageRoot::new();
    // Installed before the installation started; job ended before it started.
    root.runner("r-clamp")
        .file(START, "100")
        .file(INSTALLED, "50")
        .file(
            PRE_JOB,
            r#"{"timestamp": 70, "workflow": "w", "workflow_run_id": "1", "repository": "o/r", "event": "push"}"#,
        )
        .file(POST_JOB, r#"{"timestamp": 60, "status": "normal"}"#);
    let lines = lines_of(&root, "r-clamp", &mut NoJobMetrics);
    let values: Vec<_> = lines.iter().map(|l| json(l)).collect();
    assert_eq!(values[0]["duration"], json!(0.0));
    assert_eq!(values[1]["idle"], json!(20.0));
    assert_eq!(values[2]["job_duration"], json!(0.0));
    assert!(lines[0].ends_with(r#""duration": 0.0}"#), "{}", lines[0]);
}

#[test]
fn a_post_job_without_a_pre_job_issues_only_runner_installed() {
    let root = StorageRoot::new();
    root.fixture_f("r-post-only").remove(PRE_JOB);
    let mut jobs =
        |_: &RunnerMetrics| Some(GithubJobMetrics { queue_duration: 3600.0, conclusion: Some(JobConclusion::Success) });
    let lines = lines_of(&root, "r-post-only", &mut jobs);
    assert_lines(&lines, &[F_INSTALLED_LINE]);
}

#[test]
fn a_pre_job_without_a_repository_issues_neither_start_nor_stop() {
    for (label, pre_job) in [
        ("missing", r#"{"timestamp": 3.0, "workflow": "workflow1", "workflow_run_id": "1", "event": "push"}"#),
        (
            "null",
            r#"{"timestamp": 3.0, "workflow": "workflow1", "workflow_run_id": "1", "repository": null, "event": "push"}"#,
        ),
    ] {
        let root = StorageRoot::new();
        root.fixture_f("r-norepo").file(PRE_JOB, pre_job);
        let mut jobs = |_: &RunnerMetrics| Some(GithubJobMetrics { queue_duration: 1.0, conclusion: None });
        let lines = lines_of(&root, "r-norepo", &mut jobs);
        assert_eq!(lines, [F_INSTALLED_LINE], "repository {label}");
    }
}

#[test]
fn without_an_installation_start_there_is_no_runner_installed() {
    let root = StorageRoot::new();
    root.fixture_f("r-nostart").remove(START);
    let lines = lines_of(&root, "r-nostart", &mut NoJobMetrics);
    let kinds: Vec<_> = lines.iter().map(|l| json(l)["event"].clone()).collect();
    assert_eq!(kinds, [json!("runner_start"), json!("runner_stop")]);
    // Only an installed timestamp: extracted and deleted, with no event at all.
    let root = StorageRoot::new();
    root.runner("r-bare").file(INSTALLED, "2\n");
    let lines = lines_of(&root, "r-bare", &mut NoJobMetrics);
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn accepted_alternative_spellings_render_as_the_reference_does() {
    let root = StorageRoot::new();
    // Numeric workflow and run id, numeric-string timestamp, a non-ASCII
    // workflow name, a quote, integers and exponents in timestamp files.
    root.runner("r-spellings")
        .file(START, "  1e9\n")
        .file(INSTALLED, "1000000000.5\n")
        .file(
            PRE_JOB,
            r#"{"timestamp": "1000000001.5", "workflow": "caf\u00e9 \"ci\" \u2603", "workflow_run_id": 123, "repository": "o/r", "event": "pull_request", "extra": [1, {"x": null}]}"#,
        )
        .file(POST_JOB, r#"{"timestamp": 1000000011, "status": "repo-policy-check-failure", "status_info": {"code": 403}, "more": 1}"#);
    let seen = RefCell::new(None);
    let mut jobs = |m: &RunnerMetrics| {
        *seen.borrow_mut() = m.pre_job.as_ref().map(|p| p.workflow_run_id.clone());
        None
    };
    let lines = lines_of(&root, "r-spellings", &mut jobs);
    assert_eq!(seen.into_inner().as_deref(), Some("123"), "a numeric run id is rendered as text");
    assert_lines(
        &lines,
        &[
            r#"{"timestamp": 1000000000.5, "event": "runner_installed", "flavor": "small", "duration": 0.5}"#,
            r#"{"timestamp": 1000000001.5, "event": "runner_start", "flavor": "small", "workflow": "caf\u00e9 \"ci\" \u2603", "repo": "o/r", "github_event": "pull_request", "idle": 1.0}"#,
            r#"{"timestamp": 1000000011.0, "event": "runner_stop", "flavor": "small", "workflow": "caf\u00e9 \"ci\" \u2603", "repo": "o/r", "github_event": "pull_request", "status": "repo-policy-check-failure", "status_info": {"code": 403}, "job_duration": 9.5}"#,
        ],
    );
    assert_eq!(json(&lines[1])["workflow"], json!("caf\u{e9} \"ci\" \u{2603}"));
}

#[test]
fn emit_metrics_writes_one_runner_metrics_line() {
    let root = StorageRoot::new();
    root.fixture_f("r-metrics");
    let options = CollectOptions { emit: Emit::Metrics, ..CollectOptions::events("unused") };
    let (collected, lines) = run(root.path(), &options, &mut NoJobMetrics);
    assert_eq!(collected.kind("r-metrics"), OutcomeKind::Extracted);
    assert_eq!(lines.len(), 1);
    assert_eq!(
        json(&lines[0]),
        json!({
            "runner_name": "r-metrics",
            "installation_start_timestamp": 1.0,
            "installed_timestamp": 2.0,
            "pre_job": {"timestamp": 3.0, "workflow": "workflow1", "workflow_run_id": "workflow_run_id1",
                        "repository": "org1/repository1", "event": "push"},
            "post_job": {"timestamp": 3.0, "status": "normal", "status_info": null},
        })
    );
    assert!(!exists(&root.join("r-metrics")));
}

#[test]
fn a_metrics_log_file_receives_exactly_the_lines_and_keeps_earlier_ones() {
    let root = StorageRoot::new();
    root.fixture_f("r-log");
    let log_path = root.outside().join("metrics.log");
    fs::write(&log_path, "{\"earlier\": 1}\n{\"cut short").unwrap();
    let mut jobs =
        |_: &RunnerMetrics| Some(GithubJobMetrics { queue_duration: 3600.0, conclusion: Some(JobConclusion::Success) });
    let mut log = MetricsLog::open(&log_path).unwrap();
    let collected = run_into(root.path(), &CollectOptions::events("small"), &mut jobs, &mut log);
    assert_eq!(collected.summary().lines_written, 3);
    drop(log);
    let text = fs::read_to_string(&log_path).unwrap();
    assert_eq!(
        text,
        format!("{{\"earlier\": 1}}\n{{\"cut short\n{F_INSTALLED_LINE}\n{F_START_LINE}\n{F_STOP_LINE}\n"),
        "a cut-short last line is terminated, old bytes are never rewritten"
    );
    assert!(!exists(&root.join("r-log")));
}

#[test]
fn integers_beyond_64_bits_are_out_of_range_and_quarantined() {
    // Spec 3: numbers out of range are corrupt. serde_json would silently
    // turn 123456789012345678901234 into a float with other digits.
    let root = StorageRoot::new();
    root.runner("r-bigint").file(INSTALLED, "1").file(
        PRE_JOB,
        r#"{"timestamp": 2, "workflow": 123456789012345678901234, "workflow_run_id": "1", "repository": "o/r", "event": "push"}"#,
    );
    let (collected, lines) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
    assert_eq!(collected.kind("r-bigint"), OutcomeKind::Quarantined);
    assert!(collected.report("r-bigint").detail.contains("out of range"), "{}", collected.report("r-bigint").detail);
    assert!(lines.is_empty());
}
