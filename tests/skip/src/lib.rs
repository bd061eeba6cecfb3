//! The one way a test of this workspace says that it (or a part of it)
//! could not run on this machine: no root, no loop devices, no Landlock, a
//! missing tool.
//!
//! libtest has no run-time skip: a test that returns early counts as
//! passed. So [`skip`] leaves a trace that `scripts/test.sh` counts
//! (`RUNNER_METRICS_SKIP_LOG`, one line per skip) and prints apart from the
//! passes, and where everything must run (CI sets
//! `RUNNER_METRICS_NO_SKIPS=1`) it fails the test instead.

use std::io::Write;

/// Environment variable naming the file every skip is appended to.
pub const SKIP_LOG: &str = "RUNNER_METRICS_SKIP_LOG";
/// Environment variable that turns every skip into a failure (`1`).
pub const NO_SKIPS: &str = "RUNNER_METRICS_NO_SKIPS";

/// Records that `what` (a test's name, or a test and the part of it left
/// out) did not run because of `why`. Returns normally so the caller can
/// `return`; panics when skips are refused.
pub fn skip(what: &str, why: &str) {
    let line = format!("skipped: {what}: {why}");
    assert!(
        std::env::var_os(NO_SKIPS).is_none_or(|v| v != "1"),
        "{line} ({NO_SKIPS}=1: this machine must run every test)"
    );
    println!("{line}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os(SKIP_LOG) {
        // One short line per write with O_APPEND: whole lines even when the
        // test threads of several binaries skip at once.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut log| log.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            panic!("{line}; and the skip could not be recorded in {}: {e}", std::path::Path::new(&path).display());
        }
    }
}
