//! One run per storage root at a time (spec 7): an advisory lock on
//! `<root>/.lock`, held for as long as a run may change anything in the
//! root.
//!
//! Why a lock at all: two collects over the same root (a cron run that
//! outlives its interval, two managers by mistake) both list the same
//! storages. Both extract a storage before either deletes it, so its events
//! are written twice, and the slower one then fails to delete what the other
//! already removed and keeps reporting false `failed` lines. Nothing in the
//! pipeline can tell such a race from a real failure, so runs are kept apart
//! instead: [`collect`](crate::collect::collect) takes this lock before it
//! touches anything (embedders get it too), and the CLI also takes it for
//! `storage delete` and `quarantine restore|purge`.
//!
//! How:
//! * `flock(LOCK_EX | LOCK_NB)` on a file the project owns. Names starting
//!   with `.` are the project's (no runner can have one), and the root itself
//!   is the manager's: a job cannot create, replace or remove `.lock`.
//!   Locking a dedicated file rather than the root directory keeps out of
//!   the way of an operator who serialises the cron line itself with
//!   `flock(1)` on the root.
//! * Opened with `O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`, mode 0600,
//!   and `fstat`ed: a symlink, FIFO, device or directory in its place is an
//!   error naming the path and what it is, never followed, never waited on.
//! * The holder writes its pid into the file (truncate, then write), so a run
//!   that finds the lock taken can say who holds it.
//! * Flock locks belong to the open file and go away when the holder exits,
//!   even on SIGKILL: a crashed run never leaves a stale lock, only a stale
//!   pid in a file nobody holds.
//! * The file exists only while a run holds it: the holder removes it
//!   (still holding the lock) when it is done, so a root looks the same
//!   before and after a run. A run that gets the lock on a file that was
//!   removed meanwhile (it opened the old one just before the holder
//!   removed it) sees that the name no longer leads to the file it locked,
//!   and starts again; so two runs can never hold locks on two different
//!   files.
//! * Waiting is polling with `LOCK_NB` every [`POLL_INTERVAL`] up to the
//!   caller's limit, never a blocking `flock`, so the limit holds.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lock file's name in the storage root: a reserved name the guest's
/// scan passes over (one spelling for both).
pub use runner_metrics_core::names::LOCK_FILE;

/// How often a waiting run tries the lock again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Why the lock could not be taken. Callers can tell a busy root from a
/// broken one with `anyhow::Error::downcast_ref::<LockError>()`.
#[derive(Debug)]
pub enum LockError {
    /// Another run holds the lock, and it was not released within the wait.
    Busy {
        /// The lock file.
        path: PathBuf,
        /// The pid the holder wrote into the lock file, if it could be read.
        holder_pid: Option<u32>,
        /// How long this run waited.
        waited: Duration,
    },
    /// Something other than a regular file is where the lock file belongs.
    NotRegularFile { path: PathBuf, kind: &'static str },
    /// The lock file could not be opened, locked or written.
    Io { path: PathBuf, action: &'static str, source: io::Error },
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Busy { path, holder_pid, waited } => {
                let holder = match holder_pid {
                    Some(pid) => format!("another run (pid {pid})"),
                    None => "another run (pid unknown)".to_owned(),
                };
                write!(
                    f,
                    "the storage root is busy: {holder} holds the lock {}; gave up after waiting {:.1}s",
                    path.display(),
                    waited.as_secs_f64()
                )
            }
            LockError::NotRegularFile { path, kind } => {
                write!(f, "lock file {}: is {kind}, not a regular file", path.display())
            }
            LockError::Io { path, action, source } => write!(f, "lock file {}: {action}: {source}", path.display()),
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The held lock of one storage root; released (and its file removed) when
/// dropped.
#[derive(Debug)]
pub struct RootLock {
    file: File,
    root: PathBuf,
    path: PathBuf,
}

impl RootLock {
    /// Takes the lock of `root`, waiting at most `wait` for another run to
    /// release it. `root` is canonicalized first, so every spelling of one
    /// root finds the same lock.
    pub fn acquire(root: &Path, wait: Duration) -> Result<RootLock, LockError> {
        let root = root.canonicalize().map_err(|source| LockError::Io {
            path: root.join(LOCK_FILE),
            action: "resolving the storage root",
            source,
        })?;
        let path = root.join(LOCK_FILE);
        let started = Instant::now();
        loop {
            let file = open_lock_file(&path)?;
            let busy = match try_flock(&file) {
                Ok(()) => {
                    // Still the file the name leads to? (The previous holder
                    // may have removed it between our open and our lock.)
                    if same_file(&file, &path)? {
                        let lock = RootLock { file, root, path };
                        lock.write_pid()?;
                        return Ok(lock);
                    }
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                Err(source) => return Err(LockError::Io { path, action: "locking", source }),
            };
            if !busy {
                continue; // a fresh file: try again at once
            }
            let waited = started.elapsed();
            if waited >= wait {
                let holder_pid = read_pid(&file);
                return Err(LockError::Busy { path, holder_pid, waited });
            }
            drop(file);
            std::thread::sleep(POLL_INTERVAL.min(wait - waited));
        }
    }

    /// The canonical storage root this lock is for.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_pid(&self) -> Result<(), LockError> {
        let io = |action, source| LockError::Io { path: self.path.clone(), action, source };
        let mut file = &self.file;
        file.set_len(0).map_err(|e| io("truncating", e))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| io("writing the pid", e))?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(|e| io("writing the pid", e))
    }
}

impl Drop for RootLock {
    fn drop(&mut self) {
        // Removed while still held, and only if the name still leads to our
        // file: a waiter that locks the removed file notices and starts over.
        if same_file(&self.file, &self.path).unwrap_or(false) {
            let _ = std::fs::remove_file(&self.path);
        }
        // Closing the file (after this) releases the lock.
    }
}

/// `O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`, mode 0600, and
/// only a regular file.
fn open_lock_file(path: &Path) -> Result<File, LockError> {
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        // O_NOFOLLOW on a symlink: ELOOP. Say what is there instead.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(LockError::NotRegularFile { path: path.to_owned(), kind: "a symlink" })
        }
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
            return Err(LockError::NotRegularFile { path: path.to_owned(), kind: "a directory" })
        }
        Err(source) => return Err(LockError::Io { path: path.to_owned(), action: "opening", source }),
    };
    let meta = file.metadata().map_err(|source| LockError::Io { path: path.to_owned(), action: "fstat", source })?;
    if !meta.is_file() {
        return Err(LockError::NotRegularFile { path: path.to_owned(), kind: kind_of(&meta) });
    }
    Ok(file)
}

/// `flock(LOCK_EX | LOCK_NB)`, retried on EINTR.
fn try_flock(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: the descriptor is open for the lifetime of `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether `path` (not followed) is the file `file` has open.
fn same_file(file: &File, path: &Path) -> Result<bool, LockError> {
    let ours = file.metadata().map_err(|source| LockError::Io { path: path.to_owned(), action: "fstat", source })?;
    match std::fs::symlink_metadata(path) {
        Ok(named) => Ok(named.dev() == ours.dev() && named.ino() == ours.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(LockError::Io { path: path.to_owned(), action: "lstat", source }),
    }
}

/// The pid the holder wrote, if the file holds one (at most 32 bytes read).
fn read_pid(file: &File) -> Option<u32> {
    let mut text = String::new();
    let mut file = file;
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse::<u32>().ok().filter(|pid| *pid > 0)
}

/// What a file is, for messages: "a FIFO", "a directory", ...
pub fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symlink"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_busy_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = RootLock::acquire(dir.path(), Duration::ZERO).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        let started = Instant::now();
        let error = RootLock::acquire(dir.path(), Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(200), "waited");
        match &error {
            LockError::Busy { path, holder_pid, .. } => {
                assert_eq!(path, &held.path);
                assert_eq!(*holder_pid, Some(std::process::id()));
            }
            other => panic!("{other}"),
        }
        let message = error.to_string();
        assert!(message.contains(&held.path.display().to_string()), "{message}");
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        drop(held);
        assert!(!dir.path().join(LOCK_FILE).exists(), "removed on release");
        let again = RootLock::acquire(dir.path(), Duration::ZERO).unwrap();
        assert_eq!(again.root(), dir.path().canonicalize().unwrap());
    }

    #[test]
    fn a_waiter_gets_the_lock_once_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let held = RootLock::acquire(dir.path(), Duration::ZERO).unwrap();
        let root = dir.path().to_owned();
        let waiter =
            std::thread::spawn(move || RootLock::acquire(&root, Duration::from_secs(10)).map(|l| l.path().to_owned()));
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
        let path = waiter.join().unwrap().expect("the waiter gets the lock");
        assert_eq!(path, dir.path().canonicalize().unwrap().join(LOCK_FILE));
    }

    #[test]
    fn a_symlink_fifo_or_directory_in_its_place_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(LOCK_FILE);
        let target = dir.path().join("target");
        std::fs::write(&target, "x").unwrap();
        std::os::unix::fs::symlink(&target, &lock).unwrap();
        let e = RootLock::acquire(dir.path(), Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("is a symlink"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "x", "never followed");
        std::fs::remove_file(&lock).unwrap();

        let c = std::ffi::CString::new(lock.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = RootLock::acquire(dir.path(), Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("is a FIFO, not a regular file"), "{e}");
        std::fs::remove_file(&lock).unwrap();

        std::fs::create_dir(&lock).unwrap();
        let e = RootLock::acquire(dir.path(), Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        assert!(e.to_string().contains(&lock.display().to_string()), "{e}");
    }
}
