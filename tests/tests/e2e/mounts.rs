//! Mounts inside a storage (issue 24, item 8): a bind mount of a directory
//! outside the root, made inside a storage, led the deletion walks of
//! `collect`, `storage delete` and `quarantine purge` out of the root, and
//! each emptied the directory outside. Every walk now stops at another
//! mount: nothing outside is touched and no event is written twice.
//!
//! Root only (mount(2)); everything (the victim directory, the root, the
//! mount points) is in the test's own temporary directory, and every mount
//! made under it is detached when the test ends, whatever happened.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use runner_metrics_e2e::*;

/// Detaches, when dropped, every mount whose mount point is under `under`
/// (read from /proc/self/mountinfo: the mount moves when the storage does).
struct Unmounts {
    under: PathBuf,
}

impl Drop for Unmounts {
    fn drop(&mut self) {
        let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return };
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| Path::new(point).starts_with(&self.under))
            .collect();
        // Deepest first.
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let c = CString::new(point).unwrap();
            // SAFETY: a NUL-terminated path under the test's own directory.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// `source` bind-mounted on `target` (both in the test's directory).
fn bind(source: &Path, target: &Path) {
    let (s, t) = (
        CString::new(source.as_os_str().as_encoded_bytes()).unwrap(),
        CString::new(target.as_os_str().as_encoded_bytes()).unwrap(),
    );
    // SAFETY: NUL-terminated paths under the test's temporary directory.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
    assert_eq!(rc, 0, "bind {} on {}: {}", source.display(), target.display(), std::io::Error::last_os_error());
}

/// A directory beside the root with files a walk must never remove.
fn victim(root: &StorageRoot) -> PathBuf {
    let victim = root.outside().join("victim");
    fs::create_dir_all(victim.join("deeper")).unwrap();
    fs::write(victim.join("keep-me"), "outside the root").unwrap();
    fs::write(victim.join("deeper").join("keep-me-too"), "outside the root").unwrap();
    victim
}

fn intact(victim: &Path) {
    assert_eq!(fs::read_to_string(victim.join("keep-me")).unwrap(), "outside the root");
    assert_eq!(fs::read_to_string(victim.join("deeper").join("keep-me-too")).unwrap(), "outside the root");
}

fn unsupported(test: &str) -> bool {
    if is_root() {
        return false;
    }
    runner_metrics_test_skip::skip(test, "bind mounts need root");
    true
}

#[test]
fn collect_never_walks_into_a_mount_inside_a_storage_nor_logs_it_twice() {
    if unsupported("mounts::collect_never_walks_into_a_mount_inside_a_storage_nor_logs_it_twice") {
        return;
    }
    let root = StorageRoot::new();
    let _unmounts = Unmounts { under: root.path().parent().unwrap().to_owned() };
    let victim = victim(&root);
    let runner = root.valid_runner("r-mount");
    let inner = runner.path.join("inner");
    fs::create_dir(&inner).unwrap();
    bind(&victim, &inner);
    let log = root.outside().join("events.log");
    let mut said = Vec::new();
    for _ in 0..2 {
        let out = output(
            cli()
                .args(["collect", "--flavor", "small", "--storage"])
                .arg(root.path())
                .arg("--metrics-log")
                .arg(&log)
                .arg("--verbose")
                .env("RUNNER_METRICS_FILESYSTEM", "confined"),
        );
        assert_eq!(out.code, Some(0), "{out:?}");
        intact(&victim);
        said.push(out.stderr);
    }
    // The first run: extracted, then the walk refused to enter the mount
    // (the confined filesystem's RESOLVE_NO_XDEV) and the storage, mount
    // and all, was quarantined as undeletable; the second found nothing.
    assert!(said[0].contains("could not be deleted") && said[0].contains("not permitted"), "{}", said[0]);
    assert!(said[1].contains("extracted: 0"), "{}", said[1]);
    assert_eq!(fs::read_to_string(&log).unwrap().lines().count(), 3, "the storage's events, once");
    assert!(!root.join("r-mount").exists());
    assert_eq!(fs::read_dir(root.join(".quarantine")).unwrap().count(), 2, "the storage and its reason file");
}

#[test]
fn storage_delete_and_quarantine_purge_never_walk_into_a_mount() {
    if unsupported("mounts::storage_delete_and_quarantine_purge_never_walk_into_a_mount") {
        return;
    }
    let root = StorageRoot::new();
    let _unmounts = Unmounts { under: root.path().parent().unwrap().to_owned() };
    let victim = victim(&root);

    // storage delete: the walk stops at the mount; the storage is kept
    // (quarantined as undeletable), the victim untouched.
    let made = runner_metrics::storage::create(root.path(), "r-del").unwrap();
    let inner = made.path.join("inner");
    fs::create_dir(&inner).unwrap();
    bind(&victim, &inner);
    let out = output(cli().args(["storage", "delete", "--storage"]).arg(root.path()).arg("r-del"));
    intact(&victim);
    assert!(out.stderr.contains("another filesystem is mounted there"), "{out:?}");

    // quarantine purge of what was quarantined (the storage, mount and
    // all): the same walk, the same stop.
    let quarantined = fs::read_dir(root.path().join(".quarantine")).map(|d| d.count()).unwrap_or(0);
    assert!(quarantined > 0, "kept as undeletable: {out:?}");
    let out = output(cli().args(["quarantine", "purge", "--older-than", "0", "--storage"]).arg(root.path()));
    intact(&victim);
    assert!(out.stderr.contains("another filesystem is mounted there"), "{out:?}");
}

/// `fstype` (a tmpfs) mounted on `target`.
fn mount_fs(fstype: &str, target: &Path) {
    let (kind, t) = (CString::new(fstype).unwrap(), CString::new(target.as_os_str().as_encoded_bytes()).unwrap());
    // SAFETY: NUL-terminated strings; the target is under the test's directory.
    let rc = unsafe { libc::mount(kind.as_ptr(), t.as_ptr(), kind.as_ptr(), 0, std::ptr::null()) };
    assert_eq!(rc, 0, "mount {fstype} on {}: {}", target.display(), std::io::Error::last_os_error());
}

#[test]
fn a_storage_that_is_a_mount_we_did_not_make_is_never_extracted_nor_walked() {
    if unsupported("mounts::a_storage_that_is_a_mount_we_did_not_make_is_never_extracted_nor_walked") {
        return;
    }
    let root = StorageRoot::new();
    let _unmounts = Unmounts { under: root.path().parent().unwrap().to_owned() };
    let victim = victim(&root);
    // A tmpfs on a storage, with a valid runner's files in it.
    let tmpfs = root.runner("r-tmpfs");
    mount_fs("tmpfs", &tmpfs.path);
    for (file, content) in valid_files() {
        tmpfs.file(file, content);
    }
    // Another runner's storage bind-mounted as a storage (as a bind of a
    // bounded storage, or an image mounted twice, would be): one runner's
    // files under two names.
    let own = root.valid_runner("r-own");
    let twin = root.runner("r-twin");
    bind(&own.path, &twin.path);
    // The whole root reached again through a storage, and a directory
    // outside the root bound as a storage.
    let again = root.runner("r-root-again");
    bind(root.path(), &again.path);
    let outside = root.runner("r-outside");
    bind(&victim, &outside.path);

    // Both filesystems: the confined one refuses to enter such a mount, the
    // fallback is kept from it by the host.
    for filesystem in ["confined", "wasi"] {
        let root_has_own = exists(&own.path);
        let (lines, runs) = collect_thrice(&root, filesystem);
        assert_eq!(lines.len(), if root_has_own { 3 } else { 0 }, "{filesystem}: {lines:#?}");
        check_foreign_mounts(&root, &tmpfs.path, &runs);
    }
    intact(&victim);
    // `storage list` says what each is.
    let listed = output(cli().args(["storage", "list", "--json", "--storage"]).arg(root.path()));
    assert_eq!(listed.code, Some(1), "{listed:?}");
    let foreign: Vec<String> = listed
        .stdout
        .lines()
        .map(json)
        .filter(|s| s["foreign_mount"] == true)
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(foreign, ["r-outside", "r-root-again", "r-tmpfs", "r-twin"], "{listed:?}");
    assert!(listed.stderr.contains("r-tmpfs: another filesystem is mounted on this storage"), "{listed:?}");
}

/// Each mount of [`a_storage_that_is_a_mount_we_did_not_make_is_never_extracted_nor_walked`]:
/// reported failed on every run, saying what it is, and left in place, its
/// files untouched.
fn check_foreign_mounts(root: &StorageRoot, tmpfs: &Path, runs: &[CliOutput]) {
    for run in runs {
        assert_eq!(run.code, Some(1), "{run:?}");
    }
    for name in ["r-tmpfs", "r-twin", "r-root-again", "r-outside"] {
        assert!(exists(&root.join(name)), "{name} left in place");
        for run in runs {
            let said = run.stderr.lines().find(|l| l.starts_with(&format!("failed: {name}: "))).unwrap_or_default();
            assert!(said.contains("not by runner-metrics"), "{name}: {}", run.stderr);
        }
    }
    assert_eq!(fs::read_dir(tmpfs).unwrap().count(), 4, "the tmpfs untouched");
}
