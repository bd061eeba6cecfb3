//! Shared fixtures of the end-to-end suite.
//!
//! Everything here works on real files in real temporary directories and on
//! the real guest component loaded through the host library: nothing is
//! mocked except, where a test says so, the event sink.
//!
//! * [`StorageRoot`] builds a storage root (runner directories with given
//!   files, symlinks, FIFOs, directories in place of files, oversized files,
//!   stray root entries).
//! * [`plugin`] opens the [`Plugin`] once per test binary, with a machine-code
//!   cache under the target directory (never the user's home cache).
//! * [`run`] is `collect` with a [`MemorySink`], gathering every report.
//! * [`snapshot`] records a whole tree (paths, types, contents, symlink
//!   targets, modes, modification times) to prove that nothing changed.
//! * [`github_server`] answers list-jobs requests on 127.0.0.1, as GitHub
//!   would, for the job-metrics tests.
//! * [`cli_binary`] finds (building it if needed) the `runner-metrics`
//!   executable for the CLI tests.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

pub use runner_metrics;

/// A local stand-in for the GitHub REST API (HTTP on 127.0.0.1).
pub mod github_server;
/// A validator for `docs/schema/event-line.schema.json`.
pub mod schema;
use runner_metrics::{
    collect, CollectOptions, EventSink, JobMetricsSource, MemorySink, OutcomeKind, Plugin, PluginOptions,
    StorageReport, Summary,
};

/// The four files of a runner storage (spec 2).
pub const START: &str = "runner-installation-start.timestamp";
pub const INSTALLED: &str = "runner-installed.timestamp";
pub const PRE_JOB: &str = "pre-job-metrics.json";
pub const POST_JOB: &str = "post-job-metrics.json";
pub const ALL_FILES: [&str; 4] = [START, INSTALLED, PRE_JOB, POST_JOB];

/// `FILE_SIZE_BYTES_LIMIT` of spec 2.
pub const FILE_SIZE_LIMIT: usize = 1024;

/// Fixture F of spec 6, file by file.
pub const F_START: &str = "1.0";
pub const F_INSTALLED: &str = "2.0";
pub const F_PRE_JOB: &str = r#"{"timestamp": 3.0, "workflow": "workflow1", "workflow_run_id": "workflow_run_id1", "repository": "org1/repository1", "event": "push"}"#;
pub const F_POST_JOB: &str = r#"{"timestamp": 3.0, "status": "normal", "status_info": null}"#;

/// A complete, valid storage: `(file, content)` for all four files.
pub fn valid_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (START, b"1700000000.5\n".to_vec()),
        (INSTALLED, b"1700000060\n".to_vec()),
        (
            PRE_JOB,
            br#"{"workflow": "ci", "repository": "canonical/example", "event": "push", "timestamp": 1700000100, "workflow_run_id": "123456"}"#
                .to_vec(),
        ),
        (POST_JOB, br#"{"timestamp": 1700000400, "status": "abnormal", "status_info": {"code": 1}}"#.to_vec()),
    ]
}

// ---------------------------------------------------------------------------
// Storage roots
// ---------------------------------------------------------------------------

/// A temporary directory holding a storage root (`<tmp>/runner-fs`) and an
/// `outside` directory beside it, for symlink targets that a runner must
/// never reach through the manager.
pub struct StorageRoot {
    _temp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Default for StorageRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl StorageRoot {
    pub fn new() -> Self {
        let temp = tempfile::Builder::new().prefix("runner-metrics-e2e-").tempdir().expect("temp dir");
        let root = temp.path().join("runner-fs");
        let outside = temp.path().join("outside");
        fs::create_dir(&root).expect("create root");
        fs::create_dir(&outside).expect("create outside");
        Self { _temp: temp, root, outside }
    }

    /// The storage root.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A directory next to the root, not inside it.
    pub fn outside(&self) -> &Path {
        &self.outside
    }

    /// `<root>/<name>`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `<root>/.quarantine`.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join(".quarantine")
    }

    /// Creates the runner directory `<root>/<name>` (empty).
    pub fn runner(&self, name: &str) -> Runner {
        let path = self.root.join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        Runner { path }
    }

    /// A runner directory with all four valid files.
    pub fn valid_runner(&self, name: &str) -> Runner {
        let runner = self.runner(name);
        for (file, content) in valid_files() {
            runner.file(file, content);
        }
        runner
    }

    /// A runner directory holding fixture F of spec 6.
    pub fn fixture_f(&self, name: &str) -> Runner {
        let runner = self.runner(name);
        runner.file(START, F_START).file(INSTALLED, F_INSTALLED).file(PRE_JOB, F_PRE_JOB).file(POST_JOB, F_POST_JOB);
        runner
    }

    /// A regular file directly in the root.
    pub fn root_file(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.root.join(name);
        fs::write(&path, content).expect("write root file");
        path
    }

    /// A symlink directly in the root.
    pub fn root_symlink(&self, name: &str, target: impl AsRef<Path>) -> PathBuf {
        let path = self.root.join(name);
        std::os::unix::fs::symlink(target, &path).expect("root symlink");
        path
    }

    /// A FIFO directly in the root.
    pub fn root_fifo(&self, name: &str) -> PathBuf {
        let path = self.root.join(name);
        mkfifo(&path).expect("root fifo");
        path
    }
}

/// One runner directory, with chainable builders for its entries.
pub struct Runner {
    pub path: PathBuf,
}

impl Runner {
    pub fn name(&self) -> String {
        self.path.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// A regular file with `content`.
    pub fn file(&self, name: &str, content: impl AsRef<[u8]>) -> &Self {
        fs::write(self.path.join(name), content).expect("write runner file");
        self
    }

    /// A regular file of exactly `size` bytes: `content` followed by
    /// spaces, so it is valid in every way but its size (surrounding
    /// whitespace is allowed in timestamp and JSON files alike).
    pub fn padded(&self, name: &str, content: impl AsRef<[u8]>, size: usize) -> &Self {
        let mut bytes = content.as_ref().to_vec();
        assert!(bytes.len() <= size, "content longer than {size} bytes");
        bytes.resize(size, b' ');
        self.file(name, bytes)
    }

    /// A symlink named `name` pointing at `target`.
    pub fn symlink(&self, name: &str, target: impl AsRef<Path>) -> &Self {
        std::os::unix::fs::symlink(target, self.path.join(name)).expect("symlink");
        self
    }

    /// A directory named `name` holding one small file.
    pub fn dir(&self, name: &str) -> &Self {
        let dir = self.path.join(name);
        fs::create_dir(&dir).expect("dir in place of a file");
        fs::write(dir.join("inner.txt"), b"inside a directory\n").expect("inner file");
        self
    }

    /// A FIFO named `name`.
    pub fn fifo(&self, name: &str) -> &Self {
        mkfifo(&self.path.join(name)).expect("mkfifo");
        self
    }

    /// Removes one entry (file, symlink, FIFO or directory tree).
    pub fn remove(&self, name: &str) -> &Self {
        let path = self.path.join(name);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path).expect("remove dir"),
            Ok(_) => fs::remove_file(&path).expect("remove"),
            Err(_) => {}
        }
        self
    }

    /// Sets the directory's modification time to `ago` before now (the
    /// directory is opened read-only; `futimens` works on that descriptor).
    pub fn age(&self, ago: Duration) -> &Self {
        set_mtime_ago(&self.path, ago).expect("set mtime");
        self
    }
}

/// `mkfifo(path, 0644)`.
pub fn mkfifo(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the modification time of a file or directory to `ago` before now.
pub fn set_mtime_ago(path: &Path, ago: Duration) -> io::Result<()> {
    let file = fs::File::open(path)?;
    file.set_modified(SystemTime::now() - ago)
}

// ---------------------------------------------------------------------------
// Trees
// ---------------------------------------------------------------------------

/// Files larger than this are recorded by [`snapshot`] and [`contents`] by
/// their size only (the threat suite's 1 TiB sparse file).
pub const LARGE_FILE_BYTES: u64 = 16 << 20;

/// What one path of a tree is, without following symlinks or opening FIFOs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    File(Vec<u8>),
    Dir,
    Symlink(PathBuf),
    Fifo,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    pub mode: u32,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i128,
}

/// Every path under `dir` (relative, `""` is `dir` itself) with its type,
/// content, mode and modification time.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    walk(dir, Path::new(""), &mut out, true);
    out
}

/// Like [`snapshot`] but only types and contents: for comparing a storage
/// with its moved copy (a rename changes the directory's ctime, and a move
/// may legitimately touch the top directory's mtime).
pub fn contents(dir: &Path) -> BTreeMap<PathBuf, NodeKind> {
    let mut out = BTreeMap::new();
    walk(dir, Path::new(""), &mut out, false);
    out.into_iter().map(|(k, v)| (k, v.kind)).collect()
}

fn walk(base: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>, with_times: bool) {
    let path = if rel.as_os_str().is_empty() { base.to_path_buf() } else { base.join(rel) };
    let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        NodeKind::Symlink(fs::read_link(&path).expect("readlink"))
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_file() && meta.len() > LARGE_FILE_BYTES {
        // A (sparse) file far beyond any metrics file: its size stands for
        // its content, so a snapshot never reads a terabyte.
        NodeKind::File(format!("<large file: {} bytes, not read>", meta.len()).into_bytes())
    } else if ft.is_file() {
        NodeKind::File(fs::read(&path).expect("read"))
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else {
        NodeKind::Other
    };
    let (mode, mtime_ns) = if with_times {
        (meta.permissions().mode(), i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()))
    } else {
        (0, 0)
    };
    out.insert(rel.to_path_buf(), Node { kind: kind.clone(), mode, mtime_ns });
    if kind == NodeKind::Dir {
        let mut names: Vec<_> = fs::read_dir(&path).expect("read_dir").map(|e| e.expect("entry").file_name()).collect();
        names.sort();
        for name in names {
            walk(base, &rel.join(name), out, with_times);
        }
    }
}

/// Human-readable differences between two snapshots ("" when equal).
pub fn diff<V: std::fmt::Debug + PartialEq>(before: &BTreeMap<PathBuf, V>, after: &BTreeMap<PathBuf, V>) -> String {
    let mut out = String::new();
    for (path, node) in before {
        match after.get(path) {
            None => out.push_str(&format!("removed: {}\n", path.display())),
            Some(other) if other != node => {
                out.push_str(&format!("changed: {}: {node:?} -> {other:?}\n", path.display()))
            }
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push_str(&format!("added: {}\n", path.display()));
    }
    out
}

// ---------------------------------------------------------------------------
// The plugin and collect runs
// ---------------------------------------------------------------------------

/// The target directory this test binary was built into: test binaries live
/// in `<target>/<profile>/deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a directory");
    assert_eq!(
        deps.file_name().and_then(|n| n.to_str()),
        Some("deps"),
        "test binary not in <target>/<profile>/deps: {}",
        exe.display()
    );
    deps.parent().expect("profile dir").to_path_buf()
}

/// `<target>/tmp/runner-metrics-e2e`, created on demand: the suite's scratch
/// space that outlives one test (the compiled-code cache).
pub fn scratch_dir() -> PathBuf {
    let dir = profile_dir().parent().expect("target dir").join("tmp").join("runner-metrics-e2e");
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// The machine-code cache shared by the in-process plugin and the CLI runs
/// (same component and engine, so the same cache key): compiled once per
/// build, never in the user's home.
pub fn cache_dir() -> PathBuf {
    scratch_dir().join("cache")
}

/// The plugin, opened once per test binary with the default limits.
pub fn plugin() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        Plugin::open(&PluginOptions { cache_dir: Some(cache_dir()), ..Default::default() }).expect("open the plugin")
    })
}

/// What one collect run produced.
#[derive(Debug)]
pub struct Collected {
    pub result: anyhow::Result<Summary>,
    pub reports: Vec<StorageReport>,
}

impl Collected {
    pub fn summary(&self) -> &Summary {
        match &self.result {
            Ok(summary) => summary,
            Err(e) => panic!("collect failed: {e:#}"),
        }
    }

    /// The one report for `name` (panics when there are none or several).
    pub fn report(&self, name: &str) -> &StorageReport {
        let found: Vec<_> = self.reports.iter().filter(|r| r.name == name).collect();
        assert_eq!(found.len(), 1, "expected exactly one report for {name:?}, got {found:?}\nall: {:#?}", self.reports);
        found[0]
    }

    pub fn kind(&self, name: &str) -> OutcomeKind {
        self.report(name).kind
    }
}

/// `collect` into any sink, gathering the reports.
pub fn run_into(
    root: &Path,
    options: &CollectOptions,
    jobs: &mut dyn JobMetricsSource,
    sink: &mut dyn EventSink,
) -> Collected {
    let mut reports = Vec::new();
    let result = collect(plugin(), root, options, jobs, sink, &mut |r| reports.push(r.clone()));
    Collected { result, reports }
}

/// `collect` into a [`MemorySink`]; returns the lines too.
pub fn run(root: &Path, options: &CollectOptions, jobs: &mut dyn JobMetricsSource) -> (Collected, Vec<String>) {
    let mut sink = MemorySink::default();
    let collected = run_into(root, options, jobs, &mut sink);
    (collected, sink.lines)
}

/// Parses a JSON line, panicking with the line on failure.
pub fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// The entries of `<root>/.quarantine` that belong to `name`: the moved
/// storage directories `<name>.<stamp>[.<n>]` and their reason files.
pub struct Quarantined {
    pub location: PathBuf,
    pub reason_file: PathBuf,
    pub reason: serde_json::Value,
}

/// The single quarantined copy of `name` (panics unless there is exactly one
/// moved directory with exactly one reason file beside it). Entry names
/// start with at most the first 200 bytes of the runner name (so they fit
/// in 255 bytes); the reason file names the runner in full.
pub fn quarantined(root: &StorageRoot, name: &str) -> Quarantined {
    let dir = root.quarantine_dir();
    let prefix = format!("{}.", &name[..name.len().min(200)]);
    let reason_of = |entry: &str| -> Option<serde_json::Value> {
        let text = fs::read_to_string(dir.join(format!("{entry}.reason.json"))).ok()?;
        serde_json::from_str(&text).ok()
    };
    let entries: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .filter(|n| {
            let entry = n.strip_suffix(".reason.json").unwrap_or(n);
            reason_of(entry).is_some_and(|r| r["runner_name"] == name)
        })
        .collect();
    let dirs: Vec<&String> = entries.iter().filter(|n| !n.ends_with(".reason.json")).collect();
    assert_eq!(dirs.len(), 1, "expected one quarantined copy of {name}, found {entries:?}");
    let location = dir.join(dirs[0]);
    assert!(fs::symlink_metadata(&location).unwrap().is_dir(), "{} is not a directory", location.display());
    let reason_file = dir.join(format!("{}.reason.json", dirs[0]));
    assert_eq!(entries.len(), 2, "expected the copy and its reason file only, found {entries:?}");
    let text = fs::read_to_string(&reason_file).unwrap_or_else(|e| panic!("read {}: {e}", reason_file.display()));
    Quarantined { location, reason_file, reason: json(&text) }
}

/// Whether anything exists at `path` (without following a symlink).
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

// ---------------------------------------------------------------------------
// The CLI binary
// ---------------------------------------------------------------------------

/// The `runner-metrics` executable of the current build, for CLI tests.
///
/// Cargo builds only the *library* of a dependency, never its binaries, and
/// `CARGO_BIN_EXE_<name>` exists only for the tests of the package that owns
/// the binary; artifact dependencies (`-Z bindeps`) are unstable. A build
/// script cannot build it either: it runs while the outer cargo holds the
/// target directory's lock, so a nested build into the same directory would
/// wait forever.
///
/// So, once per test binary, this runs `cargo build -p runner-metrics --bin
/// runner-metrics` into the same target directory and profile as the test
/// binary itself (`cargo test` releases the lock before it runs tests). It
/// runs it *every* time, not only when the file is missing: a binary left
/// over from an older build would silently test stale code, and a build with
/// nothing to do takes a fraction of a second. It shares every compiled
/// artifact with the outer build (same workspace, target dir, profile and
/// features), so at worst it links the executable. If another cargo holds
/// the lock, it waits ("Blocking waiting for file lock").
pub fn cli_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_binary("runner-metrics", &[]))
}

/// The deliberately malicious guest (guest feature `hostile`: storages
/// named `hostile-<behaviour>-...` make it panic, loop, lie...). Built once
/// per test binary with `--features hostile` (like host/build.rs builds the
/// real one: own target directory, none of the outer cargo's settings).
pub fn hostile_component() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf();
        let target_dir = profile_dir().parent().expect("target dir").join("guest-hostile");
        let mut command = nested_cargo();
        command
            .current_dir(&workspace)
            .args(["build", "--quiet", "--profile", "component", "-p", "runner-metrics-guest", "--features", "hostile"])
            .args(["--target", "wasm32-wasip2", "--lib", "--target-dir"])
            .arg(&target_dir);
        let output = command.output().expect("run cargo to build the hostile guest");
        assert!(
            output.status.success(),
            "building the hostile guest failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let wasm = target_dir.join("wasm32-wasip2").join("component").join("runner_metrics_guest.wasm");
        fs::read(&wasm).unwrap_or_else(|e| panic!("read {}: {e}", wasm.display()))
    })
}

/// The test-only `runner-metrics-escape-test` binary: the CLI built with
/// the `escape-test` feature, which tries escapes once confined.
pub fn escape_test_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_binary("runner-metrics-escape-test", &["--features", "escape-test"]))
}

/// Builds one binary of the `runner-metrics` package in the profile the
/// tests run in, and returns its path.
/// `cargo`, as the test was built with, for a nested build: without the
/// outer cargo's per-package variables (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`
/// ...) and flags. A build script that watches one of them (ring's watches
/// `CARGO_MANIFEST_DIR`) would otherwise see a change, and everything above
/// it would be compiled again by every nested build and by the next
/// ordinary one (a minute each in release).
fn nested_cargo() -> Command {
    // `cargo test` runs tests with CARGO set to itself; the compile-time
    // value is the same cargo, for test binaries started by hand.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut command = Command::new(cargo);
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let inherited = key.starts_with("CARGO_")
            && !matches!(key, "CARGO_HOME" | "CARGO_NET_OFFLINE" | "CARGO_REGISTRIES_CRATES_IO_PROTOCOL");
        if inherited || matches!(key, "RUSTFLAGS" | "RUSTC_WORKSPACE_WRAPPER") {
            command.env_remove(key);
        }
    }
    command
}

fn build_binary(name: &str, extra: &[&str]) -> PathBuf {
    let profile_dir = profile_dir();
    let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    let profile = profile_dir.file_name().and_then(|n| n.to_str()).expect("profile dir name").to_owned();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf();
    let mut command = nested_cargo();
    command
        .current_dir(&workspace)
        .args(["build", "--quiet", "--package", "runner-metrics", "--bin", name])
        .args(extra)
        .arg("--target-dir")
        .arg(&target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        custom => {
            command.args(["--profile", custom]);
        }
    }
    let output = command.output().unwrap_or_else(|e| panic!("run cargo to build the {name} binary: {e}"));
    assert!(
        output.status.success(),
        "building the {name} binary failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let bin = profile_dir.join(name);
    assert!(bin.is_file(), "cargo built {name} but {} is missing", bin.display());
    bin
}

/// A `runner-metrics` command with the suite's compiled-code cache, a cache
/// home under the target directory, and no inherited `METRICS_LOG_PATH`.
pub fn cli() -> Command {
    let mut command = Command::new(cli_binary());
    command
        .arg("--cache-dir")
        .arg(cache_dir())
        .env("XDG_CACHE_HOME", scratch_dir().join("xdg-cache"))
        .env_remove("METRICS_LOG_PATH");
    command
}

/// The result of a CLI run, as text.
#[derive(Debug)]
pub struct CliOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to completion (no standard input).
pub fn output(command: &mut Command) -> CliOutput {
    let out = command.stdin(std::process::Stdio::null()).output().expect("run runner-metrics");
    CliOutput {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

// ---------------------------------------------------------------------------
// Running unprivileged
// ---------------------------------------------------------------------------

/// Whether this process runs as root (which bypasses file permissions).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs one test of the current test binary again as `nobody` through
/// `setpriv(1)`, for tests that need file permissions to apply. `None` when
/// that is impossible here (no setpriv, or `nobody` cannot run the binary).
pub fn rerun_as_nobody(test: &str) -> Option<CliOutput> {
    // The child loads the plugin from the cache, which it may not be able to
    // create: make sure it exists and is readable.
    let _ = plugin();
    let exe = std::env::current_exe().ok()?;
    let unprivileged = |args: &[&str]| {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&exe)
            .args(args)
            .env("TMPDIR", "/tmp")
            .env("HOME", "/tmp")
            .env("RUST_BACKTRACE", "0");
        command
    };
    let probe = unprivileged(&["--list"]).output().ok()?;
    if !probe.status.success() {
        return None;
    }
    // A filter, not `--exact`: the name is the same whichever module of the
    // test binary holds the test, and the caller checks "1 passed".
    Some(output(&mut unprivileged(&[test, "--test-threads=1"])))
}

/// Root bypasses file permissions, so a test about a storage the manager
/// cannot read means nothing as root: then this runs `test` again as
/// `nobody` (when setpriv(1) can), asserts it passed there, and returns
/// `true` for the caller to stop. Returns `false` when not root.
pub fn ran_as_nobody_instead(test: &str) -> bool {
    if !is_root() {
        return false;
    }
    match rerun_as_nobody(test) {
        Some(out) => assert!(
            out.code == Some(0) && out.stdout.contains("1 passed"),
            "the unprivileged run failed:\n{}\n{}",
            out.stdout,
            out.stderr
        ),
        None => runner_metrics_test_skip::skip(test, "running as root, and cannot run the test as nobody here"),
    }
    true
}

/// The entries of a storage root other than `.deleting/` (where storages
/// pass on their way out), after checking that nothing was left in it.
pub fn entries_besides_deleting(root: &Path) -> Vec<String> {
    let deleting = root.join(".deleting");
    if deleting.exists() {
        let leftovers: Vec<_> = std::fs::read_dir(&deleting).unwrap().collect();
        assert!(leftovers.is_empty(), "storages left in .deleting: {leftovers:?}");
    }
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".deleting")
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// Threat suite: deadlines, neighbours and the invariants of issue 3
// ---------------------------------------------------------------------------

/// Runs `f` on a thread of its own and returns its result; fails the test
/// (without waiting any longer) if it has not finished within `deadline`.
/// A panic inside `f` is passed on to the caller.
pub fn within<T: Send + 'static>(deadline: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("within: {what}"))
        .spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        })
        .expect("spawn the watched thread");
    match rx.recv_timeout(deadline) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what} did not finish within {deadline:?}: the host hangs"),
    }
}

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
    Extracted(usize),
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
            (neighbour.kind, neighbour.detail.as_str(), neighbour.events),
            (OutcomeKind::Extracted, "deleted", 3),
            "the neighbour must be extracted normally: {neighbour:?}"
        );
        assert!(!exists(&self.root.join(NEIGHBOUR)), "the neighbour must be deleted after its lines are written");
        let theirs: Vec<&str> =
            lines.iter().map(String::as_str).filter(|l| l.contains("neighbour") || l.contains("16000000")).collect();
        assert_eq!(theirs, NEIGHBOUR_LINES, "the neighbour's lines, exactly once each, in order");

        let excluded = collected.report(EXCLUDED);
        assert_eq!((excluded.kind, excluded.detail.as_str()), (OutcomeKind::Skipped, "excluded"), "{excluded:?}");
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
                assert_eq!(report.kind, OutcomeKind::Quarantined, "{label:?} should be quarantined: {report:?}");
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
                assert_eq!((report.kind, report.events), (OutcomeKind::NoData, 0), "{label:?}: {report:?}");
                assert!(!exists(&path), "{label:?} should be deleted");
            }
            Fate::Extracted(events) => {
                assert_eq!(
                    (report.kind, report.detail.as_str(), report.events),
                    (OutcomeKind::Extracted, "deleted", *events),
                    "{label:?}: {report:?}"
                );
                assert!(!exists(&path), "{label:?} should be deleted after its lines are written");
            }
            Fate::Skipped(detail) => {
                assert_eq!(
                    (report.kind, report.detail.as_str()),
                    (OutcomeKind::Skipped, *detail),
                    "{label:?}: {report:?}"
                );
                assert_eq!(diff(before, &contents(&path)), "", "{label:?}: a skipped entry changed");
            }
            Fate::Failed => {
                assert_eq!(report.kind, OutcomeKind::Failed, "{label:?} should fail and be kept: {report:?}");
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

/// Makes a chain of `depth` directories named `name` under `top`, one
/// `mkdirat` at a time relative to the last one (no path could name the
/// bottom of a deep chain: PATH_MAX is 4096 bytes).
pub fn deep_chain(top: &Path, depth: usize, name: &str) {
    use std::os::unix::ffi::OsStrExt;
    let flags = libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC;
    let top = std::ffi::CString::new(top.as_os_str().as_bytes()).expect("a path without NUL");
    let name = std::ffi::CString::new(name).expect("a name without NUL");
    // SAFETY: plain syscalls on NUL-terminated names and descriptors we own.
    unsafe {
        let mut fd = libc::open(top.as_ptr(), flags);
        assert!(fd >= 0, "open top: {}", io::Error::last_os_error());
        for level in 0..depth {
            assert_eq!(libc::mkdirat(fd, name.as_ptr(), 0o755), 0, "mkdirat at level {level}");
            let next = libc::openat(fd, name.as_ptr(), flags);
            assert!(next >= 0, "openat at level {level}: {}", io::Error::last_os_error());
            libc::close(fd);
            fd = next;
        }
        libc::close(fd);
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

/// Collects `root` three times with the CLI (`--verbose`, the filesystem
/// layer `filesystem`), into a log of its own beside the root; returns the
/// log's lines and what each run said. A storage logged twice shows.
pub fn collect_thrice(root: &StorageRoot, filesystem: &str) -> (Vec<String>, Vec<CliOutput>) {
    let log = root.outside().join(format!("events-{filesystem}.log"));
    let runs = (0..3)
        .map(|_| {
            output(
                cli()
                    .args(["collect", "--flavor", "small", "--verbose", "--storage"])
                    .arg(root.path())
                    .arg("--metrics-log")
                    .arg(&log)
                    .env("RUNNER_METRICS_FILESYSTEM", filesystem),
            )
        })
        .collect();
    let lines = fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_owned).collect();
    (lines, runs)
}
