//! Bounded storages (spec 8, `runner_metrics::storage::bounded`): ext4
//! images loop-mounted on the runner's directory. These tests need root,
//! loop devices and mkfs.ext4; where one is missing each test prints a
//! `skipped:` line and passes (`scripts/test.sh` says so too). Every mount
//! is made inside the test's own temporary root and undone by
//! [`Bounded`]'s `Drop`, even when the test fails.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use runner_metrics::confined_fs::Layer;
use runner_metrics::plugin::{Plugin, PluginOptions};
use runner_metrics::storage::{self, bounded};
use runner_metrics::{collect, CollectOptions, MemorySink, NoJobMetrics, OutcomeKind};
use runner_metrics_e2e::*;

const MIB: u64 = 1 << 20;

/// Why bounded storages cannot be tested here, if they cannot.
fn unsupported() -> Option<String> {
    if !is_root() {
        return Some("bounded storages need root (mount)".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no loop devices (/dev/loop-control)".into());
    }
    match std::process::Command::new("mkfs.ext4").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("no mkfs.ext4".into()),
    }
}

macro_rules! require_bounded {
    ($test:literal) => {
        if let Some(why) = unsupported() {
            runner_metrics_test_skip::skip(concat!("bounded::", $test), &why);
            return;
        }
    };
}

/// A storage root whose mounts are all undone when it goes.
struct Bounded {
    root: StorageRoot,
}

impl Bounded {
    fn new() -> Self {
        Self { root: StorageRoot::new() }
    }

    fn create(&self, name: &str) -> PathBuf {
        let made = bounded::create(self.root.path(), name, MIB, None).unwrap_or_else(|e| panic!("create {name}: {e}"));
        assert!(made.bounded);
        made.path
    }

    /// Mount points at or below the root, from the kernel's table.
    fn mounts(&self) -> Vec<PathBuf> {
        mounts_under(self.root.path())
    }
}

impl Drop for Bounded {
    fn drop(&mut self) {
        // Deepest first; lazily, so a failed test never leaves one behind.
        let mut mounts = self.mounts();
        mounts.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for mount in mounts {
            let path = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid C string, a mount point inside our own temp dir.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
        }
    }
}

impl std::ops::Deref for Bounded {
    type Target = StorageRoot;
    fn deref(&self) -> &StorageRoot {
        &self.root
    }
}

/// The mount points under `dir` (`/proc/self/mountinfo`, field 5; the
/// kernel escapes spaces as `\040`, which our names never hold).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let table = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|mount| mount.starts_with(&dir))
        .collect()
}

/// The lines of `losetup -a` that name a file under `dir`.
fn loop_devices_under(dir: &Path) -> Vec<String> {
    let out = std::process::Command::new("losetup").arg("-a").output().expect("run losetup -a");
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&*dir.to_string_lossy()))
        .map(str::to_owned)
        .collect()
}

/// The plugin on the confined filesystem, whose hook moves mount points
/// (the suite also runs with RUNNER_METRICS_FILESYSTEM=wasi).
fn confined_plugin() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        let options = PluginOptions { cache_dir: Some(cache_dir()), filesystem: Layer::Confined, ..Default::default() };
        Plugin::open(&options).expect("open the plugin on the confined filesystem")
    })
}

fn collect_with(plugin: &Plugin, root: &Path, options: &CollectOptions) -> (Collected, Vec<String>) {
    let mut sink = MemorySink::default();
    let mut reports = Vec::new();
    let result = collect(plugin, root, options, &mut NoJobMetrics, &mut sink, &mut |r| reports.push(r.clone()));
    (Collected { result, reports }, sink.lines)
}

fn write_valid(dir: &Path) {
    for (file, content) in valid_files() {
        fs::write(dir.join(file), content).unwrap_or_else(|e| panic!("write {file}: {e}"));
    }
}

/// Free bytes of the filesystem holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string and a zeroed statvfs to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0, "statvfs {}", path.display());
    st.f_bavail * st.f_frsize
}

#[test]
fn a_full_bounded_storage_fills_its_image_only_and_is_collected_and_removed() {
    require_bounded!("a_full_bounded_storage_fills_its_image_only_and_is_collected_and_removed");
    let root = Bounded::new();
    let dir = root.create("r-full");
    assert_eq!(root.mounts(), vec![dir.canonicalize().unwrap()], "mounted on the runner's directory");
    let options = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = options.lines().find(|l| l.contains(&*dir.canonicalize().unwrap().to_string_lossy())).unwrap();
    for option in ["nodev", "nosuid", "noexec"] {
        assert!(line.contains(option), "{option} missing: {line}");
    }
    write_valid(&dir);

    // The job writes until the filesystem is full: its image, not the root.
    let root_free = free_bytes(root.path());
    let mut filler = fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    let mut written = 0u64;
    let error = loop {
        match filler.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(e) => break e,
        }
        assert!(written <= 4 * MIB, "wrote {written} bytes into a 1 MiB storage");
    };
    assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
    drop(filler);
    assert!(written < MIB, "{written}");
    let image = bounded::image_path(root.path(), "r-full");
    let allocated = fs::metadata(&image).unwrap().blocks() * 512;
    assert!(allocated <= MIB, "the image takes {allocated} bytes of the root's disk");
    let used = root_free.saturating_sub(free_bytes(root.path()));
    assert!(used <= 2 * MIB, "the root's filesystem lost {used} bytes to a 1 MiB storage");

    // Full is not corrupt: what it holds is judged as usual.
    let (run, lines) = collect_with(confined_plugin(), root.path(), &CollectOptions::events("small"));
    assert_eq!(run.kind("r-full"), OutcomeKind::Extracted, "{:?}", run.reports);
    assert_eq!(run.reports.len(), 1, ".images is the project's, not a storage: {:?}", run.reports);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(!exists(&dir), "the storage is deleted");
    assert!(!exists(&image), "its image is removed");
    assert_eq!(root.mounts(), Vec::<PathBuf>::new(), "no mount is left");
    assert_eq!(loop_devices_under(root.path()), Vec::<String>::new(), "no loop device is left");
    assert_eq!(fs::read_dir(root.join(".deleting")).unwrap().count(), 0);
}

#[test]
fn a_corrupt_bounded_storage_is_quarantined_with_its_image_shown_read_only_and_restored() {
    require_bounded!("a_corrupt_bounded_storage_is_quarantined_with_its_image_shown_read_only_and_restored");
    let root = Bounded::new();
    let dir = root.create("r-bad");
    write_valid(&dir);
    fs::write(dir.join("runner-installed.timestamp"), "garbage").unwrap();
    let (run, lines) = collect_with(confined_plugin(), root.path(), &CollectOptions::events("small"));
    assert_eq!(run.kind("r-bad"), OutcomeKind::Quarantined, "{:?}", run.reports);
    assert!(lines.is_empty());
    assert!(!exists(&dir));
    assert_eq!(root.mounts(), Vec::<PathBuf>::new(), "unmounted on the way to quarantine");
    let q = quarantined(&root, "r-bad");
    assert!(bounded::is_marked_image(&q.location.join(bounded::IMAGE_IN_STORAGE)), "the image moved with it");
    assert_eq!(q.reason["reason"], "invalid-timestamp");

    // `quarantine show` lists the files inside the image, read-only.
    let location = q.location.file_name().unwrap().to_str().unwrap().to_owned();
    let shown = output(cli().args(["quarantine", "show", "--json", "--storage"]).arg(root.path()).arg(&location));
    assert_eq!(shown.code, Some(0), "{shown:?}");
    let value = json(shown.stdout.trim());
    let names: Vec<&str> = value["contents"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"runner-installed.timestamp") && names.contains(&"pre-job-metrics.json"), "{names:?}");
    assert_eq!(value["bounded"], true, "{value}");
    assert_eq!(root.mounts(), Vec::<PathBuf>::new(), "show unmounts what it mounted");
    assert_eq!(loop_devices_under(root.path()), Vec::<String>::new());

    // `restore` mounts it back under its name, with its files.
    let restored = storage::restore(root.path(), &location).unwrap();
    assert!(restored.bounded);
    assert_eq!(root.mounts(), vec![dir.canonicalize().unwrap()]);
    assert_eq!(fs::read_to_string(dir.join("runner-installed.timestamp")).unwrap(), "garbage");
    assert!(!exists(&q.location) && !exists(&q.reason_file));
    assert!(bounded::image_path(root.path(), "r-bad").is_file());

    // Quarantined again and purged: the image goes with it.
    let reason = runner_metrics::storage::QuarantineReason::InvalidTimestamp;
    storage::move_to_quarantine(root.path(), "r-bad", reason, "again").unwrap();
    let purged = storage::purge(root.path(), std::time::Duration::ZERO, false).unwrap();
    assert_eq!(purged.purged.len(), 1, "{purged:?}");
    assert_eq!(fs::read_dir(root.quarantine_dir()).unwrap().count(), 0);
    assert_eq!(fs::read_dir(root.join(".images")).unwrap().count(), 0);
    assert_eq!(root.mounts(), Vec::<PathBuf>::new());
}

#[test]
fn a_storage_still_in_use_is_detached_lazily_and_its_loop_device_freed_once_released() {
    require_bounded!("a_storage_still_in_use_is_detached_lazily_and_its_loop_device_freed_once_released");
    let root = Bounded::new();
    let dir = root.create("r-busy");
    write_valid(&dir);
    // A process of the runner still holds a file of its storage open.
    let held = fs::File::open(dir.join("pre-job-metrics.json")).unwrap();
    let (run, lines) = collect_with(confined_plugin(), root.path(), &CollectOptions::events("small"));
    assert_eq!(run.kind("r-busy"), OutcomeKind::Extracted, "{:?}", run.reports);
    assert_eq!(lines.len(), 3);
    assert_eq!(root.mounts(), Vec::<PathBuf>::new(), "detached from the tree at once");
    assert!(!exists(&dir) && !exists(&bounded::image_path(root.path(), "r-busy")));
    assert_eq!(loop_devices_under(root.path()).len(), 1, "the loop device lives while the file is open");
    drop(held);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !loop_devices_under(root.path()).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(loop_devices_under(root.path()), Vec::<String>::new(), "freed once the last user went");
}

#[test]
fn a_mount_lost_as_after_a_reboot_is_mounted_again_by_list_and_by_collect() {
    require_bounded!("a_mount_lost_as_after_a_reboot_is_mounted_again_by_list_and_by_collect");
    let root = Bounded::new();
    let dir = root.create("r-reboot");
    write_valid(&dir);
    let drop_mount = || {
        let status = std::process::Command::new("umount").arg(&dir).status().unwrap();
        assert!(status.success());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "the mount point is empty without its image");
    };
    drop_mount();
    let listed = storage::list(root.path()).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].bounded && listed[0].mount_error.is_none(), "{listed:?}");
    assert!(dir.join("pre-job-metrics.json").is_file(), "list mounted it again");

    drop_mount();
    let (run, lines) = collect_with(confined_plugin(), root.path(), &CollectOptions::events("small"));
    assert_eq!(run.kind("r-reboot"), OutcomeKind::Extracted, "{:?}", run.reports);
    assert_eq!(lines.len(), 3, "read from the image, not the empty mount point: {lines:?}");
    assert_eq!(root.mounts(), Vec::<PathBuf>::new());
    assert!(!exists(&dir) && !exists(&bounded::image_path(root.path(), "r-reboot")));
}

#[test]
fn a_crash_between_unmount_and_image_removal_is_finished_by_the_next_run() {
    require_bounded!("a_crash_between_unmount_and_image_removal_is_finished_by_the_next_run");
    let root = Bounded::new();
    // Cut after the unmount and the link into the directory: the storage
    // is still there, mounted again and collected by the next run.
    let before_move = root.create("r-linked");
    write_valid(&before_move);
    let image = bounded::image_path(root.path(), "r-linked");
    assert!(std::process::Command::new("umount").arg(&before_move).status().unwrap().success());
    fs::hard_link(&image, before_move.join(bounded::IMAGE_IN_STORAGE)).unwrap();

    // Cut after the move into .deleting/, before the image's link in
    // .images/ was dropped (the storage's lines were already durable).
    let moved = root.create("r-moved");
    let moved_image = bounded::image_path(root.path(), "r-moved");
    assert!(std::process::Command::new("umount").arg(&moved).status().unwrap().success());
    fs::hard_link(&moved_image, moved.join(bounded::IMAGE_IN_STORAGE)).unwrap();
    fs::create_dir(root.join(".deleting")).unwrap();
    let leftover = root.join(".deleting").join("r-moved.1700000000.000001");
    fs::rename(&moved, &leftover).unwrap();

    let (run, lines) = collect_with(confined_plugin(), root.path(), &CollectOptions::events("small"));
    assert_eq!(run.kind("r-linked"), OutcomeKind::Extracted, "{:?}", run.reports);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(run.reports.iter().all(|r| r.name != "r-moved"), "{:?}", run.reports);
    for gone in [&before_move, &image, &moved_image, &leftover] {
        assert!(!exists(gone), "{} is left", gone.display());
    }
    assert_eq!(root.mounts(), Vec::<PathBuf>::new());
    assert_eq!(loop_devices_under(root.path()), Vec::<String>::new());
    assert_eq!(fs::read_dir(root.join(".images")).unwrap().count(), 0, "no image is left behind");
}

#[test]
fn a_restore_cut_short_leaves_the_storage_quarantined() {
    require_bounded!("a_restore_cut_short_leaves_the_storage_quarantined");
    let root = Bounded::new();
    let dir = root.create("r-back");
    fs::write(dir.join("runner-installed.timestamp"), "garbage").unwrap();
    let location = storage::move_to_quarantine(
        root.path(),
        "r-back",
        runner_metrics::storage::QuarantineReason::InvalidTimestamp,
        "x",
    )
    .unwrap();
    assert_eq!(root.mounts(), Vec::<PathBuf>::new());
    // The first step of a restore (the link back into .images/), then a crash.
    let inside = root.quarantine_dir().join(&location).join(bounded::IMAGE_IN_STORAGE);
    fs::hard_link(&inside, bounded::image_path(root.path(), "r-back")).unwrap();
    assert_eq!(storage::list(root.path()).unwrap(), vec![], "nothing is listed");
    assert!(!exists(&bounded::image_path(root.path(), "r-back")), "the stale link is dropped");
    assert!(bounded::is_marked_image(&inside), "the image stays in quarantine");
    // The restore itself still works afterwards.
    storage::restore(root.path(), &location).unwrap();
    assert_eq!(fs::read_to_string(dir.join("runner-installed.timestamp")).unwrap(), "garbage");
}

#[test]
fn an_image_a_job_or_a_plugin_planted_is_never_mounted() {
    require_bounded!("an_image_a_job_or_a_plugin_planted_is_never_mounted");
    let root = Bounded::new();
    // A real ext4 image, but made by "someone else": no mark.
    let planted = root.outside().join("planted.img");
    fs::File::create(&planted).unwrap().set_len(MIB).unwrap();
    let made = std::process::Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&planted).output().unwrap();
    assert!(made.status.success(), "{made:?}");
    // In a plain storage, as the image a moved bounded storage holds.
    root.valid_runner("r-plain");
    fs::copy(&planted, root.join("r-plain").join(bounded::IMAGE_IN_STORAGE)).unwrap();
    fs::write(root.join("r-plain").join("runner-installed.timestamp"), "garbage").unwrap();
    // In .images/, as a bounded storage's image.
    fs::create_dir(root.join(".images")).unwrap();
    fs::copy(&planted, bounded::image_path(root.path(), "r-fake")).unwrap();
    root.runner("r-fake");

    let (run, _) = collect_with(confined_plugin(), root.path(), &CollectOptions::events("small"));
    assert_eq!(run.kind("r-plain"), OutcomeKind::Quarantined, "{:?}", run.reports);
    assert_eq!(run.kind("r-fake"), OutcomeKind::Failed, "{:?}", run.reports);
    assert!(run.report("r-fake").detail.contains("not an image made by"), "{:?}", run.report("r-fake"));
    assert!(exists(&root.join("r-fake")), "failed and kept");
    let q = quarantined(&root, "r-plain");
    let location = q.location.file_name().unwrap().to_str().unwrap().to_owned();
    let contents = storage::quarantined_contents(root.path(), &location).unwrap();
    assert!(contents.iter().any(|c| c.name == bounded::IMAGE_IN_STORAGE), "listed as a file: {contents:?}");
    let restored = storage::restore(root.path(), &location).unwrap();
    assert!(!restored.bounded);
    assert_eq!(root.mounts(), Vec::<PathBuf>::new(), "nothing was ever mounted");
}

#[test]
fn without_the_confined_filesystem_bounded_storages_are_kept_not_extracted_twice() {
    require_bounded!("without_the_confined_filesystem_bounded_storages_are_kept_not_extracted_twice");
    let root = Bounded::new();
    let dir = root.create("r-kept");
    write_valid(&dir);
    let fallback =
        Plugin::open(&PluginOptions { cache_dir: Some(cache_dir()), filesystem: Layer::Wasi, ..Default::default() })
            .unwrap();
    for _ in 0..2 {
        let (run, lines) = collect_with(&fallback, root.path(), &CollectOptions::events("small"));
        assert_eq!(run.kind("r-kept"), OutcomeKind::Failed, "{:?}", run.reports);
        assert!(run.report("r-kept").detail.contains("openat2"), "{:?}", run.report("r-kept"));
        assert!(lines.is_empty(), "nothing is appended for it: {lines:?}");
    }
    assert!(dir.join("pre-job-metrics.json").is_file(), "still mounted, untouched");
}

#[test]
fn the_cli_creates_lists_and_deletes_bounded_storages_and_needs_root_to_create() {
    require_bounded!("the_cli_creates_lists_and_deletes_bounded_storages_and_needs_root_to_create");
    let root = Bounded::new();
    let created = output(
        cli()
            .args(["storage", "create", "--size", "1M", "--owner", "65534:65534", "--storage"])
            .arg(root.path())
            .arg("r-cli"),
    );
    assert_eq!(created.code, Some(0), "{created:?}");
    let dir = root.join("r-cli");
    let meta = fs::metadata(&dir).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "owned by the runner's user");
    let listed = output(cli().args(["storage", "list", "--json", "--storage"]).arg(root.path()));
    assert_eq!(listed.code, Some(0), "{listed:?}");
    assert_eq!(json(listed.stdout.trim())["bounded"], true, "{listed:?}");
    let deleted = output(cli().args(["storage", "delete", "--storage"]).arg(root.path()).arg("r-cli"));
    assert_eq!(deleted.code, Some(0), "{deleted:?}");
    assert!(!exists(&dir) && !exists(&bounded::image_path(root.path(), "r-cli")));
    assert_eq!(root.mounts(), Vec::<PathBuf>::new());

    for bad in ["0", "1X", "100", "2T"] {
        let refused = output(cli().args(["storage", "create", "--size", bad, "--storage"]).arg(root.path()).arg("r"));
        assert_eq!(refused.code, Some(2), "{bad}: {refused:?}");
    }

    // Without root: a clear error, nothing touched.
    let Some(_) = Path::new("/usr/bin/setpriv").exists().then_some(()) else {
        runner_metrics_test_skip::skip("bounded::storage create: the unprivileged half", "no setpriv");
        return;
    };
    let open = tempfile::Builder::new().prefix("runner-metrics-e2e-").tempdir().unwrap();
    let shared = open.path().join("root");
    fs::create_dir(&shared).unwrap();
    for p in [open.path(), &shared] {
        fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    }
    let binary = open.path().join("runner-metrics");
    fs::copy(cli_binary(), &binary).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&binary)
        .args(["storage", "create", "--size", "1M", "--storage"])
        .arg(&shared)
        .arg("r-unprivileged")
        .env("HOME", "/tmp")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
    assert_eq!(fs::read_dir(&shared).unwrap().count(), 0, "nothing was created");
}

#[test]
fn a_collect_that_cannot_unmount_keeps_bounded_storages_and_writes_nothing_for_them() {
    require_bounded!("a_collect_that_cannot_unmount_keeps_bounded_storages_and_writes_nothing_for_them");
    if !Path::new("/usr/bin/setpriv").exists() {
        runner_metrics_test_skip::skip(
            "bounded::a_collect_that_cannot_unmount_keeps_bounded_storages_and_writes_nothing_for_them",
            "no setpriv",
        );
        return;
    }
    let root = Bounded::new();
    let dir = root.create("r-stuck");
    write_valid(&dir);
    root.valid_runner("r-plain");
    let log = root.outside().join("log");
    // Root without CAP_SYS_ADMIN, as under a unit with an empty
    // CapabilityBoundingSet: the storage could be read but not moved out.
    let mut command = std::process::Command::new("setpriv");
    command.args(["--bounding-set=-sys_admin", "--"]).arg(cli_binary());
    command.arg("--cache-dir").arg(cache_dir()).env("RUNNER_METRICS_FILESYSTEM", "confined");
    command.args(["collect", "--flavor", "small", "--storage"]).arg(root.path()).arg("--metrics-log").arg(&log);
    let out = output(&mut command);
    assert_eq!(out.code, Some(1), "failed storages: {out:?}");
    assert!(out.stderr.contains("r-stuck") && out.stderr.contains("CAP_SYS_ADMIN"), "{}", out.stderr);
    let lines = fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), 3, "only the plain storage's lines: {lines}");
    assert!(dir.join("pre-job-metrics.json").is_file(), "kept, still mounted");
    assert!(!exists(&root.join("r-plain")));

    // With the capability, the next run takes it.
    let (run, lines) = collect_with(confined_plugin(), root.path(), &CollectOptions::events("small"));
    assert_eq!(run.kind("r-stuck"), OutcomeKind::Extracted, "{:?}", run.reports);
    assert_eq!(lines.len(), 3);
    assert_eq!(root.mounts(), Vec::<PathBuf>::new());
}

#[test]
fn list_mounts_nothing_while_a_run_holds_the_root() {
    require_bounded!("list_mounts_nothing_while_a_run_holds_the_root");
    let root = Bounded::new();
    let dir = root.create("r-wait");
    assert!(std::process::Command::new("umount").arg(&dir).status().unwrap().success());
    let lock = runner_metrics::RootLock::acquire(root.path(), std::time::Duration::ZERO).unwrap();
    let listed = storage::list(root.path()).unwrap();
    let error = listed[0].mount_error.as_deref().unwrap_or_default();
    assert!(error.contains("not mounted") && error.contains(".lock"), "{listed:?}");
    assert_eq!(root.mounts(), Vec::<PathBuf>::new(), "a collect may be moving it: left alone");
    drop(lock);
    let listed = storage::list(root.path()).unwrap();
    assert!(listed[0].bounded && listed[0].mount_error.is_none(), "{listed:?}");
    assert_eq!(root.mounts(), vec![dir.canonicalize().unwrap()]);
}

#[test]
fn a_busy_storage_quarantined_and_restored_is_collected_once_the_job_is_gone() {
    // Issue 24: quarantined while a process of its job still holds a file
    // (the mount detached lazily, the loop device alive), shown, restored:
    // it must not stay failed once the job is gone.
    require_bounded!("a_busy_storage_quarantined_and_restored_is_collected_once_the_job_is_gone");
    let root = Bounded::new();
    let dir = root.create("r-held");
    write_valid(&dir);
    fs::write(dir.join("runner-installed.timestamp"), "garbage").unwrap();
    let held = fs::File::open(dir.join("pre-job-metrics.json")).unwrap();
    let (run, _) = collect_with(confined_plugin(), root.path(), &CollectOptions::events("small"));
    assert_eq!(run.kind("r-held"), OutcomeKind::Quarantined, "{:?}", run.reports);
    let q = quarantined(&root, "r-held");
    let location = q.location.file_name().unwrap().to_str().unwrap().to_owned();

    // Shown while the job holds it: refused, saying why (mount(8) would
    // reuse the lingering loop device, mounted writable).
    let shown = output(cli().args(["quarantine", "show", "--json", "--storage"]).arg(root.path()).arg(&location));
    assert_eq!(shown.code, Some(2), "{shown:?}");
    assert!(shown.stderr.contains("still in use") && shown.stderr.contains("once the job is gone"), "{shown:?}");

    // Restored while held: back under its name, not mounted yet, and said.
    let restored = storage::restore(root.path(), &location).unwrap_err();
    assert!(restored.reason.contains("still in use") && restored.reason.contains("the storage is restored"));
    assert!(exists(&dir) && !exists(&q.location));
    assert_eq!(root.mounts(), Vec::<PathBuf>::new());

    // The job goes: the lazily detached mount and its loop device with it.
    drop(held);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !loop_devices_under(root.path()).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // `storage list` mounts it (a fresh loop device), the file is fixed, and
    // a collect extracts and removes it like any other.
    let listed = output(cli().args(["storage", "list", "--storage"]).arg(root.path()));
    assert_eq!(listed.code, Some(0), "{listed:?}");
    assert_eq!(root.mounts(), vec![dir.canonicalize().unwrap()]);
    fs::write(dir.join("runner-installed.timestamp"), "1700000060").unwrap();
    let (run, lines) = collect_with(confined_plugin(), root.path(), &CollectOptions::events("small"));
    assert_eq!(run.kind("r-held"), OutcomeKind::Extracted, "{:?}", run.reports);
    assert_eq!(lines.len(), 3);
    assert!(!exists(&dir));
    assert_eq!(root.mounts(), Vec::<PathBuf>::new());
}

#[test]
fn a_bounded_storage_bound_or_mounted_again_under_another_name_is_logged_once() {
    // Issue 24: a bind of a bounded storage, or its image mounted a second
    // time, on another runner's directory: one runner's files under two
    // names. Only its own name is extracted (once); the other is a mount
    // runner-metrics did not make, reported failed and never read.
    require_bounded!("a_bounded_storage_bound_or_mounted_again_under_another_name_is_logged_once");
    let root = Bounded::new();
    let own = root.create("r-own");
    write_valid(&own);
    let (bound, again) = (root.join("r-bound"), root.join("r-again"));
    fs::create_dir(&bound).unwrap();
    fs::create_dir(&again).unwrap();
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: NUL-terminated paths inside the test's root; undone by Bounded.
    let rc =
        unsafe { libc::mount(c(&own).as_ptr(), c(&bound).as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let image = bounded::image_path(root.path(), "r-own");
    let mounted =
        std::process::Command::new("mount").args(["-o", "nodev,nosuid,noexec"]).arg(&image).arg(&again).status();
    assert!(mounted.unwrap().success());
    let (lines, runs) = collect_thrice(&root, "confined");
    let lines = lines.len();
    assert_eq!(lines, 3, "r-own's events, once: {runs:#?}");
    for run in &runs {
        for name in ["r-bound", "r-again"] {
            let said = run.stderr.lines().find(|l| l.starts_with(&format!("failed: {name}: "))).unwrap_or_default();
            assert!(said.contains("not by runner-metrics"), "{name}: {run:?}");
        }
    }
    assert!(runs[0].stderr.contains("extracted: r-own"), "{:?}", runs[0]);
}
