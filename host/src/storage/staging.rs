//! Where a confined run makes its new files (issue 24): a directory of its
//! own, `<root>/.writing/<pid>.<nanos>/`, the one place beneath the root
//! where Landlock lets the process open a file for writing.
//!
//! Landlock has no "create only" right, and its grants cover whole
//! hierarchies: a root granted `WriteFile` would let code that escaped the
//! WebAssembly sandbox rewrite any runner's files and, worse, the images of
//! bounded storages that the kernel later mounts as root. So the root is
//! granted without it, and the guest's one kind of write (a new file,
//! `CREATE | EXCLUSIVE`: a reason file, a pulled runner's files) is made
//! here and moved to its name at once with `RENAME_NOREPLACE`, keeping the
//! descriptor that was opened for writing. Landlock lets a file move only
//! where it gains no right, so nothing can be moved *into* this directory
//! to be written, and what leaves it cannot be opened for writing again.
//!
//! The directory is made fresh by each run (`mkdir`, before confinement,
//! under the root's lock), never reused: an entry an escaped guest renamed
//! to `.writing/...` is never granted anything. The directories of earlier
//! runs are removed, with the files a killed run left in them; anything
//! else there is left alone (the guest treats `.writing` as reserved,
//! never as a storage).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use anyhow::{Context, Result};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

pub use runner_metrics_core::names::WRITING_DIR;

/// The staging directory of this process's run while its owner keeps it.
static INSTALLED: Mutex<Weak<Staging>> = Mutex::new(Weak::new());

/// A fresh directory of one run, and the root it belongs to.
#[derive(Debug)]
pub struct Staging {
    dir: OwnedFd,
    /// `.writing` and the root, to remove both directories when the run
    /// is done.
    writing: OwnedFd,
    root_fd: OwnedFd,
    name: String,
    path: PathBuf,
    /// `(st_dev, st_ino)` of the root: a guest's filesystem over another
    /// root does not use it.
    root: (u64, u64),
    next: AtomicU64,
}

impl Staging {
    /// Makes `<root>/.writing/<pid>.<nanos>/` (and `.writing` if missing),
    /// after removing the empty ones of earlier runs. Call it holding the
    /// root's lock, before confinement.
    pub fn create(root: &Path) -> Result<Self> {
        Self::create_with_retries(root, 3)
    }

    fn create_with_retries(root: &Path, retries: u32) -> Result<Self> {
        let writing_path = root.join(WRITING_DIR);
        let root_fd = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .with_context(|| format!("opening the storage root {}", root.display()))?;
        match rustix::fs::mkdirat(&root_fd, WRITING_DIR, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", writing_path.display())),
        }
        let writing = open_dir(&root_fd, WRITING_DIR)
            .with_context(|| format!("opening {} (it must be a directory, not a symlink)", writing_path.display()))?;
        remove_earlier_runs(&writing);
        let pid = std::process::id();
        for attempt in 0..100u32 {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            let name = format!("{pid}.{nanos}.{attempt}");
            match rustix::fs::mkdirat(&writing, name.as_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) => {}
                Err(Errno::EXIST) => continue,
                // The run before removed `.writing` as it ended, just after
                // it was opened here: made again.
                Err(Errno::NOENT) if retries > 0 => return Self::create_with_retries(root, retries - 1),
                Err(e) => return Err(e).with_context(|| format!("creating {}", writing_path.join(&name).display())),
            }
            let path = writing_path.join(&name);
            let dir = open_dir(&writing, &name).with_context(|| format!("opening {}", path.display()))?;
            let stat = rustix::fs::fstat(&root_fd)?;
            #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
            let root = (stat.st_dev as u64, stat.st_ino as u64);
            return Ok(Self { dir, writing, root_fd, name, path, root, next: AtomicU64::new(0) });
        }
        anyhow::bail!("no free name for a staging directory in {}", writing_path.display())
    }

    /// The directory, for the Landlock rule that lets files in it be
    /// written.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the new file `leaf` (one plain name) in the directory
    /// `parent`: opened here with `flags` (which hold `CREATE | EXCL`),
    /// then moved to its name, never over an existing entry (`EEXIST`, as
    /// `O_EXCL` says). The descriptor keeps the access it was opened with.
    pub fn create_in(&self, parent: BorrowedFd<'_>, leaf: &str, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        let temporary = format!("{}", self.next.fetch_add(1, Ordering::Relaxed));
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.dir, temporary.as_str(), flags, mode)?;
        match rustix::fs::renameat_with(&self.dir, temporary.as_str(), parent, leaf, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(fd),
            Err(e) => {
                let _ = rustix::fs::unlinkat(&self.dir, temporary.as_str(), AtFlags::empty());
                Err(e)
            }
        }
    }

    /// Makes this the staging directory of the guest filesystems that
    /// [`crate::confined_fs::ConfinedFsCtx::new`] opens over its root from now on, for
    /// as long as the returned handle (or a filesystem using it) lives.
    pub fn install(self) -> Arc<Self> {
        let staging = Arc::new(self);
        *INSTALLED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::downgrade(&staging);
        staging
    }
}

impl Drop for Staging {
    /// The run is done: its staging directory (empty: every file made
    /// there was moved to its name) is removed, then `.writing` if nothing
    /// else is in it.
    fn drop(&mut self) {
        let _ = rustix::fs::unlinkat(&self.writing, self.name.as_str(), AtFlags::REMOVEDIR);
        let _ = rustix::fs::unlinkat(&self.root_fd, WRITING_DIR, AtFlags::REMOVEDIR);
    }
}

/// Creates the new file `dir/name` for writing (never through a symlink,
/// never over an existing entry): made in the installed staging directory
/// and moved there when a confined run has one, else in place. The host's
/// own writer beneath the root (a reason file of `storage delete`).
pub fn create_new_file(dir: &Path, name: &str) -> std::io::Result<std::fs::File> {
    let dir = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mode = Mode::from_raw_mode(0o644);
    let installed = INSTALLED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).upgrade();
    let fd = match installed {
        Some(staging) => staging.create_in(dir.as_fd(), name, flags, mode)?,
        None => rustix::fs::openat(&dir, name, flags, mode)?,
    };
    Ok(fd.into())
}

/// The installed staging directory, if it belongs to the root `root`.
pub(crate) fn for_root(root: BorrowedFd<'_>) -> Option<Arc<Staging>> {
    let installed = INSTALLED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).upgrade()?;
    let stat = rustix::fs::fstat(root).ok()?;
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    let id = (stat.st_dev as u64, stat.st_ino as u64);
    (installed.root == id).then_some(installed)
}

/// A directory beneath `dir`, never through a symlink.
fn open_dir(dir: &OwnedFd, name: &str) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Removes the directories of earlier runs in `writing`, with the files a
/// run killed between making a file and moving it left behind. Only
/// regular files are removed (never through a symlink: each directory is
/// opened with `O_NOFOLLOW`), and only directories that are then empty: an
/// entry holding anything else stays. (What could be moved in here, only a
/// process that may already remove any file beneath the root could move.)
fn remove_earlier_runs(writing: &OwnedFd) {
    for name in entries(writing) {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if let Ok(dir) = rustix::fs::openat(writing, name.as_c_str(), flags, Mode::empty()) {
            for file in entries(&dir) {
                let is_file = rustix::fs::statat(&dir, file.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file());
                if is_file {
                    let _ = rustix::fs::unlinkat(&dir, file.as_c_str(), AtFlags::empty());
                }
            }
        }
        let _ = rustix::fs::unlinkat(writing, name.as_c_str(), AtFlags::REMOVEDIR);
    }
}

/// The names in a directory but `.` and `..`.
fn entries(dir: &OwnedFd) -> Vec<std::ffi::CString> {
    let Ok(listing) = rustix::fs::Dir::read_from(dir) else { return Vec::new() };
    listing
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_owned())
        .filter(|name| name.to_bytes() != b"." && name.to_bytes() != b"..")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_run_gets_a_fresh_directory_and_old_empty_ones_go() {
        let root = tempfile::tempdir().unwrap();
        let first = Staging::create(root.path()).unwrap();
        let second = Staging::create(root.path()).unwrap();
        assert_ne!(first.path(), second.path());
        assert!(!first.path().exists(), "the first run's empty directory was removed");
        // A run killed between making a file and moving it: its file and
        // directory go with the next run.
        let killed = root.path().join(WRITING_DIR).join("1.2.0");
        std::fs::create_dir(&killed).unwrap();
        std::fs::write(killed.join("0"), "").unwrap();
        // A directory someone put there with a directory in it stays, and
        // is never the one handed out.
        let planted = root.path().join(WRITING_DIR).join("planted");
        std::fs::create_dir_all(planted.join("inner")).unwrap();
        let third = Staging::create(root.path()).unwrap();
        assert!(!killed.exists());
        assert!(planted.join("inner").exists());
        assert_ne!(third.path(), planted);
        assert_eq!(std::fs::read_dir(third.path()).unwrap().count(), 0);
        // Done: its directory goes; `.writing` stays while it holds the
        // planted one, and goes with the last run once it is empty.
        let path = third.path().to_owned();
        drop(third);
        assert!(!path.exists());
        assert!(planted.exists());
        std::fs::remove_dir_all(&planted).unwrap();
        drop(Staging::create(root.path()).unwrap());
        assert!(!root.path().join(WRITING_DIR).exists());
    }

    #[test]
    fn a_symlinked_writing_dir_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.path().join(WRITING_DIR)).unwrap();
        let error = Staging::create(root.path()).unwrap_err();
        assert!(format!("{error:#}").contains(".writing"), "{error:#}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn a_new_file_lands_at_its_name_and_never_replaces_one() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("r-1")).unwrap();
        let staging = Staging::create(root.path()).unwrap();
        let dir = rustix::fs::open(root.path().join("r-1"), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        let fd = staging.create_in(dir.as_fd(), "reason.json", flags, Mode::from_raw_mode(0o644)).unwrap();
        rustix::io::write(&fd, b"{}").unwrap();
        assert_eq!(std::fs::read(root.path().join("r-1/reason.json")).unwrap(), b"{}");
        let again = staging.create_in(dir.as_fd(), "reason.json", flags, Mode::from_raw_mode(0o644));
        assert_eq!(again.unwrap_err(), Errno::EXIST);
        assert_eq!(std::fs::read(root.path().join("r-1/reason.json")).unwrap(), b"{}");
        // Not over a symlink either (it is an entry).
        std::os::unix::fs::symlink("reason.json", root.path().join("r-1/link")).unwrap();
        assert_eq!(
            staging.create_in(dir.as_fd(), "link", flags, Mode::from_raw_mode(0o644)).unwrap_err(),
            Errno::EXIST
        );
        assert_eq!(std::fs::read_dir(staging.path()).unwrap().count(), 0, "nothing stays behind");
    }
}
