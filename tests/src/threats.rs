//! The threat suite's deadlines, neighbours and invariants (issue 3).

use crate::*;

/// `collect` with any plugin into any sink, on a watched thread that must
/// finish within `deadline`. Returns the run, the sink and how long it took.
pub fn run_within<S: EventSink + Send + 'static>(
    plugin: &'static Plugin,
    root: &Path,
    options: &CollectOptions,
    sink: S,
    deadline: Duration,
) -> (Collected, S, Duration) {
    let root = root.to_path_buf();
    let options = options.clone();
    within(deadline, "collect", move || {
        let mut sink = sink;
        let mut reports = Vec::new();
        let started = std::time::Instant::now();
        let result = collect(plugin, &root, &options, &mut runner_metrics::NoJobMetrics, &mut sink, &mut |r| {
            reports.push(r.clone())
        });
        (Collected { result, reports }, sink, started.elapsed())
    })
}

/// A valid storage that is not under attack and must be extracted normally.
pub const NEIGHBOUR: &str = "n-neighbour";
/// A valid storage excluded from the run: it must stay byte for byte.
pub const EXCLUDED: &str = "n-excluded";
/// The flavor of the threat suite's runs.
pub const THREAT_FLAVOR: &str = "small";
/// How long a threat-suite run may take before the host counts as hung.
pub const THREAT_DEADLINE: Duration = Duration::from_secs(30);

/// The neighbour's files: valid, with numbers and a workflow no threat
/// storage uses, so its lines can be told apart from everyone else's.
pub fn neighbour_files() -> Vec<(&'static str, &'static str)> {
    vec![
        (START, "1600000000.25\n"),
        (INSTALLED, "1600000060\n"),
        (
            PRE_JOB,
            r#"{"workflow": "neighbour-ci", "repository": "neighbour/repo", "event": "push", "timestamp": 1600000100, "workflow_run_id": "42"}"#,
        ),
        (POST_JOB, r#"{"timestamp": 1600000400, "status": "normal"}"#),
    ]
}

/// The exact lines the neighbour must yield (flavor [`THREAT_FLAVOR`]).
pub const NEIGHBOUR_LINES: [&str; 3] = [
    r#"{"timestamp": 1600000060.0, "event": "runner_installed", "flavor": "small", "duration": 59.75}"#,
    r#"{"timestamp": 1600000100.0, "event": "runner_start", "flavor": "small", "workflow": "neighbour-ci", "repo": "neighbour/repo", "github_event": "push", "idle": 40.0}"#,
    r#"{"timestamp": 1600000400.0, "event": "runner_stop", "flavor": "small", "workflow": "neighbour-ci", "repo": "neighbour/repo", "github_event": "push", "status": "normal", "job_duration": 300.0}"#,
];

/// What a storage under attack must end as (spec 4: never lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Moved whole into `.quarantine/` with this reason (and, when given,
    /// naming this file).
    Quarantined { reason: &'static str, file: Option<&'static str> },
    /// Deleted, nothing yielded.
    NoData,
    /// Its lines written (this many), then deleted.
    Extracted(u32),
    /// Left alone, byte for byte, with this report detail.
    Skipped(&'static str),
    /// Left in place, byte for byte, reported as kept.
    Failed,
}

/// Shorthand for [`Fate::Quarantined`] naming the file.
pub fn quarantined_for(reason: &'static str, file: &'static str) -> Fate {
    Fate::Quarantined { reason, file: Some(file) }
}

/// The detail of a skipped root entry that is not a plain directory.
pub const NOT_A_DIRECTORY: &str = "not a plain directory; left alone";
/// The detail of a skipped root entry whose name is not a runner name.
pub const INVALID_NAME: &str = "not a valid runner name; left alone";

/// A storage root with the two neighbours every threat case is run beside,
/// and the snapshots that prove nothing else was touched.
pub struct Scene {
    pub root: StorageRoot,
    /// `contents` of every root entry, by name, when frozen.
    before: BTreeMap<std::ffi::OsString, BTreeMap<PathBuf, NodeKind>>,
    excluded: BTreeMap<PathBuf, Node>,
    outside: BTreeMap<PathBuf, Node>,
    frozen: bool,
}

impl Default for Scene {
    fn default() -> Self {
        Self::new()
    }
}

impl Scene {
    /// A root holding the neighbour and the excluded neighbour.
    pub fn new() -> Self {
        let root = StorageRoot::new();
        for name in [NEIGHBOUR, EXCLUDED] {
            let runner = root.runner(name);
            for (file, content) in neighbour_files() {
                runner.file(file, content);
            }
        }
        Self { root, before: BTreeMap::new(), excluded: BTreeMap::new(), outside: BTreeMap::new(), frozen: false }
    }

    /// Records the root's entries, the excluded neighbour and the outside
    /// directory. Call once the threat is in place, before the run.
    pub fn freeze(&mut self) {
        self.before = fs::read_dir(self.root.path())
            .expect("list the root")
            .map(|e| e.expect("root entry").file_name())
            .map(|name| {
                let tree = contents(&self.root.path().join(&name));
                (name, tree)
            })
            .collect();
        self.excluded = snapshot(&self.root.join(EXCLUDED));
        self.outside = snapshot(self.root.outside());
        self.frozen = true;
    }

    /// The run's options: events of [`THREAT_FLAVOR`], [`EXCLUDED`] excluded.
    pub fn options(&self) -> CollectOptions {
        let mut options = CollectOptions::events(THREAT_FLAVOR);
        options.selection.exclude = vec![EXCLUDED.to_owned()];
        options
    }

    /// Freezes (if not yet) and runs the embedded component over the root
    /// into memory, within [`THREAT_DEADLINE`].
    pub fn collect(&mut self) -> (Collected, Vec<String>) {
        let (collected, sink) = self.collect_into(plugin(), MemorySink::default());
        (collected, sink.lines)
    }

    /// Like [`Scene::collect`], with any plugin and sink.
    pub fn collect_into<S: EventSink + Send + 'static>(&mut self, plugin: &'static Plugin, sink: S) -> (Collected, S) {
        if !self.frozen {
            self.freeze();
        }
        let (collected, sink, _) = run_within(plugin, self.root.path(), &self.options(), sink, THREAT_DEADLINE);
        (collected, sink)
    }

    /// The invariants of every threat case: the run ended normally, the
    /// neighbour yielded exactly its lines and was deleted, the excluded
    /// neighbour and the outside directory are unchanged, every storage got
    /// one report, every line is one line of ASCII JSON, and nothing was
    /// left half-deleted.
    pub fn assert_invariants(&self, collected: &Collected, lines: &[String]) {
        let summary = collected.summary();
        assert_eq!(summary.total(), collected.reports.len(), "one count per report: {summary:?}");
        let mut names: Vec<&str> = collected.reports.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a storage was reported twice: {:#?}", collected.reports);

        let neighbour = collected.report(NEIGHBOUR);
        assert_eq!(
            (neighbour.outcome, neighbour.detail.as_str(), neighbour.events),
            (OutcomeKind::Extracted, "deleted", 3),
            "the neighbour must be extracted normally: {neighbour:?}"
        );
        assert!(!exists(&self.root.join(NEIGHBOUR)), "the neighbour must be deleted after its lines are written");
        let theirs: Vec<&str> =
            lines.iter().map(String::as_str).filter(|l| l.contains("neighbour") || l.contains("16000000")).collect();
        assert_eq!(theirs, NEIGHBOUR_LINES, "the neighbour's lines, exactly once each, in order");

        let excluded = collected.report(EXCLUDED);
        assert_eq!((excluded.outcome, excluded.detail.as_str()), (OutcomeKind::Skipped, "excluded"), "{excluded:?}");
        assert_eq!(diff(&self.excluded, &snapshot(&self.root.join(EXCLUDED))), "", "the excluded neighbour changed");
        assert_eq!(diff(&self.outside, &snapshot(self.root.outside())), "", "something outside the root changed");

        for line in lines {
            assert!(!line.contains('\n') && !line.contains('\r'), "a line holds a line break: {line:?}");
            assert!(line.is_ascii() && !line.bytes().any(|b| b.is_ascii_control()), "not plain ASCII: {line:?}");
            assert!(json(line).is_object(), "not a JSON object: {line}");
        }
        assert_eq!(summary.lines_written, lines.len(), "{summary:?}");
        entries_besides_deleting(self.root.path());
    }

    /// The recorded `contents` of the root entry `name` before the run.
    pub fn before(&self, name: impl AsRef<std::ffi::OsStr>) -> &BTreeMap<PathBuf, NodeKind> {
        let name = name.as_ref();
        self.before.get(name).unwrap_or_else(|| panic!("no root entry {name:?} was frozen"))
    }

    /// Asserts that the storage `name` (its report is labelled `label`) met
    /// `fate`, and was not lost on the way: a quarantined storage's moved
    /// copy, a skipped or failed storage in place, are whole.
    pub fn assert_fate_of(&self, collected: &Collected, name: impl AsRef<std::ffi::OsStr>, label: &str, fate: &Fate) {
        let name = name.as_ref();
        let path = self.root.path().join(name);
        let report = collected.report(label);
        let before = self.before(name);
        match fate {
            Fate::Quarantined { reason, file } => {
                assert_eq!(report.outcome, OutcomeKind::Quarantined, "{label:?} should be quarantined: {report:?}");
                let expected = match file {
                    Some(file) => format!("{reason}: {file} "),
                    None => format!("{reason}: "),
                };
                assert!(
                    report.detail.starts_with(&expected),
                    "{label:?}: detail {:?} should start {expected:?}",
                    report.detail
                );
                assert!(!exists(&path), "{label:?} is still in the runner namespace");
                let q = quarantined(&self.root, label);
                assert_eq!(q.reason["reason"], *reason, "{label:?}: reason file {}", q.reason);
                assert_eq!(q.reason["runner_name"], label, "{label:?}: reason file {}", q.reason);
                if let Some(file) = file {
                    assert_eq!(q.reason["file"], *file, "{label:?}: reason file {}", q.reason);
                }
                assert_eq!(diff(before, &contents(&q.location)), "", "{label:?}: the quarantined copy is not whole");
            }
            Fate::NoData => {
                assert_eq!((report.outcome, report.events), (OutcomeKind::NoData, 0), "{label:?}: {report:?}");
                assert!(!exists(&path), "{label:?} should be deleted");
            }
            Fate::Extracted(events) => {
                assert_eq!(
                    (report.outcome, report.detail.as_str(), report.events),
                    (OutcomeKind::Extracted, "deleted", *events),
                    "{label:?}: {report:?}"
                );
                assert!(!exists(&path), "{label:?} should be deleted after its lines are written");
            }
            Fate::Skipped(detail) => {
                assert_eq!(
                    (report.outcome, report.detail.as_str()),
                    (OutcomeKind::Skipped, *detail),
                    "{label:?}: {report:?}"
                );
                assert_eq!(diff(before, &contents(&path)), "", "{label:?}: a skipped entry changed");
            }
            Fate::Failed => {
                assert_eq!(report.outcome, OutcomeKind::Failed, "{label:?} should fail and be kept: {report:?}");
                assert!(report.detail.starts_with("kept: "), "{label:?}: {report:?}");
                assert_eq!(diff(before, &contents(&path)), "", "{label:?}: a failed storage must stay whole in place");
            }
        }
    }

    /// [`Scene::assert_fate_of`] for a storage with a UTF-8 name.
    pub fn assert_fate(&self, collected: &Collected, name: &str, fate: &Fate) {
        self.assert_fate_of(collected, name, name, fate);
    }
}

/// [`snapshot`] of a root without the root's own entry: a run that took
/// the root's lock created and removed `<root>/.lock`, which changes the
/// root's modification time and nothing else.
pub fn snapshot_besides_the_roots_mtime(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut tree = snapshot(root);
    tree.remove(Path::new(""));
    tree
}

/// Installs a seccomp filter in the child about to `exec` that fails each
/// of `calls` with its errno (everything else is allowed): a kernel
/// without a feature, or a systemd unit's `SystemCallFilter=`.
#[cfg(target_arch = "x86_64")]
pub fn with_refused_syscalls<'a>(command: &'a mut Command, calls: &[(libc::c_long, i32)]) -> &'a mut Command {
    use std::os::unix::process::CommandExt;
    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
    }
    fn jump(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, jt, jf, k }
    }
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    let mut program = vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4), // seccomp_data.arch
        jump(AUDIT_ARCH_X86_64, 1, 0),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0), // seccomp_data.nr
    ];
    for (nr, errno) in calls {
        program.push(jump(*nr as u32, 0, 1));
        program.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | *errno as u32));
    }
    program.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes two prctl calls on data that lives in it.
    unsafe {
        command.pre_exec(move || {
            let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog as *const _) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}
