//! Native tests of the extraction logic (spec 2-4) on real temporary
//! directories, through `NativeFs` (std + libc): the same code that runs in
//! the sandbox, against real symlinks, FIFOs, sockets, deep and wide trees.
//!
//! Every outcome row of spec 4 is covered (extracted, no data, quarantined,
//! skipped, failed), as are the scan and its selection, deletion, quarantine
//! and the quarantine listing.

#![cfg(all(unix, not(target_arch = "wasm32")))]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use runner_metrics_core::extract::{delete_storage, delete_storage_sharing, extract_storage, Scan, Shared};
use runner_metrics_core::fs::{
    BoundedRead, EntryKind, Failure, FsError, FsErrorCode, FsOperation, FsResult, Meta, NativeFs, StorageFs,
};
use runner_metrics_core::model::{
    AppendedStorage, CodeInformation, Interrupted, Outcome, PostJobMetrics, PostJobStatus, PreJobMetrics,
    QuarantineInfo, QuarantineReason, QuarantinedStorage, RootEntry, RunnerMetrics, Selection, SkipReason,
};
use runner_metrics_core::parse::Corruption;
use runner_metrics_core::quarantine::{list_quarantine, quarantine_storage, REASON_SUFFIX};
use runner_metrics_core::{parse, FILE_SIZE_BYTES_LIMIT};
use runner_metrics_fixtures::{
    self as fixtures, deep_chain, snapshot, valid_files, within, StorageRoot, ALL_FILES, INSTALLED, POST_JOB, PRE_JOB,
    START, VALID_INSTALLED as INSTALLED_TEXT, VALID_POST_JOB as POST_JOB_TEXT, VALID_PRE_JOB as PRE_JOB_TEXT,
    VALID_START as START_TEXT,
};
use serde_json::json;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

const NAME: &str = "small-n-0123456789ab";
const PASSWD_TEXT: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n";
const NEIGHBOUR: &str = "0123456789abcdef0123456789abcdef";
/// Where storages are moved before their files are removed.
const DELETING: &str = ".deleting";

fn valid_metrics(name: &str) -> RunnerMetrics {
    RunnerMetrics {
        installation_start_timestamp: Some(1_700_000_000.5),
        installed_timestamp: 1_700_000_060.0,
        pre_job: Some(PreJobMetrics {
            timestamp: 1_700_000_100.0,
            workflow: "ci".to_owned(),
            workflow_run_id: "123456".to_owned(),
            repository: Some("canonical/example".to_owned()),
            event: "push".to_owned(),
            workflow_run_attempt: None,
        }),
        post_job: Some(PostJobMetrics {
            timestamp: 1_700_000_400.0,
            status: PostJobStatus::Abnormal,
            status_info: Some(CodeInformation { code: 1 }),
        }),
        runner_name: name.to_owned(),
    }
}

/// A storage root in a temporary directory (the shared fixtures'
/// [`StorageRoot`]), with a stand-in for `/etc/passwd` in the `outside`
/// directory beside it, for symlink targets the guest must not reach.
struct Env {
    root: StorageRoot,
}

impl Env {
    fn new() -> Self {
        let env = Self { root: StorageRoot::new() };
        fs::write(env.passwd(), PASSWD_TEXT).unwrap();
        env
    }

    /// A stand-in for `/etc/passwd`: an absolute symlink target outside the
    /// root. Tests never point symlinks at real system files or directories,
    /// so even a guest bug that follows them can only harm temporary data.
    fn passwd(&self) -> PathBuf {
        self.outside().join("passwd")
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn outside(&self) -> &Path {
        self.root.outside()
    }

    fn fs(&self) -> NativeFs {
        NativeFs::new(self.root())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// `<root>/<name>/` holding the given files.
    fn storage<C: AsRef<[u8]>>(&self, name: &str, files: &[(&str, C)]) -> PathBuf {
        let runner = self.root.runner(name);
        for (file, content) in files {
            runner.file(file, content);
        }
        runner.path
    }

    fn quarantine(&self) -> PathBuf {
        self.root.quarantine_dir()
    }
}

fn mkfifo(path: &Path) {
    fixtures::mkfifo(path).unwrap_or_else(|e| panic!("mkfifo {path:?}: {e}"));
}

fn mksocket(path: &Path) {
    fixtures::mksocket(path).unwrap_or_else(|e| panic!("bind {path:?}: {e}"));
}

fn set_mtime(path: &Path, time: SystemTime) {
    fixtures::set_mtime(path, time).unwrap();
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A snapshot without the top directory's own entry (a move may touch it).
fn contents(top: &Path) -> Tree {
    let mut tree = snapshot(top);
    tree.remove(Path::new(""));
    tree
}

type Tree = BTreeMap<PathBuf, fixtures::Node>;

fn names_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
}

// ---------------------------------------------------------------------------
// Quarantine checks
// ---------------------------------------------------------------------------

/// Checks the reason file of a quarantined storage against `info` and the
/// time window of the call; returns `quarantined_at` as stored.
fn check_reason_file(env: &Env, name: &str, info: &QuarantineInfo, before: f64, after: f64) -> f64 {
    let path = env.quarantine().join(format!("{}{REASON_SUFFIX}", info.location));
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("reason file {path:?}: {e}"));
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let object = value.as_object().expect("reason file holds a JSON object");
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["detail", "file", "quarantined_at", "reason", "runner_name"]));
    assert_eq!(object["runner_name"], json!(name));
    assert_eq!(object["reason"], json!(info.reason.as_str()));
    assert_eq!(object["file"], json!(info.file));
    assert_eq!(object["detail"], json!(info.detail));
    let at = object["quarantined_at"].as_f64().expect("quarantined_at is a number");
    assert!(at >= before - 1e-3 && at <= after + 1e-3, "quarantined_at {at} outside [{before}, {after}]");
    // The location is `<name>.<quarantined_at with 6 decimals>`.
    let stamp = info.location.strip_prefix(&format!("{name}.")).expect("location starts with the name");
    let (secs, micros) = stamp.split_once('.').expect("stamp has a fraction");
    assert!(secs.bytes().all(|b| b.is_ascii_digit()) && micros.len() == 6, "{stamp}");
    assert!(micros.bytes().all(|b| b.is_ascii_digit()), "{stamp}");
    let stamp: f64 = stamp.parse().unwrap();
    assert!((stamp - at).abs() < 2e-6, "location stamp {stamp} vs quarantined_at {at}");
    at
}

/// The listing entry `list_quarantine` must give for `info`.
fn listed(name: &str, info: &QuarantineInfo, at: f64) -> QuarantinedStorage {
    QuarantinedStorage {
        location: info.location.clone(),
        runner_name: name.to_owned(),
        reason: info.reason,
        file: info.file.clone(),
        detail: info.detail.clone(),
        quarantined_at: at,
    }
}

// ---------------------------------------------------------------------------
// Scan and selection
// ---------------------------------------------------------------------------

fn scan_all<F: StorageFs>(fs: F, selection: Selection) -> Vec<RootEntry> {
    let mut scan = Scan::new(fs, selection).unwrap();
    let mut all = Vec::new();
    loop {
        let batch = scan.next_batch(100).unwrap();
        if batch.is_empty() {
            break;
        }
        all.extend(batch);
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

fn entry(name: &str, skipped: Option<SkipReason>) -> RootEntry {
    RootEntry { name: Some(name.to_owned()), skipped }
}

#[test]
fn scan_lists_valid_runner_directories_and_hides_the_quarantine() {
    let env = Env::new();
    for name in [NAME, NEIGHBOUR, "a.b_c-D", "x"] {
        env.storage::<&[u8]>(name, &[]);
    }
    fs::create_dir(env.quarantine()).unwrap();
    fs::create_dir(env.quarantine().join("old.1.000000")).unwrap();

    let entries = scan_all(env.fs(), Selection::default());
    assert_eq!(entries, vec![entry(NEIGHBOUR, None), entry("a.b_c-D", None), entry(NAME, None), entry("x", None)]);
}

#[test]
fn scan_reports_invalid_names_and_non_directories_and_touches_nothing() {
    let env = Env::new();
    env.storage::<&[u8]>(NAME, &[]);
    env.storage::<&[u8]>("bad name", &[]);
    env.storage::<&[u8]>(".hidden", &[]);
    env.storage::<&[u8]>("é-runner", &[]);
    fs::create_dir(env.root().join(OsStr::from_bytes(b"r\xff\xfe"))).unwrap();
    fs::write(env.path("file-runner"), b"1700000000").unwrap();
    fs::write(env.path("bad file"), b"x").unwrap();
    fs::create_dir(env.outside().join("target")).unwrap();
    fs::write(env.outside().join("target").join(INSTALLED), b"1700000000").unwrap();
    symlink(env.outside().join("target"), env.path("link-runner")).unwrap();
    symlink(env.outside().join("missing"), env.path("dangling-runner")).unwrap();
    mkfifo(&env.path("fifo-runner"));
    mksocket(&env.path("sock-runner"));
    // A stray file under the reserved name is not reported either.
    fs::write(env.quarantine(), b"not a directory").unwrap();

    let before = snapshot(env.root());
    let outside_before = snapshot(env.outside());
    let entries = within(Duration::from_secs(10), "the call", {
        let fs = env.fs();
        move || scan_all(fs, Selection::default())
    });
    assert_eq!(
        entries,
        vec![
            RootEntry { name: None, skipped: Some(SkipReason::InvalidName) },
            entry(".hidden", Some(SkipReason::InvalidName)),
            entry("bad file", Some(SkipReason::InvalidName)),
            entry("bad name", Some(SkipReason::InvalidName)),
            entry("dangling-runner", Some(SkipReason::NotADirectory)),
            entry("fifo-runner", Some(SkipReason::NotADirectory)),
            entry("file-runner", Some(SkipReason::NotADirectory)),
            entry("link-runner", Some(SkipReason::NotADirectory)),
            entry(NAME, None),
            entry("sock-runner", Some(SkipReason::NotADirectory)),
            entry("é-runner", Some(SkipReason::InvalidName)),
        ]
    );
    assert_eq!(snapshot(env.root()), before);
    assert_eq!(snapshot(env.outside()), outside_before);
}

#[test]
fn scan_applies_exclude_and_include() {
    let env = Env::new();
    for name in ["a", "b", "c", "d"] {
        env.storage::<&[u8]>(name, &[]);
    }
    fs::write(env.path("e"), b"").unwrap();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    // Exclude only.
    let entries = scan_all(env.fs(), Selection { exclude: s(&["c", "e", "zz"]), ..Selection::default() });
    assert_eq!(
        entries,
        vec![
            entry("a", None),
            entry("b", None),
            entry("c", Some(SkipReason::Excluded)),
            entry("d", None),
            // Not a directory wins over the selection.
            entry("e", Some(SkipReason::NotADirectory)),
        ]
    );

    // Include, with exclude winning over include.
    let entries = scan_all(
        env.fs(),
        Selection { exclude: s(&["b"]), include: Some(s(&["a", "b", "d", "zz"])), min_age_seconds: None },
    );
    assert_eq!(
        entries,
        vec![
            entry("a", None),
            entry("b", Some(SkipReason::Excluded)),
            entry("c", Some(SkipReason::NotIncluded)),
            entry("d", None),
            entry("e", Some(SkipReason::NotADirectory)),
        ]
    );

    // An empty include list selects nothing.
    let entries = scan_all(env.fs(), Selection { include: Some(vec![]), ..Selection::default() });
    assert_eq!(
        entries,
        vec![
            entry("a", Some(SkipReason::NotIncluded)),
            entry("b", Some(SkipReason::NotIncluded)),
            entry("c", Some(SkipReason::NotIncluded)),
            entry("d", Some(SkipReason::NotIncluded)),
            entry("e", Some(SkipReason::NotADirectory)),
        ]
    );
}

#[test]
fn scan_applies_min_age() {
    let env = Env::new();
    for name in ["fresh", "mid", "old", "future", "skewed", "excluded-fresh"] {
        env.storage::<&[u8]>(name, &[]);
    }
    let now = SystemTime::now();
    set_mtime(&env.path("mid"), now - Duration::from_secs(100));
    set_mtime(&env.path("old"), now - Duration::from_secs(7200));
    set_mtime(&env.path("future"), now + Duration::from_secs(10));
    set_mtime(&env.path("skewed"), now + Duration::from_secs(100_000));

    // Without a minimum age everything is a candidate.
    let entries = scan_all(env.fs(), Selection::default());
    assert!(entries.iter().all(|e| e.skipped.is_none()), "{entries:?}");

    let entries = scan_all(
        env.fs(),
        Selection { exclude: vec!["excluded-fresh".to_owned()], include: None, min_age_seconds: Some(3600.0) },
    );
    let by_name: BTreeMap<&str, &Option<SkipReason>> =
        entries.iter().map(|e| (e.name.as_deref().unwrap(), &e.skipped)).collect();
    assert_eq!(by_name.len(), 6);
    assert_eq!(by_name["old"], &None);
    // Far in the future (clock skew, or set by a job): old enough, never
    // "too young" for as long as the clock takes to catch up.
    assert_eq!(by_name["skewed"], &None);
    assert_eq!(by_name["excluded-fresh"], &Some(SkipReason::Excluded));
    // A modification time a little in the future is age 0, not negative.
    assert_eq!(by_name["future"], &Some(SkipReason::TooYoung(0.0)));
    match by_name["fresh"] {
        Some(SkipReason::TooYoung(age)) => assert!((0.0..10.0).contains(age), "fresh age {age}"),
        other => panic!("fresh: {other:?}"),
    }
    match by_name["mid"] {
        Some(SkipReason::TooYoung(age)) => assert!((100.0..110.0).contains(age), "mid age {age}"),
        other => panic!("mid: {other:?}"),
    }

    // A minimum age just under the real age lets it through.
    let entries = scan_all(
        env.fs(),
        Selection { include: Some(vec!["mid".to_owned()]), min_age_seconds: Some(90.0), ..Selection::default() },
    );
    assert!(entries.contains(&entry("mid", None)), "{entries:?}");

    // A minimum age of 0 takes everything, even a storage modified a little
    // in the future (age 0, not a negative age below the minimum).
    let entries = scan_all(env.fs(), Selection { min_age_seconds: Some(0.0), ..Selection::default() });
    assert!(entries.iter().all(|e| e.skipped.is_none()), "{entries:?}");
}

#[test]
fn scan_batches_are_bounded_and_complete() {
    let env = Env::new();
    let names = ["r1", "r2", "r3", "r4", "r5"];
    for name in names {
        env.storage::<&[u8]>(name, &[]);
    }
    fs::create_dir(env.quarantine()).unwrap();

    let mut scan = Scan::new(env.fs(), Selection::default()).unwrap();
    assert_eq!(scan.next_batch(0).unwrap(), vec![], "a batch of 0 consumes nothing");
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let batch = scan.next_batch(2).unwrap();
        sizes.push(batch.len());
        seen.extend(batch);
    }
    assert_eq!(sizes, vec![2, 2, 1, 0]);
    assert_eq!(scan.next_batch(2).unwrap(), vec![], "an ended scan stays ended");
    seen.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(seen, names.iter().map(|n| entry(n, None)).collect::<Vec<_>>());
}

#[test]
fn scan_of_a_missing_root_fails() {
    let env = Env::new();
    let err = Scan::new(NativeFs::new(env.path("nope")), Selection::default()).err().expect("must fail");
    let typed = FsError {
        operation: FsOperation::List,
        path: String::new(),
        code: FsErrorCode::NotFound,
        cause: "No such file or directory".to_owned(),
    };
    assert_eq!(err, typed, "the system's words without the error number");
    assert_eq!(err.to_string(), r#"list "": No such file or directory"#);
}

// ---------------------------------------------------------------------------
// Extracted
// ---------------------------------------------------------------------------

#[test]
fn valid_storage_is_extracted_exactly_and_kept_on_disk() {
    let env = Env::new();
    let dir = env.storage(NAME, &valid_files());
    // Extra files and directories are ignored.
    fs::write(dir.join("other.log"), b"whatever").unwrap();
    fs::create_dir(dir.join("_work")).unwrap();
    let before = snapshot(env.root());

    assert_eq!(extract_storage(&env.fs(), NAME, false), Outcome::Extracted(valid_metrics(NAME)));
    assert_eq!(snapshot(env.root()), before, "an extracted storage waits for delete_storage");
    assert_eq!(extract_storage(&env.fs(), NAME, true), Outcome::Extracted(valid_metrics(NAME)));
    assert_eq!(snapshot(env.root()), before);
}

#[test]
fn lenient_values_are_extracted() {
    let env = Env::new();
    env.storage(
        NAME,
        &[
            (START, &b"  1e9 \n"[..]),
            (INSTALLED, b"1700000060.5"),
            (
                PRE_JOB,
                br#"{"timestamp": " 1700000100.25 ", "workflow": 42, "workflow_run_id": 123456, "repository": null, "event": "workflow_dispatch", "extra": [1, {"x": null}]}"#,
            ),
            (POST_JOB, br#"{"timestamp": 0, "status": "repo-policy-check-failure", "status_info": {"code": 403}}"#),
        ],
    );
    assert_eq!(
        extract_storage(&env.fs(), NAME, false),
        Outcome::Extracted(RunnerMetrics {
            installation_start_timestamp: Some(1e9),
            installed_timestamp: 1_700_000_060.5,
            pre_job: Some(PreJobMetrics {
                timestamp: 1_700_000_100.25,
                workflow: "42".to_owned(),
                workflow_run_id: "123456".to_owned(),
                repository: None,
                event: "workflow_dispatch".to_owned(),
                workflow_run_attempt: None,
            }),
            post_job: Some(PostJobMetrics {
                timestamp: 0.0,
                status: PostJobStatus::RepoPolicyCheckFailure,
                status_info: Some(CodeInformation { code: 403 }),
            }),
            runner_name: NAME.to_owned(),
        })
    );
}

#[test]
fn only_an_installed_timestamp_is_extracted_with_empty_fields() {
    let env = Env::new();
    let dir = env.storage(NAME, &[(INSTALLED, b"1700000000")]);
    let expected = RunnerMetrics {
        installation_start_timestamp: None,
        installed_timestamp: 1_700_000_000.0,
        pre_job: None,
        post_job: None,
        runner_name: NAME.to_owned(),
    };
    assert_eq!(extract_storage(&env.fs(), NAME, false), Outcome::Extracted(expected.clone()));
    assert!(dir.join(INSTALLED).is_file());

    // Empty, whitespace-only and `{}` files count as missing.
    fs::write(dir.join(START), b"").unwrap();
    fs::write(dir.join(PRE_JOB), b" \n\t ").unwrap();
    fs::write(dir.join(POST_JOB), b"{}").unwrap();
    assert_eq!(extract_storage(&env.fs(), NAME, false), Outcome::Extracted(expected));
}

#[test]
fn post_job_without_pre_job_is_extracted() {
    let env = Env::new();
    env.storage(
        NAME,
        &[(INSTALLED, &b"2.0"[..]), (POST_JOB, br#"{"timestamp": 3.0, "status": "normal", "status_info": null}"#)],
    );
    assert_eq!(
        extract_storage(&env.fs(), NAME, false),
        Outcome::Extracted(RunnerMetrics {
            installation_start_timestamp: None,
            installed_timestamp: 2.0,
            pre_job: None,
            post_job: Some(PostJobMetrics { timestamp: 3.0, status: PostJobStatus::Normal, status_info: None }),
            runner_name: NAME.to_owned(),
        })
    );
}

#[test]
fn file_of_exactly_the_limit_is_read() {
    let env = Env::new();
    let mut pre_job = PRE_JOB_TEXT.to_vec();
    pre_job.resize(FILE_SIZE_BYTES_LIMIT, b' ');
    let mut installed = INSTALLED_TEXT.to_vec();
    installed.resize(FILE_SIZE_BYTES_LIMIT, b'\n');
    let files = vec![
        (START, START_TEXT.to_vec()),
        (INSTALLED, installed),
        (PRE_JOB, pre_job),
        (POST_JOB, POST_JOB_TEXT.to_vec()),
    ];
    let dir = env.storage(NAME, &files);
    assert_eq!(fs::metadata(dir.join(PRE_JOB)).unwrap().len(), 1024);
    assert_eq!(fs::metadata(dir.join(INSTALLED)).unwrap().len(), 1024);
    assert_eq!(extract_storage(&env.fs(), NAME, false), Outcome::Extracted(valid_metrics(NAME)));
}

// ---------------------------------------------------------------------------
// No data
// ---------------------------------------------------------------------------

#[test]
fn storage_without_installed_timestamp_is_deleted_as_no_data() {
    for installed in [None, Some(&b""[..]), Some(b" \n\t\r\n")] {
        let env = Env::new();
        let dir = env.storage(NAME, &[(START, START_TEXT), (PRE_JOB, PRE_JOB_TEXT), (POST_JOB, POST_JOB_TEXT)]);
        if let Some(content) = installed {
            fs::write(dir.join(INSTALLED), content).unwrap();
        }
        // Nested directories, symlinks (one to a directory outside the
        // root), a FIFO and a socket: all removed, nothing followed.
        fs::create_dir_all(dir.join("_work/a/b/c")).unwrap();
        fs::write(dir.join("_work/a/b/c/deep.txt"), b"deep").unwrap();
        fs::write(dir.join("_work/a/top.txt"), b"top").unwrap();
        fs::create_dir(env.outside().join("secrets")).unwrap();
        fs::write(env.outside().join("secrets/key"), b"do not delete").unwrap();
        fs::write(env.outside().join("file"), b"outside file").unwrap();
        symlink(env.outside().join("secrets"), dir.join("escape")).unwrap();
        symlink(env.outside().join("secrets"), dir.join("_work/a/b/escape-too")).unwrap();
        symlink(env.outside().join("file"), dir.join("_work/file-link")).unwrap();
        symlink("../../nowhere", dir.join("_work/dangling")).unwrap();
        mkfifo(&dir.join("_work/a/fifo"));
        mksocket(&dir.join("_work/sock"));
        env.storage(NEIGHBOUR, &valid_files());
        let neighbour = snapshot(&env.path(NEIGHBOUR));
        let outside = snapshot(env.outside());

        let outcome = within(Duration::from_secs(20), "the call", {
            let fs = env.fs();
            move || extract_storage(&fs, NAME, false)
        });
        assert_eq!(outcome, Outcome::NoData, "installed {installed:?}");
        assert!(fs::symlink_metadata(&dir).is_err(), "storage must be gone");
        assert_eq!(snapshot(env.outside()), outside, "symlink targets survive");
        assert_eq!(fs::read(env.outside().join("secrets/key")).unwrap(), b"do not delete");
        assert_eq!(snapshot(&env.path(NEIGHBOUR)), neighbour);
        assert_eq!(
            names_in(env.root()),
            BTreeSet::from([DELETING.to_owned(), NEIGHBOUR.to_owned()]),
            "no quarantine for no data"
        );
    }
}

#[test]
fn empty_storage_is_no_data() {
    let env = Env::new();
    env.storage::<&[u8]>(NAME, &[]);
    assert_eq!(extract_storage(&env.fs(), NAME, false), Outcome::NoData);
    assert_eq!(names_in(env.root()), BTreeSet::from([DELETING.to_owned()]));
    assert_eq!(names_in(&env.path(DELETING)), BTreeSet::new(), "nothing is left in .deleting");
}

// ---------------------------------------------------------------------------
// Quarantined
// ---------------------------------------------------------------------------

/// What to put in place of one metrics file.
#[derive(Debug, Clone)]
enum Bad {
    Bytes(Vec<u8>),
    /// A sparse file of this many bytes.
    Sparse(u64),
    SymlinkTo(PathBuf),
    /// An absolute symlink to the `passwd` file outside the root.
    SymlinkToPasswd,
    Fifo,
    Socket,
    Dir,
}

/// The detail a corruption must carry.
#[derive(Debug, Clone)]
enum Detail {
    Exact(String),
    /// Whatever the file's parser says about these bytes.
    FromParser,
}

fn parser_corruption(file: &str, bytes: &[u8]) -> Corruption {
    match file {
        START | INSTALLED => parse::parse_timestamp(bytes).map(|_| ()),
        PRE_JOB => parse::parse_pre_job(bytes).map(|_| ()),
        POST_JOB => parse::parse_post_job(bytes).map(|_| ()),
        other => panic!("{other}"),
    }
    .expect_err("the parser must reject this content")
}

fn exact(s: &str) -> Detail {
    Detail::Exact(s.to_owned())
}

fn not_regular(what: &str) -> (QuarantineReason, Detail) {
    (QuarantineReason::NotRegularFile, Detail::Exact(format!("is {what}, not a regular file")))
}

/// Corruptions that apply to every file.
fn common_cases() -> Vec<(&'static str, Bad, QuarantineReason, Detail)> {
    use QuarantineReason::*;
    let (nr, d_link) = not_regular("a symlink");
    let (_, d_fifo) = not_regular("a FIFO");
    let (_, d_sock) = not_regular("a socket");
    let (_, d_dir) = not_regular("a directory");
    vec![
        (
            "1025 bytes",
            Bad::Bytes(vec![b' '; 1025]),
            Oversized,
            exact("larger than the 1024-byte limit (size 1025 bytes)"),
        ),
        (
            "sparse 10 GiB",
            Bad::Sparse(10 << 30),
            Oversized,
            exact("larger than the 1024-byte limit (size 10737418240 bytes)"),
        ),
        ("invalid UTF-8", Bad::Bytes(b"1700000000\xff".to_vec()), InvalidUtf8, Detail::FromParser),
        (
            "byte-order mark",
            Bad::Bytes(b"\xEF\xBB\xBF{}".to_vec()),
            InvalidUtf8,
            exact("starts with a UTF-8 byte-order mark"),
        ),
        ("absolute symlink out of the root", Bad::SymlinkToPasswd, nr, d_link.clone()),
        ("relative symlink", Bad::SymlinkTo(format!("../{NEIGHBOUR}/{PRE_JOB}").into()), nr, d_link.clone()),
        ("symlink in the storage", Bad::SymlinkTo("other.txt".into()), nr, d_link),
        ("FIFO", Bad::Fifo, nr, d_fifo),
        ("socket", Bad::Socket, nr, d_sock),
        ("directory", Bad::Dir, nr, d_dir),
    ]
}

fn timestamp_cases() -> Vec<(&'static str, Bad, QuarantineReason, Detail)> {
    use QuarantineReason::*;
    let b = |s: &[u8]| Bad::Bytes(s.to_vec());
    vec![
        ("abc", b(b"abc"), InvalidTimestamp, exact(r#"must be a decimal number, got "abc""#)),
        ("-1", b(b"-1\n"), InvalidTimestamp, exact("must be >= 0, got -1")),
        ("nan", b(b"nan"), InvalidTimestamp, exact(r#"must be a decimal number, got "nan""#)),
        ("inf", b(b"inf"), InvalidTimestamp, exact(r#"must be a decimal number, got "inf""#)),
        ("1e999", b(b"1e999"), InvalidTimestamp, exact("out of range, got 1e999")),
        ("NUL byte", b(b"1700000000\0"), InvalidTimestamp, exact(r#"must be a decimal number, got "1700000000\0""#)),
        ("JSON", b(b"{\"t\": 1}"), InvalidTimestamp, Detail::FromParser),
    ]
}

fn pre_job_cases() -> Vec<(&'static str, Bad, QuarantineReason, Detail)> {
    use QuarantineReason::*;
    let b = |s: &[u8]| Bad::Bytes(s.to_vec());
    let deep = format!(
        r#"{{"workflow": "ci", "event": "push", "timestamp": 1, "workflow_run_id": "1", "x": {}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    vec![
        ("not JSON", b(b"{not json"), InvalidJson, Detail::FromParser),
        ("trailing garbage", b(br#"{"a": 1} x"#), InvalidJson, Detail::FromParser),
        ("array", b(b"[1, 2]"), InvalidJson, exact("the top-level value must be an object, got an array")),
        ("string", b(br#""push""#), InvalidJson, exact("the top-level value must be an object, got a string")),
        (
            "duplicate key",
            b(br#"{"workflow": "a", "workflow": "b", "event": "push", "timestamp": 1, "workflow_run_id": "1"}"#),
            InvalidJson,
            Detail::FromParser,
        ),
        (
            "NaN",
            b(br#"{"workflow": "a", "event": "push", "timestamp": NaN, "workflow_run_id": "1"}"#),
            InvalidJson,
            Detail::FromParser,
        ),
        ("too deep", Bad::Bytes(deep.into_bytes()), InvalidJson, Detail::FromParser),
        (
            "missing event",
            b(br#"{"workflow": "a", "timestamp": 1, "workflow_run_id": "1"}"#),
            InvalidValue,
            exact(r#""event": required but missing"#),
        ),
        (
            "bad repository",
            b(br#"{"workflow": "a", "event": "push", "repository": "norepo", "timestamp": 1, "workflow_run_id": "1"}"#),
            InvalidValue,
            exact(r#""repository": must look like owner/repo, got "norepo""#),
        ),
        (
            "negative timestamp",
            b(br#"{"workflow": "a", "event": "push", "timestamp": -5, "workflow_run_id": "1"}"#),
            InvalidValue,
            exact(r#""timestamp": must be >= 0, got -5"#),
        ),
        (
            "workflow list",
            b(br#"{"workflow": [], "event": "push", "timestamp": 1, "workflow_run_id": "1"}"#),
            InvalidValue,
            exact(r#""workflow": must be a string or a number, got an array"#),
        ),
    ]
}

fn post_job_cases() -> Vec<(&'static str, Bad, QuarantineReason, Detail)> {
    use QuarantineReason::*;
    let b = |s: &[u8]| Bad::Bytes(s.to_vec());
    vec![
        ("not JSON", b(b"status=normal"), InvalidJson, Detail::FromParser),
        ("number", b(b"42"), InvalidJson, exact("the top-level value must be an object, got a number")),
        (
            "duplicate key",
            b(br#"{"timestamp": 1, "status": "normal", "status": "abnormal"}"#),
            InvalidJson,
            Detail::FromParser,
        ),
        ("Infinity", b(br#"{"timestamp": Infinity, "status": "normal"}"#), InvalidJson, Detail::FromParser),
        ("huge number", b(br#"{"timestamp": 1e400, "status": "normal"}"#), InvalidJson, Detail::FromParser),
        (
            "upper-case status",
            b(br#"{"timestamp": 1, "status": "NORMAL"}"#),
            InvalidValue,
            exact(
                r#""status": must be one of normal, abnormal, repo-policy-check-failure, external-contributor-check-failure, got "NORMAL""#,
            ),
        ),
        (
            "float code",
            b(br#"{"timestamp": 1, "status": "abnormal", "status_info": {"code": 1.5}}"#),
            InvalidValue,
            exact(r#""status_info.code": must be an integer, got 1.5"#),
        ),
        (
            "status_info string",
            b(br#"{"timestamp": 1, "status": "abnormal", "status_info": "1"}"#),
            InvalidValue,
            exact(r#""status_info": must be an object or null, got "1""#),
        ),
        (
            "string timestamp",
            b(br#"{"timestamp": "1", "status": "normal"}"#),
            InvalidValue,
            exact(r#""timestamp": must be a number, got "1""#),
        ),
    ]
}

fn place(env: &Env, dir: &Path, file: &str, bad: &Bad) {
    let path = dir.join(file);
    match bad {
        Bad::Bytes(bytes) => fs::write(&path, bytes).unwrap(),
        Bad::Sparse(len) => fs::File::create(&path).unwrap().set_len(*len).unwrap(),
        Bad::SymlinkTo(target) => symlink(target, &path).unwrap(),
        Bad::SymlinkToPasswd => symlink(env.passwd(), &path).unwrap(),
        Bad::Fifo => mkfifo(&path),
        Bad::Socket => mksocket(&path),
        Bad::Dir => {
            fs::create_dir(&path).unwrap();
            fs::write(path.join("inside"), b"inside").unwrap();
        }
    }
}

/// One corrupt file in an otherwise valid storage: quarantined whole,
/// byte-identical, with a reason file; the neighbour and any symlink target
/// untouched.
fn check_quarantined(file: &'static str, label: &str, bad: &Bad, reason: QuarantineReason, detail: &Detail) {
    let env = Env::new();
    let mut files = valid_files();
    files.retain(|(f, _)| *f != file);
    let dir = env.storage(NAME, &files);
    fs::write(dir.join("other.txt"), b"other").unwrap();
    place(&env, &dir, file, bad);
    env.storage(NEIGHBOUR, &valid_files());
    let storage_before = contents(&dir);
    let neighbour_before = snapshot(&env.path(NEIGHBOUR));
    let outside_before = snapshot(env.outside());

    let detail = match (detail, bad) {
        (Detail::Exact(d), _) => d.clone(),
        (Detail::FromParser, Bad::Bytes(bytes)) => {
            let corruption = parser_corruption(file, bytes);
            assert_eq!(corruption.reason, reason, "{file}, {label}: the parser's reason");
            corruption.detail
        }
        (Detail::FromParser, other) => panic!("no parser detail for {other:?}"),
    };

    let before = unix_now();
    let outcome = within(Duration::from_secs(20), "the call", {
        let fs = env.fs();
        move || extract_storage(&fs, NAME, false)
    });
    let after = unix_now();
    let Outcome::Quarantined(info) = outcome else {
        panic!("{file}, {label}: expected quarantine, got {outcome:?}");
    };
    let context = format!("{file}, {label}: {info:?}");
    assert_eq!(info.reason, reason, "{context}");
    assert_eq!(info.file.as_deref(), Some(file), "{context}");
    assert_eq!(info.detail, detail, "{context}");

    assert!(fs::symlink_metadata(&dir).is_err(), "{context}: storage must have left the runner namespace");
    let moved = env.quarantine().join(&info.location);
    assert!(fs::symlink_metadata(&moved).unwrap().is_dir(), "{context}");
    assert_eq!(contents(&moved), storage_before, "{context}: contents must move byte-identical");
    let at = check_reason_file(&env, NAME, &info, before, after);
    assert_eq!(
        names_in(&env.quarantine()),
        BTreeSet::from([info.location.clone(), format!("{}{REASON_SUFFIX}", info.location)]),
        "{context}"
    );
    assert_eq!(list_quarantine(&env.fs()).unwrap(), vec![listed(NAME, &info, at)], "{context}");
    assert_eq!(snapshot(&env.path(NEIGHBOUR)), neighbour_before, "{context}: neighbour");
    assert_eq!(snapshot(env.outside()), outside_before, "{context}: symlink targets");
    assert_eq!(fs::read(env.passwd()).unwrap(), PASSWD_TEXT);
    assert_eq!(names_in(env.root()), BTreeSet::from([NEIGHBOUR.to_owned(), ".quarantine".to_owned()]));
}

#[test]
fn corrupt_installation_start_is_quarantined() {
    for (label, bad, reason, detail) in common_cases().into_iter().chain(timestamp_cases()) {
        check_quarantined(START, label, &bad, reason, &detail);
    }
}

#[test]
fn corrupt_installed_is_quarantined() {
    for (label, bad, reason, detail) in common_cases().into_iter().chain(timestamp_cases()) {
        check_quarantined(INSTALLED, label, &bad, reason, &detail);
    }
}

#[test]
fn corrupt_pre_job_is_quarantined() {
    for (label, bad, reason, detail) in common_cases().into_iter().chain(pre_job_cases()) {
        check_quarantined(PRE_JOB, label, &bad, reason, &detail);
    }
}

#[test]
fn corrupt_post_job_is_quarantined() {
    for (label, bad, reason, detail) in common_cases().into_iter().chain(post_job_cases()) {
        check_quarantined(POST_JOB, label, &bad, reason, &detail);
    }
}

#[test]
fn corruption_wins_over_missing_installed_and_missing_pre_job() {
    // Spec 4: a corrupt post-job file is quarantined even without a pre-job,
    // and "no data" only applies when nothing is corrupt.
    let env = Env::new();
    let dir = env.storage(NAME, &[(POST_JOB, b"{oops")]);
    let before = contents(&dir);
    let Outcome::Quarantined(info) = extract_storage(&env.fs(), NAME, false) else { panic!() };
    assert_eq!((info.reason, info.file.as_deref()), (QuarantineReason::InvalidJson, Some(POST_JOB)));
    assert_eq!(contents(&env.quarantine().join(&info.location)), before);

    let env = Env::new();
    env.storage(NAME, &[(START, b"-3")]);
    let Outcome::Quarantined(info) = extract_storage(&env.fs(), NAME, false) else { panic!() };
    assert_eq!(
        info,
        QuarantineInfo {
            reason: QuarantineReason::InvalidTimestamp,
            file: Some(START.to_owned()),
            detail: "must be >= 0, got -3".to_owned(),
            location: info.location.clone(),
        }
    );
}

#[test]
fn first_corrupt_file_in_check_order_is_reported() {
    let env = Env::new();
    env.storage(NAME, &[(START, &b"1"[..]), (INSTALLED, b"x"), (PRE_JOB, b"[]"), (POST_JOB, b"y")]);
    let Outcome::Quarantined(info) = extract_storage(&env.fs(), NAME, true) else { panic!() };
    assert_eq!(
        info,
        QuarantineInfo {
            reason: QuarantineReason::InvalidTimestamp,
            file: Some(INSTALLED.to_owned()),
            detail: r#"must be a decimal number, got "x""#.to_owned(),
            location: String::new(),
        }
    );
}

#[test]
fn symlinked_files_leave_their_targets_untouched() {
    let env = Env::new();
    let dir = env.storage(NAME, &[(INSTALLED, INSTALLED_TEXT)]);
    let other = env.storage("other", &valid_files());
    symlink(format!("../other/{PRE_JOB}"), dir.join(PRE_JOB)).unwrap();
    symlink(env.passwd(), dir.join(POST_JOB)).unwrap();
    let other_before = snapshot(&other);
    let outside = snapshot(env.outside());

    let Outcome::Quarantined(info) = extract_storage(&env.fs(), NAME, false) else { panic!() };
    assert_eq!((info.reason, info.file.as_deref()), (QuarantineReason::NotRegularFile, Some(PRE_JOB)));
    assert_eq!(info.detail, "is a symlink, not a regular file");
    let moved = env.quarantine().join(&info.location);
    // The symlinks moved as symlinks, targets unchanged.
    assert_eq!(fs::read_link(moved.join(PRE_JOB)).unwrap(), PathBuf::from(format!("../other/{PRE_JOB}")));
    assert_eq!(fs::read_link(moved.join(POST_JOB)).unwrap(), env.passwd());
    assert_eq!(snapshot(&other), other_before);
    assert_eq!(snapshot(env.outside()), outside);
    assert_eq!(fs::read(env.passwd()).unwrap(), PASSWD_TEXT);
}

#[test]
fn fifo_in_place_of_a_file_does_not_block() {
    // A FIFO with no writer blocks a plain open for reading forever.
    let env = Env::new();
    let dir = env.storage(NAME, &[(INSTALLED, INSTALLED_TEXT)]);
    mkfifo(&dir.join(PRE_JOB));
    let outcome = within(Duration::from_secs(10), "the call", {
        let fs = env.fs();
        move || extract_storage(&fs, NAME, false)
    });
    let Outcome::Quarantined(info) = outcome else { panic!("{outcome:?}") };
    assert_eq!(
        (info.reason, info.detail.as_str()),
        (QuarantineReason::NotRegularFile, "is a FIFO, not a regular file")
    );
    let moved = env.quarantine().join(&info.location).join(PRE_JOB);
    assert!(fs::symlink_metadata(moved).unwrap().file_type().is_fifo());
}

// ---------------------------------------------------------------------------
// Files swapped between lstat and open (the TOCTOU branches of the reader)
// ---------------------------------------------------------------------------

/// `NativeFs` whose `lstat` claims that one path is a small regular file,
/// as if the entry was swapped after the check.
struct LyingLstat {
    inner: NativeFs,
    path: String,
}

impl StorageFs for LyingLstat {
    type Listing = <NativeFs as StorageFs>::Listing;
    type Dir = <NativeFs as StorageFs>::Dir;
    fn open_dir(&self, name: &str) -> FsResult<Self::Dir> {
        self.inner.open_dir(name)
    }
    fn enter_dir(&self, name: &str) -> FsResult<()> {
        self.inner.enter_dir(name)
    }
    fn list(&self, dir: &str) -> FsResult<Self::Listing> {
        self.inner.list(dir)
    }
    fn lstat(&self, path: &str) -> FsResult<Meta> {
        if path == self.path {
            return Ok(Meta { kind: EntryKind::File, size: 10, modified: None });
        }
        self.inner.lstat(path)
    }
    fn read_bounded(&self, path: &str, limit: usize) -> FsResult<BoundedRead> {
        self.inner.read_bounded(path, limit)
    }
    fn rename(&self, from: &str, to: &str) -> FsResult<()> {
        self.inner.rename(from, to)
    }
    fn move_into(&self, name: &str, dir: &Self::Dir, new_name: &str) -> FsResult<()> {
        self.inner.move_into(name, dir, new_name)
    }
    fn create_dir(&self, path: &str) -> FsResult<()> {
        self.inner.create_dir(path)
    }
    fn write_new_file(&self, path: &str, bytes: &[u8]) -> FsResult<()> {
        self.inner.write_new_file(path, bytes)
    }
    fn remove_file(&self, path: &str) -> FsResult<()> {
        self.inner.remove_file(path)
    }
    fn now(&self) -> f64 {
        self.inner.now()
    }
}

/// A host whose opens never block lets the plugin open each file at once
/// (`collect-options.nonblocking-opens`): every kind of bad file, and a
/// missing one, must end exactly as it does when it is `lstat`ed first.
#[test]
fn opening_files_first_decides_every_file_as_the_lstat_first_path_does() {
    let cases = [
        Some(Bad::Bytes(vec![b' '; 5000])),
        Some(Bad::Sparse(10_000)),
        Some(Bad::Bytes(b"{bad".to_vec())),
        Some(Bad::SymlinkToPasswd),
        Some(Bad::SymlinkTo(PathBuf::from("nowhere"))),
        Some(Bad::SymlinkTo(PathBuf::from("."))),
        Some(Bad::Fifo),
        Some(Bad::Socket),
        Some(Bad::Dir),
        None,
    ];
    for file in [INSTALLED, PRE_JOB, POST_JOB] {
        for bad in &cases {
            let decide = |open_first: bool| {
                let env = Env::new();
                let mut files = valid_files();
                files.retain(|(f, _)| *f != file);
                let dir = env.storage(NAME, &files);
                if let Some(bad) = bad {
                    place(&env, &dir, file, bad);
                }
                let fs = if open_first { env.fs().opening_files_first() } else { env.fs() };
                assert_eq!(fs.opens_block(), !open_first);
                within(Duration::from_secs(10), "the call", move || extract_storage(&fs, NAME, true))
            };
            assert_eq!(decide(true), decide(false), "{file}: {bad:?}");
        }
    }
}

#[test]
fn swapped_files_are_caught_at_open() {
    let rel = format!("{NAME}/{PRE_JOB}");
    let cases: Vec<(Bad, QuarantineReason, String)> = vec![
        (
            Bad::SymlinkToPasswd,
            QuarantineReason::NotRegularFile,
            format!(r#"open "{rel}": Too many levels of symbolic links"#),
        ),
        (Bad::Fifo, QuarantineReason::NotRegularFile, "is a FIFO, not a regular file".to_owned()),
        (Bad::Dir, QuarantineReason::NotRegularFile, "is a directory, not a regular file".to_owned()),
        (Bad::Bytes(vec![b' '; 5000]), QuarantineReason::Oversized, String::new()),
    ];
    for (bad, reason, detail) in cases {
        let env = Env::new();
        let dir = env.storage(NAME, &[(INSTALLED, INSTALLED_TEXT)]);
        place(&env, &dir, PRE_JOB, &bad);
        let fs = LyingLstat { inner: env.fs(), path: rel.clone() };
        let outcome = within(Duration::from_secs(10), "the call", move || extract_storage(&fs, NAME, true));
        let Outcome::Quarantined(info) = outcome else { panic!("{bad:?}: {outcome:?}") };
        assert_eq!((info.reason, info.file.as_deref()), (reason, Some(PRE_JOB)), "{bad:?}: {info:?}");
        match bad {
            Bad::Bytes(_) => assert_eq!(info.detail, "grew past the 1024-byte limit while being read", "{info:?}"),
            _ => assert_eq!(info.detail, detail, "{bad:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// keep = true: decide only
// ---------------------------------------------------------------------------

#[test]
fn keep_changes_nothing_on_disk() {
    let env = Env::new();
    let corrupt = env.storage("corrupt", &[(INSTALLED, &b"1700000000"[..]), (PRE_JOB, b"{bad")]);
    mkfifo(&corrupt.join(POST_JOB));
    let no_data = env.storage("no-data", &[(PRE_JOB, PRE_JOB_TEXT)]);
    fs::create_dir_all(no_data.join("a/b")).unwrap();
    symlink(env.outside(), no_data.join("a/b/out")).unwrap();
    env.storage("valid", &valid_files());
    env.storage("symlinked", &[(INSTALLED, INSTALLED_TEXT)]);
    symlink(env.passwd(), env.path("symlinked").join(START)).unwrap();
    let before = snapshot(env.root());

    let fs = env.fs();
    assert_eq!(
        extract_storage(&fs, "corrupt", true),
        Outcome::Quarantined(QuarantineInfo {
            reason: QuarantineReason::InvalidJson,
            file: Some(PRE_JOB.to_owned()),
            detail: parser_corruption(PRE_JOB, b"{bad").detail,
            location: String::new(),
        })
    );
    assert_eq!(
        extract_storage(&fs, "symlinked", true),
        Outcome::Quarantined(QuarantineInfo {
            reason: QuarantineReason::NotRegularFile,
            file: Some(START.to_owned()),
            detail: "is a symlink, not a regular file".to_owned(),
            location: String::new(),
        })
    );
    assert_eq!(extract_storage(&fs, "no-data", true), Outcome::NoData);
    assert_eq!(extract_storage(&fs, "valid", true), Outcome::Extracted(valid_metrics("valid")));
    assert_eq!(snapshot(env.root()), before, "keep must not change anything");
    assert!(!env.quarantine().exists());
    assert_eq!(list_quarantine(&fs).unwrap(), vec![]);
}

// ---------------------------------------------------------------------------
// Skipped and failed
// ---------------------------------------------------------------------------

#[test]
fn extract_refuses_invalid_names_and_non_directories() {
    let env = Env::new();
    env.storage("bad name", &[(INSTALLED, b"x")]);
    env.storage(".hidden", &[(INSTALLED, b"x")]);
    fs::create_dir(env.quarantine()).unwrap();
    fs::write(env.path("file-runner"), b"x").unwrap();
    env.storage::<&[u8]>("target", &[]);
    symlink(env.path("target"), env.path("link-runner")).unwrap();
    symlink(env.outside(), env.path("out-runner")).unwrap();
    mkfifo(&env.path("fifo-runner"));
    let before = snapshot(env.root());
    let fs = env.fs();

    for name in ["bad name", ".hidden", ".quarantine", "..", ".", "", "a/b", "../x", "target/..", "é"] {
        assert_eq!(extract_storage(&fs, name, false), Outcome::Skipped(SkipReason::InvalidName), "{name:?}");
    }
    for name in ["file-runner", "link-runner", "out-runner", "fifo-runner"] {
        assert_eq!(extract_storage(&fs, name, false), Outcome::Skipped(SkipReason::NotADirectory), "{name:?}");
    }
    // Gone between the listing and now (spec 7): not a failure.
    assert_eq!(extract_storage(&fs, "ghost", false), Outcome::Skipped(SkipReason::Vanished));
    assert_eq!(snapshot(env.root()), before);
}

#[test]
fn failed_quarantine_leaves_the_storage_in_place() {
    // `.quarantine` is a file: the corrupt storage cannot be moved and must
    // stay where it is, reported as failed.
    let env = Env::new();
    let dir = env.storage(NAME, &[(INSTALLED, &b"1700000000"[..]), (PRE_JOB, b"{bad")]);
    fs::write(env.quarantine(), b"in the way").unwrap();
    let before = snapshot(env.root());
    let detail = parser_corruption(PRE_JOB, b"{bad").detail;
    assert_eq!(
        extract_storage(&env.fs(), NAME, false),
        Outcome::Failed(Failure::new(format!(
            "{PRE_JOB} is corrupt (invalid-json: {detail}) but quarantine failed: .quarantine is a regular file, not a directory"
        )))
    );
    assert_eq!(snapshot(env.root()), before);
    assert!(dir.is_dir());
    let listing = list_quarantine(&env.fs()).unwrap_err();
    assert_eq!(listing.message, r#"list ".quarantine": Not a directory"#);
    let named = listing.errors.iter().map(|e| (e.operation, e.path.as_str(), e.code)).collect::<Vec<_>>();
    assert_eq!(named, [(FsOperation::List, ".quarantine", FsErrorCode::NotADirectory)], "the error, typed");
}

#[test]
fn quarantine_never_follows_a_symlinked_quarantine_dir() {
    let env = Env::new();
    env.storage(NAME, &[(INSTALLED, &b"1700000000"[..]), (PRE_JOB, b"{bad")]);
    symlink(env.outside(), env.quarantine()).unwrap();
    let before = snapshot(env.root());
    let outcome = extract_storage(&env.fs(), NAME, false);
    let Outcome::Failed(Failure { message, .. }) = outcome else { panic!("{outcome:?}") };
    assert!(message.ends_with("but quarantine failed: .quarantine is a symlink, not a directory"), "{message}");
    assert_eq!(snapshot(env.root()), before);
    assert_eq!(names_in(env.outside()), BTreeSet::from(["passwd".to_owned()]), "nothing written outside the root");
}

// ---------------------------------------------------------------------------
// delete_storage
// ---------------------------------------------------------------------------

#[test]
fn delete_removes_a_nested_tree_without_following_symlinks() {
    let env = Env::new();
    let dir = env.storage(NAME, &valid_files());
    fs::create_dir_all(dir.join("x/y/z")).unwrap();
    fs::write(dir.join("x/y/z/f"), b"f").unwrap();
    fs::write(dir.join("x/g"), b"g").unwrap();
    fs::create_dir(dir.join("empty")).unwrap();
    fs::create_dir_all(env.outside().join("dir/sub")).unwrap();
    fs::write(env.outside().join("dir/keep.txt"), b"keep").unwrap();
    fs::write(env.outside().join("dir/sub/keep2.txt"), b"keep2").unwrap();
    symlink(env.outside().join("dir"), dir.join("out")).unwrap();
    symlink(env.outside().join("dir"), dir.join("x/y/out")).unwrap();
    symlink(env.outside().join("dir/keep.txt"), dir.join("x/keep-link")).unwrap();
    symlink("..", dir.join("x/up")).unwrap();
    mkfifo(&dir.join("x/fifo"));
    env.storage(NEIGHBOUR, &valid_files());
    let outside = snapshot(env.outside());
    let neighbour = snapshot(&env.path(NEIGHBOUR));

    let result = within(Duration::from_secs(20), "the call", {
        let fs = env.fs();
        move || delete_storage(&fs, NAME)
    });
    assert_eq!(result, Ok(None));
    assert!(fs::symlink_metadata(&dir).is_err());
    assert_eq!(snapshot(env.outside()), outside, "files behind symlinks survive");
    assert_eq!(snapshot(&env.path(NEIGHBOUR)), neighbour);
    assert_eq!(names_in(env.root()), BTreeSet::from([DELETING.to_owned(), NEIGHBOUR.to_owned()]));
}

#[test]
fn deletions_of_a_batch_share_one_deleting_handle_and_survive_it_going() {
    let env = Env::new();
    let names = ["r-1", "r-2", "r-3"];
    for name in names {
        env.storage(name, &valid_files());
    }
    let fs = env.fs();
    let mut deleting = Shared::default();
    assert_eq!(delete_storage_sharing(&fs, "r-1", &mut deleting), Ok(None));
    assert!(deleting.holds_deleting(), "the first deletion opened .deleting/ for the batch");
    // Between two deletions of a batch, `.deleting/` goes (removed while
    // empty): the shared handle names a removed directory now.
    fs::remove_dir(env.path(DELETING)).unwrap();
    assert_eq!(delete_storage_sharing(&fs, "r-2", &mut deleting), Ok(None));
    assert_eq!(delete_storage_sharing(&fs, "r-3", &mut deleting), Ok(None));
    assert_eq!(names_in(env.root()), BTreeSet::from([DELETING.to_owned()]), "every storage deleted");
    assert!(names_in(&env.path(DELETING)).is_empty(), "and emptied out of .deleting/");
}

#[test]
fn delete_refuses_invalid_names_and_non_directories() {
    let env = Env::new();
    env.storage("bad name", &[(INSTALLED, b"1")]);
    env.storage(".hidden", &[(INSTALLED, b"1")]);
    fs::create_dir(env.quarantine()).unwrap();
    fs::write(env.path("file-runner"), b"x").unwrap();
    fs::create_dir(env.outside().join("dir")).unwrap();
    fs::write(env.outside().join("dir/keep"), b"keep").unwrap();
    symlink(env.outside().join("dir"), env.path("link-runner")).unwrap();
    mkfifo(&env.path("fifo-runner"));
    mksocket(&env.path("sock-runner"));
    let before = snapshot(env.root());
    let outside = snapshot(env.outside());
    let fs = env.fs();

    for name in ["bad name", ".hidden", ".quarantine", "..", ".", "", "a/b", "../x"] {
        assert_eq!(
            delete_storage(&fs, name),
            Err(Failure::new(format!("refusing to delete {name:?}: not a valid runner name"))),
            "{name:?}"
        );
    }
    for (name, what) in [
        ("file-runner", "a regular file"),
        ("link-runner", "a symlink"),
        ("fifo-runner", "a FIFO"),
        ("sock-runner", "a socket"),
    ] {
        assert_eq!(delete_storage(&fs, name), Err(Failure::new(format!("refusing to delete {name:?}: it is {what}"))));
    }
    // Already gone: deleted, as asked (another process removed it).
    assert_eq!(delete_storage(&fs, "ghost"), Ok(None));
    assert_eq!(snapshot(env.root()), before);
    assert_eq!(snapshot(env.outside()), outside);
}

#[test]
fn delete_handles_a_deep_tree() {
    let env = Env::new();
    let dir = env.storage(NAME, &[(INSTALLED, INSTALLED_TEXT)]);
    // 600 levels, with files at several depths. (Each operation resolves a
    // root-relative path, so the walk is quadratic in the depth: 1500 levels
    // take seconds.)
    deep_chain(&dir, 600, "d");
    let mut level = dir.clone();
    for depth in 0..600 {
        level.push("d");
        if depth % 100 == 0 {
            fs::write(level.join("f"), b"x").unwrap();
            symlink(env.outside(), level.join("outside-link")).unwrap();
        }
    }
    let outside = snapshot(env.outside());
    let start = Instant::now();
    let result = within(Duration::from_secs(60), "the call", {
        let fs = env.fs();
        move || delete_storage(&fs, NAME)
    });
    assert_eq!(result, Ok(None));
    assert!(fs::symlink_metadata(&dir).is_err());
    assert_eq!(snapshot(env.outside()), outside, "symlinks are not followed");
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
}

#[test]
fn delete_handles_many_files_and_nested_directories() {
    let env = Env::new();
    let dir = env.storage(NAME, &[(INSTALLED, INSTALLED_TEXT)]);
    let wide = dir.join("wide");
    fs::create_dir(&wide).unwrap();
    for i in 0..10_000 {
        fs::write(wide.join(format!("f{i:05}")), b"x").unwrap();
    }
    deep_chain(&dir, 200, "d");
    let start = Instant::now();
    let result = within(Duration::from_secs(60), "the call", {
        let fs = env.fs();
        move || delete_storage(&fs, NAME)
    });
    assert_eq!(result, Ok(None));
    assert!(fs::symlink_metadata(&dir).is_err());
    assert_eq!(names_in(env.root()), BTreeSet::from([DELETING.to_owned()]));
    assert_eq!(names_in(&env.path(DELETING)), BTreeSet::new(), "nothing is left in .deleting");
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
}

#[test]
fn no_data_storage_with_a_huge_tree_is_deleted() {
    let env = Env::new();
    let dir = env.storage(NAME, &[(PRE_JOB, PRE_JOB_TEXT)]);
    for i in 0..2_000 {
        fs::write(dir.join(format!("junk{i}")), b"x").unwrap();
    }
    deep_chain(&dir, 300, "d");
    let outcome = within(Duration::from_secs(60), "the call", {
        let fs = env.fs();
        move || extract_storage(&fs, NAME, false)
    });
    assert_eq!(outcome, Outcome::NoData);
    assert_eq!(names_in(env.root()), BTreeSet::from([DELETING.to_owned()]));
    assert_eq!(names_in(&env.path(DELETING)), BTreeSet::new(), "nothing is left in .deleting");
}

/// A storage holding a chain of `depth` directories named `name` is
/// deleted whole by `delete_storage`, leaving nothing behind.
fn assert_deep_chain_is_deleted_whole(depth: usize, name: &str) {
    let env = Env::new();
    let dir = env.storage(NAME, &[(INSTALLED, INSTALLED_TEXT)]);
    deep_chain(&dir, depth, name);
    let result = within(Duration::from_secs(120), "the call", {
        let fs = env.fs();
        move || delete_storage(&fs, NAME)
    });
    assert_eq!(result, Ok(None));
    assert!(fs::symlink_metadata(&dir).is_err());
    assert_eq!(names_in(&env.path(DELETING)), BTreeSet::new(), "nothing is left in .deleting");
    assert!(!env.quarantine().exists());
}

#[test]
fn a_tree_deeper_than_path_max_is_deleted_whole() {
    // 17 levels of 250-byte names: no root-relative path can name the
    // bottom (PATH_MAX is 4096); the walk goes one component at a time
    // from held descriptors, so it removes everything.
    assert_deep_chain_is_deleted_whole(17, &"d".repeat(250));
}

#[test]
fn a_tree_5000_levels_deep_is_deleted_whole_with_few_descriptors() {
    // Deeper than any fixed walk limit (the old one was 256 levels) and
    // than the descriptors the walk holds (walk::MAX_HELD): deeper parts
    // are moved out to .deleting/ and removed from there.
    assert_deep_chain_is_deleted_whole(5000, "d");
}

#[test]
fn no_data_storage_with_a_non_utf8_name_is_deleted_natively() {
    // Natively names are bytes, so a non-UTF-8 name is removed like any
    // other (in WASI it cannot be named: tests/tests/e2e/outcomes.rs checks that
    // the component quarantines such a storage as `undeletable` instead).
    let env = Env::new();
    let dir = env.storage(NAME, &[(PRE_JOB, PRE_JOB_TEXT)]);
    fs::create_dir(dir.join("_work")).unwrap();
    fs::write(dir.join("_work").join(OsStr::from_bytes(b"bad\xffname")), b"x").unwrap();
    let outcome = extract_storage(&env.fs(), NAME, false);
    assert_eq!(outcome, Outcome::NoData);
    assert!(fs::symlink_metadata(&dir).is_err());
    assert_eq!(names_in(&env.path(DELETING)), BTreeSet::new(), "nothing is left in .deleting");
    assert!(!env.quarantine().exists());
}

// ---------------------------------------------------------------------------
// quarantine_storage and list_quarantine
// ---------------------------------------------------------------------------

/// `NativeFs` with a stopped clock: every quarantine happens "at once".
struct FixedClock {
    inner: NativeFs,
    now: f64,
}

impl StorageFs for FixedClock {
    type Listing = <NativeFs as StorageFs>::Listing;
    type Dir = <NativeFs as StorageFs>::Dir;
    fn open_dir(&self, name: &str) -> FsResult<Self::Dir> {
        self.inner.open_dir(name)
    }
    fn enter_dir(&self, name: &str) -> FsResult<()> {
        self.inner.enter_dir(name)
    }
    fn list(&self, dir: &str) -> FsResult<Self::Listing> {
        self.inner.list(dir)
    }
    fn lstat(&self, path: &str) -> FsResult<Meta> {
        self.inner.lstat(path)
    }
    fn read_bounded(&self, path: &str, limit: usize) -> FsResult<BoundedRead> {
        self.inner.read_bounded(path, limit)
    }
    fn rename(&self, from: &str, to: &str) -> FsResult<()> {
        self.inner.rename(from, to)
    }
    fn move_into(&self, name: &str, dir: &Self::Dir, new_name: &str) -> FsResult<()> {
        self.inner.move_into(name, dir, new_name)
    }
    fn create_dir(&self, path: &str) -> FsResult<()> {
        self.inner.create_dir(path)
    }
    fn write_new_file(&self, path: &str, bytes: &[u8]) -> FsResult<()> {
        self.inner.write_new_file(path, bytes)
    }
    fn remove_file(&self, path: &str) -> FsResult<()> {
        self.inner.remove_file(path)
    }
    fn now(&self) -> f64 {
        self.now
    }
}

#[test]
fn quarantining_the_same_name_twice_gives_distinct_locations() {
    let env = Env::new();
    let fs = env.fs();
    env.storage("twin", &[(PRE_JOB, b"first")]);
    let t0 = unix_now();
    let first = quarantine_storage(&fs, "twin", QuarantineReason::InvalidJson, Some(PRE_JOB), "first one").unwrap();
    let t1 = unix_now();
    env.storage("twin", &[(PRE_JOB, b"second")]);
    let second = quarantine_storage(&fs, "twin", QuarantineReason::SandboxTrap, None, "second one").unwrap();
    let t2 = unix_now();

    assert_ne!(first.location, second.location);
    assert_eq!(
        first,
        QuarantineInfo {
            reason: QuarantineReason::InvalidJson,
            file: Some(PRE_JOB.to_owned()),
            detail: "first one".to_owned(),
            location: first.location.clone()
        }
    );
    assert_eq!(
        second,
        QuarantineInfo {
            reason: QuarantineReason::SandboxTrap,
            file: None,
            detail: "second one".to_owned(),
            location: second.location.clone()
        }
    );
    let at1 = check_reason_file(&env, "twin", &first, t0, t1);
    let at2 = check_reason_file(&env, "twin", &second, t1, t2);
    assert_eq!(fs::read(env.quarantine().join(&first.location).join(PRE_JOB)).unwrap(), b"first");
    assert_eq!(fs::read(env.quarantine().join(&second.location).join(PRE_JOB)).unwrap(), b"second");
    assert!(!env.path("twin").exists());
    assert_eq!(
        list_quarantine(&fs).unwrap(),
        vec![listed("twin", &first, at1), listed("twin", &second, at2)],
        "sorted by location, oldest first"
    );
}

#[test]
fn quarantining_the_same_name_at_the_same_instant_gives_distinct_locations() {
    let env = Env::new();
    let fs = FixedClock { inner: env.fs(), now: 1_700_000_000.0 };
    let mut infos = Vec::new();
    for (i, content) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
        env.storage("twin", &[(PRE_JOB, content)]);
        let info =
            quarantine_storage(&fs, "twin", QuarantineReason::InvalidValue, Some(PRE_JOB), &format!("n{i}")).unwrap();
        infos.push(info);
    }
    let locations: Vec<&str> = infos.iter().map(|i| i.location.as_str()).collect();
    assert_eq!(locations, ["twin.1700000000.000000", "twin.1700000000.000000.1", "twin.1700000000.000000.2"]);
    for (info, content) in infos.iter().zip([&b"one"[..], b"two", b"three"]) {
        assert_eq!(fs::read(env.quarantine().join(&info.location).join(PRE_JOB)).unwrap(), content);
    }
    let listing = list_quarantine(&fs).unwrap();
    assert_eq!(listing, infos.iter().map(|i| listed("twin", i, 1_700_000_000.0)).collect::<Vec<_>>());
    assert_eq!(listing.iter().map(|q| q.detail.as_str()).collect::<Vec<_>>(), ["n0", "n1", "n2"]);
}

#[test]
fn quarantine_refuses_invalid_names_and_cleans_up_after_a_failed_move() {
    let env = Env::new();
    let fs = env.fs();
    env.storage("bad name", &[(INSTALLED, b"1")]);
    for name in ["bad name", ".quarantine", "..", "", "a/b"] {
        assert_eq!(
            quarantine_storage(&fs, name, QuarantineReason::SandboxTrap, None, "x"),
            Err(Failure::new(format!("refusing to quarantine {name:?}: not a valid runner name")))
        );
    }
    assert!(!env.quarantine().exists(), "nothing created for an invalid name");

    // A missing storage is refused before anything is written.
    let err = quarantine_storage(&fs, "ghost", QuarantineReason::SandboxTrap, None, "x").unwrap_err().message;
    assert!(err.starts_with(r#"stat "ghost": No such file or directory"#), "{err}");
    assert!(!env.quarantine().exists(), "no orphan reason file");
    assert_eq!(list_quarantine(&fs).unwrap(), vec![]);
}

#[test]
fn list_quarantine_without_a_quarantine_is_empty() {
    let env = Env::new();
    assert_eq!(list_quarantine(&env.fs()).unwrap(), vec![]);
    fs::create_dir(env.quarantine()).unwrap();
    fs::create_dir(env.quarantine().join("stray-dir")).unwrap();
    assert_eq!(list_quarantine(&env.fs()).unwrap(), vec![]);
}

#[test]
fn list_quarantine_lists_unreadable_reason_files() {
    let env = Env::new();
    let fs = env.fs();
    env.storage("good", &[(PRE_JOB, b"x")]);
    let good = quarantine_storage(&fs, "good", QuarantineReason::InvalidJson, Some(PRE_JOB), "bad JSON").unwrap();
    let q = env.quarantine();
    let reason_path = |loc: &str| q.join(format!("{loc}{REASON_SUFFIX}"));
    fs::write(reason_path("garbage.1.000000"), b"garbage").unwrap();
    fs::write(reason_path("empty.2.000000"), b"").unwrap();
    fs::write(reason_path("nokeys.3.000000"), br#"{"detail": "d"}"#).unwrap();
    fs::write(reason_path("badreason.4.000000"), br#"{"runner_name": "badreason", "reason": "Oversized"}"#).unwrap();
    fs::write(reason_path("huge.5.000000"), vec![b' '; 16 * 1024 + 1]).unwrap();
    symlink(env.passwd(), reason_path("link.6.000000")).unwrap();
    fs::create_dir(reason_path("dir.7.000000")).unwrap();
    mkfifo(&reason_path("fifo.8.000000"));
    fs::write(
        reason_path("minimal.9.000000"),
        br#"{"runner_name": "minimal", "reason": "oversized", "quarantined_at": -1}"#,
    )
    .unwrap();
    // A reason file that names another runner than its location's: `quarantine
    // restore` would put it back under the wrong name.
    fs::write(
        reason_path("forged.10.000000"),
        br#"{"runner_name": "victim", "reason": "oversized", "quarantined_at": 1}"#,
    )
    .unwrap();
    let good_at = serde_json::from_slice::<serde_json::Value>(&fs::read(reason_path(&good.location)).unwrap()).unwrap()
        ["quarantined_at"]
        .as_f64()
        .unwrap();

    let listing = within(Duration::from_secs(10), "the call", {
        let fs = env.fs();
        move || list_quarantine(&fs).unwrap()
    });
    let unreadable = |loc: &str, detail: String| QuarantinedStorage {
        location: loc.to_owned(),
        runner_name: loc.split('.').next().unwrap().to_owned(),
        reason: QuarantineReason::InvalidValue,
        file: None,
        detail,
        quarantined_at: 0.0,
    };
    let path = |loc: &str| format!(".quarantine/{loc}{REASON_SUFFIX}");
    let not_json = |loc: &str, bytes: &[u8]| {
        let e = serde_json::from_slice::<serde_json::Value>(bytes).unwrap_err();
        format!("reason file {}: not JSON: {e}", path(loc))
    };
    // The same strict reader as the host's `quarantine show`: each says
    // what is wrong with the file.
    let bad = |loc: &str, why: &str| unreadable(loc, format!("reason file {}: {why}", path(loc)));
    let mut expected = vec![
        bad("badreason.4.000000", r#"unknown reason "Oversized""#),
        bad("dir.7.000000", "is a directory, not a regular file"),
        unreadable("empty.2.000000", not_json("empty.2.000000", b"")),
        bad("fifo.8.000000", "is a FIFO, not a regular file"),
        unreadable("garbage.1.000000", not_json("garbage.1.000000", b"garbage")),
        listed("good", &good, good_at),
        bad("huge.5.000000", "larger than 16384 bytes"),
        unreadable(
            "link.6.000000",
            format!(r#"reason file unreadable: open "{}": Too many levels of symbolic links"#, path("link.6.000000")),
        ),
        // Without a time it cannot be aged, so it is not taken as ours.
        bad("minimal.9.000000", "quarantined_at is not a number >= 0"),
        bad("forged.10.000000", r#"runner_name "victim" is not a valid runner name matching the location"#),
        bad("nokeys.3.000000", "no runner_name"),
    ];
    expected.sort_by(|a, b| a.location.cmp(&b.location));
    assert_eq!(listing, expected);
    // Listing reads only; the storage behind the good reason is untouched.
    assert_eq!(fs::read(q.join(&good.location).join(PRE_JOB)).unwrap(), b"x");
}

// ---------------------------------------------------------------------------
// Bugs found while writing these tests (fixed; kept as regressions)
// ---------------------------------------------------------------------------

#[test]
fn unreadable_reason_file_keeps_a_dotted_runner_name() {
    let env = Env::new();
    let fs = FixedClock { inner: env.fs(), now: 1_700_000_000.5 };
    env.storage("runner.v2", &[(PRE_JOB, b"x")]);
    let info = quarantine_storage(&fs, "runner.v2", QuarantineReason::InvalidJson, Some(PRE_JOB), "d").unwrap();
    assert_eq!(info.location, "runner.v2.1700000000.500000");
    fs::write(env.quarantine().join(format!("{}{REASON_SUFFIX}", info.location)), b"garbage").unwrap();
    let listing = list_quarantine(&fs).unwrap();
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].runner_name, "runner.v2");
}

#[test]
fn quarantine_leaves_non_directories_alone() {
    // Spec 2: entries of the root that are not plain directories are never
    // followed, parsed or deleted: they are reported and left alone.
    // delete_storage refuses them; quarantine_storage moves them.
    let env = Env::new();
    fs::write(env.path("file-runner"), b"x").unwrap();
    symlink(env.outside(), env.path("link-runner")).unwrap();
    let before = snapshot(env.root());
    let fs = env.fs();
    for name in ["file-runner", "link-runner"] {
        let result = quarantine_storage(&fs, name, QuarantineReason::SandboxTrap, None, "trap");
        assert!(result.is_err(), "{name}: {result:?}");
    }
    assert_eq!(snapshot(env.root()), before);
}

// --- pipeline::recover: the trap recovery every host runs -----------------

/// A host that records what the pipeline tells it.
#[derive(Default)]
struct Recorder {
    begun: Vec<String>,
    reports: Vec<runner_metrics_core::report::StorageReport>,
}

impl runner_metrics_core::pipeline::Host for Recorder {
    fn begin_storage(&mut self, name: &str) {
        self.begun.push(name.to_owned());
    }
    fn end_storage(&mut self) {}
    fn job_metrics(&mut self, _: &RunnerMetrics) -> Option<runner_metrics_core::model::GithubJobMetrics> {
        None
    }
    fn append(&mut self, _: Vec<runner_metrics_core::model::StorageOutput>) -> Result<(), String> {
        Ok(())
    }
    fn report(&mut self, report: runner_metrics_core::report::StorageReport) {
        self.reports.push(report);
    }
}

fn interrupted(appended: &[(&str, u32)], blamed: Option<&str>) -> Interrupted {
    Interrupted {
        appended: appended.iter().map(|(n, l)| AppendedStorage { name: n.to_string(), lines: *l }).collect(),
        blamed: blamed.map(str::to_owned),
        cause: "guest collect trapped: boom".to_owned(),
        lied: false,
        trapped_again: false,
        dry_run: false,
    }
}

fn outcomes(host: &Recorder) -> Vec<(String, &'static str, u32, String)> {
    host.reports.iter().map(|r| (r.name.clone(), r.outcome.as_str(), r.events, r.detail.clone())).collect()
}

#[test]
fn recover_deletes_what_is_durable_and_quarantines_the_storage_to_blame() {
    use runner_metrics_core::pipeline::recover;
    let env = Env::new();
    for name in ["durable", "blamed", "untouched"] {
        env.storage(name, &valid_files());
    }
    let mut host = Recorder::default();
    recover(&env.fs(), &interrupted(&[("durable", 3)], Some("blamed")), &mut host).unwrap();
    let got = outcomes(&host);
    assert_eq!(got[0], ("durable".to_owned(), "extracted", 3, "deleted".to_owned()));
    assert_eq!((got[1].0.as_str(), got[1].1, got[1].2), ("blamed", "quarantined", 0));
    assert!(got[1].3.starts_with("sandbox-trap: guest collect trapped: boom; moved to .quarantine/blamed."), "{got:?}");
    assert_eq!(got.len(), 2);
    assert_eq!(host.begun, ["durable", "blamed"]);
    assert!(!env.path("durable").exists() && !env.path("blamed").exists());
    assert!(env.path("untouched").is_dir(), "recover touches only what it is told about");
    assert_eq!(fs::read_dir(env.quarantine()).unwrap().count(), 2, "the storage and its reason file");
}

#[test]
fn recover_keeps_what_it_must_and_stops_outside_any_storage() {
    use runner_metrics_core::pipeline::recover;
    let env = Env::new();
    for name in ["durable", "blamed"] {
        env.storage(name, &valid_files());
    }
    // Dry run: nothing changes; the durable one is reported as kept.
    let mut host = Recorder::default();
    let dry = Interrupted { dry_run: true, ..interrupted(&[("durable", 3)], Some("blamed")) };
    recover(&env.fs(), &dry, &mut host).unwrap();
    assert_eq!(outcomes(&host)[0].3, "kept (dry run)");
    assert_eq!(outcomes(&host)[1].1, "failed");
    // A lie, or a second trap on the same storage: kept, reported failed.
    for x in [
        Interrupted { lied: true, ..interrupted(&[], Some("blamed")) },
        Interrupted { trapped_again: true, ..interrupted(&[], Some("blamed")) },
    ] {
        let mut host = Recorder::default();
        recover(&env.fs(), &x, &mut host).unwrap();
        assert_eq!(
            outcomes(&host),
            [("blamed".to_owned(), "failed", 0, "kept: guest collect trapped: boom".to_owned())]
        );
    }
    assert!(env.path("durable").is_dir() && env.path("blamed").is_dir() && !env.quarantine().exists());
    // A trap outside any storage: what is durable is still deleted, then the run stops.
    let mut host = Recorder::default();
    let err = recover(&env.fs(), &interrupted(&[("durable", 3)], None), &mut host).unwrap_err().message;
    assert!(err.contains("outside any storage"), "{err}");
    assert_eq!(outcomes(&host), [("durable".to_owned(), "extracted", 3, "deleted".to_owned())]);
}

#[test]
fn recover_finishes_a_deletion_the_trap_cut_short() {
    use runner_metrics_core::pipeline::recover;
    let env = Env::new();
    env.storage("half", &valid_files());
    fs::create_dir(env.path(".deleting")).unwrap();
    fs::rename(env.path("half"), env.path(".deleting/half.1700000000.5")).unwrap();
    // Trapped while deleting it (it is the storage to blame and durable).
    let mut host = Recorder::default();
    recover(&env.fs(), &interrupted(&[("half", 3)], Some("half")), &mut host).unwrap();
    let detail = "deleted (the deletion was cut short: guest collect trapped: boom)".to_owned();
    assert_eq!(outcomes(&host), [("half".to_owned(), "extracted", 3, detail)]);
    assert_eq!(fs::read_dir(env.path(".deleting")).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------
// Emptying a storage by its known names (walk::remove_tree_expecting)
// ---------------------------------------------------------------------------

/// `top/name` holding `files` (name, is a directory) after
/// `remove_tree_expecting`: gone either way, through the fast path or the walk.
fn removed_expecting(entries: &[(&str, bool)]) -> bool {
    use runner_metrics_core::fs::NativeDir;
    use runner_metrics_core::walk::{remove_tree_expecting, DirHandle};
    let tmp = tempfile::TempDir::new().unwrap();
    let storage = tmp.path().join("s");
    fs::create_dir(&storage).unwrap();
    for (file, dir) in entries {
        if *dir {
            fs::create_dir_all(storage.join(file).join("inner")).unwrap();
        } else {
            fs::write(storage.join(file), b"x").unwrap();
        }
    }
    let top = NativeDir::open(tmp.path()).unwrap();
    remove_tree_expecting(&top, &NativeDir::name_from("s"), &ALL_FILES).unwrap();
    !storage.exists() && fs::read_dir(tmp.path()).unwrap().count() == 0
}

#[test]
fn a_storage_of_known_files_is_emptied_by_name_and_anything_else_by_the_walk() {
    assert!(removed_expecting(&[(INSTALLED, false), (PRE_JOB, false)]));
    // An extra file, a known name that is a directory, an extra directory.
    assert!(removed_expecting(&[(INSTALLED, false), ("extra", false)]));
    assert!(removed_expecting(&[(PRE_JOB, true)]));
    assert!(removed_expecting(&[("deep", true), (POST_JOB, false)]));
}

#[test]
fn the_shared_fixtures_name_the_cores_files_and_limit() {
    assert_eq!(ALL_FILES, runner_metrics_core::files::ALL);
    assert_eq!(fixtures::FILE_SIZE_LIMIT, FILE_SIZE_BYTES_LIMIT);
}
