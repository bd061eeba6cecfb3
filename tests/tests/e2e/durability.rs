//! Nothing is lost: lines are written before storages are deleted, a failing
//! sink keeps the storages, `keep` changes nothing, and many storages in
//! many batches each get exactly one report.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::PathBuf;

use runner_metrics::{CollectOptions, EventSink, MemorySink, NoJobMetrics, OutcomeKind};
use runner_metrics_e2e::*;

/// A storage whose lines can be traced back to it: the installed timestamp
/// and the workflow name both identify it.
fn traceable_runner(root: &StorageRoot, index: usize) -> (String, String) {
    let name = format!("r-{index:03}");
    let installed = format!("{}.0", 1_700_000_000 + index);
    root.runner(&name)
        .file(START, "1699999000")
        .file(INSTALLED, &installed)
        .file(PRE_JOB, format!(r#"{{"timestamp": 1700001000, "workflow": "{name}", "workflow_run_id": "1", "repository": "o/r", "event": "push"}}"#))
        .file(POST_JOB, r#"{"timestamp": 1700002000, "status": "normal"}"#);
    (name, installed)
}

/// A sink that, at the moment lines are appended, checks that every storage
/// they came from is still complete on disk.
struct CheckingSink {
    root: PathBuf,
    name_of_installed: HashMap<String, String>,
    /// Per append: (storage, still complete on disk) for each line.
    appends: Vec<Vec<(String, bool)>>,
    lines: Vec<String>,
}

impl CheckingSink {
    fn storage_of(&self, line: &str) -> String {
        let value = json(line);
        match value["event"].as_str().unwrap() {
            "runner_installed" => {
                let ts = format!("{:.1}", value["timestamp"].as_f64().unwrap());
                self.name_of_installed.get(&ts).cloned().unwrap_or_else(|| panic!("unknown installed time in {line}"))
            }
            _ => value["workflow"].as_str().unwrap().to_owned(),
        }
    }
}

impl EventSink for CheckingSink {
    fn append(&mut self, lines: &[String]) -> io::Result<()> {
        let checked = lines
            .iter()
            .map(|line| {
                let name = self.storage_of(line);
                let dir = self.root.join(&name);
                let complete = ALL_FILES.iter().all(|f| dir.join(f).is_file());
                (name, complete)
            })
            .collect();
        self.appends.push(checked);
        self.lines.extend_from_slice(lines);
        Ok(())
    }

    fn describe(&self) -> String {
        "checking sink".to_owned()
    }
}

#[test]
fn lines_are_written_while_their_storages_still_exist_and_only_then_deleted() {
    let root = StorageRoot::new();
    let mut sink = CheckingSink {
        root: root.path().to_owned(),
        name_of_installed: HashMap::new(),
        appends: Vec::new(),
        lines: Vec::new(),
    };
    let count = 10;
    for i in 0..count {
        let (name, installed) = traceable_runner(&root, i);
        sink.name_of_installed.insert(installed, name);
    }
    let options = CollectOptions { batch_size: 3, ..CollectOptions::events("small") };
    let collected = run_into(root.path(), &options, &mut NoJobMetrics, &mut sink);
    assert_eq!(collected.summary().extracted, count);

    let checked: Vec<&(String, bool)> = sink.appends.iter().flatten().collect();
    assert_eq!(checked.len(), 3 * count, "every line was checked");
    let missing: Vec<_> = checked.iter().filter(|(_, complete)| !complete).collect();
    assert!(missing.is_empty(), "storages gone before their lines were written: {missing:?}");
    // Each storage's three lines were appended together, in order.
    for append in &sink.appends {
        for chunk in append.chunks(3) {
            assert!(chunk.iter().all(|(n, _)| *n == chunk[0].0), "{append:?}");
        }
    }
    assert_eq!(sink.appends.len(), count.div_ceil(3), "batches of 3");
    for i in 0..count {
        assert!(!exists(&root.join(&format!("r-{i:03}"))), "r-{i:03} deleted after its lines were written");
    }
    for r in &collected.reports {
        assert_eq!((r.outcome, r.detail.as_str(), r.events), (OutcomeKind::Extracted, "deleted", 3), "{r:?}");
    }
}

/// A sink that fails every append after the first `ok` ones.
struct FailingSink {
    ok: usize,
    calls: usize,
    inner: MemorySink,
}

impl EventSink for FailingSink {
    fn append(&mut self, lines: &[String]) -> io::Result<()> {
        self.calls += 1;
        if self.calls > self.ok {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left (simulated)"));
        }
        self.inner.append(lines)
    }

    fn describe(&self) -> String {
        "the failing sink".to_owned()
    }
}

#[test]
fn a_failing_sink_keeps_every_storage_whose_lines_were_not_written() {
    let root = StorageRoot::new();
    let names: Vec<_> = (0..3).map(|i| traceable_runner(&root, i).0).collect();
    let before = snapshot_besides_the_roots_mtime(root.path());
    let mut sink = FailingSink { ok: 0, calls: 0, inner: MemorySink::default() };
    let collected = run_into(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics, &mut sink);

    let error =
        format!("{:#}", collected.result.as_ref().expect_err("collect must fail when the log cannot be written"));
    assert!(error.contains("no space left (simulated)") && error.contains("the failing sink"), "{error}");
    for name in &names {
        let report = collected.report(name);
        assert_eq!(report.outcome, OutcomeKind::Failed, "{report:?}");
        assert!(report.detail.starts_with("kept: events not written"), "{report:?}");
        assert_eq!(report.events, 0);
    }
    // Not one byte changed (no quarantine either).
    assert_eq!(diff(&before, &snapshot_besides_the_roots_mtime(root.path())), "");
    assert!(sink.inner.lines.is_empty());
}

#[test]
fn when_the_sink_fails_mid_run_written_batches_are_deleted_and_the_rest_kept() {
    let root = StorageRoot::new();
    let names: Vec<_> = (0..5).map(|i| traceable_runner(&root, i).0).collect();
    let before: BTreeMap<_, _> = names.iter().map(|n| (n.clone(), snapshot(&root.join(n)))).collect();
    let mut sink = FailingSink { ok: 1, calls: 0, inner: MemorySink::default() };
    let options = CollectOptions { batch_size: 2, ..CollectOptions::events("small") };
    let collected = run_into(root.path(), &options, &mut NoJobMetrics, &mut sink);
    assert!(collected.result.is_err());
    assert_eq!(sink.calls, 2, "the run stops at the first failed append");

    let by_kind =
        |kind| collected.reports.iter().filter(|r| r.outcome == kind).map(|r| r.name.clone()).collect::<Vec<_>>();
    let extracted = by_kind(OutcomeKind::Extracted);
    let failed = by_kind(OutcomeKind::Failed);
    assert_eq!((extracted.len(), failed.len(), collected.reports.len()), (2, 2, 4), "{:?}", collected.reports);
    assert_eq!(sink.inner.lines.len(), 6, "the first batch's lines were written");
    for name in &names {
        if extracted.contains(name) {
            assert!(!exists(&root.join(name)), "{name} written, so deleted");
        } else {
            // Failed, or never reached: kept exactly as it was.
            assert_eq!(diff(&before[name], &snapshot(&root.join(name))), "", "{name}");
        }
    }
    assert!(!exists(&root.quarantine_dir()));
}

/// A root with every outcome: valid, no-data, corrupt of each kind, skipped.
fn mixed_root() -> StorageRoot {
    let root = StorageRoot::new();
    root.valid_runner("v-complete");
    root.fixture_f("v-fixture-f");
    root.runner("v-installed-only").file(INSTALLED, "5");
    root.runner("nd-empty");
    root.runner("nd-start-only").file(START, "1");
    root.valid_runner("q-oversized").padded(POST_JOB, "{}", FILE_SIZE_LIMIT + 1);
    root.valid_runner("q-symlink").remove(PRE_JOB).symlink(PRE_JOB, "/etc/passwd");
    root.valid_runner("q-dir").remove(START).dir(START);
    root.valid_runner("q-fifo").remove(INSTALLED).fifo(INSTALLED);
    root.valid_runner("q-json").file(PRE_JOB, "{");
    root.valid_runner("q-bom").file(INSTALLED, b"\xEF\xBB\xBF1");
    root.valid_runner("q-timestamp").file(START, "yesterday");
    root.valid_runner("q-type").file(POST_JOB, r#"{"timestamp": 1, "status": 1}"#);
    root.root_file("notes.txt", "x");
    root.root_symlink("r-link", root.outside());
    root.root_fifo("r-fifo");
    let bad = root.join("bad name");
    fs::create_dir(&bad).unwrap();
    fs::write(bad.join(INSTALLED), "1").unwrap();
    root
}

fn assert_dry_run_reports(collected: &Collected) {
    for name in ["v-complete", "v-fixture-f", "v-installed-only"] {
        let r = collected.report(name);
        assert_eq!((r.outcome, r.detail.as_str()), (OutcomeKind::Extracted, "kept (dry run)"), "{r:?}");
    }
    for name in ["nd-empty", "nd-start-only"] {
        let r = collected.report(name);
        assert_eq!(
            (r.outcome, r.detail.as_str()),
            (OutcomeKind::NoData, "no installed timestamp; would be deleted"),
            "{r:?}"
        );
    }
    for (name, reason) in [
        ("q-oversized", "oversized"),
        ("q-symlink", "not-regular-file"),
        ("q-dir", "not-regular-file"),
        ("q-fifo", "not-regular-file"),
        ("q-json", "invalid-json"),
        ("q-bom", "invalid-utf8"),
        ("q-timestamp", "invalid-timestamp"),
        ("q-type", "invalid-value"),
    ] {
        let r = collected.report(name);
        assert_eq!(r.outcome, OutcomeKind::Quarantined, "{r:?}");
        assert!(r.detail.starts_with(&format!("{reason}: ")) && r.detail.ends_with("; would be quarantined"), "{r:?}");
    }
    for name in ["notes.txt", "r-link", "r-fifo", "bad name"] {
        assert_eq!(collected.kind(name), OutcomeKind::Skipped);
    }
    assert_eq!(collected.reports.len(), 17);
}

#[test]
fn keep_changes_nothing_on_disk_for_any_outcome() {
    let root = mixed_root();
    let whole = root.path().parent().unwrap().to_owned();
    let before = snapshot(&whole);

    let options = CollectOptions { dry_run: true, ..CollectOptions::events("small") };
    let (collected, lines) = run(root.path(), &options, &mut NoJobMetrics);
    assert_eq!(diff(&before, &snapshot(&whole)), "", "keep must change nothing");
    assert_dry_run_reports(&collected);
    assert_eq!(lines.len(), 3 + 3, "the dry run still reports the events it would write");
    let summary = collected.summary();
    assert_eq!(
        (summary.extracted, summary.no_data, summary.quarantined, summary.skipped, summary.failed),
        (3, 2, 8, 4, 0)
    );

    // The same with metrics lines (`extract --dry-run`), and twice in a row.
    let options =
        CollectOptions { dry_run: true, emit: runner_metrics::Emit::Metrics, ..CollectOptions::events("small") };
    for _ in 0..2 {
        let (collected, lines) = run(root.path(), &options, &mut NoJobMetrics);
        assert_dry_run_reports(&collected);
        assert_eq!(lines.len(), 3);
    }
    assert_eq!(diff(&before, &snapshot(&whole)), "", "keep must change nothing");

    // Without keep the very same root is really cleaned up: the dry run had
    // real work to skip.
    let (collected, _) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
    assert_eq!(collected.summary().quarantined, 8);
    let mut left: Vec<_> =
        fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, [".deleting", ".quarantine", "bad name", "notes.txt", "r-fifo", "r-link"]);
}

/// A sink that counts appends and remembers lines.
#[derive(Default)]
struct CountingSink {
    appends: usize,
    lines: Vec<String>,
}

impl EventSink for CountingSink {
    fn append(&mut self, lines: &[String]) -> io::Result<()> {
        self.appends += 1;
        self.lines.extend_from_slice(lines);
        Ok(())
    }
    fn describe(&self) -> String {
        "counting sink".to_owned()
    }
}

#[test]
fn hundreds_of_mixed_storages_in_small_batches_each_get_exactly_one_report() {
    let root = StorageRoot::new();
    // (name, expected outcome, expected lines)
    let mut expected: Vec<(String, OutcomeKind, usize)> = Vec::new();
    for i in 0..300 {
        let name = format!("m-{i:03}");
        let (kind, lines) = match i % 6 {
            0 => {
                root.valid_runner(&name);
                (OutcomeKind::Extracted, 3)
            }
            1 => {
                root.runner(&name).file(START, "1").file(INSTALLED, "2");
                (OutcomeKind::Extracted, 1)
            }
            2 => {
                root.runner(&name).file(START, "1");
                (OutcomeKind::NoData, 0)
            }
            3 => {
                root.valid_runner(&name).file(POST_JOB, "{\"timestamp\": ");
                (OutcomeKind::Quarantined, 0)
            }
            4 => {
                root.valid_runner(&name).remove(PRE_JOB).fifo(PRE_JOB);
                (OutcomeKind::Quarantined, 0)
            }
            _ => {
                root.valid_runner(&name).remove(START).file(
                    PRE_JOB,
                    r#"{"timestamp": 1700000100, "workflow": "w", "workflow_run_id": "1", "repository": "o/r", "event": "push"}"#,
                );
                (OutcomeKind::Extracted, 2)
            }
        };
        expected.push((name, kind, lines));
    }
    for i in 0..10 {
        let name = format!("stray-{i}.txt");
        root.root_file(&name, "x");
        expected.push((name, OutcomeKind::Skipped, 0));
    }
    for i in 0..5 {
        let name = format!("bad name {i}");
        fs::create_dir(root.join(&name)).unwrap();
        expected.push((name, OutcomeKind::Skipped, 0));
    }

    let mut sink = CountingSink::default();
    let options = CollectOptions { batch_size: 7, ..CollectOptions::events("small") };
    let started = std::time::Instant::now();
    let collected = run_into(root.path(), &options, &mut NoJobMetrics, &mut sink);
    let elapsed = started.elapsed();
    let summary = collected.summary().clone();

    let mut reports_per_name: HashMap<&str, Vec<&runner_metrics::StorageReport>> = HashMap::new();
    for r in &collected.reports {
        reports_per_name.entry(r.name.as_str()).or_default().push(r);
    }
    assert_eq!(collected.reports.len(), expected.len(), "one report per root entry");
    let mut wrong = Vec::new();
    for (name, kind, lines) in &expected {
        match reports_per_name.get(name.as_str()).map(Vec::as_slice) {
            Some([r]) if r.outcome == *kind && r.events as usize == *lines => {}
            other => wrong.push(format!("{name}: expected {kind:?} with {lines} lines, got {other:?}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    let count = |k| expected.iter().filter(|(_, kind, _)| *kind == k).count();
    assert_eq!(
        (summary.extracted, summary.no_data, summary.quarantined, summary.skipped, summary.failed),
        (
            count(OutcomeKind::Extracted),
            count(OutcomeKind::NoData),
            count(OutcomeKind::Quarantined),
            count(OutcomeKind::Skipped),
            0
        )
    );
    let total_lines: usize = expected.iter().map(|(_, _, l)| l).sum();
    assert_eq!((summary.lines_written, sink.lines.len()), (total_lines, total_lines));
    assert_eq!(sink.appends, count(OutcomeKind::Extracted).div_ceil(7), "one append per batch of 7 extracted storages");

    // On disk: extracted and no-data gone, corrupt ones quarantined, skipped ones left.
    for (name, kind, _) in &expected {
        let present = exists(&root.join(name));
        assert_eq!(present, *kind == OutcomeKind::Skipped, "{name} ({kind:?}) present={present}");
    }
    let quarantine_entries = fs::read_dir(root.quarantine_dir()).unwrap().count();
    assert_eq!(quarantine_entries, 2 * count(OutcomeKind::Quarantined));
    assert!(elapsed.as_secs() < 30, "300 storages took {elapsed:?}");
}

#[test]
fn a_metrics_log_under_a_regular_file_cannot_open_and_names_its_path() {
    let root = StorageRoot::new();
    let parent = root.outside().join("regular-file");
    fs::write(&parent, "x").unwrap();
    let path = parent.join("metrics.log");
    let error = runner_metrics::MetricsLog::open(&path).err().expect("cannot open a log under a regular file");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
    assert_eq!(fs::read(&parent).unwrap(), b"x");
}
