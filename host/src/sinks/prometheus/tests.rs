//! The recorder: what it counts, renders and reads back, in both namings.

use super::*;

const INSTALLED: &str = r#"{"timestamp": 2.0, "event": "runner_installed", "flavor": "small", "duration": 45.0}"#;
const START: &str = r#"{"timestamp": 3.0, "event": "runner_start", "flavor": "sm\"all", "workflow": "ci", "repo": "o/r", "github_event": "push", "idle": 0.5, "queue_duration": 7.0}"#;

#[test]
fn renders_cumulative_buckets_and_reads_them_back() {
    let mut recorder = Recorder::default();
    recorder.observe_line(INSTALLED);
    recorder.observe_line(START);
    recorder.observe_line("not json");
    let text = recorder.render(0.0);
    assert!(text.contains("runner_metrics_spawn_duration_seconds_bucket{flavor=\"small\",le=\"30\"} 0\n"), "{text}");
    assert!(text.contains("runner_metrics_spawn_duration_seconds_bucket{flavor=\"small\",le=\"60\"} 1\n"), "{text}");
    assert!(text.contains("runner_metrics_idle_seconds_bucket{flavor=\"sm\\\"all\",le=\"1\"} 1\n"), "{text}");
    assert!(text.contains("runner_metrics_queue_duration_seconds_sum{flavor=\"sm\\\"all\"} 7\n"), "{text}");
    assert!(text.contains("runner_metrics_events_total{event=\"runner_start\",flavor=\"sm\\\"all\"} 1\n"), "{text}");

    let mut again = Recorder::default();
    again.load(&text);
    assert_eq!(again.render(0.0), text, "a file read back renders the same");
    again.load(&text);
    assert!(again.render(0.0).contains("runner_metrics_idle_seconds_count{flavor=\"sm\\\"all\"} 2\n"));
}

fn stop(repo: &str, event: &str, status: &str, conclusion: Option<&str>) -> String {
    let conclusion = conclusion.map(|c| format!(r#", "job_conclusion": "{c}""#)).unwrap_or_default();
    format!(
        r#"{{"timestamp": 5.0, "event": "runner_stop", "flavor": "small", "workflow": "ci", "repo": "{repo}", "github_event": "{event}", "status": "{status}", "job_duration": 2.0{conclusion}}}"#
    )
}

fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter_map(parse_sample).find_map(|(n, l, v)| {
        let wanted: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        (n == name && l == wanted).then_some(v)
    })
}

#[test]
fn health_series_count_lookups_across_runs_and_keep_the_last_success_through_a_failure() {
    use std::time::Duration;
    let lookups =
        |found, rate_limit_remaining| LookupCounts { found, not_found: 1, failed: 2, skipped: 0, rate_limit_remaining };
    let found = |text: &str| sample(text, "runner_metrics_lookups_total", &[("result", "found")]);
    let success = |text: &str| sample(text, "runner_metrics_last_success_timestamp_seconds", &[]);
    let extracted = |text: &str| sample(text, "runner_metrics_last_run_storages", &[("outcome", "extracted")]);
    let mut first = Recorder::default();
    first.observe_report(&StorageReport::new("r-1", OutcomeKind::Extracted, "deleted", 3));
    first.record_run("small", Duration::from_millis(1500), true, Some(lookups(2, Some(4999))));
    let text = first.render(100.0);
    assert_eq!(found(&text), Some(2.0), "{text}");
    assert_eq!(sample(&text, "runner_metrics_lookups_total", &[("result", "failed")]), Some(2.0));
    assert_eq!(sample(&text, "runner_metrics_github_rate_limit_remaining", &[]), Some(4999.0));
    assert_eq!(sample(&text, "runner_metrics_last_run_duration_seconds", &[]), Some(1.5));
    assert_eq!((success(&text), extracted(&text)), (Some(100.0), Some(1.0)));
    // A failed run: the lookups add up, the last success stays, this run's storages are its own.
    let mut second = Recorder::default();
    second.load(&text);
    second.record_run("small", Duration::from_secs(2), false, Some(lookups(1, None)));
    let text = second.render(200.0);
    assert_eq!((found(&text), success(&text), extracted(&text)), (Some(3.0), Some(100.0), Some(0.0)), "{text}");
    assert_eq!(sample(&text, "runner_metrics_github_rate_limit_remaining", &[]), None, "no answer, no gauge");
    // A run without lookups keeps the counter and succeeds.
    let mut third = Recorder::default();
    third.load(&text);
    third.record_run("small", Duration::from_secs(1), true, None);
    let text = third.render(300.0);
    assert_eq!((found(&text), success(&text)), (Some(3.0), Some(300.0)), "{text}");
    assert!(text.contains("# TYPE runner_metrics_lookups_total counter\n"), "{text}");
}

#[test]
fn counts_jobs_by_repository_event_conclusion_and_status() {
    let mut recorder = Recorder::default();
    recorder.observe_line(&stop("o/a", "push", "normal", Some("success")));
    recorder.observe_line(&stop("o/a", "pull_request", "abnormal", None));
    recorder.observe_line(&stop("o/b", "made-up-event", "normal", Some("failure")));
    recorder.observe_line(START); // runner_start: not a finished job
    let text = recorder.render(0.0);
    let get = |suffix: &str, key: &str, value: &str| {
        sample(&text, &format!("runner_metrics_{suffix}"), &[("flavor", "small"), (key, value)])
    };
    assert_eq!(get("jobs_by_repository_total", "repository", "o/a"), Some(2.0), "{text}");
    assert_eq!(get("jobs_by_repository_total", "repository", "o/b"), Some(1.0), "{text}");
    assert_eq!(get("jobs_by_repository_total", "repository", "o/r"), None, "{text}");
    assert_eq!(get("jobs_by_github_event_total", "github_event", "push"), Some(1.0), "{text}");
    assert_eq!(get("jobs_by_github_event_total", "github_event", "other"), Some(1.0), "{text}");
    assert_eq!(get("jobs_by_github_event_total", "github_event", "made-up-event"), None, "{text}");
    assert_eq!(get("jobs_by_conclusion_total", "conclusion", "unknown"), Some(1.0), "{text}");
    assert_eq!(get("jobs_by_conclusion_total", "conclusion", "failure"), Some(1.0), "{text}");
    assert_eq!(get("jobs_by_status_total", "status", "normal"), Some(2.0), "{text}");
    assert_eq!(get("jobs_by_status_total", "status", "abnormal"), Some(1.0), "{text}");

    let mut again = Recorder::default();
    again.load(&text);
    assert_eq!(again.render(0.0), text, "a file read back renders the same");
}

#[test]
fn repositories_past_the_limit_are_counted_as_other_and_keep_their_series_across_runs() {
    let mut first = Recorder::with_max_repositories(2);
    for repo in ["o/a", "o/b", "o/c", "o/a", "o/d"] {
        first.observe_line(&stop(repo, "push", "normal", None));
    }
    let text = first.render(0.0);
    let repos = |text: &str| -> Vec<(String, f64)> {
        text.lines()
            .filter_map(parse_sample)
            .filter(|(n, ..)| n == "runner_metrics_jobs_by_repository_total")
            .map(|(_, l, v)| (l[1].1.clone(), v))
            .collect()
    };
    assert_eq!(repos(&text), vec![("o/a".into(), 2.0), ("o/b".into(), 1.0), ("other".into(), 2.0)], "{text}");

    // The next run sees a new repository first: the old ones keep their series.
    let mut second = Recorder::with_max_repositories(2);
    second.observe_line(&stop("o/z", "push", "normal", None));
    second.observe_line(&stop("o/b", "push", "normal", None));
    second.load(&text);
    let text = second.render(0.0);
    assert_eq!(repos(&text), vec![("o/a".into(), 2.0), ("o/b".into(), 2.0), ("other".into(), 3.0)], "{text}");

    let mut none = Recorder::with_max_repositories(0);
    none.observe_line(&stop("o/a", "push", "normal", None));
    assert_eq!(repos(&none.render(0.0)), vec![("other".into(), 1.0)]);
}

/// Upstream's buckets as `metrics/runner.py` lists them (without `inf`).
const UPSTREAM_SPAWN_IDLE_EXTRACT: [f64; 9] = [5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0];
const UPSTREAM_QUEUE: [f64; 10] = [5.0, 30.0, 60.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 18000.0];
const UPSTREAM_JOB: [f64; 11] =
    [60.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0, 259200.0, 432000.0];

/// The `le` bounds of histogram `name` (without `+Inf`), in file order.
fn bounds_of(text: &str, name: &str) -> Vec<f64> {
    let bucket = format!("{name}_bucket");
    text.lines()
        .filter_map(parse_sample)
        .filter(|(n, ..)| *n == bucket)
        .filter_map(|(_, labels, _)| labels.iter().find(|(k, _)| k == "le")?.1.parse().ok())
        .filter(|le: &f64| le.is_finite())
        .collect()
}

#[test]
fn upstream_naming_writes_upstreams_names_labels_and_buckets_with_correct_values() {
    use std::time::Duration;
    let mut recorder = Recorder::new(Naming::Upstream, DEFAULT_MAX_REPOSITORIES);
    recorder.observe_line(INSTALLED);
    recorder.observe_line(&START.replace("sm\\\"all", "small"));
    recorder.observe_line(&stop("o/a", "push", "normal", Some("success")));
    recorder.observe_line(&stop("o/a", "pull_request", "abnormal", None));
    recorder.record_run("small", Duration::from_secs(12), true, None);
    let text = recorder.render(0.0);
    let get = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);
    let small = |le: &'static str| [("flavor", "small"), ("le", le)];

    assert_eq!(bounds_of(&text, "runner_spawn_duration_seconds"), UPSTREAM_SPAWN_IDLE_EXTRACT, "{text}");
    assert_eq!(bounds_of(&text, "runner_idle_duration_seconds"), UPSTREAM_SPAWN_IDLE_EXTRACT);
    assert_eq!(bounds_of(&text, "runner_queue_duration_seconds"), UPSTREAM_QUEUE);
    assert_eq!(bounds_of(&text, "job_duration_seconds"), UPSTREAM_JOB);
    assert_eq!(bounds_of(&text, "extract_metrics_duration_seconds"), UPSTREAM_SPAWN_IDLE_EXTRACT);
    // 45 s to spawn, idle 0.5 s, queued 7 s, two jobs of 2 s, a collect of 12 s.
    assert_eq!(get("runner_spawn_duration_seconds_bucket", &small("30")), Some(0.0));
    assert_eq!(get("runner_spawn_duration_seconds_bucket", &small("60")), Some(1.0));
    assert_eq!(get("runner_idle_duration_seconds_bucket", &small("5")), Some(1.0));
    assert_eq!(get("runner_queue_duration_seconds_bucket", &small("5")), Some(0.0));
    assert_eq!(get("runner_queue_duration_seconds_bucket", &small("30")), Some(1.0));
    assert_eq!(get("job_duration_seconds_bucket", &small("60")), Some(2.0));
    assert_eq!(get("extract_metrics_duration_seconds_bucket", &small("10")), Some(0.0));
    assert_eq!(get("extract_metrics_duration_seconds_bucket", &small("15")), Some(1.0));
    assert_eq!(get("extract_metrics_duration_seconds_sum", &[("flavor", "small")]), Some(12.0));
    // Job counts: upstream's names and label names, no flavor, our spellings.
    assert_eq!(get("job_repository_count", &[("repository", "o/a")]), Some(2.0), "{text}");
    assert_eq!(get("job_event_count", &[("event", "pull_request")]), Some(1.0));
    assert_eq!(get("job_conclusion_count", &[("conclusion", "unknown")]), Some(1.0));
    assert_eq!(get("job_status_count", &[("status", "normal")]), Some(1.0));
    assert!(text.contains("# TYPE job_status_count gauge\n"), "{text}");
    assert!(!text.contains("runner_metrics_spawn") && !text.contains("runner_metrics_jobs_by"), "{text}");
    // The tool's own series keep their names.
    assert_eq!(get("runner_metrics_events_total", &[("event", "runner_stop"), ("flavor", "small")]), Some(2.0));
    assert!(get("runner_metrics_last_success_timestamp_seconds", &[]).is_some());

    // Read back it renders the same; the next run adds to it (the counts
    // are gauges that never go down across runs).
    // (This run's own gauges are not read back: the next run sets them.)
    let without_run = |text: &str| -> String {
        text.lines().filter(|l| !l.contains("runner_metrics_last_")).map(|l| format!("{l}\n")).collect()
    };
    let mut again = Recorder::new(Naming::Upstream, DEFAULT_MAX_REPOSITORIES);
    again.load(&text);
    assert_eq!(without_run(&again.render(0.0)), without_run(&text), "a file read back renders the same");
    again.observe_line(&stop("o/a", "push", "normal", None));
    let next = again.render(0.0);
    assert_eq!(sample(&next, "job_repository_count", &[("repository", "o/a")]), Some(3.0), "{next}");
    assert_eq!(sample(&next, "job_event_count", &[("event", "push")]), Some(2.0));
}

#[test]
fn a_negative_duration_is_not_observed() {
    // (JSON cannot carry an infinite one: such a line does not parse.)
    let mut recorder = Recorder::new(Naming::Upstream, DEFAULT_MAX_REPOSITORIES);
    recorder.observe_line(&INSTALLED.replace("45.0", "-3.0"));
    let text = recorder.render(0.0);
    assert_eq!(sample(&text, "runner_spawn_duration_seconds_count", &[("flavor", "small")]), None, "{text}");
    let installed = [("event", "runner_installed"), ("flavor", "small")];
    assert_eq!(sample(&text, "runner_metrics_events_total", &installed), Some(1.0), "the event is still counted");
}

#[test]
fn the_naming_is_spelled_as_on_the_command_line() {
    for naming in Naming::ALL {
        assert_eq!(naming.as_str().parse::<Naming>(), Ok(naming));
    }
    assert!("Upstream".parse::<Naming>().unwrap_err().contains("ours, upstream"));
}
