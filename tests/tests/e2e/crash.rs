//! Crash safety (issue 3): `runner-metrics collect` is killed with SIGKILL at
//! many points of a run over a few hundred storages, then run to the end.
//! Afterwards every runner's events are in the log at least once, no storage
//! is lost, no half-written line breaks the log, and quarantined data is
//! whole.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use runner_metrics_e2e::*;

const RUNNERS: usize = 300;

/// What each runner is: most are complete, some corrupt, some never came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Complete,
    Corrupt,
    NoData,
}

fn kind_of(i: usize) -> Kind {
    match i % 20 {
        0 => Kind::Corrupt,
        1 => Kind::NoData,
        _ => Kind::Complete,
    }
}

fn name_of(i: usize) -> String {
    format!("crash-{i:04}")
}

/// The installed timestamp identifies a runner's `runner_installed` line;
/// its name is its workflow, which identifies the other two.
fn installed_of(i: usize) -> u64 {
    1_700_000_000 + i as u64
}

/// Builds the root; returns the corrupt storages' files for the wholeness check.
fn build(root: &StorageRoot) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    let mut corrupt = BTreeMap::new();
    for i in 0..RUNNERS {
        let name = name_of(i);
        let runner = root.runner(&name);
        let installed = installed_of(i);
        let pre = format!(
            r#"{{"workflow": "{name}", "repository": "o/r", "event": "push", "timestamp": {}, "workflow_run_id": "{i}"}}"#,
            installed + 10
        );
        let post = format!(r#"{{"timestamp": {}, "status": "normal"}}"#, installed + 20);
        runner.file(START, format!("{}", installed - 5));
        match kind_of(i) {
            Kind::Complete => {
                runner.file(INSTALLED, installed.to_string()).file(PRE_JOB, &pre).file(POST_JOB, &post);
            }
            Kind::NoData => {
                runner.file(PRE_JOB, &pre);
            }
            Kind::Corrupt => {
                let files = [
                    (START.to_owned(), format!("{}", installed - 5).into_bytes()),
                    (INSTALLED.to_owned(), installed.to_string().into_bytes()),
                    (PRE_JOB.to_owned(), b"{\"workflow\": oops".to_vec()),
                ];
                for (file, content) in &files {
                    runner.file(file, content);
                }
                corrupt.insert(name, files.into_iter().collect());
            }
        }
    }
    corrupt
}

/// One `collect` run, killed after `delay` unless it finished first.
/// Returns whether it finished by itself.
fn run_killed_after(root: &Path, log: &Path, delay: Option<Duration>) -> bool {
    let mut child = cli()
        .args(["collect", "--flavor", "small", "--storage"])
        .arg(root)
        .arg("--metrics-log")
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn runner-metrics");
    let Some(delay) = delay else {
        let status = child.wait().unwrap();
        assert!(status.success(), "the final run must succeed: {status}");
        return true;
    };
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "an uninterrupted run must succeed: {status}");
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().expect("SIGKILL"); // Child::kill is SIGKILL on Unix
    child.wait().unwrap();
    false
}

#[test]
fn sigkill_at_many_points_loses_nothing_and_breaks_no_line() {
    let root = StorageRoot::new();
    let corrupt = build(&root);
    let log = root.outside().join("metrics.log");

    // Kill ever later, 2 ms more each time, until a run gets to finish on
    // its own (or 120 kills): the kills land all over start-up, scanning,
    // extraction, log writes, syncs and deletions.
    let mut kills = 0u32;
    let mut delay = Duration::from_millis(2);
    while kills < 120 {
        if run_killed_after(root.path(), &log, Some(delay)) {
            break;
        }
        kills += 1;
        delay += Duration::from_millis(2);
    }
    assert!(kills >= 8, "too few kills landed mid-run ({kills}); the test proves nothing");
    run_killed_after(root.path(), &log, None);

    // The log: every line is a whole event, or a fragment cut by a kill that
    // was terminated so it stands alone (never glued to the next line).
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.ends_with('\n'), "the log ends with a whole line");
    let mut events: Vec<serde_json::Value> = Vec::new();
    let mut fragments = Vec::new();
    for line in text.lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(value) if value.get("event").is_some() => events.push(value),
            _ => fragments.push(line.to_owned()),
        }
    }
    for fragment in &fragments {
        assert!(
            text.lines().any(|l| l != fragment && l.starts_with(fragment.as_str())),
            "a broken line that is not a cut-off copy of a whole one: {fragment:?}"
        );
    }

    // Every complete runner's three events are there at least once; nothing
    // from a corrupt or no-data runner.
    let mut installed_seen = BTreeSet::new();
    let mut started = BTreeSet::new();
    let mut stopped = BTreeSet::new();
    for event in &events {
        match event["event"].as_str().unwrap() {
            "runner_installed" => installed_seen.insert(event["timestamp"].as_f64().unwrap() as u64),
            "runner_start" => started.insert(event["workflow"].as_str().unwrap().to_owned()),
            "runner_stop" => stopped.insert(event["workflow"].as_str().unwrap().to_owned()),
            other => panic!("unexpected event {other}"),
        };
    }
    let complete: Vec<usize> = (0..RUNNERS).filter(|&i| kind_of(i) == Kind::Complete).collect();
    for &i in &complete {
        assert!(installed_seen.contains(&installed_of(i)), "runner_installed of {} missing", name_of(i));
        assert!(started.contains(&name_of(i)), "runner_start of {} missing", name_of(i));
        assert!(stopped.contains(&name_of(i)), "runner_stop of {} missing", name_of(i));
    }
    assert_eq!(started.len(), complete.len(), "events only for complete runners");
    assert_eq!(installed_seen.len(), complete.len(), "runner_installed only for complete runners");

    // No storage is left under a runner name, none half-deleted.
    assert_eq!(entries_besides_deleting(root.path()), vec![".quarantine".to_owned()]);

    // Every corrupt storage is quarantined exactly once, whole, with its
    // reason; nothing else is quarantined.
    let mut quarantined: BTreeMap<String, usize> = BTreeMap::new();
    for entry in fs::read_dir(root.quarantine_dir()).unwrap() {
        let entry = entry.unwrap();
        let location = entry.file_name().into_string().unwrap();
        if location.ends_with(".reason.json") {
            continue; // an orphan reason file (kill before the move) is harmless
        }
        let reason_file = root.quarantine_dir().join(format!("{location}.reason.json"));
        let reason = json(&fs::read_to_string(&reason_file).expect("each quarantined storage has its reason"));
        let runner = reason["runner_name"].as_str().unwrap().to_owned();
        assert_eq!(reason["reason"], "invalid-json", "{location}");
        let expected = corrupt.get(&runner).unwrap_or_else(|| panic!("{runner} should not be quarantined"));
        let mut found = BTreeMap::new();
        for file in fs::read_dir(entry.path()).unwrap() {
            let file = file.unwrap();
            found.insert(file.file_name().into_string().unwrap(), fs::read(file.path()).unwrap());
        }
        assert_eq!(&found, expected, "{location} is whole");
        *quarantined.entry(runner).or_default() += 1;
    }
    assert_eq!(quarantined.keys().cloned().collect::<Vec<_>>(), corrupt.keys().cloned().collect::<Vec<_>>());
    assert!(quarantined.values().all(|&n| n == 1), "{quarantined:?}");
    eprintln!("{kills} kills; {} event lines, {} fragments", events.len(), fragments.len());
}
