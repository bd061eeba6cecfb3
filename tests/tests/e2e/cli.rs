//! The `runner-metrics` executable, run as an operator would run it.
//!
//! Every run gets `--cache-dir` under the target directory and an
//! `XDG_CACHE_HOME` there too (see `runner_metrics_e2e::cli`), so nothing is
//! written to the real home cache; `METRICS_LOG_PATH` is cleared unless a
//! test sets it.

use std::fs;
use std::path::Path;

use runner_metrics_e2e::*;
use serde_json::json;

const F_LINES: [&str; 3] = [
    r#"{"timestamp": 2.0, "event": "runner_installed", "flavor": "small", "duration": 1.0}"#,
    r#"{"timestamp": 3.0, "event": "runner_start", "flavor": "small", "workflow": "workflow1", "repo": "org1/repository1", "github_event": "push", "idle": 1.0}"#,
    r#"{"timestamp": 3.0, "event": "runner_stop", "flavor": "small", "workflow": "workflow1", "repo": "org1/repository1", "github_event": "push", "status": "normal", "job_duration": 0.0}"#,
];

/// Fixture F plus one storage of every other outcome.
fn sample_root() -> StorageRoot {
    let root = StorageRoot::new();
    root.fixture_f("r-fixture-f");
    root.runner("r-no-data").file(START, "1");
    root.valid_runner("r-corrupt").file(PRE_JOB, "{\"workflow\": oops");
    root.root_file("notes.txt", "not a runner");
    root
}

fn assert_sample_cleaned(root: &StorageRoot) {
    assert!(!exists(&root.join("r-fixture-f")), "extracted storage deleted");
    assert!(!exists(&root.join("r-no-data")), "no-data storage deleted");
    assert!(!exists(&root.join("r-corrupt")), "corrupt storage moved");
    assert_eq!(quarantined(root, "r-corrupt").reason["reason"], "invalid-json");
    assert!(exists(&root.join("notes.txt")), "stray file left alone");
}

fn text_lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// The `name: count` lines of the plain summary on stderr.
fn assert_counts(stderr: &str, counts: [(&str, usize); 6]) {
    for (name, count) in counts {
        let line = format!("{name:>12}: {count}");
        assert!(stderr.lines().any(|l| l == line), "stderr lacks {line:?}:\n{stderr}");
    }
}

const SAMPLE_COUNTS: [(&str, usize); 6] =
    [("extracted", 1), ("no-data", 1), ("quarantined", 1), ("skipped", 1), ("failed", 0), ("lines", 3)];

#[test]
fn help_of_every_subcommand_exits_zero_and_names_its_flags() {
    let global = ["--memory-limit", "--timeout", "--cache-dir", "--no-cache"];
    let cases: [(&[&str], &[&str]); 7] = [
        (&[], &["collect", "extract", "quarantine", "demo", "component"]),
        (
            &["collect"],
            &[
                "--storage",
                "--exclude",
                "--include",
                "--min-age",
                "--flavor",
                "--metrics-log",
                "METRICS_LOG_PATH",
                "--json",
                "--verbose",
                "--wait",
                "--github-budget",
                "3 when another run",
            ],
        ),
        (&["extract"], &["--storage", "--exclude", "--include", "--min-age", "--dry-run", "--wait"]),
        (&["quarantine"], &["list"]),
        (&["quarantine", "list"], &["--storage", "--json"]),
        (&["demo"], &["--keep-files"]),
        (&["component"], &["--output"]),
    ];
    for (args, flags) in cases {
        let out = output(cli().args(args).arg("--help"));
        assert_eq!(out.code, Some(0), "{args:?} --help: {}", out.stderr);
        for flag in flags.iter().chain(&global) {
            assert!(out.stdout.contains(flag), "{args:?} --help does not mention {flag}:\n{}", out.stdout);
        }
    }
    // And a missing required flag is a usage error, not a run.
    let out = output(cli().args(["collect", "--flavor", "small"]));
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("--storage"), "{}", out.stderr);
}

#[test]
fn collect_appends_the_lines_to_the_log_and_prints_counts() {
    let root = sample_root();
    let log = root.outside().join("metrics.log");
    let out = output(
        cli().args(["collect", "--flavor", "small", "--storage"]).arg(root.path()).arg("--metrics-log").arg(&log),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(fs::read_to_string(&log).unwrap(), format!("{}\n", F_LINES.join("\n")));
    assert_eq!(out.stdout, "", "events go to the log, not stdout");
    assert_counts(&out.stderr, SAMPLE_COUNTS);
    // One line for the quarantined storage, none for the quiet outcomes.
    assert!(
        out.stderr.lines().any(|l| l.starts_with("quarantined: r-corrupt: invalid-json: pre-job-metrics.json")),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("r-fixture-f"), "{}", out.stderr);
    assert_sample_cleaned(&root);

    // A second run appends nothing more and reports nothing but the stray file.
    let out = output(
        cli().args(["collect", "--flavor", "small", "--storage"]).arg(root.path()).arg("--metrics-log").arg(&log),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(fs::read_to_string(&log).unwrap().lines().count(), 3);
    assert_counts(
        &out.stderr,
        [("extracted", 0), ("no-data", 0), ("quarantined", 0), ("skipped", 1), ("failed", 0), ("lines", 0)],
    );
}

#[test]
fn collect_with_metrics_log_dash_prints_the_lines_on_stdout() {
    let root = sample_root();
    let out = output(cli().args(["collect", "--flavor", "small", "--metrics-log", "-", "--storage"]).arg(root.path()));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(text_lines(&out.stdout), F_LINES);
    assert_counts(&out.stderr, SAMPLE_COUNTS);
    assert_sample_cleaned(&root);
}

#[test]
fn collect_honours_metrics_log_path_and_the_flag_wins_over_it() {
    // Should the variable be ignored, the run would fall back to the system
    // log; notice that (and clean up after it) instead of leaving test lines
    // in /var/log.
    let system_log = Path::new("/var/log/github-runner-metrics.log");
    let system_log_existed = exists(system_log);
    let guard = RemoveIfCreated { path: system_log, existed: system_log_existed };
    let root = sample_root();
    let from_env = root.outside().join("from-env.log");
    let out = output(
        cli().env("METRICS_LOG_PATH", &from_env).args(["collect", "--flavor", "small", "--storage"]).arg(root.path()),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(fs::read_to_string(&from_env).unwrap(), format!("{}\n", F_LINES.join("\n")));

    let root = sample_root();
    let from_flag = root.outside().join("from-flag.log");
    let unused = root.outside().join("unused.log");
    let out = output(
        cli()
            .env("METRICS_LOG_PATH", &unused)
            .args(["collect", "--flavor", "small", "--storage"])
            .arg(root.path())
            .arg("--metrics-log")
            .arg(&from_flag),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(fs::read_to_string(&from_flag).unwrap().lines().count(), 3);
    assert!(!exists(&unused), "METRICS_LOG_PATH must not be used when --metrics-log is given");
    assert!(system_log_existed || !exists(system_log), "a run wrote to the system log {}", system_log.display());
    drop(guard);
}

/// Removes `path` on drop if it did not exist before the test.
struct RemoveIfCreated<'a> {
    path: &'a Path,
    existed: bool,
}

impl Drop for RemoveIfCreated<'_> {
    fn drop(&mut self) {
        if !self.existed {
            let _ = fs::remove_file(self.path);
        }
    }
}

#[test]
fn collect_json_prints_the_summary_as_one_json_object() {
    let root = sample_root();
    let out = output(
        cli().args(["collect", "--json", "--flavor", "small", "--metrics-log", "-", "--storage"]).arg(root.path()),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let last = out.stderr.lines().last().expect("a summary line");
    let mut summary = json(last);
    let layers = summary.as_object_mut().and_then(|o| o.remove("os_sandbox")).expect("the OS sandbox's layers");
    assert!(layers["landlock"].is_string() && layers["seccomp"].is_string(), "{layers}");
    assert_eq!(
        summary,
        json!({"extracted": 1, "no_data": 1, "quarantined": 1, "skipped": 1, "failed": 0, "lines_written": 3})
    );
    assert!(!out.stderr.contains("   extracted: "), "no plain summary with --json:\n{}", out.stderr);
    assert_eq!(text_lines(&out.stdout), F_LINES);
}

#[test]
fn collect_selection_flags_are_applied() {
    let root = StorageRoot::new();
    root.fixture_f("r-a");
    root.fixture_f("r-b");
    root.fixture_f("r-c");
    let out = output(
        cli()
            .args([
                "collect",
                "--flavor",
                "large",
                "--metrics-log",
                "-",
                "--exclude",
                "r-a",
                "--include",
                "r-a",
                "--include",
                "r-b",
                "--verbose",
                "--storage",
            ])
            .arg(root.path()),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 3, "only r-b is extracted:\n{}", out.stdout);
    assert!(out.stdout.lines().all(|l| json(l)["flavor"] == "large"), "{}", out.stdout);
    assert!(out.stderr.contains("skipped: r-a: excluded"), "{}", out.stderr);
    assert!(out.stderr.contains("skipped: r-c: not included"), "{}", out.stderr);
    assert!(out.stderr.contains("extracted: r-b: deleted"), "--verbose lists every storage:\n{}", out.stderr);
    assert!(exists(&root.join("r-a")) && !exists(&root.join("r-b")) && exists(&root.join("r-c")));

    // --min-age: a fresh storage is too young.
    let out = output(
        cli()
            .args(["collect", "--flavor", "small", "--metrics-log", "-", "--min-age", "3600", "--storage"])
            .arg(root.path()),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(exists(&root.join("r-a")) && exists(&root.join("r-c")));
    // An invalid --min-age is refused before anything happens.
    let out = output(
        cli()
            .args(["collect", "--flavor", "small", "--metrics-log", "-", "--min-age=-1", "--storage"])
            .arg(root.path()),
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--min-age"), "{}", out.stderr);
    assert!(exists(&root.join("r-a")) && exists(&root.join("r-c")));
}

#[test]
fn an_unopenable_metrics_log_is_an_error_naming_it_and_keeps_the_storages() {
    let root = sample_root();
    let not_a_dir = root.outside().join("regular-file");
    fs::write(&not_a_dir, "x").unwrap();
    let log = not_a_dir.join("metrics.log");
    let before = snapshot(root.path());
    let out = output(
        cli().args(["collect", "--flavor", "small", "--storage"]).arg(root.path()).arg("--metrics-log").arg(&log),
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains(&log.display().to_string()), "the error names the log path:\n{}", out.stderr);
    assert!(out.stderr.starts_with("runner-metrics: error:"), "{}", out.stderr);
    assert_eq!(diff(&before, &snapshot(root.path())), "", "nothing may change when events cannot be written");

    // Same through METRICS_LOG_PATH, and with a directory as the log.
    let out = output(
        cli()
            .env("METRICS_LOG_PATH", root.outside())
            .args(["collect", "--flavor", "small", "--storage"])
            .arg(root.path()),
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains(&root.outside().display().to_string()), "{}", out.stderr);
    assert_eq!(diff(&before, &snapshot(root.path())), "");
}

#[test]
fn a_failing_stdout_log_is_an_error_and_keeps_the_storage() {
    // `--metrics-log -` with standard output on /dev/full: every write fails
    // with ENOSPC, a real unwritable log.
    let root = StorageRoot::new();
    root.fixture_f("r-fixture-f");
    let before = snapshot_besides_the_roots_mtime(root.path());
    let full = fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let out = output(
        cli().args(["collect", "--flavor", "small", "--metrics-log", "-", "--storage"]).arg(root.path()).stdout(full),
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("failed: r-fixture-f: kept: events not written"), "{}", out.stderr);
    assert!(out.stderr.contains("standard output"), "the error names the destination:\n{}", out.stderr);
    assert_eq!(diff(&before, &snapshot_besides_the_roots_mtime(root.path())), "", "the storage must be kept whole");
}

/// [`snapshot`] of a root without the root directory's own entry: a run
/// that got as far as taking the root's lock created and removed
/// `<root>/.lock`, which changes the root's modification time and nothing
/// else.
fn snapshot_besides_the_roots_mtime(root: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Node> {
    let mut tree = snapshot(root);
    tree.remove(Path::new(""));
    tree
}

#[test]
fn collect_exits_1_when_storages_are_left_failed() {
    let root = sample_root();
    // The quarantine folder is blocked, so the corrupt storage cannot be
    // moved aside: it is kept, reported failed, and the exit status says so.
    root.root_file(".quarantine", "in the way");
    let before = snapshot(&root.join("r-corrupt"));
    let out = output(cli().args(["collect", "--flavor", "small", "--metrics-log", "-", "--storage"]).arg(root.path()));
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.lines().any(|l| l.starts_with("failed: r-corrupt: kept: ")), "{}", out.stderr);
    assert_counts(
        &out.stderr,
        [("extracted", 1), ("no-data", 1), ("quarantined", 0), ("skipped", 1), ("failed", 1), ("lines", 3)],
    );
    assert_eq!(text_lines(&out.stdout), F_LINES);
    assert_eq!(diff(&before, &snapshot(&root.join("r-corrupt"))), "");
}

#[test]
fn extract_dry_run_prints_runner_metrics_and_changes_nothing() {
    // `--keep` is the flag's old name, still accepted.
    for flag in ["--dry-run", "--keep"] {
        extract_dry_run(flag);
    }
}

fn extract_dry_run(flag: &str) {
    let root = sample_root();
    let whole = root.path().parent().unwrap().to_owned();
    let before = snapshot(&whole);
    let out = output(cli().args(["extract", flag, "--storage"]).arg(root.path()));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines = text_lines(&out.stdout);
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert_eq!(
        json(lines[0]),
        json!({
            "runner_name": "r-fixture-f",
            "installation_start_timestamp": 1.0,
            "installed_timestamp": 2.0,
            "pre_job": {"timestamp": 3.0, "workflow": "workflow1", "workflow_run_id": "workflow_run_id1",
                        "repository": "org1/repository1", "event": "push"},
            "post_job": {"timestamp": 3.0, "status": "normal", "status_info": null},
        })
    );
    assert!(out.stderr.contains("quarantined: r-corrupt: invalid-json: pre-job-metrics.json"), "{}", out.stderr);
    assert!(out.stderr.contains("would be quarantined"), "{}", out.stderr);
    assert_counts(
        &out.stderr,
        [("extracted", 1), ("no-data", 1), ("quarantined", 1), ("skipped", 1), ("failed", 0), ("lines", 1)],
    );
    assert_eq!(diff(&before, &snapshot(&whole)), "", "extract {flag} changed the disk");
}

#[test]
fn extract_without_keep_cleans_up_like_collect() {
    let root = sample_root();
    let out = output(cli().args(["extract", "--storage"]).arg(root.path()));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(json(text_lines(&out.stdout)[0])["runner_name"], "r-fixture-f");
    assert_eq!(out.stdout.lines().count(), 1);
    assert_sample_cleaned(&root);
}

#[test]
fn quarantine_list_shows_each_quarantined_storage_with_its_reason() {
    let root = sample_root();
    root.valid_runner("r-symlink").remove(POST_JOB).symlink(POST_JOB, "/etc/passwd");
    let out = output(cli().args(["collect", "--flavor", "small", "--metrics-log", "-", "--storage"]).arg(root.path()));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let corrupt = quarantined(&root, "r-corrupt");
    let symlink = quarantined(&root, "r-symlink");

    let out = output(cli().args(["quarantine", "list", "--storage"]).arg(root.path()));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let rows: Vec<Vec<&str>> = out.stdout.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 2, "{}", out.stdout);
    let mut expected = [
        (corrupt.location.file_name().unwrap().to_str().unwrap(), "invalid-json", PRE_JOB),
        (symlink.location.file_name().unwrap().to_str().unwrap(), "not-regular-file", POST_JOB),
    ];
    expected.sort();
    for (row, (location, reason, file)) in rows.iter().zip(expected) {
        assert_eq!(row.len(), 5, "{row:?}");
        assert_eq!((row[0], row[2], row[3]), (location, reason, file), "{row:?}");
        assert!(row[1].ends_with('Z') && row[1].len() == 20, "time column {:?}", row[1]);
        assert!(!row[4].is_empty());
    }
    assert!(out.stderr.contains("2 quarantined storage(s) in"), "{}", out.stderr);

    let out = output(cli().args(["quarantine", "list", "--json", "--storage"]).arg(root.path()));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let values: Vec<_> = out.stdout.lines().map(json).collect();
    assert_eq!(values.len(), 2);
    let corrupt_row = values.iter().find(|v| v["runner_name"] == "r-corrupt").expect("r-corrupt listed");
    assert_eq!(corrupt_row["reason"], "invalid-json");
    assert_eq!(corrupt_row["file"], PRE_JOB);
    assert_eq!(corrupt_row["location"], corrupt.location.file_name().unwrap().to_str().unwrap());
    assert_eq!(corrupt_row["quarantined_at"], corrupt.reason["quarantined_at"]);
    assert_eq!(corrupt_row["detail"], corrupt.reason["detail"]);

    // An empty root has an empty quarantine.
    let empty = StorageRoot::new();
    let out = output(cli().args(["quarantine", "list", "--storage"]).arg(empty.path()));
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), ""), "{}", out.stderr);
    assert!(out.stderr.contains("0 quarantined storage(s)"), "{}", out.stderr);
}

#[test]
fn demo_shows_every_event_kind_and_outcome_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let out = output(cli().env("TMPDIR", tmp.path()).arg("demo"));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for event in ["runner_installed", "runner_start", "runner_stop"] {
        let needle = format!("\"event\": \"{event}\"");
        assert!(out.stdout.lines().any(|l| l.contains(&needle)), "demo prints no {event} line:\n{}", out.stdout);
    }
    let event_lines: Vec<_> = out.stdout.lines().map(str::trim).filter(|l| l.starts_with("{\"timestamp\": ")).collect();
    assert_eq!(event_lines.len(), 7, "{}", out.stdout);
    for line in &event_lines {
        assert_eq!(json(line)["flavor"], "small", "{line}");
    }
    // Outcomes section: one row per sample entry, every kind that can happen.
    for kind in ["extracted", "no-data", "quarantined", "skipped"] {
        assert!(
            out.stdout.lines().any(|l| l.trim_start().starts_with(&format!("{kind} "))),
            "no {kind} row:\n{}",
            out.stdout
        );
    }
    // Summary section names all five outcome kinds with their counts.
    for (kind, count) in [("extracted", 3), ("no-data", 1), ("quarantined", 3), ("skipped", 1), ("failed", 0)] {
        let row = format!("  {kind:<12} {count}");
        assert!(out.stdout.lines().any(|l| l == row), "summary lacks {row:?}:\n{}", out.stdout);
    }
    let listed = out.stdout.lines().filter(|l| l.trim_start().starts_with(".quarantine/small-n-")).count();
    assert_eq!(listed, 3, "the demo lists its three quarantined storages:\n{}", out.stdout);
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0, "the demo left files in TMPDIR");
}

#[test]
fn demo_keep_files_keeps_the_sample_for_quarantine_list() {
    let tmp = tempfile::tempdir().unwrap();
    let out = output(cli().env("TMPDIR", tmp.path()).args(["demo", "--keep-files"]));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let kept =
        out.stdout.lines().find_map(|l| l.strip_prefix("Kept the sample in ")).expect("demo names the kept sample");
    let root = Path::new(kept).join("runner-fs");
    assert!(root.starts_with(tmp.path()), "{}", root.display());
    let out = output(cli().args(["quarantine", "list", "--json", "--storage"]).arg(&root));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let mut reasons: Vec<String> = out.stdout.lines().map(|l| json(l)["reason"].as_str().unwrap().to_owned()).collect();
    reasons.sort();
    assert_eq!(reasons, ["invalid-json", "not-regular-file", "oversized"]);
    assert!(root.join("notes.txt").is_file(), "the stray file is left alone");
}

#[test]
fn demo_points_only_at_directories_that_still_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let out = output(cli().env("TMPDIR", tmp.path()).arg("demo"));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains(".quarantine/small-n-"), "the demo lists its quarantine: {}", out.stdout);
    assert!(!out.stdout.contains("--storage "), "without --keep-files the sample is gone: {}", out.stdout);
    let kept = output(cli().env("TMPDIR", tmp.path()).args(["demo", "--keep-files"]));
    assert_eq!(kept.code, Some(0), "{}", kept.stderr);
    let hint = kept.stdout.lines().find(|l| l.contains("quarantine list --storage ")).expect("a hint");
    let path = hint.split("--storage ").nth(1).unwrap().trim();
    assert!(Path::new(path).is_dir(), "the demo suggests `quarantine list --storage {path}`, which does not exist");
}

#[test]
fn a_missing_storage_root_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-root");
    let log = tmp.path().join("metrics.log");
    let runs: [Vec<&std::ffi::OsStr>; 8] = [
        vec!["collect".as_ref(), "--flavor".as_ref(), "small".as_ref(), "--metrics-log".as_ref(), log.as_os_str()],
        vec!["extract".as_ref()],
        vec!["quarantine".as_ref(), "list".as_ref()],
        vec!["quarantine".as_ref(), "show".as_ref(), "r-1.1700000000.000000".as_ref()],
        vec!["quarantine".as_ref(), "restore".as_ref(), "r-1.1700000000.000000".as_ref()],
        vec!["quarantine".as_ref(), "purge".as_ref(), "--older-than".as_ref(), "1d".as_ref()],
        vec!["storage".as_ref(), "list".as_ref()],
        vec!["storage".as_ref(), "delete".as_ref(), "r-1".as_ref()],
    ];
    // One message, the same in every subcommand, naming the path.
    let expected = format!("runner-metrics: error: storage root {}: no such directory\n", missing.display());
    for args in runs {
        let out = output(cli().args(&args).arg("--storage").arg(&missing));
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr, expected, "{args:?}");
        assert_eq!(out.stdout, "");
    }
    assert!(!exists(&missing));
    assert!(!exists(&log), "a mistyped root leaves no log behind");
}

#[test]
fn a_storage_root_that_is_a_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("root-file");
    fs::write(&file, "x").unwrap();
    let out = output(cli().args(["collect", "--flavor", "small", "--metrics-log", "-", "--storage"]).arg(&file));
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert_eq!(out.stderr, format!("runner-metrics: error: storage root {}: not a directory\n", file.display()));
    assert_eq!(fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn component_writes_the_embedded_wasm_component() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("runner-metrics.wasm");
    let out = output(cli().args(["component", "--output"]).arg(&path));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let bytes = fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"\0asm"), "not WebAssembly: {:?}", &bytes[..bytes.len().min(8)]);
    // Layer 1 = a component, not a core module.
    assert_eq!(&bytes[4..8], &[0x0d, 0x00, 0x01, 0x00], "not a component");
    assert_eq!(bytes, runner_metrics::plugin::EMBEDDED_COMPONENT, "the file is the embedded component");
    assert!(out.stderr.contains(&format!("({} bytes)", bytes.len())), "{}", out.stderr);

    // An unwritable destination is an error naming it.
    let bad = tmp.path().join("missing-dir").join("x.wasm");
    let out = output(cli().args(["component", "--output"]).arg(&bad));
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains(&bad.display().to_string()), "{}", out.stderr);
}

#[test]
fn invalid_sandbox_settings_are_refused() {
    let root = sample_root();
    let before = snapshot(root.path());
    for args in [["--timeout", "0"], ["--timeout", "nan"], ["--memory-limit", "0"]] {
        let out = output(
            cli().args(args).args(["collect", "--flavor", "small", "--metrics-log", "-", "--storage"]).arg(root.path()),
        );
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(args[0]), "{args:?}: {}", out.stderr);
    }
    assert_eq!(diff(&before, &snapshot(root.path())), "");
}

#[test]
fn the_cli_uses_the_given_cache_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let root = StorageRoot::new();
    let out = output(
        std::process::Command::new(cli_binary())
            .env("XDG_CACHE_HOME", tmp.path().join("xdg"))
            .env("HOME", tmp.path().join("home"))
            .arg("--cache-dir")
            .arg(&cache)
            .args(["quarantine", "list", "--storage"])
            .arg(root.path()),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let mut cached: Vec<_> =
        fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    cached.sort();
    // Both components' code (checked or compiled before any confinement)
    // and the key of their MACs.
    assert_eq!(cached.len(), 3, "{cached:?}");
    assert!(cached[0].ends_with(".cwasm") && cached[1].ends_with(".cwasm"), "{cached:?}");
    assert_eq!(cached[2], runner_metrics::plugin::cache::KEY_FILE, "{cached:?}");
    assert!(!exists(&tmp.path().join("xdg")) && !exists(&tmp.path().join("home")), "nothing else was written");
}

/// The kinds of thing an operator can pass by mistake where a regular file
/// (or, for the cache, a directory) belongs, made in `dir`: a FIFO with no
/// writer (the classic hang), a directory or a regular file, and, as root
/// only, a character device made with mknod(2) in `dir` itself (never a
/// real system path). `(what, path, kind as the error says it)`.
fn wrong_kinds(dir: &Path, directory_is_right: bool) -> Vec<(&'static str, std::path::PathBuf, &'static str)> {
    let fifo = dir.join("a-fifo");
    mkfifo(&fifo).expect("mkfifo");
    let mut kinds = vec![("FIFO", fifo, "a FIFO")];
    if directory_is_right {
        let file = dir.join("a-file");
        fs::write(&file, "not a directory").unwrap();
        kinds.push(("regular file", file, "a regular file"));
    } else {
        let sub = dir.join("a-directory");
        fs::create_dir(&sub).unwrap();
        kinds.push(("directory", sub, "a directory"));
    }
    if is_root() {
        let device = dir.join("a-char-device");
        let c = std::ffi::CString::new(device.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path. The node is /dev/null's
        // numbers (1, 3) inside the test's temporary directory; nothing is
        // ever written to it (it is refused before).
        let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) };
        if made == 0 {
            kinds.push(("character device", device, "a character device"));
        } else {
            runner_metrics_test_skip::skip(
                "cli: the character-device case",
                &format!("mknod failed: {}", std::io::Error::last_os_error()),
            );
        }
    } else {
        runner_metrics_test_skip::skip("cli: the character-device case", "not root, cannot mknod");
    }
    kinds
}

/// Runs `command` and waits at most 10 s for it (killing it then, so a hang
/// fails the test instead of hanging it); returns its output and how long
/// it took.
fn timed(command: &mut std::process::Command) -> (CliOutput, std::time::Duration) {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let _ = cli_binary(); // built before the clock starts
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start runner-metrics");
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} hangs (killed after 10 s)");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let out = CliOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (out, took)
}

/// The error comes before any work is done, so it takes a few milliseconds;
/// the bound leaves room for a machine busy with parallel builds.
const QUICK: std::time::Duration = std::time::Duration::from_secs(5);

fn assert_refused(out: &CliOutput, took: std::time::Duration, path: &Path, expected: &str, what: &str) {
    assert_eq!(out.code, Some(2), "{what}: {}", out.stderr);
    assert!(took < QUICK, "{what}: took {took:?}");
    assert!(out.stderr.starts_with("runner-metrics: error:"), "{what}: {}", out.stderr);
    assert!(out.stderr.contains(&path.display().to_string()), "{what}: the error names the path:\n{}", out.stderr);
    assert!(out.stderr.contains(expected), "{what}: expected {expected:?} in:\n{}", out.stderr);
}

#[test]
fn a_fifo_directory_or_device_as_the_github_token_file_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sample_root();
    let before = snapshot(root.path());
    for (what, path, kind) in wrong_kinds(tmp.path(), false) {
        let (out, took) = timed(
            cli()
                .args(["collect", "--flavor", "small", "--metrics-log", "-", "--github-token-file"])
                .arg(&path)
                .arg("--storage")
                .arg(root.path()),
        );
        let expected = format!("is {kind}, not a regular file");
        assert_refused(&out, took, &path, &expected, what);
        assert!(out.stderr.contains("GitHub token file"), "{what}: {}", out.stderr);
    }
    assert_eq!(diff(&before, &snapshot(root.path())), "", "nothing touched");
}

#[test]
fn a_fifo_directory_or_device_as_the_metrics_log_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sample_root();
    let before = snapshot(root.path());
    for (what, path, kind) in wrong_kinds(tmp.path(), false) {
        let expected = format!("is {kind}, not a regular file");
        let (out, took) = timed(
            cli().args(["collect", "--flavor", "small", "--metrics-log"]).arg(&path).arg("--storage").arg(root.path()),
        );
        assert_refused(&out, took, &path, &expected, what);
        // The same path through $METRICS_LOG_PATH.
        let (out, took) = timed(
            cli().env("METRICS_LOG_PATH", &path).args(["collect", "--flavor", "small", "--storage"]).arg(root.path()),
        );
        assert_refused(&out, took, &path, &expected, &format!("{what} in METRICS_LOG_PATH"));
    }
    assert_eq!(diff(&before, &snapshot(root.path())), "", "nothing touched");
}

#[test]
fn a_fifo_file_or_device_as_the_cache_dir_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sample_root();
    let before = snapshot(root.path());
    for (what, path, kind) in wrong_kinds(tmp.path(), true) {
        let (out, took) = timed(
            std::process::Command::new(cli_binary())
                .env("XDG_CACHE_HOME", tmp.path().join("xdg"))
                .arg("--cache-dir")
                .arg(&path)
                .args(["collect", "--flavor", "small", "--metrics-log", "-", "--storage"])
                .arg(root.path()),
        );
        let expected = format!("is {kind}, not a directory");
        assert_refused(&out, took, &path, &expected, what);
        assert!(out.stderr.contains("cache directory"), "{what}: {}", out.stderr);
    }
    assert_eq!(diff(&before, &snapshot(root.path())), "", "nothing touched");
    assert!(!exists(&tmp.path().join("xdg")), "no other cache was used");
}

/// The quarantine location `collect` printed for `name` (the text after
/// `moved to ` on its line), e.g. `.quarantine/r-corrupt.1700000000.123456`.
fn printed_location<'a>(stderr: &'a str, name: &str) -> &'a str {
    let prefix = format!("quarantined: {name}: ");
    let line =
        stderr.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no line for {name}:\n{stderr}"));
    line.rsplit_once("moved to ").map(|(_, location)| location).unwrap_or_else(|| panic!("no location in {line:?}"))
}

#[test]
fn quarantine_show_and_restore_accept_the_location_collect_prints() {
    let root = sample_root();
    let out = output(cli().args(["collect", "--flavor", "small", "--metrics-log", "-", "--storage"]).arg(root.path()));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let printed = printed_location(&out.stderr, "r-corrupt").to_owned();
    let bare = printed.strip_prefix(".quarantine/").expect("collect prints .quarantine/NAME.TS").to_owned();
    assert!(root.quarantine_dir().join(&bare).is_dir(), "{printed} is not under the quarantine");

    // Both spellings show the same entry.
    for location in [&printed, &bare] {
        let out = output(cli().args(["quarantine", "show", "--json", "--storage"]).arg(root.path()).arg(location));
        assert_eq!(out.code, Some(0), "show {location}: {}", out.stderr);
        let value = json(out.stdout.trim());
        assert_eq!(
            (value["location"].as_str(), value["runner_name"].as_str()),
            (Some(bare.as_str()), Some("r-corrupt"))
        );
    }
    // Other spellings are still refused, naming what was given.
    for wrong in [".quarantine/", ".quarantine/.quarantine/x", "./.quarantine/x", &format!("{printed}.reason.json")] {
        let out = output(cli().args(["quarantine", "show", "--storage"]).arg(root.path()).arg(wrong));
        assert_eq!(out.code, Some(2), "show {wrong}: {}", out.stderr);
        assert!(out.stderr.contains("is not a quarantine location"), "show {wrong}: {}", out.stderr);
    }

    // Restore takes the printed form and puts the storage back where it was,
    // with no `.quarantine/.quarantine` built on the way.
    let out = output(cli().args(["quarantine", "restore", "--storage"]).arg(root.path()).arg(&printed));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), root.join("r-corrupt").display().to_string());
    assert!(root.join("r-corrupt").join(PRE_JOB).is_file(), "restored with its files");
    assert!(!exists(&root.quarantine_dir().join(&bare)), "the quarantined entry is gone");
    assert!(!exists(&root.quarantine_dir().join(format!("{bare}.reason.json"))), "its reason file too");
    assert!(!exists(&root.quarantine_dir().join(".quarantine")));
}

#[test]
fn a_failure_line_names_the_full_path_in_plain_words() {
    use std::os::unix::fs::PermissionsExt;
    let root = StorageRoot::new();
    let runner = root.valid_runner("r-unreadable");
    let file = runner.path.join(PRE_JOB);
    fs::set_permissions(&file, fs::Permissions::from_mode(0o000)).unwrap();
    // Root bypasses file permissions: run the binary as nobody, on a tree
    // (inside this test's temp directory only) that nobody owns.
    let mut command = if is_root() {
        if std::process::Command::new("setpriv").arg("--version").output().is_err() {
            runner_metrics_test_skip::skip(
                "cli::a_failure_line_names_the_full_path_in_plain_words",
                "running as root, and setpriv(1) is missing",
            );
            return;
        }
        let temp = root.path().parent().expect("the root's temp dir");
        fs::set_permissions(temp, fs::Permissions::from_mode(0o755)).unwrap();
        for path in [root.path(), runner.path.as_path()]
            .into_iter()
            .map(Path::to_path_buf)
            .chain(fs::read_dir(&runner.path).unwrap().map(|e| e.unwrap().path()))
        {
            std::os::unix::fs::lchown(&path, Some(65534), Some(65534)).unwrap();
        }
        let mut command = std::process::Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(cli_binary())
            .arg("--cache-dir")
            .arg(cache_dir())
            .env("XDG_CACHE_HOME", root.outside())
            .env("HOME", root.outside())
            .env_remove("METRICS_LOG_PATH");
        command
    } else {
        cli()
    };
    let out =
        output(command.args(["collect", "--flavor", "small", "--metrics-log", "-", "--storage"]).arg(root.path()));
    assert_eq!(out.code, Some(1), "the storage is left failed: {}", out.stderr);
    let line = format!("failed: r-unreadable: kept: open {}: Permission denied", file.display());
    assert!(out.stderr.lines().any(|l| l == line), "stderr lacks {line:?}:\n{}", out.stderr);
    for wasi in ["similar to", "POSIX", "\\\"", "EACCES"] {
        assert!(!out.stderr.contains(wasi), "{wasi:?} in:\n{}", out.stderr);
    }
    assert!(file.exists(), "kept for the next run");
}

/// The option names listed under `heading` in a help text (up to the next
/// unindented line).
fn flags_under<'a>(help: &'a str, heading: &str) -> Vec<&'a str> {
    let section = help.lines().skip_while(|l| *l != heading).skip(1).take_while(|l| l.is_empty() || l.starts_with(' '));
    section.filter_map(|l| l.trim_start().split([' ', ',']).find(|w| w.starts_with("--"))).collect()
}

#[test]
fn help_groups_flags_by_purpose_and_ends_with_examples() {
    let out = output(cli().args(["collect", "--help"]));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let help = &out.stdout;
    let groups: [(&str, &[&str]); 5] = [
        ("Storages:", &["--storage", "--exclude", "--include", "--min-age", "--policy"]),
        ("Locking:", &["--wait"]),
        (
            "Output:",
            &[
                "--flavor",
                "--metrics-log",
                "--json",
                "--verbose",
                "--prometheus-textfile",
                "--prometheus-max-repositories",
                "--prometheus-names",
            ],
        ),
        (
            "GitHub lookups:",
            &["--github-token-file", "--github-api-url", "--github-timeout", "--github-max-wait", "--github-budget"],
        ),
        ("WebAssembly sandbox:", &["--memory-limit", "--timeout", "--max-handles", "--cache-dir", "--no-cache"]),
    ];
    for (heading, flags) in groups {
        assert_eq!(flags_under(help, heading), flags, "under {heading}:\n{help}");
    }
    let examples = help.split_once("\nExamples:\n").expect("collect --help ends with examples").1;
    assert!(examples.contains("runner-metrics collect --storage"), "{examples}");
    assert!(examples.contains("--min-age 330"), "{examples}");

    // ingest: the runner, the pulled files, and the pipe of the README.
    let out = output(cli().args(["ingest", "--help"]));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        flags_under(&out.stdout, "Runner:"),
        ["--runner", "--quarantine-dir", "--installation-start", "--remember"]
    );
    assert_eq!(flags_under(&out.stdout, "Pulled files:"), ["--tar", "--installed", "--pre-job", "--post-job"]);
    let examples = out.stdout.split_once("\nExamples:\n").expect("ingest --help ends with examples").1;
    assert!(examples.contains("ssh runner-7 'tar -C /home/ubuntu/metrics-exchange -cf - .'"), "{examples}");

    // The sandbox flags are grouped in every subcommand, and the top-level
    // help has examples of the first commands to run.
    let out = output(cli().args(["quarantine", "list", "--help"]));
    assert_eq!(flags_under(&out.stdout, "WebAssembly sandbox:").len(), 5, "{}", out.stdout);
    let out = output(cli().arg("--help"));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let examples = out.stdout.split_once("\nExamples:\n").expect("--help ends with examples").1;
    for command in ["runner-metrics demo", "runner-metrics collect --storage", "runner-metrics quarantine restore"] {
        assert!(examples.contains(command), "no {command:?} in:\n{examples}");
    }
    // `-h` stays short: no examples.
    let out = output(cli().arg("-h"));
    assert!(!out.stdout.contains("Examples:"), "{}", out.stdout);
}

#[test]
fn completions_are_generated_from_the_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let out = output(cli().args(["completions", shell]));
        assert_eq!(out.code, Some(0), "{shell}: {}", out.stderr);
        // (fish spells long options `-l flavor`.)
        for word in ["collect", "quarantine", "storage", "flavor", "github-token-file", "memory-limit"] {
            assert!(out.stdout.contains(word), "the {shell} completion lacks {word}");
        }
    }
    let bash = output(cli().args(["completions", "bash"])).stdout;
    assert!(bash.contains("--storage"), "the bash completion lacks --storage");
    assert!(bash.contains("complete -F _runner-metrics") || bash.contains("complete -F _runner__metrics"), "{bash}");
    // And bash can parse it.
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("runner-metrics.bash");
    fs::write(&script, &bash).unwrap();
    if let Ok(check) = std::process::Command::new("bash").arg("-n").arg(&script).output() {
        assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
    }
    let out = output(cli().args(["completions", "no-such-shell"]));
    assert_eq!(out.code, Some(2), "{}", out.stderr);
}

#[test]
fn the_man_page_is_roff_generated_from_the_flags() {
    let out = output(cli().arg("man"));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let page = &out.stdout;
    // clap_mangen opens with groff's two-line apostrophe definition
    // (`.ie \n(.g ...` / `.el ...`); the title line comes right after it.
    let first = page.lines().find(|l| !l.starts_with(".ie ") && !l.starts_with(".el ")).unwrap_or_default();
    assert!(first.starts_with(".TH runner-metrics 1"), "first line {first:?}");
    assert_eq!(page.lines().take_while(|l| !l.starts_with(".TH")).count(), 2, "only the preamble before .TH");
    for word in [".SH NAME", ".SH SYNOPSIS", "collect", "quarantine", "completions", "\\-\\-memory\\-limit"] {
        assert!(page.contains(word), "the man page lacks {word:?}");
    }
    // groff renders it without warnings, where groff is installed.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("runner-metrics.1");
    fs::write(&file, page).unwrap();
    if let Ok(check) = std::process::Command::new("groff").args(["-man", "-Tutf8", "-ww", "-z"]).arg(&file).output() {
        assert!(check.status.success() && check.stderr.is_empty(), "{}", String::from_utf8_lossy(&check.stderr));
    }
}

/// A filter for the child about to `exec`: `openat2(2)` fails with `ENOSYS`,
/// as on a kernel before Linux 5.6 (everything else is allowed).
#[cfg(target_arch = "x86_64")]
fn without_openat2(command: &mut std::process::Command) -> &mut std::process::Command {
    with_refused_syscalls(command, &[(libc::SYS_openat2, libc::ENOSYS)])
}

#[test]
#[cfg(target_arch = "x86_64")]
fn collect_on_a_kernel_without_openat2_falls_back_says_so_once_and_loses_nothing() {
    // Expected: the confined filesystem cannot start, so the sandbox's
    // filesystem is wasmtime-wasi's; the CLI says so once on stderr and the
    // collect is the same as anywhere else.
    let root = sample_root();
    let log = root.outside().join("metrics.log");
    let mut command = cli();
    command.env_remove("RUNNER_METRICS_FILESYSTEM").args(["collect", "--flavor", "small", "--storage"]);
    command.arg(root.path()).arg("--metrics-log").arg(&log);
    let out = output(without_openat2(&mut command));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stderr.matches("openat2(2) is unavailable").count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("served by wasmtime-wasi"), "{}", out.stderr);
    assert_eq!(fs::read_to_string(&log).unwrap(), format!("{}\n", F_LINES.join("\n")));
    assert_counts(&out.stderr, SAMPLE_COUNTS);
    assert_sample_cleaned(&root);

    // Where openat2 works nothing is said.
    let root = sample_root();
    let mut command = cli();
    command.env_remove("RUNNER_METRICS_FILESYSTEM").args(["collect", "--flavor", "small", "--storage"]);
    let out = output(command.arg(root.path()).arg("--metrics-log").arg(root.outside().join("m.log")));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(!out.stderr.contains("openat2"), "{}", out.stderr);
}

#[test]
#[cfg(target_arch = "x86_64")]
fn asking_for_the_confined_filesystem_on_a_kernel_without_openat2_is_an_error_that_says_why() {
    let root = sample_root();
    let before = snapshot(root.path());
    let mut command = cli();
    command.env("RUNNER_METRICS_FILESYSTEM", "confined").args(["collect", "--flavor", "small", "--storage"]);
    let out = output(without_openat2(command.arg(root.path()).arg("--metrics-log").arg(root.outside().join("m.log"))));
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("needs openat2(2)"), "{}", out.stderr);
    assert_eq!(diff(&before, &snapshot(root.path())), "", "nothing touched");
}
