//! The CLI binaries (built once per test binary by a nested cargo) and how a test runs them.

use crate::*;

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
    BIN.get_or_init(|| match std::env::var_os(CLI_BINARY_ENV) {
        Some(built) => PathBuf::from(built),
        None => build_binary("runner-metrics", &[]),
    })
}

/// Where a test run again as `nobody` (who cannot run cargo) finds the
/// binary its parent built.
pub const CLI_BINARY_ENV: &str = "RUNNER_METRICS_E2E_CLI";

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
            .args(["rustc", "--quiet", "--profile", "component", "-p", "runner-metrics-core", "--features", "hostile"])
            .args(["--target", "wasm32-wasip2", "--lib", "--crate-type", "cdylib", "--target-dir"])
            .arg(&target_dir);
        let output = command.output().expect("run cargo to build the hostile guest");
        assert!(
            output.status.success(),
            "building the hostile guest failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let wasm = target_dir.join("wasm32-wasip2").join("component").join("runner_metrics_core.wasm");
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
