//! Pulled metrics (spec 9) through the whole pipeline, natively: the
//! upstream manager's parse cases (valid, each file corrupt alone and all
//! together, empty and missing files) under both policies, and a real
//! `tar -C DIR -cf - .` stream. Each run stages the runner in a real
//! temporary root and collects it; what is written, reported and left on
//! disk is checked.

#![cfg(all(unix, not(target_arch = "wasm32")))]

use std::path::Path;

use runner_metrics_core::fs::NativeFs;
use runner_metrics_core::model::{
    CollectOptions, GithubJobMetrics, LooseFiles, Policy, PulledFiles, PulledMetrics, RunnerMetrics, StorageOutput,
};
use runner_metrics_core::pipeline::{self, Host};
use runner_metrics_core::report::StorageReport;
use runner_metrics_core::{files, pulled};

const RUNNER: &str = "pulled-runner-1";
const INSTALLED: &[u8] = b"1700000060\n";
const PRE_JOB: &[u8] = br#"{"workflow": "ci", "repository": "org/repo", "event": "push", "timestamp": 1700000100, "workflow_run_id": "7"}"#;
const POST_JOB: &[u8] = br#"{"timestamp": 1700000400, "status": "normal", "status_info": null}"#;

#[derive(Default)]
struct Recorder {
    lines: Vec<String>,
    reports: Vec<StorageReport>,
}

impl Host for Recorder {
    fn begin_storage(&mut self, _: &str) {}
    fn end_storage(&mut self) {}
    fn job_metrics(&mut self, _: &RunnerMetrics) -> Option<GithubJobMetrics> {
        None
    }
    fn append(&mut self, batch: Vec<StorageOutput>) -> Result<(), String> {
        self.lines.extend(batch.iter().flat_map(StorageOutput::lines));
        Ok(())
    }
    fn report(&mut self, report: StorageReport) {
        self.reports.push(report);
    }
}

/// Collects `source` pulled from [`RUNNER`] in a fresh root.
fn ingest(root: &Path, source: PulledFiles, policy: Policy) -> (Recorder, Result<(), String>) {
    let options = CollectOptions { policy, pulled: Some(RUNNER.to_owned()), ..CollectOptions::events("small") };
    let pulled = PulledMetrics { installation_start: Some(1700000000.5), files: source };
    let mut host = Recorder::default();
    let result = pipeline::collect(&NativeFs::new(root), &options, Some(&pulled), &mut host).map_err(|e| e.message);
    (host, result)
}

fn event_kinds(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].as_str().unwrap().to_owned())
        .collect()
}

fn quarantined(root: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(root.join(".quarantine")) {
        Ok(dir) => dir.map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn the_upstream_parse_cases_under_both_policies() {
    let corrupt: [(&str, &[u8]); 3] =
        [(files::INSTALLED, b"not a number"), (files::PRE_JOB, b"{\"timestamp\": "), (files::POST_JOB, b"[1, 2]")];
    let valid: [(&str, &[u8]); 3] =
        [(files::INSTALLED, INSTALLED), (files::PRE_JOB, PRE_JOB), (files::POST_JOB, POST_JOB)];
    // Which files are corrupt: none, each alone, all together.
    let mut cases: Vec<Vec<&str>> = vec![vec![]];
    cases.extend(corrupt.iter().map(|(f, _)| vec![*f]));
    cases.push(corrupt.iter().map(|(f, _)| *f).collect());
    for bad in cases {
        for policy in [Policy::Strict, Policy::Lenient] {
            let root = tempfile::tempdir().unwrap();
            let pick = |file: &str| {
                let table = if bad.contains(&file) { &corrupt } else { &valid };
                table.iter().find(|(f, _)| *f == file).map(|(_, b)| b.to_vec())
            };
            let loose = LooseFiles {
                installed: pick(files::INSTALLED),
                pre_job: pick(files::PRE_JOB),
                post_job: pick(files::POST_JOB),
            };
            let (host, result) = ingest(root.path(), PulledFiles::Loose(loose), policy);
            let what = format!("{policy:?} with {bad:?} corrupt");
            result.unwrap_or_else(|e| panic!("{what}: {e}"));
            let [report] = host.reports.as_slice() else { panic!("{what}: {:?}", host.reports) };
            assert_eq!(report.name, RUNNER, "{what}");
            assert!(!root.path().join(RUNNER).exists(), "{what}: the staged storage is left in the root");
            if bad.is_empty() {
                assert_eq!(report.outcome.as_str(), "extracted", "{what}");
                assert_eq!(event_kinds(&host.lines), ["runner_installed", "runner_start", "runner_stop"], "{what}");
                continue;
            }
            match policy {
                Policy::Strict => {
                    // The whole runner is corrupt: no lines, its bytes kept.
                    assert_eq!(report.outcome.as_str(), "quarantined", "{what}");
                    assert_eq!(report.file.as_deref(), Some(bad[0]), "{what}");
                    assert!(host.lines.is_empty(), "{what}");
                    let [kept] = quarantined(root.path()).try_into().unwrap();
                    for (file, bytes) in [valid, corrupt].concat() {
                        if pick(file).as_deref() == Some(bytes) {
                            assert_eq!(std::fs::read(kept.join(file)).unwrap(), bytes, "{what}: {file}");
                        }
                    }
                }
                Policy::Lenient => {
                    // A corrupt file counts as missing; the rest is issued.
                    let mut expected = Vec::new();
                    if !bad.contains(&files::INSTALLED) {
                        expected.push("runner_installed");
                        if !bad.contains(&files::PRE_JOB) {
                            expected.push("runner_start");
                            if !bad.contains(&files::POST_JOB) {
                                expected.push("runner_stop");
                            }
                        }
                    }
                    assert_eq!(event_kinds(&host.lines), expected, "{what}");
                    let kind = if expected.is_empty() { "no-data" } else { "extracted" };
                    assert_eq!(report.outcome.as_str(), kind, "{what}");
                    for file in &bad {
                        assert!(report.detail.contains(file), "{what}: {}", report.detail);
                    }
                    assert!(report.detail.starts_with("counted as missing (lenient policy): "), "{what}");
                    assert!(quarantined(root.path()).is_empty(), "{what}");
                }
            }
        }
    }
}

#[test]
fn empty_and_missing_files_count_as_missing_under_both_policies() {
    for policy in [Policy::Strict, Policy::Lenient] {
        // Empty timestamp and metrics files, as a job that truncated them.
        let root = tempfile::tempdir().unwrap();
        let empty = LooseFiles { installed: Some(vec![]), pre_job: Some(vec![]), post_job: Some(vec![]) };
        let (host, result) = ingest(root.path(), PulledFiles::Loose(empty), policy);
        result.unwrap();
        assert_eq!(host.reports[0].outcome.as_str(), "no-data", "{policy:?}");
        assert!(host.lines.is_empty());
        // Only the installed timestamp: the runner came up, never ran a job.
        let root = tempfile::tempdir().unwrap();
        let only = LooseFiles { installed: Some(INSTALLED.to_vec()), ..LooseFiles::default() };
        let (host, result) = ingest(root.path(), PulledFiles::Loose(only), policy);
        result.unwrap();
        assert_eq!(event_kinds(&host.lines), ["runner_installed"]);
        // Nothing at all.
        let root = tempfile::tempdir().unwrap();
        let (host, result) = ingest(root.path(), PulledFiles::Loose(LooseFiles::default()), policy);
        result.unwrap();
        assert_eq!(host.reports[0].outcome.as_str(), "no-data");
        let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [".deleting"], "{policy:?}: only the emptied .deleting/ is left");
    }
}

#[test]
fn an_oversized_loose_file_is_corrupt_and_what_crossed_is_kept() {
    let root = tempfile::tempdir().unwrap();
    let big = vec![b'{'; pulled::MAX_LOOSE_BYTES];
    let loose = LooseFiles { installed: Some(INSTALLED.to_vec()), pre_job: Some(big.clone()), post_job: None };
    let (host, result) = ingest(root.path(), PulledFiles::Loose(loose), Policy::Strict);
    result.unwrap();
    assert_eq!(host.reports[0].reason.as_deref(), Some("oversized"));
    let [kept] = quarantined(root.path()).try_into().unwrap();
    assert_eq!(std::fs::read(kept.join(files::PRE_JOB)).unwrap(), big);
}

/// `tar -C DIR -cf - .`, as the README's pipe runs it on the runner.
fn gnu_tar(dir: &Path) -> Vec<u8> {
    let out = std::process::Command::new("tar").arg("-C").arg(dir).args(["-cf", "-", "."]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn a_real_tar_stream_is_staged_collected_and_its_storage_deleted() {
    let exchange = tempfile::tempdir().unwrap();
    for (file, bytes) in [(files::INSTALLED, INSTALLED), (files::PRE_JOB, PRE_JOB), (files::POST_JOB, POST_JOB)] {
        std::fs::write(exchange.path().join(file), bytes).unwrap();
    }
    std::fs::write(exchange.path().join("runner.log"), b"unknown files are ignored").unwrap();
    let root = tempfile::tempdir().unwrap();
    let (host, result) = ingest(root.path(), PulledFiles::Tar(gnu_tar(exchange.path())), Policy::Strict);
    result.unwrap();
    assert_eq!(event_kinds(&host.lines), ["runner_installed", "runner_start", "runner_stop"]);
    assert!(host.lines[0].contains("\"duration\": 59.5"), "{}", host.lines[0]);
    assert_eq!(host.reports[0].detail, "deleted");
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1, "only .deleting/ is left");
}

#[test]
fn a_hostile_tar_stream_is_quarantined_whole_under_both_policies() {
    let exchange = tempfile::tempdir().unwrap();
    std::fs::write(exchange.path().join(files::INSTALLED), INSTALLED).unwrap();
    // A symlink in place of a metrics file, pointing inside its own dir.
    std::os::unix::fs::symlink(files::INSTALLED, exchange.path().join(files::PRE_JOB)).unwrap();
    let stream = gnu_tar(exchange.path());
    for policy in [Policy::Strict, Policy::Lenient] {
        let root = tempfile::tempdir().unwrap();
        let (host, result) = ingest(root.path(), PulledFiles::Tar(stream.clone()), policy);
        result.unwrap();
        assert!(host.lines.is_empty(), "{policy:?}");
        assert_eq!(host.reports[0].reason.as_deref(), Some("not-regular-file"), "{policy:?}");
        let [kept] = quarantined(root.path()).try_into().unwrap();
        assert_eq!(std::fs::read(kept.join(pulled::STREAM_FILE)).unwrap(), stream);
    }
}

#[test]
fn a_runner_already_in_the_root_is_not_staged_over() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join(RUNNER)).unwrap();
    std::fs::write(root.path().join(RUNNER).join(files::INSTALLED), b"5").unwrap();
    let loose = LooseFiles { installed: Some(INSTALLED.to_vec()), ..LooseFiles::default() };
    let (host, result) = ingest(root.path(), PulledFiles::Loose(loose), Policy::Strict);
    assert!(result.unwrap_err().contains("already in the storage root"));
    assert_eq!(host.reports[0].outcome.as_str(), "failed");
    assert_eq!(std::fs::read(root.path().join(RUNNER).join(files::INSTALLED)).unwrap(), b"5");
    // Once reported (after a trap), it is not staged again.
    let options = CollectOptions {
        done: vec![RUNNER.to_owned()],
        pulled: Some(RUNNER.to_owned()),
        ..CollectOptions::events("small")
    };
    let pulled = PulledMetrics { installation_start: None, files: PulledFiles::Tar(vec![]) };
    let mut host = Recorder::default();
    pipeline::collect(&NativeFs::new(root.path()), &options, Some(&pulled), &mut host).unwrap();
    assert!(host.reports.is_empty());
}
