//! Root, and tests rerun as an unprivileged user.

use crate::*;

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
    let cli = crate::binaries::cli_binary();
    let exe = std::env::current_exe().ok()?;
    let unprivileged = |args: &[&str]| {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&exe)
            .args(args)
            .env("TMPDIR", "/tmp")
            .env("HOME", "/tmp")
            .env(crate::binaries::CLI_BINARY_ENV, cli)
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
