//! The compiled-code cache (`runner_metrics::plugin::cache`, issue 24):
//! wasmtime runs serialized code as it is, so an entry that anything but
//! this program wrote must never run. Each test plants, in place of the
//! real plugin's entry, the code of the hostile guest (guest feature
//! `hostile`), which panics on storages named `hostile-panic-...`: were it
//! run, the storage below would be quarantined as a sandbox trap instead
//! of extracted. Every cache is a temporary directory of the test's own.

use std::fs;
use std::path::Path;

use runner_metrics::plugin::{Plugin, PluginOptions};
use runner_metrics_e2e::*;

/// The hostile guest's machine code as wasmtime serializes it, compiled by
/// this library into a cache of its own; and that cache's whole entry
/// (this program's format, under that cache's key).
fn hostile_code(scratch: &Path) -> (Vec<u8>, Vec<u8>) {
    let options = PluginOptions { cache_dir: Some(scratch.to_owned()), ..Default::default() };
    Plugin::from_bytes(hostile_component(), &options).expect("the hostile guest compiles");
    let entry = Plugin::cache_entry(hostile_component(), &options).unwrap().expect("a cache entry");
    let whole = fs::read(&entry).unwrap();
    // The format: 8 bytes of magic, a 32-byte tag, then the code.
    (whole[40..].to_vec(), whole)
}

/// The CLI with `cache` as its code cache (`cli()` names the shared one).
fn cli_with_cache(cache: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(cli_binary());
    command.arg("--cache-dir").arg(cache).env_remove("METRICS_LOG_PATH");
    command
}

/// Collects a root holding `hostile-panic-1` with the CLI and `cache`.
fn collect(cache: &Path) -> (CliOutput, StorageRoot) {
    let root = StorageRoot::new();
    root.valid_runner("hostile-panic-1");
    let log = root.outside().join("events.log");
    let out = output(
        cli_with_cache(cache)
            .args(["collect", "--flavor", "small", "--storage"])
            .arg(root.path())
            .arg("--metrics-log")
            .arg(&log),
    );
    (out, root)
}

#[test]
fn a_planted_cache_entry_is_refused_compiled_again_and_never_run() {
    let temp = tempfile::tempdir().unwrap();
    let (cache, scratch) = (temp.path().join("cache"), temp.path().join("scratch"));
    let (raw, foreign) = hostile_code(&scratch);
    let options = PluginOptions { cache_dir: Some(cache.clone()), ..Default::default() };

    // wasmtime's own serialized format (what an attacker who can write the
    // cache writes), then this program's format under another key.
    for (what, planted) in [("raw wasmtime code", &raw), ("an entry under another cache's key", &foreign)] {
        // A first run fills the cache; then the plant.
        let (out, _) = collect(&cache);
        assert_eq!(out.code, Some(0), "{what}: {out:?}");
        let entry = Plugin::cache_entry(options.component().unwrap(), &options).unwrap().unwrap();
        assert!(entry.exists(), "{what}: the plugin's entry {}", entry.display());
        fs::write(&entry, planted).unwrap();

        let (out, root) = collect(&cache);
        assert_eq!(out.code, Some(0), "{what}: {out:?}");
        assert!(out.stderr.contains("refused a cache entry, compiled it again"), "{what}: {}", out.stderr);
        assert!(out.stderr.contains(&entry.display().to_string()), "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("quarantined: 0") && !out.stderr.contains("sandbox-trap"),
            "{what}: the planted code ran:\n{}",
            out.stderr
        );
        assert!(!root.join("hostile-panic-1").exists(), "{what}: extracted and deleted");
        assert_eq!(fs::read_to_string(root.outside().join("events.log")).unwrap().lines().count(), 3, "{what}");
        // The entry is ours again: the next run loads it without a word.
        let (out, _) = collect(&cache);
        assert!(!out.stderr.contains("refused a cache entry"), "{what}: {}", out.stderr);
    }
}

#[test]
fn a_cache_a_confined_run_could_write_is_refused_before_anything_is_touched() {
    let root = StorageRoot::new();
    root.valid_runner("r-1");
    let log = root.outside().join("events.log");
    let out = output(
        cli_with_cache(&root.path().join("cache"))
            .args(["collect", "--flavor", "small", "--storage"])
            .arg(root.path())
            .arg("--metrics-log")
            .arg(&log),
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("which a confined run may write"), "{}", out.stderr);
    assert!(root.join("r-1").exists());
    assert!(!root.join("cache").exists());
}
