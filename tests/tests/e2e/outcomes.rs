//! Spec section 4: every outcome row, through `runner_metrics::collect` with
//! the real component on real directories.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use runner_metrics::{CollectOptions, NoJobMetrics, OutcomeKind, Selection};
use runner_metrics_e2e::*;

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn valid(file: &str) -> Vec<u8> {
    valid_files().into_iter().find(|(f, _)| *f == file).expect("a metrics file").1
}

/// One corrupt storage: a valid storage with `file` replaced by `apply`.
struct Case {
    name: String,
    file: &'static str,
    reason: &'static str,
    apply: Box<dyn Fn(&Runner)>,
}

fn case(name: &str, file: &'static str, reason: &'static str, apply: impl Fn(&Runner) + 'static) -> Case {
    Case { name: name.to_owned(), file, reason, apply: Box::new(apply) }
}

fn short(file: &str) -> &'static str {
    match file {
        START => "start",
        INSTALLED => "installed",
        PRE_JOB => "pre",
        POST_JOB => "post",
        _ => unreachable!(),
    }
}

/// A valid pre-job object with one key replaced (`None` removes it).
fn pre_job_with(key: &str, value: Option<serde_json::Value>) -> Vec<u8> {
    object_with(PRE_JOB, key, value)
}

fn post_job_with(key: &str, value: Option<serde_json::Value>) -> Vec<u8> {
    object_with(POST_JOB, key, value)
}

fn object_with(file: &str, key: &str, value: Option<serde_json::Value>) -> Vec<u8> {
    let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&valid(file)).unwrap();
    match value {
        Some(value) => object.insert(key.to_owned(), value),
        None => object.remove(key),
    };
    serde_json::to_vec(&object).unwrap()
}

/// The corruption matrix: every kind of corruption of spec 3/4 that applies
/// to a file, for each of the four files.
fn corrupt_cases(root: &StorageRoot) -> Vec<Case> {
    use serde_json::json;
    let mut cases = Vec::new();
    for file in ALL_FILES {
        let s = short(file);
        let content = valid(file);
        // Not a regular file, or too big: same for every file.
        let c = content.clone();
        cases.push(case(&format!("c-{s}-oversized"), file, "oversized", move |r| {
            r.padded(file, &c, FILE_SIZE_LIMIT + 1);
        }));
        let target = root.outside().join(format!("valid-{file}"));
        fs::write(&target, &content).unwrap();
        cases.push(case(&format!("c-{s}-symlink"), file, "not-regular-file", move |r| {
            r.symlink(file, &target);
        }));
        cases.push(case(&format!("c-{s}-symlink-passwd"), file, "not-regular-file", move |r| {
            r.symlink(file, "/etc/passwd");
        }));
        cases.push(case(&format!("c-{s}-dangling"), file, "not-regular-file", move |r| {
            r.symlink(file, "/nonexistent/runner-metrics-e2e");
        }));
        cases.push(case(&format!("c-{s}-directory"), file, "not-regular-file", move |r| {
            r.dir(file);
        }));
        cases.push(case(&format!("c-{s}-fifo"), file, "not-regular-file", move |r| {
            r.fifo(file);
        }));
        // Encoding: same for every file.
        let mut bom = BOM.to_vec();
        bom.extend_from_slice(&content);
        cases.push(case(&format!("c-{s}-bom"), file, "invalid-utf8", move |r| {
            r.file(file, &bom);
        }));
        let not_utf8: Vec<u8> = if file.ends_with(".timestamp") {
            b"17000\xff0000\n".to_vec()
        } else {
            let text = String::from_utf8(content.clone()).unwrap().replacen("\"push\"", "\"pu\u{1}sh\"", 1);
            // A lone continuation byte inside a string value.
            let mut bytes = text.into_bytes();
            let at = bytes.iter().position(|&b| b == b'"').unwrap() + 1;
            bytes.insert(at, 0x80);
            bytes
        };
        cases.push(case(&format!("c-{s}-not-utf8"), file, "invalid-utf8", move |r| {
            r.file(file, &not_utf8);
        }));
        if file.ends_with(".timestamp") {
            let bad: [(&str, &[u8]); 9] = [
                ("abc", b"abc"),
                ("negative", b"-1"),
                ("nan", b"nan"),
                ("inf", b"inf\n"),
                ("nul", b"1700000000\0"),
                ("comma", b"1700000000,5"),
                ("hex", b"0x10"),
                ("two", b"1700000000 1700000001"),
                ("overflow", b"1e400"),
            ];
            for (label, bytes) in bad {
                cases.push(case(&format!("c-{s}-ts-{label}"), file, "invalid-timestamp", move |r| {
                    r.file(file, bytes);
                }));
            }
            continue;
        }
        // JSON files: syntax (invalid-json) ...
        let deep = format!(
            "{{\"timestamp\": 1, \"status\": \"normal\", \"workflow\": \"w\", \"workflow_run_id\": \"1\", \"event\": \"push\", \"x\": {}1{}}}",
            "[".repeat(128),
            "]".repeat(128)
        );
        let syntax: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", content[..content.len() - 5].to_vec()),
            ("array", b"[1, 2]".to_vec()),
            ("string", b"\"normal\"".to_vec()),
            ("number", b"1700000000".to_vec()),
            ("null", b"null".to_vec()),
            ("duplicate", br#"{"timestamp": 1, "timestamp": 2, "status": "normal", "workflow": "w", "workflow_run_id": "1", "event": "push"}"#.to_vec()),
            ("nan", br#"{"timestamp": NaN, "status": "normal", "workflow": "w", "workflow_run_id": "1", "event": "push"}"#.to_vec()),
            ("huge", br#"{"timestamp": 1e400, "status": "normal", "workflow": "w", "workflow_run_id": "1", "event": "push"}"#.to_vec()),
            ("trailing", [content.clone(), b" {}".to_vec()].concat()),
            ("deep", deep.into_bytes()),
        ];
        for (label, bytes) in syntax {
            cases.push(case(&format!("c-{s}-json-{label}"), file, "invalid-json", move |r| {
                r.file(file, &bytes);
            }));
        }
        // ... and values (invalid-value).
        let values: Vec<(&str, Vec<u8>)> = if file == PRE_JOB {
            vec![
                ("ts-bool", pre_job_with("timestamp", Some(json!(true)))),
                ("ts-negative", pre_job_with("timestamp", Some(json!(-1)))),
                ("ts-text", pre_job_with("timestamp", Some(json!("soon")))),
                ("ts-missing", pre_job_with("timestamp", None)),
                ("workflow-missing", pre_job_with("workflow", None)),
                ("workflow-list", pre_job_with("workflow", Some(json!(["ci"])))),
                ("run-id-null", pre_job_with("workflow_run_id", Some(json!(null)))),
                ("event-number", pre_job_with("event", Some(json!(5)))),
                ("event-missing", pre_job_with("event", None)),
                ("repo-no-slash", pre_job_with("repository", Some(json!("canonical")))),
                ("repo-no-owner", pre_job_with("repository", Some(json!("/example")))),
                ("repo-no-name", pre_job_with("repository", Some(json!("canonical/")))),
                ("repo-number", pre_job_with("repository", Some(json!(5)))),
            ]
        } else {
            vec![
                ("ts-text", post_job_with("timestamp", Some(json!("1700000400")))),
                ("ts-negative", post_job_with("timestamp", Some(json!(-1)))),
                ("ts-missing", post_job_with("timestamp", None)),
                ("status-case", post_job_with("status", Some(json!("Normal")))),
                ("status-unknown", post_job_with("status", Some(json!("crashed")))),
                ("status-missing", post_job_with("status", None)),
                ("status-number", post_job_with("status", Some(json!(0)))),
                ("info-number", post_job_with("status_info", Some(json!(1)))),
                ("info-empty", post_job_with("status_info", Some(json!({})))),
                ("code-float", post_job_with("status_info", Some(json!({"code": 1.5})))),
                ("code-text", post_job_with("status_info", Some(json!({"code": "1"})))),
            ]
        };
        for (label, bytes) in values {
            cases.push(case(&format!("c-{s}-value-{label}"), file, "invalid-value", move |r| {
                r.file(file, &bytes);
            }));
        }
    }
    // Corruption wins over "no data": a storage without an installed
    // timestamp is still quarantined when another file is corrupt.
    cases.push(case("c-noinstalled-post-corrupt", POST_JOB, "invalid-json", |r| {
        r.remove(INSTALLED).file(POST_JOB, "{\"timestamp\": ");
    }));
    // Spec 4 deviation: a corrupt post-job is quarantined even without a pre-job.
    cases.push(case("c-nopre-post-corrupt", POST_JOB, "invalid-value", |r| {
        r.remove(PRE_JOB).file(POST_JOB, r#"{"timestamp": 1, "status": "weird"}"#);
    }));
    cases
}

/// Checks one quarantined storage; `Err` says what is wrong.
fn check_quarantined(
    root: &StorageRoot,
    collected: &Collected,
    case: &Case,
    before: &BTreeMap<PathBuf, NodeKind>,
) -> Result<(), String> {
    let name = &case.name;
    let report = collected.report(name);
    if report.outcome != OutcomeKind::Quarantined {
        return Err(format!("{name}: outcome {:?} ({}), expected quarantined", report.outcome, report.detail));
    }
    if exists(&root.join(name)) {
        return Err(format!("{name}: still in the runner namespace"));
    }
    let q = quarantined(root, name);
    let location = q.location.file_name().unwrap().to_str().unwrap().to_owned();
    let expected_start = format!("{}: {}", case.reason, case.file);
    if !report.detail.starts_with(&expected_start)
        || !report.detail.ends_with(&format!("moved to .quarantine/{location}"))
    {
        return Err(format!(
            "{name}: report detail {:?} should start with {expected_start:?} and name {location}",
            report.detail
        ));
    }
    let r = &q.reason;
    if r["reason"] != case.reason {
        return Err(format!("{name}: reason file says {}, expected {}", r["reason"], case.reason));
    }
    if r["runner_name"] != name.as_str() || r["file"] != case.file {
        return Err(format!(
            "{name}: reason file names {} / {}, expected {name} / {}",
            r["runner_name"], r["file"], case.file
        ));
    }
    if r["detail"].as_str().is_none_or(str::is_empty) || !r["quarantined_at"].as_f64().is_some_and(|t| t > 1.0e9) {
        return Err(format!("{name}: reason file lacks a detail or a time: {r}"));
    }
    let after = contents(&q.location);
    if &after != before {
        return Err(format!("{name}: the quarantined copy differs from the storage:\n{}", diff(before, &after)));
    }
    Ok(())
}

#[test]
fn every_corruption_of_every_file_is_quarantined_whole_with_its_reason() {
    let root = StorageRoot::new();
    let cases = corrupt_cases(&root);
    for c in &cases {
        let runner = root.valid_runner(&c.name);
        // Everything else in the storage must survive the move too.
        runner.file("runner.log", b"\x00\x01 arbitrary bytes \xff\n");
        fs::create_dir(runner.path.join("work")).unwrap();
        fs::write(runner.path.join("work/output.txt"), b"nested\n").unwrap();
        runner.remove(c.file);
        (c.apply)(&runner);
    }
    let before: BTreeMap<String, _> = cases.iter().map(|c| (c.name.clone(), contents(&root.join(&c.name)))).collect();
    let outside = snapshot(root.outside());

    let (collected, lines) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
    let summary = collected.summary().clone();

    let problems: Vec<String> =
        cases.iter().filter_map(|c| check_quarantined(&root, &collected, c, &before[&c.name]).err()).collect();
    assert!(problems.is_empty(), "{} of {} cases wrong:\n{}", problems.len(), cases.len(), problems.join("\n"));
    assert_eq!(summary.quarantined, cases.len(), "{summary:?}");
    assert_eq!(summary.total(), cases.len(), "one report per storage: {summary:?}");
    assert_eq!(collected.reports.len(), cases.len());
    assert!(lines.is_empty(), "corrupt storages yield nothing: {lines:?}");
    assert_eq!(summary.lines_written, 0);
    // Symlink targets outside the root were neither read into events nor touched.
    assert_eq!(diff(&outside, &snapshot(root.outside())), "");
    let left: Vec<_> = fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, [".quarantine"], "only the quarantine is left in the root");
    // Exactly one copy and one reason file per case.
    assert_eq!(fs::read_dir(root.quarantine_dir()).unwrap().count(), 2 * cases.len());
}

#[test]
fn files_at_exactly_the_limits_are_valid() {
    let root = StorageRoot::new();
    let runner = root.runner("r-at-limits");
    // 1024 bytes each (surrounding whitespace allowed), nesting exactly 128.
    let deep = format!(
        r#"{{"workflow": "ci", "repository": "canonical/example", "event": "push", "timestamp": 1700000100, "workflow_run_id": "123456", "x": {}1{}}}"#,
        "[".repeat(127),
        "]".repeat(127)
    );
    runner
        .padded(START, "1700000000.5", FILE_SIZE_LIMIT)
        .padded(INSTALLED, "1700000060", FILE_SIZE_LIMIT)
        .padded(PRE_JOB, deep, FILE_SIZE_LIMIT)
        .padded(POST_JOB, valid(POST_JOB), FILE_SIZE_LIMIT);
    for file in ALL_FILES {
        assert_eq!(fs::metadata(runner.path.join(file)).unwrap().len(), FILE_SIZE_LIMIT as u64);
    }
    let (collected, lines) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
    let report = collected.report("r-at-limits");
    assert_eq!(
        (report.outcome, report.detail.as_str(), report.events),
        (OutcomeKind::Extracted, "deleted", 3),
        "{report:?}"
    );
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(!exists(&runner.path));
    assert!(!exists(&root.quarantine_dir()));
}

#[test]
fn storages_without_an_installed_timestamp_are_deleted_as_no_data() {
    let root = StorageRoot::new();
    root.runner("nd-empty-dir");
    root.runner("nd-start-only").file(START, "1700000000\n");
    root.valid_runner("nd-installed-missing").remove(INSTALLED);
    root.valid_runner("nd-installed-zero-bytes").file(INSTALLED, "");
    root.valid_runner("nd-installed-whitespace").file(INSTALLED, " \n\t\n");
    root.runner("nd-empty-json").file(PRE_JOB, "{}").file(POST_JOB, "  \n").file(START, "");
    let names = [
        "nd-empty-dir",
        "nd-start-only",
        "nd-installed-missing",
        "nd-installed-zero-bytes",
        "nd-installed-whitespace",
        "nd-empty-json",
    ];
    let (collected, lines) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
    for name in names {
        let report = collected.report(name);
        assert_eq!(report.outcome, OutcomeKind::NoData, "{report:?}");
        assert_eq!(report.detail, "no installed timestamp; deleted");
        assert_eq!(report.events, 0);
        assert!(!exists(&root.join(name)), "{name} must be deleted");
    }
    assert!(lines.is_empty(), "no-data yields nothing: {lines:?}");
    assert_eq!(collected.summary().no_data, names.len());
    assert_eq!(collected.summary().total(), names.len());
    assert!(!exists(&root.quarantine_dir()), "nothing was quarantined");
    assert_eq!(entries_besides_deleting(root.path()), Vec::<String>::new());
}

#[test]
fn a_valid_storage_is_extracted_its_events_written_and_it_is_deleted() {
    let root = StorageRoot::new();
    let runner = root.valid_runner("r-valid");
    runner.file("extra.log", "other runner files go with it\n");
    fs::create_dir(runner.path.join("sub")).unwrap();
    fs::write(runner.path.join("sub/file"), "x").unwrap();
    // A symlink inside the storage is deleted itself, never its target.
    let victim = root.outside().join("victim.txt");
    fs::write(&victim, "must survive").unwrap();
    runner.symlink("link-to-outside", &victim);
    runner.symlink("dir-link-to-outside", root.outside());

    let (collected, lines) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
    let report = collected.report("r-valid");
    assert_eq!((report.outcome, report.detail.as_str(), report.events), (OutcomeKind::Extracted, "deleted", 3));
    let kinds: Vec<_> = lines.iter().map(|l| json(l)["event"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["runner_installed", "runner_start", "runner_stop"]);
    assert!(!exists(&runner.path), "storage deleted");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "must survive");
    assert_eq!(fs::read_dir(root.outside()).unwrap().count(), 1);
    assert_eq!(collected.summary().lines_written, 3);
    assert_eq!(collected.summary().extracted, 1);
}

#[test]
fn excluded_and_not_included_storages_are_skipped_untouched() {
    let root = StorageRoot::new();
    root.valid_runner("r-excluded");
    root.valid_runner("r-other");
    root.valid_runner("r-included");
    // Corrupt and empty ones are skipped just the same, not quarantined or deleted.
    root.valid_runner("r-excluded-corrupt").file(PRE_JOB, "not json");
    root.runner("r-other-empty");
    let untouched = ["r-excluded", "r-other", "r-excluded-corrupt", "r-other-empty"];
    let before: Vec<_> = untouched.iter().map(|n| snapshot(&root.join(n))).collect();

    let mut options = CollectOptions::events("small");
    options.selection = Selection {
        exclude: vec!["r-excluded".into(), "r-excluded-corrupt".into()],
        include: Some(vec!["r-included".into(), "r-excluded".into(), "r-excluded-corrupt".into()]),
        min_age_seconds: None,
    };
    let (collected, lines) = run(root.path(), &options, &mut NoJobMetrics);
    for (name, detail) in [
        ("r-excluded", "excluded"),
        ("r-excluded-corrupt", "excluded"),
        ("r-other", "not included"),
        ("r-other-empty", "not included"),
    ] {
        let report = collected.report(name);
        assert_eq!((report.outcome, report.detail.as_str()), (OutcomeKind::Skipped, detail), "{name}");
    }
    for (name, before) in untouched.iter().zip(&before) {
        assert_eq!(diff(before, &snapshot(&root.join(name))), "", "{name} changed");
    }
    assert_eq!(collected.kind("r-included"), OutcomeKind::Extracted);
    assert!(!exists(&root.join("r-included")));
    assert_eq!(lines.len(), 3);
    assert!(!exists(&root.quarantine_dir()));
    assert_eq!(collected.summary().skipped, 4);
    assert_eq!(collected.summary().total(), 5);
}

#[test]
fn storages_younger_than_the_minimum_age_are_skipped_untouched() {
    let root = StorageRoot::new();
    root.valid_runner("r-fresh");
    root.valid_runner("r-fresh-corrupt").file(POST_JOB, "[");
    root.runner("r-fresh-empty");
    let two_hours = Duration::from_secs(7200);
    root.valid_runner("r-old").age(two_hours);
    root.valid_runner("r-old-corrupt").file(POST_JOB, "[").age(two_hours);
    root.runner("r-old-empty").age(two_hours);
    let fresh = ["r-fresh", "r-fresh-corrupt", "r-fresh-empty"];
    let before: Vec<_> = fresh.iter().map(|n| snapshot(&root.join(n))).collect();

    let mut options = CollectOptions::events("small");
    options.selection.min_age_seconds = Some(3600.0);
    let (collected, lines) = run(root.path(), &options, &mut NoJobMetrics);
    for (name, before) in fresh.iter().zip(&before) {
        let report = collected.report(name);
        assert_eq!(report.outcome, OutcomeKind::Skipped, "{report:?}");
        assert!(report.detail.starts_with("too young ("), "{report:?}");
        assert_eq!(diff(before, &snapshot(&root.join(name))), "", "{name} changed");
    }
    assert_eq!(collected.kind("r-old"), OutcomeKind::Extracted);
    assert_eq!(collected.kind("r-old-corrupt"), OutcomeKind::Quarantined);
    assert_eq!(collected.kind("r-old-empty"), OutcomeKind::NoData);
    assert!(!exists(&root.join("r-old")) && !exists(&root.join("r-old-corrupt")) && !exists(&root.join("r-old-empty")));
    assert_eq!(quarantined(&root, "r-old-corrupt").reason["reason"], "invalid-json");
    assert_eq!(lines.len(), 3);
}

#[test]
fn a_min_age_of_zero_or_below_the_age_takes_every_storage() {
    let root = StorageRoot::new();
    root.valid_runner("r-a").age(Duration::from_secs(120));
    root.valid_runner("r-b");
    let mut options = CollectOptions::events("small");
    options.selection.min_age_seconds = Some(60.0);
    let (collected, _) = run(root.path(), &options, &mut NoJobMetrics);
    assert_eq!(collected.kind("r-a"), OutcomeKind::Extracted);
    assert_eq!(collected.kind("r-b"), OutcomeKind::Skipped);
    options.selection.min_age_seconds = Some(0.0);
    let (collected, _) = run(root.path(), &options, &mut NoJobMetrics);
    assert_eq!(collected.kind("r-b"), OutcomeKind::Extracted);
    assert_eq!(entries_besides_deleting(root.path()), Vec::<String>::new());
}

#[test]
fn root_entries_that_are_not_storages_are_skipped_and_never_followed() {
    let root = StorageRoot::new();
    // A storage outside the root that a symlink in the root points at.
    let victim = root.outside().join("victim-runner");
    fs::create_dir(&victim).unwrap();
    for (file, content) in valid_files() {
        fs::write(victim.join(file), content).unwrap();
    }
    root.root_file("notes.txt", "not a runner\n");
    root.root_file("r-file", "1700000000\n");
    root.root_symlink("r-link", &victim);
    root.root_symlink("r-dangling", "/nonexistent/runner-metrics-e2e");
    root.root_fifo("r-fifo");
    for bad in ["bad name", ".hidden", "caf\u{e9}-runner", "r\nnewline"] {
        let dir = root.join(bad);
        fs::create_dir(&dir).unwrap();
        for (file, content) in valid_files() {
            fs::write(dir.join(file), content).unwrap();
        }
    }
    // A directory whose name is not UTF-8.
    let raw = std::ffi::OsStr::from_bytes(b"r-\xff\xfe");
    fs::create_dir(root.path().join(raw)).unwrap();
    fs::write(root.path().join(raw).join(INSTALLED), "1").unwrap();
    // The project's own quarantine folder is neither reported nor touched.
    fs::create_dir(root.quarantine_dir()).unwrap();
    fs::write(root.quarantine_dir().join("keep.txt"), "x").unwrap();
    root.valid_runner("r-valid");

    let before_root = snapshot(root.path());
    let before_outside = snapshot(root.outside());
    let (collected, lines) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);

    for name in ["notes.txt", "r-file", "r-link", "r-dangling", "r-fifo"] {
        let report = collected.report(name);
        assert_eq!(
            (report.outcome, report.detail.as_str()),
            (OutcomeKind::Skipped, "not a plain directory; left alone"),
            "{name}"
        );
    }
    for name in ["bad name", ".hidden", "caf\u{e9}-runner", "r\nnewline", "<non-UTF-8 name>"] {
        let report = collected.report(name);
        assert_eq!(
            (report.outcome, report.detail.as_str()),
            (OutcomeKind::Skipped, "not a valid runner name; left alone"),
            "{name:?}"
        );
    }
    assert!(collected.reports.iter().all(|r| r.name != ".quarantine"), "{:?}", collected.reports);
    assert_eq!(collected.kind("r-valid"), OutcomeKind::Extracted);
    assert_eq!(lines.len(), 3, "only r-valid yields events: {lines:?}");
    assert_eq!(collected.summary().skipped, 10);
    assert_eq!(collected.summary().total(), 11);

    // Everything but the extracted storage is exactly as it was (the root's
    // own mtime changes because r-valid was removed from it).
    let mut expected = before_root.clone();
    expected.retain(|p, _| !p.starts_with("r-valid"));
    let mut after = snapshot(root.path());
    after.retain(|p, _| !p.starts_with(".deleting"));
    expected.remove(std::path::Path::new(""));
    after.remove(std::path::Path::new(""));
    assert_eq!(diff(&expected, &after), "");
    assert_eq!(diff(&before_outside, &snapshot(root.outside())), "");
}

#[test]
fn a_storage_the_manager_cannot_read_fails_and_is_kept() {
    // Root bypasses file permissions: as root, run this very test again as
    // `nobody` (when setpriv(1) can), and let that run decide.
    if ran_as_nobody_instead("a_storage_the_manager_cannot_read_fails_and_is_kept") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let root = StorageRoot::new();
    let runner = root.valid_runner("r-unreadable");
    fs::set_permissions(runner.path.join(PRE_JOB), fs::Permissions::from_mode(0o000)).unwrap();
    root.valid_runner("r-valid");
    let (collected, lines) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
    let report = collected.report("r-unreadable");
    assert_eq!(report.outcome, OutcomeKind::Failed, "{report:?}");
    assert!(report.detail.starts_with("kept: "), "{report:?}");
    assert!(runner.path.join(PRE_JOB).exists() && runner.path.join(POST_JOB).exists());
    assert!(!exists(&root.quarantine_dir()));
    assert_eq!(collected.kind("r-valid"), OutcomeKind::Extracted);
    assert_eq!(lines.len(), 3);
    fs::set_permissions(runner.path.join(PRE_JOB), fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn a_storage_that_cannot_be_deleted_is_quarantined_as_undeletable_never_left_to_extract_twice() {
    // An entry whose name is not UTF-8 cannot be named through WASI, so the
    // guest cannot delete the storage; it must move it aside instead.
    let root = StorageRoot::new();
    let bad = std::ffi::OsStr::from_bytes(b"junk-\xff");
    let extracted = root.valid_runner("r-undeletable");
    fs::write(extracted.path.join(bad), "x").unwrap();
    let no_data = root.runner("r-undeletable-no-data");
    fs::write(no_data.path.join(bad), "y").unwrap();

    let (collected, lines) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
    // Events first: they were written, and the storage is out of the way.
    assert_eq!(lines.len(), 3, "{lines:?}");
    let report = collected.report("r-undeletable");
    assert_eq!((report.outcome, report.events), (OutcomeKind::Extracted, 3), "{report:?}");
    assert!(report.detail.starts_with("could not be deleted, so moved to .quarantine/r-undeletable."), "{report:?}");
    let q = quarantined(&root, "r-undeletable");
    assert_eq!(q.reason["reason"], "undeletable");
    assert_eq!(q.reason["file"], serde_json::Value::Null);
    assert!(q.location.join(bad).is_file(), "the entry that blocked deletion is kept");

    let report = collected.report("r-undeletable-no-data");
    assert_eq!(report.outcome, OutcomeKind::Quarantined, "{report:?}");
    assert!(report.detail.starts_with("undeletable: "), "{report:?}");
    let q = quarantined(&root, "r-undeletable-no-data");
    assert_eq!(q.reason["reason"], "undeletable");
    assert_eq!(fs::read(q.location.join(bad)).unwrap(), b"y");

    assert!(!exists(&extracted.path) && !exists(&no_data.path));
    // A second run finds nothing to extract again.
    let (again, lines) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
    assert!(again.reports.is_empty() && lines.is_empty(), "{:?}", again.reports);
}

#[test]
fn deep_trees_inside_a_storage_are_deleted_and_quarantined_whole() {
    let root = StorageRoot::new();
    let valid = root.valid_runner("r-deep");
    let corrupt = root.valid_runner("r-deep-corrupt");
    corrupt.file(INSTALLED, "soon");
    for runner in [&valid, &corrupt] {
        let mut dir = runner.path.clone();
        for _ in 0..100 {
            dir = dir.join("d");
        }
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("leaf"), "leaf").unwrap();
    }
    let before = contents(&corrupt.path);
    let (collected, _) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
    assert_eq!(
        (collected.kind("r-deep"), collected.report("r-deep").detail.as_str()),
        (OutcomeKind::Extracted, "deleted")
    );
    assert!(!exists(&valid.path));
    assert_eq!(collected.kind("r-deep-corrupt"), OutcomeKind::Quarantined);
    let q = quarantined(&root, "r-deep-corrupt");
    assert_eq!(q.reason["reason"], "invalid-timestamp");
    assert_eq!(diff(&before, &contents(&q.location)), "");
}

#[test]
fn a_quarantine_folder_that_is_not_a_directory_is_never_used_and_the_storage_kept() {
    // A symlinked `.quarantine` must not carry storages out of the root, and
    // a file there must not be clobbered: the corrupt storage fails and stays.
    for kind in ["symlink", "file"] {
        let root = StorageRoot::new();
        match kind {
            "symlink" => {
                root.root_symlink(".quarantine", root.outside());
            }
            _ => {
                root.root_file(".quarantine", "not a directory");
            }
        }
        root.valid_runner("r-corrupt").file(POST_JOB, "{");
        root.valid_runner("r-valid");
        let before = snapshot(&root.join("r-corrupt"));
        let outside = snapshot(root.outside());
        let (collected, lines) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
        let report = collected.report("r-corrupt");
        assert_eq!(report.outcome, OutcomeKind::Failed, "{kind}: {report:?}");
        assert!(report.detail.contains("quarantine failed"), "{kind}: {report:?}");
        assert_eq!(diff(&before, &snapshot(&root.join("r-corrupt"))), "", "{kind}: the storage must stay whole");
        assert_eq!(diff(&outside, &snapshot(root.outside())), "", "{kind}: nothing may be written through the symlink");
        assert_eq!(collected.kind("r-valid"), OutcomeKind::Extracted, "{kind}");
        assert_eq!(lines.len(), 3);
        assert!(collected.reports.iter().all(|r| r.name != ".quarantine"));
    }
}

#[test]
fn the_deadline_is_per_storage_so_a_long_run_of_quick_storages_is_never_cut() {
    // Expected: 1,500 storages under a 150 ms deadline. The guest's one
    // `collect` call lasts far longer than that, but the deadline restarts
    // with every storage (and every host call), so nothing traps: every
    // storage is extracted, none quarantined. Without the re-arm the call
    // would trap after 150 ms and the run would go storage by storage
    // through the trap budget.
    use runner_metrics::{Limits, Plugin, PluginOptions};
    let limits = Limits { call_timeout: Duration::from_millis(150), ..Limits::default() };
    let plugin = Plugin::from_bytes(
        runner_metrics::plugin::EMBEDDED_COMPONENT,
        &PluginOptions { limits, cache_dir: Some(cache_dir()), ..Default::default() },
    )
    .expect("open the component");
    let root = StorageRoot::new();
    for i in 0..1500 {
        root.valid_runner(&format!("quick-{i:04}"));
    }
    let mut sink = runner_metrics::MemorySink::default();
    let started = std::time::Instant::now();
    let summary = runner_metrics::collect(
        &plugin,
        root.path(),
        &CollectOptions::events("small"),
        &mut NoJobMetrics,
        &mut sink,
        &mut |_| {},
    )
    .expect("collect");
    let took = started.elapsed();
    assert!(took > Duration::from_millis(150), "too fast to show anything: {took:?}");
    assert_eq!((summary.extracted, summary.quarantined, summary.failed), (1500, 0, 0), "{summary:?} in {took:?}");
    assert_eq!(sink.lines.len(), 1500 * 3);
}

#[test]
fn each_plugin_build_runs_on_the_filesystem_that_serves_it() {
    // The fast build (storage-files) over the confined filesystem, the WASI
    // build on the fallback; the fast build on the fallback is refused,
    // saying why, and the WASI build still runs on the confined one.
    use runner_metrics::confined_fs::Layer;
    use runner_metrics::plugin::{EMBEDDED_COMPONENT, EMBEDDED_FAST_COMPONENT};
    use runner_metrics::{Plugin, PluginOptions};
    let on = |filesystem| PluginOptions { cache_dir: Some(cache_dir()), filesystem, ..Default::default() };
    assert!(std::ptr::eq(on(Layer::Wasi).component().unwrap(), EMBEDDED_COMPONENT));
    assert!(std::ptr::eq(on(Layer::Confined).component().unwrap(), EMBEDDED_FAST_COMPONENT));
    let refused = Plugin::from_bytes(EMBEDDED_FAST_COMPONENT, &on(Layer::Wasi)).err().expect("refused on the fallback");
    assert!(format!("{refused:#}").contains("the fast build does not run on the fallback"), "{refused:#}");
    Plugin::from_bytes(EMBEDDED_COMPONENT, &on(Layer::Confined)).expect("the WASI build on the confined filesystem");
}
