//! Embedding runner-metrics in a Rust runner manager, a screen long:
//! `cargo run -p runner-metrics-host --example embed`.
//!
//! It builds a storage root with one finished runner and one that never
//! came up, collects it in the sandbox with a job-metrics lookup, and
//! prints what happened and the lines appended to the metrics log.

use std::fs;

use runner_metrics::{collect, CollectOptions, GithubJobMetrics, MetricsLog, Plugin, PluginOptions, RunnerMetrics};

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("runner-fs");
    let finished = root.join("small-finished");
    fs::create_dir_all(&finished)?;
    fs::create_dir_all(root.join("small-never-came-up"))?;
    fs::write(finished.join("runner-installation-start.timestamp"), "1700000000")?;
    fs::write(finished.join("runner-installed.timestamp"), "1700000060")?;
    fs::write(
        finished.join("pre-job-metrics.json"),
        r#"{"timestamp": 1700000100, "workflow": "ci", "workflow_run_id": "42",
            "repository": "canonical/example", "event": "push"}"#,
    )?;
    fs::write(finished.join("post-job-metrics.json"), r#"{"timestamp": 1700000400, "status": "normal"}"#)?;

    // Where a manager would ask the GitHub API (runner_metrics::GithubJobs does).
    let mut jobs =
        |m: &RunnerMetrics| m.pre_job.as_ref().map(|_| GithubJobMetrics { queue_duration: 12.5, conclusion: None });
    let plugin = Plugin::open(&PluginOptions::default())?;
    let log_path = dir.path().join("github-runner-metrics.log");
    let mut log = MetricsLog::open(&log_path)?;
    let mut on_report = |r: &runner_metrics::StorageReport| {
        println!("{:<12} {:<20} {}", r.outcome.as_str(), r.name, r.detail);
    };
    let summary = collect(&plugin, &root, &CollectOptions::events("small"), &mut jobs, &mut log, &mut on_report)?;
    println!("{} extracted, {} lines appended:", summary.extracted, summary.lines_written);
    print!("{}", fs::read_to_string(&log_path)?);
    Ok(())
}

#[test]
fn the_example_runs() {
    main().expect("the embedding example");
}
