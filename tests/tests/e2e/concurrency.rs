//! One run per storage root at a time (spec 7, issue 9): two `collect`
//! processes on one root of thousands of runners, and a run that finds the
//! root's lock (`<root>/.lock`) taken.
//!
//! Every runner here has its own numbers (installed timestamp and workflow
//! name carry its index), so each of its three event lines can be counted in
//! the shared metrics log.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runner_metrics::{CollectOptions, LockError, NoJobMetrics, RootLock};
use runner_metrics_e2e::*;

/// Runners in the race: enough that one collect takes a while, so two
/// started together overlap for most of their run.
const RACE_RUNNERS: usize = 3000;
/// The installed timestamp of runner `i` is `BASE + i`.
const BASE: u64 = 1_700_000_000;

fn indexed_runner(root: &StorageRoot, i: usize) {
    root.runner(&format!("r-{i:05}"))
        .file(START, format!("{BASE}"))
        .file(INSTALLED, format!("{}", BASE + i as u64))
        .file(
            PRE_JOB,
            format!(
                r#"{{"workflow": "w{i}", "repository": "canonical/example", "event": "push", "timestamp": {}, "workflow_run_id": "1"}}"#,
                BASE + 100_000
            ),
        )
        .file(POST_JOB, format!(r#"{{"timestamp": {}, "status": "normal"}}"#, BASE + 200_000));
}

/// `(event, runner index)` of one event line.
fn owner(line: &str) -> (String, usize) {
    let value = json(line);
    let event = value["event"].as_str().unwrap_or_else(|| panic!("no event: {line}")).to_owned();
    let index = match event.as_str() {
        "runner_installed" => value["timestamp"].as_f64().expect("timestamp") as u64 - BASE,
        _ => value["workflow"].as_str().and_then(|w| w.strip_prefix('w')).and_then(|n| n.parse().ok()).expect("w<i>"),
    };
    (event, index as usize)
}

/// A `collect` of `root` into `log`, with `--json` (the summary is the last
/// stderr line) and these extra arguments.
fn collect_command(root: &Path, log: &Path, extra: &[&str]) -> Command {
    let mut command = cli();
    command
        .args(["collect", "--json", "--flavor", "small", "--storage"])
        .arg(root)
        .arg("--metrics-log")
        .arg(log)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for `child` at most `deadline`, killing it past that (a hang fails
/// the test instead of hanging it).
fn finish(mut child: Child, deadline: Duration, what: &str) -> CliOutput {
    let started = Instant::now();
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => break,
            None if started.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {deadline:?}");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let out = child.wait_with_output().expect("collect the child's output");
    CliOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `--json` summary on the last stderr line.
fn summary_of(out: &CliOutput) -> serde_json::Value {
    json(out.stderr.lines().last().unwrap_or_else(|| panic!("no summary line: {out:?}")))
}

#[test]
fn two_collects_at_once_write_every_runners_events_exactly_once_and_report_no_false_failure() {
    let root = StorageRoot::new();
    for i in 0..RACE_RUNNERS {
        indexed_runner(&root, i);
    }
    let log = root.outside().join("metrics.log");
    let _ = cli_binary(); // built before the race starts, not during it
    let wait = ["--wait", "600"];
    let first = collect_command(root.path(), &log, &wait).spawn().expect("start the first collect");
    let second = collect_command(root.path(), &log, &wait).spawn().expect("start the second collect");
    let first = finish(first, Duration::from_secs(600), "the first collect");
    let second = finish(second, Duration::from_secs(600), "the second collect");

    let mut extracted = 0;
    for (name, out) in [("first", &first), ("second", &second)] {
        let false_failures: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("failed: ")).collect();
        assert!(
            false_failures.is_empty(),
            "{name} run reported failures: {:?}",
            &false_failures[..5.min(false_failures.len())]
        );
        assert_eq!(out.code, Some(0), "{name} run: {}", out.stderr.lines().last().unwrap_or(""));
        let summary = summary_of(out);
        assert_eq!(summary["failed"], 0, "{name}: {summary}");
        extracted += summary["extracted"].as_u64().expect("extracted count");
    }
    assert_eq!(extracted, RACE_RUNNERS as u64, "each storage extracted by exactly one of the two runs");

    let text = fs::read_to_string(&log).expect("read the log");
    let mut seen: BTreeMap<(String, usize), usize> = BTreeMap::new();
    for line in text.lines() {
        *seen.entry(owner(line)).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(k, n)| (k.clone(), *n)).collect();
    assert!(
        twice.is_empty(),
        "{} event lines written more than once, e.g. {:?}",
        twice.len(),
        &twice[..5.min(twice.len())]
    );
    for i in 0..RACE_RUNNERS {
        for event in ["runner_installed", "runner_start", "runner_stop"] {
            assert_eq!(seen.get(&(event.to_owned(), i)), Some(&1), "{event} of runner {i}");
        }
    }
    assert_eq!(text.lines().count(), 3 * RACE_RUNNERS);
    assert_eq!(entries_besides_deleting(root.path()), Vec::<String>::new(), "every storage gone, no lock file left");
}

/// Holds the lock of `root` in this process, as a run would.
fn hold(root: &StorageRoot) -> RootLock {
    let lock = RootLock::acquire(root.path(), Duration::ZERO).expect("take the lock");
    assert_eq!(lock.path(), root.path().canonicalize().unwrap().join(".lock"));
    lock
}

#[test]
fn a_collect_that_finds_the_lock_taken_exits_3_naming_the_lock_and_the_holders_pid() {
    let root = StorageRoot::new();
    for i in 0..3 {
        indexed_runner(&root, i);
    }
    let log = root.outside().join("metrics.log");
    let before = snapshot(&root.join("r-00000"));
    let _ = cli_binary(); // built before the clock starts
    let holder = hold(&root);
    let started = Instant::now();
    let out = finish(
        collect_command(root.path(), &log, &["--wait", "0"]).spawn().expect("start"),
        Duration::from_secs(30),
        "the locked-out collect",
    );
    let took = started.elapsed();
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    let pid = std::process::id();
    assert!(out.stderr.contains(&holder.path().display().to_string()), "names the lock file:\n{}", out.stderr);
    assert!(out.stderr.contains(&format!("pid {pid}")), "names the holder's pid {pid}:\n{}", out.stderr);
    assert!(out.stderr.contains("--wait"), "says how to wait:\n{}", out.stderr);
    assert!(took < Duration::from_secs(10), "gave up at once: {took:?}");
    assert_eq!(diff(&before, &snapshot(&root.join("r-00000"))), "", "nothing touched");
    assert!(fs::read_to_string(&log).unwrap_or_default().is_empty(), "no event written");

    // `extract` (it deletes too) is kept out the same way; `extract --dry-run`
    // changes nothing and needs no lock.
    let out = output(cli().args(["extract", "--wait", "0", "--storage"]).arg(root.path()));
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("pid {pid}")), "{}", out.stderr);
    let out = output(cli().args(["extract", "--dry-run", "--storage"]).arg(root.path()));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 3);
    assert!(!out.stderr.contains(".lock"), "the lock file is not a storage:\n{}", out.stderr);
    drop(holder);
}

#[test]
fn a_collect_with_wait_runs_once_the_holder_is_done() {
    let root = StorageRoot::new();
    indexed_runner(&root, 7);
    let log = root.outside().join("metrics.log");
    let _ = cli_binary();
    let holder = hold(&root);
    let child = collect_command(root.path(), &log, &["--wait", "60"]).spawn().expect("start");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(root.join("r-00007").exists(), "nothing touched while the lock is held");
    drop(holder);
    let out = finish(child, Duration::from_secs(120), "the waiting collect");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(summary_of(&out)["extracted"], 1);
    assert_eq!(fs::read_to_string(&log).unwrap().lines().count(), 3);
    assert_eq!(entries_besides_deleting(root.path()), Vec::<String>::new());
}

#[test]
fn the_library_takes_the_lock_and_says_busy_with_a_typed_error() {
    let root = StorageRoot::new();
    indexed_runner(&root, 1);
    let holder = hold(&root);
    let options = CollectOptions { lock_wait: Duration::from_millis(300), ..CollectOptions::events("small") };
    let started = Instant::now();
    let (collected, lines) = run(root.path(), &options, &mut NoJobMetrics);
    assert!(started.elapsed() >= Duration::from_millis(300), "waited for the lock");
    let error = collected.result.as_ref().expect_err("the lock is taken");
    match error.downcast_ref::<LockError>() {
        Some(LockError::Busy { path, holder_pid, .. }) => {
            assert_eq!(path, holder.path());
            assert_eq!(*holder_pid, Some(std::process::id()));
        }
        other => panic!("expected LockError::Busy, got {other:?} from {error:#}"),
    }
    assert!(collected.reports.is_empty() && lines.is_empty());
    assert!(root.join("r-00001").exists());

    // A dry run changes nothing and does not need the lock.
    let keep = CollectOptions { dry_run: true, ..CollectOptions::events("small") };
    let (collected, lines) = run(root.path(), &keep, &mut NoJobMetrics);
    assert_eq!(collected.summary().extracted, 1);
    assert_eq!(lines.len(), 3);
    drop(holder);

    let (collected, lines) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
    assert_eq!((collected.summary().extracted, lines.len()), (1, 3));
    assert!(!exists(&root.join(".lock")), "the lock file is removed when the run is done");
}

#[test]
fn a_stale_lock_file_from_a_killed_run_is_taken_over_and_never_reported() {
    let root = StorageRoot::new();
    indexed_runner(&root, 2);
    // What a SIGKILLed run leaves: the file with its pid, and no lock on it.
    root.root_file(".lock", "999999\n");
    let (collected, lines) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
    assert_eq!(collected.summary().total(), 1, "only the storage is reported: {:?}", collected.reports);
    assert_eq!((collected.summary().extracted, lines.len()), (1, 3));
    assert_eq!(entries_besides_deleting(root.path()), Vec::<String>::new());
}

#[test]
fn storage_delete_and_quarantine_restore_and_purge_wait_for_the_lock_too() {
    let root = StorageRoot::new();
    root.valid_runner("r-delete");
    let holder = hold(&root);
    let pid = format!("pid {}", std::process::id());
    let runs: [&[&str]; 3] = [
        &["storage", "delete", "r-delete"],
        &["quarantine", "restore", "r-x.1700000000.000000"],
        &["quarantine", "purge", "--older-than", "0"],
    ];
    for args in runs {
        let out = output(cli().args(args).arg("--storage").arg(root.path()));
        assert_eq!(out.code, Some(3), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(&pid), "{args:?}: {}", out.stderr);
    }
    assert!(root.join("r-delete").is_dir(), "not deleted while the lock is held");
    drop(holder);
    let out = output(cli().args(["storage", "delete", "--wait", "5", "r-delete", "--storage"]).arg(root.path()));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(entries_besides_deleting(root.path()), Vec::<String>::new());
}
