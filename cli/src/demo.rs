//! `runner-metrics demo`: a sample storage root in a temporary directory,
//! collected for real, so a newcomer sees every outcome in one run.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use runner_metrics::collect::{collect, CollectOptions, NoJobMetrics};
use runner_metrics::log::MetricsLog;
use runner_metrics::plugin::Plugin;
use runner_metrics::summary::OutcomeKind;

const START: &str = "runner-installation-start.timestamp";
const INSTALLED: &str = "runner-installed.timestamp";
const PRE_JOB: &str = "pre-job-metrics.json";
const POST_JOB: &str = "post-job-metrics.json";

/// (runner name, what it shows, files).
type Sample = (&'static str, &'static str, Vec<(&'static str, String)>);

fn samples() -> Vec<Sample> {
    let pre = |t: u64, workflow: &str| {
        format!(
            r#"{{"workflow": "{workflow}", "repository": "canonical/example", "event": "push", "timestamp": {t}, "workflow_run_id": "8765432{t}"}}"#
        )
    };
    vec![
        (
            "small-n-0a1b2c3d4e5f",
            "complete job, status normal",
            vec![
                (START, "1700000000.25\n".into()),
                (INSTALLED, "1700000060\n".into()),
                (PRE_JOB, pre(1700000100, "ci")),
                (POST_JOB, r#"{"timestamp": 1700000400, "status": "normal"}"#.into()),
            ],
        ),
        (
            "small-n-1b2c3d4e5f60",
            "complete job, failed with exit code 1",
            vec![
                (START, "1700000000\n".into()),
                (INSTALLED, "1700000090\n".into()),
                (PRE_JOB, pre(1700000200, "release")),
                (POST_JOB, r#"{"timestamp": 1700000260, "status": "abnormal", "status_info": {"code": 1}}"#.into()),
            ],
        ),
        (
            "small-n-2c3d4e5f6071",
            "runner removed mid-job (no post-job file)",
            vec![(INSTALLED, "1700000030\n".into()), (PRE_JOB, pre(1700000300, "nightly"))],
        ),
        ("small-n-3d4e5f607182", "runner never came up (no installed timestamp)", vec![(START, "1700000000\n".into())]),
        (
            "small-n-4e5f60718293",
            "corrupt pre-job file (not JSON)",
            vec![(INSTALLED, "1700000030\n".into()), (PRE_JOB, "{\"workflow\": \"ci\", oops".into())],
        ),
        (
            "small-n-5f6071829304",
            "oversized post-job file (2 KiB)",
            vec![
                (INSTALLED, "1700000030\n".into()),
                (POST_JOB, format!(r#"{{"timestamp": 1, "status": "normal", "pad": "{}"}}"#, "x".repeat(2048))),
            ],
        ),
    ]
}

/// Builds the sample root under `root`.
fn build(root: &Path) -> Result<()> {
    for (name, _, files) in samples() {
        let dir = root.join(name);
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (file, content) in files {
            fs::write(dir.join(file), content).with_context(|| format!("writing {}/{file}", dir.display()))?;
        }
    }
    // A job that tries to make the manager read a file outside its storage.
    let attack = root.join("small-n-60718293a4b5");
    fs::create_dir(&attack)?;
    fs::write(attack.join(INSTALLED), "1700000030\n")?;
    std::os::unix::fs::symlink("/etc/passwd", attack.join(PRE_JOB))?;
    // Not a runner storage: reported and left alone.
    fs::write(root.join("notes.txt"), "not a runner\n")?;
    Ok(())
}

pub fn run(plugin: &Plugin, keep_files: bool) -> Result<ExitCode> {
    let temp =
        tempfile::Builder::new().prefix("runner-metrics-demo-").tempdir().context("creating a temporary directory")?;
    let root = temp.path().join("runner-fs");
    fs::create_dir(&root)?;
    build(&root)?;
    let log_path = temp.path().join("github-runner-metrics.log");
    let mut log = MetricsLog::open(&log_path)?;

    println!("Sample storage root: {}", root.display());
    for (name, what, _) in samples() {
        println!("  {name}: {what}");
    }
    println!("  small-n-60718293a4b5: pre-job file is a symlink to /etc/passwd");
    println!("  notes.txt: a stray file, not a runner storage");
    println!();
    println!("collect treats every storage it is handed as finished: a manager keeps its live runners");
    println!("out with --exclude NAME, and runners still being set up with --min-age 330.");
    println!();
    println!("Outcomes:");
    let summary = collect(plugin, &root, &CollectOptions::events("small"), &mut NoJobMetrics, &mut log, &mut |r| {
        println!("  {:<12} {:<22} {}", r.outcome.as_str(), r.name, r.detail);
    })?;
    println!();
    let kept_note = if keep_files { "" } else { " (deleted on exit; --keep-files keeps it)" };
    println!("Events appended to {}{kept_note}:", log_path.display());
    let events = fs::read_to_string(&log_path).context("reading back the demo log")?;
    for line in events.lines() {
        println!("  {line}");
    }
    println!();
    println!("Summary:");
    for &kind in OutcomeKind::ALL {
        println!("  {:<12} {}", kind.as_str(), summary.count(kind));
    }
    println!();
    println!("Quarantine (what `runner-metrics quarantine list` shows):");
    for q in runner_metrics::quarantine::list(plugin, &root)? {
        let reason = q.reason.to_model().as_str();
        println!("  .quarantine/{}  {reason}  {}", q.location, q.file.as_deref().unwrap_or("-"));
    }
    if keep_files {
        let kept = temp.keep();
        println!();
        println!("Kept the sample in {}", kept.display());
        println!("Try: runner-metrics quarantine list --storage {}", kept.join("runner-fs").display());
    }
    Ok(ExitCode::SUCCESS)
}
