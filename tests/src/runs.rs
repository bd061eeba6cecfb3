//! The plugin opened once per test binary, and collect runs into memory.

use crate::*;

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
        self.report(name).outcome
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
