//! The storage lifecycle a runner manager drives (spec 2): create a runner's
//! storage, list, get, delete it, quarantine it, and restore or purge
//! quarantined storages.
//!
//! These functions run on the host, with no sandbox, because they act on
//! names the *manager* chooses, never on names or content read from a
//! runner. They still treat everything below the root as hostile, since a
//! job may be writing into its storage while they run:
//!
//! * names are validated ([`is_valid_runner_name`]) before they are
//!   joined into a path; quarantine locations must be one plain component;
//! * a root entry is only acted on when `lstat` says it is a plain
//!   directory (a symlink is never followed, a file never touched);
//! * deletion first renames the storage into `<root>/.deleting/` (so the
//!   runner name is gone at once), then removes the tree with the guest
//!   crate's descriptor-relative walk ([`walk`], the same code the
//!   component runs): one component at a time relative to a held
//!   directory descriptor, `O_NOFOLLOW` everywhere, any depth. A symlink is
//!   unlinked, never followed, even if a job swaps a directory for a
//!   symlink mid-walk (a path-based walk would then delete through it);
//! * moves never replace an existing entry (`renameat2(RENAME_NOREPLACE)`
//!   on Linux).
//!
//! Every error names the path concerned and the reason.
//!
//! A storage is a plain directory or a bounded one (a mounted image,
//! [`bounded`]); every function here handles both.

pub mod bounded;
pub mod lock;
mod quarantine;
pub mod staging;

pub use quarantine::*;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use runner_metrics_core::fs::NativeDir;
use runner_metrics_core::walk::{self, DirHandle};
use serde::Serialize;

use runner_metrics_core::fs::{rename_noreplace, NativeFs};
/// Why a storage is quarantined: the model's (WIT) type.
pub use runner_metrics_core::model::QuarantineReason;
use runner_metrics_core::names::{entry_base, is_valid_runner_name};

use crate::lock::kind_of;

/// The file the manager writes when it creates a storage.
pub use runner_metrics_core::files::INSTALLATION_START as INSTALLATION_START_FILE;
/// The reserved root entries holding quarantined storages and storages on
/// their way out (the guest's names: one spelling for both sides).
pub use runner_metrics_core::names::{DELETING_DIR, QUARANTINE_DIR};
/// Suffix of the reason file beside each quarantined storage.
pub use runner_metrics_core::quarantine::REASON_SUFFIX;
/// A reason file larger than this is not one of ours and is not read.
pub const REASON_FILE_LIMIT: u64 = 16 * 1024;

/// What went wrong, broadly, so callers can react (e.g. to "exists").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The name or location is not acceptable; nothing was touched.
    InvalidName,
    /// The target already exists; nothing was touched.
    AlreadyExists,
    /// The storage or quarantine entry does not exist.
    NotFound,
    /// The path exists but is not a plain directory (a symlink, a file...).
    NotADirectory,
    /// A reason file is missing, unreadable or not ours.
    BadReasonFile,
    /// Any other I/O error.
    Io,
}

/// An error of a storage operation: the path it concerns and why.
#[derive(Debug)]
pub struct StorageError {
    pub kind: ErrorKind,
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for StorageError {}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

fn error(kind: ErrorKind, path: &Path, reason: impl Into<String>) -> StorageError {
    StorageError { kind, path: path.to_owned(), reason: reason.into() }
}

fn io_error(path: &Path, what: &str, e: &io::Error) -> StorageError {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        _ => ErrorKind::Io,
    };
    error(kind, path, format!("{what}: {e}"))
}

/// One runner storage under the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Storage {
    pub name: String,
    pub path: PathBuf,
    /// A mounted image ([`bounded`]) rather than a plain directory.
    pub bounded: bool,
    /// A bounded storage whose image could not be mounted, and why: its
    /// directory is empty until it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_error: Option<String>,
    /// Another filesystem is mounted on it, not by `runner-metrics` (see
    /// [`foreign_mount`]): never read or moved by a run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub foreign_mount: bool,
}

impl Storage {
    fn plain(name: &str, path: PathBuf) -> Self {
        Self { name: name.to_owned(), path, bounded: false, mount_error: None, foreign_mount: false }
    }
}

/// The storage root must exist and be a directory (the root itself is the
/// manager's configuration and may be reached through a symlink).
fn require_root(root: &Path) -> Result<()> {
    match fs::metadata(root) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(error(ErrorKind::NotADirectory, root, "the storage root is not a directory")),
        Err(e) => Err(io_error(root, "the storage root is not accessible", &e)),
    }
}

fn require_name(root: &Path, name: &str) -> Result<PathBuf> {
    let path = root.join(name);
    if !is_valid_runner_name(name) {
        return Err(error(
            ErrorKind::InvalidName,
            &path,
            format!("{name:?} is not a valid runner name (1-255 bytes of [A-Za-z0-9._-], not starting with '.')"),
        ));
    }
    Ok(path)
}

/// `lstat` says a plain directory (not a symlink to one).
fn require_plain_dir(path: &Path, what: &str) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(meta) => Err(error(
            ErrorKind::NotADirectory,
            path,
            format!("{what} is {}, not a plain directory; left alone", kind_of(&meta)),
        )),
        Err(e) => Err(io_error(path, &format!("{what} cannot be read"), &e)),
    }
}

/// Now as UNIX seconds (clamped at 0), and as `<secs>.<micros>` text.
fn now() -> (f64, String) {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    (since.as_secs_f64(), format!("{}.{:06}", since.as_secs(), since.subsec_micros()))
}

/// Creates `<root>/<name>/` and writes `runner-installation-start.timestamp`
/// (the current UNIX time, e.g. `1700000000.123456`). Fails, touching
/// nothing, if anything exists under that name (a dangling symlink too).
pub fn create(root: &Path, name: &str) -> Result<Storage> {
    let path = require_name(root, name)?;
    require_root(root)?;
    // mkdir(2) never follows a symlink in the last component: EEXIST.
    fs::create_dir(&path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => {
            error(ErrorKind::AlreadyExists, &path, "a storage (or another entry) with this name already exists")
        }
        _ => io_error(&path, "cannot create the storage directory", &e),
    })?;
    let (_, stamp) = now();
    if let Err(e) = write_atomically(&path, INSTALLATION_START_FILE, format!("{stamp}\n").as_bytes()) {
        // All or nothing: the directory is ours and holds at most our
        // temporary file, which write_atomically removed.
        let _ = fs::remove_dir(&path);
        return Err(e);
    }
    Ok(Storage::plain(name, path))
}

/// Writes `dir/file` through a temporary file in `dir` (created new, never
/// through a symlink), synced, then renamed over the target.
fn write_atomically(dir: &Path, file: &str, content: &[u8]) -> Result<()> {
    let target = dir.join(file);
    let temp = dir.join(format!(".{file}.tmp.{}", std::process::id()));
    let written = (|| -> io::Result<()> {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)?;
        out.write_all(content)?;
        out.sync_all()?;
        fs::rename(&temp, &target)?;
        File::open(dir)?.sync_all()
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&temp);
        io_error(&target, "cannot write", &e)
    })
}

/// The runner storages under `root`: entries with a valid runner name that
/// are plain directories, sorted by name. Anything else (files, symlinks,
/// invalid names, `.quarantine`, `.deleting`, `.images`) is left out.
/// Bounded storages whose mount is gone (a reboot) are mounted again first
/// ([`bounded::reattach_all`]); one that cannot be is listed with its
/// `mount_error`.
pub fn list(root: &Path) -> Result<Vec<Storage>> {
    require_root(root)?;
    let (reattached, failed) = bounded::reattach_all_if_free(root)?;
    let mut found = Vec::new();
    for entry in fs::read_dir(root).map_err(|e| io_error(root, "cannot list the storage root", &e))? {
        let entry = entry.map_err(|e| io_error(root, "cannot list the storage root", &e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if !is_valid_runner_name(&name) {
            continue;
        }
        let path = entry.path();
        if fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir()) {
            let mount_error = failed.iter().find(|(n, _)| *n == name).map(|(_, e)| e.to_string());
            let bounded = mount_error.is_some() || reattached.iter().any(|(n, _)| *n == name);
            let foreign_mount = !bounded && is_foreign_mount(root, &name);
            found.push(Storage { name, path, bounded, mount_error, foreign_mount });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// What a run says of a storage that is a mount it did not make.
pub const FOREIGN_MOUNT: &str = "another filesystem is mounted on this storage, not by runner-metrics (a tmpfs, a bind \
    mount, an image mounted by hand): never read, moved or deleted, so never logged twice; left in place for the operator \
    to unmount";

/// Whether the root entry `name` is a mount that `runner-metrics` did not
/// make: on another mount than the root (by mount id: a bind mount of the
/// same filesystem counts) and not a bounded storage of ours. The confined
/// filesystem never enters one, so a run reports it failed and keeps it.
pub fn is_foreign_mount(root: &Path, name: &str) -> bool {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let (Ok(root_fd), true) = (rustix::fs::open(root, flags, Mode::empty()), is_valid_runner_name(name)) else {
        return false;
    };
    let Ok(dir) = rustix::fs::openat(&root_fd, name, flags | OFlags::NOFOLLOW, Mode::empty()) else { return false };
    let mounts = (runner_metrics_core::fs::mount_of(&root_fd), runner_metrics_core::fs::mount_of(&dir));
    matches!(mounts, (Some(a), Some(b)) if a != b) && !bounded::is_own_mount(root, name)
}

/// The root entries that are mounts `runner-metrics` did not make
/// ([`is_foreign_mount`]).
pub fn foreign_mounts(root: &Path) -> Result<Vec<String>> {
    let listing = fs::read_dir(root).map_err(|e| io_error(root, "cannot list the storage root", &e))?;
    let mut found = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| io_error(root, "cannot list the storage root", &e))?;
        if let Some(name) = entry.file_name().to_str().filter(|name| is_foreign_mount(root, name)) {
            found.push(name.to_owned());
        }
    }
    Ok(found)
}

/// The storage `name`, if it exists as a plain directory (a bounded one is
/// mounted again first if its mount is gone; `Err` if that fails).
pub fn get(root: &Path, name: &str) -> Result<Storage> {
    let path = require_name(root, name)?;
    let bounded = bounded::reattach_if_free(root, name)?.is_some();
    require_plain_dir(&path, "the storage")?;
    Ok(Storage { bounded, ..Storage::plain(name, path) })
}

/// What [`delete`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// The storage is gone.
    Deleted,
    /// The storage was moved out of the runner namespace but could not be
    /// removed; it was quarantined as `undeletable` under this location.
    Quarantined { location: String, detail: String },
}

/// Deletes the storage `name` without following any symlink: renamed into
/// `<root>/.deleting/` first (atomic: the runner name is free at once), then
/// removed. If the tree cannot be removed, it is quarantined as
/// `undeletable` (as the guest does), so nothing is ever left half-deleted
/// under a runner name. `Err` means the storage is still in place.
pub fn delete(root: &Path, name: &str) -> Result<Deletion> {
    let path = require_name(root, name)?;
    require_plain_dir(&path, "the storage")?;
    let deleting = ensure_reserved_dir(root, DELETING_DIR)?;
    let base = entry_base(name, now().0);
    let doomed = bounded::move_out(root, name, || move_to_free_name(&path, &deleting, &base))??;
    let doomed_path = deleting.join(&doomed);
    match remove_entry_at(&deleting, &doomed) {
        Ok(()) => Ok(Deletion::Deleted),
        Err(e) => {
            let detail = format!("could not be deleted: {e}");
            match quarantine_path(root, &doomed_path, name, QuarantineReason::Undeletable, None, &detail) {
                Ok(location) => Ok(Deletion::Quarantined { location, detail }),
                Err(q) => Err(error(
                    ErrorKind::Io,
                    &doomed_path,
                    format!(
                        "moved here but could not be deleted ({e}) nor quarantined ({q}); the next collect retries"
                    ),
                )),
            }
        }
    }
}

/// Renames `source` into `dir` as `base`, or `base.1`, `base.2`...: the
/// first name not taken. Returns the name used.
fn move_to_free_name(source: &Path, dir: &Path, base: &str) -> Result<String> {
    for attempt in 0..100u32 {
        let candidate = match attempt {
            0 => base.to_owned(),
            n => format!("{base}.{n}"),
        };
        match rename_noreplace(source, &dir.join(&candidate)) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(io_error(source, &format!("cannot move it to {}", dir.join(&candidate).display()), &e))
            }
        }
    }
    Err(error(ErrorKind::Io, dir, format!("no free name for {base:?}")))
}

/// The core's filesystem over `root`, making new files through a
/// confined run's staging directory: for the core's quarantine writer and
/// reason-file reader.
fn native_fs(root: &Path) -> NativeFs {
    NativeFs::new(root).creating_files_with(staging::create_new_file)
}

/// Makes sure `<root>/<dir>` exists and is a plain directory.
fn ensure_reserved_dir(root: &Path, dir: &str) -> Result<PathBuf> {
    let path = root.join(dir);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => return Ok(path),
        Ok(meta) => {
            return Err(error(ErrorKind::NotADirectory, &path, format!("is {}, not a directory", kind_of(&meta))))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&path, "cannot be read", &e)),
    }
    match fs::create_dir(&path) {
        Ok(()) => Ok(path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            require_plain_dir(&path, "reserved directory")?;
            Ok(path)
        }
        Err(e) => Err(io_error(&path, "cannot create", &e)),
    }
}

// ---------------------------------------------------------------------------
// Descriptor-relative removal
// ---------------------------------------------------------------------------

/// Removes the entry `name` of the directory `parent` (a file, symlink or
/// whole tree), never following a symlink, with the one walk the guest
/// uses too ([`walk::remove_tree`], over Linux descriptors): see its
/// documentation for why each step is safe while a job changes the tree.
/// `parent` must be one of our reserved directories (`.deleting/`): the
/// walk moves too-deep directories out to it.
pub fn remove_entry_at(parent: &Path, name: &str) -> Result<()> {
    let top = NativeDir::open(parent).map_err(|e| io_error(parent, "cannot open", &e))?;
    let path = parent.join(name);
    walk::remove_tree(&top, &NativeDir::name_from(name))
        .map_err(|e| error(ErrorKind::Io, &path, format!("cannot remove: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_take_units() {
        assert_eq!(parse_age("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_age("0"), Ok(Duration::ZERO));
        for bad in ["", "x", "-1", "1y", "1e400", "h"] {
            assert!(parse_age(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn locations_are_single_plain_components() {
        let root = Path::new("/nonexistent-root");
        assert!(require_location(root, "r-1.1700000000.123456").is_ok());
        for bad in ["", "..", ".hidden", "a/b", "../etc", "r.reason.json", "a\nb"] {
            assert_eq!(require_location(root, bad).unwrap_err().kind, ErrorKind::InvalidName, "{bad:?}");
        }
    }
}
