//! Which runners a directory of pulled runners has already ingested
//! (`<dir>/.ingested/<runner>`), so that a runner's events reach the log
//! once: two ingests of one name at once (the root's lock puts them one
//! after the other) or a manager's retry after a timeout find the first
//! one's entry and log nothing.
//!
//! One empty file per runner, whose modification time is when it was
//! ingested (made without being opened for writing: a confined ingest may
//! write no file beneath the root but in its staging directory);
//! entries older than the retention are removed by a record at most once
//! an hour, so the ledger holds about the runners of one retention window
//! and an ingest does not read all of it. Written only
//! after the runner's report is final (extracted, no data or quarantined)
//! and its events are synced: a crash between the two can at worst let a
//! retry log the runner again, never lose it. A failed (kept) runner gets
//! no entry: it stays staged, and `collect --storage DIR` takes it.
//!
//! Every name is a valid runner name before it is joined (spec 2), every
//! open is relative to the ledger directory's descriptor, never follows a
//! symlink and never blocks on a FIFO.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use runner_metrics_core::names::is_valid_runner_name;
pub use runner_metrics_core::names::INGESTED_DIR;

pub use crate::collect_options::DEFAULT_RETENTION;

/// The ledger's own stamp (not a runner name: names starting with `.` are
/// never runners'), touched at each expiry: old entries are looked for at
/// most once per [`EXPIRE_EVERY`], so an ingest does not read the whole
/// ledger of a large fleet every time.
const EXPIRED_STAMP: &str = ".expired";
const EXPIRE_EVERY: Duration = Duration::from_secs(3600);

/// Returned (as the error of an ingest) when the runner is in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlreadyIngested {
    pub runner: String,
    pub dir: PathBuf,
    /// When it was ingested, in UNIX seconds.
    pub at: u64,
    pub retention: Duration,
}

impl std::fmt::Display for AlreadyIngested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} was already ingested into {} at {} (UNIX time; remembered for {}s): nothing logged again",
            self.runner,
            self.dir.display(),
            self.at,
            self.retention.as_secs()
        )
    }
}

impl std::error::Error for AlreadyIngested {}

/// The ledger of one directory of pulled runners; used under its lock.
pub struct Ledger {
    root: PathBuf,
    retention: Duration,
}

impl Ledger {
    /// `retention` zero turns the ledger off: nothing is looked up or kept.
    pub fn new(root: &Path, retention: Duration) -> Self {
        Self { root: root.to_owned(), retention }
    }

    fn dir_path(&self) -> PathBuf {
        self.root.join(INGESTED_DIR)
    }

    /// `Err(AlreadyIngested)` when `runner` was ingested within the
    /// retention; `Ok` when it was not (or the ledger is off). A name that
    /// is not a runner's is never in the ledger (the keeper refuses it).
    pub fn check(&self, runner: &str) -> Result<()> {
        if self.retention.is_zero() || !is_valid_runner_name(runner) {
            return Ok(());
        }
        let Some(dir) = self.open_dir(false)? else { return Ok(()) };
        match read_entry(&dir, runner).with_context(|| format!("reading {}", self.dir_path().join(runner).display()))? {
            Some(at) if now().saturating_sub(at) < self.retention.as_secs() => Err(AlreadyIngested {
                runner: runner.to_owned(),
                dir: self.root.clone(),
                at,
                retention: self.retention,
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// Records `runner` as ingested now, durably (the entry's data, then
    /// the directory), and, once an hour, removes the entries past the
    /// retention.
    pub fn record(&self, runner: &str) -> Result<()> {
        if self.retention.is_zero() {
            return Ok(());
        }
        anyhow::ensure!(is_valid_runner_name(runner), "{runner:?} is not a valid runner name");
        let path = self.dir_path();
        let dir = self.open_dir(true)?.with_context(|| format!("creating {}", path.display()))?;
        if self.expiry_due(&dir) {
            self.expire(&dir).with_context(|| format!("removing old entries of {}", path.display()))?;
        }
        let write = || -> rustix::io::Result<()> {
            // Made anew: the entry of an earlier ingest past the retention
            // is replaced, so its time is now.
            let _ = rustix::fs::unlinkat(&dir, runner, AtFlags::empty());
            rustix::fs::openat(&dir, runner, NEW_ENTRY, Mode::from_raw_mode(0o644))?;
            rustix::fs::fsync(&dir)
        };
        write().with_context(|| format!("recording {} as ingested", path.join(runner).display()))
    }

    /// The ledger directory, opened without following a symlink; created
    /// (one level) when `create`, else `None` when it does not exist.
    fn open_dir(&self, create: bool) -> Result<Option<OwnedFd>> {
        let path = self.dir_path();
        let root = rustix::fs::open(&self.root, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .with_context(|| format!("opening {}", self.root.display()))?;
        if create {
            match rustix::fs::mkdirat(&root, INGESTED_DIR, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(std::io::Error::from(e)).with_context(|| format!("creating {}", path.display())),
            }
        }
        let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
        match rustix::fs::openat(&root, INGESTED_DIR, flags, Mode::empty()) {
            Ok(dir) => Ok(Some(dir)),
            Err(Errno::NOENT) if !create => Ok(None),
            Err(Errno::NOTDIR | Errno::LOOP) => {
                anyhow::bail!("{} is not a directory (a symlink or a file): refusing to use it", path.display())
            }
            Err(e) => Err(std::io::Error::from(e)).with_context(|| format!("opening {}", path.display())),
        }
    }

    /// Whether the last expiry is older than [`EXPIRE_EVERY`] (or there
    /// was none); if so the stamp is set to now.
    fn expiry_due(&self, dir: &OwnedFd) -> bool {
        let last = rustix::fs::statat(dir, EXPIRED_STAMP, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .and_then(|stat| u64::try_from(stat.st_mtime).ok());
        if last.is_some_and(|last| now().saturating_sub(last) < EXPIRE_EVERY.as_secs()) {
            return false;
        }
        let _ = rustix::fs::unlinkat(dir, EXPIRED_STAMP, AtFlags::empty());
        let _ = rustix::fs::openat(dir, EXPIRED_STAMP, NEW_ENTRY, Mode::from_raw_mode(0o644));
        true
    }

    /// Removes the entries older than the retention (and any entry that
    /// is not a runner name's regular file with a time in it).
    fn expire(&self, dir: &OwnedFd) -> Result<()> {
        let oldest = now().saturating_sub(self.retention.as_secs());
        let listing = rustix::fs::Dir::read_from(dir)?;
        let mut expired = Vec::new();
        for entry in listing {
            let entry = entry?;
            let Ok(name) = entry.file_name().to_str() else { continue };
            if name == "." || name == ".." || name == EXPIRED_STAMP {
                continue;
            }
            let keep = is_valid_runner_name(name) && matches!(read_entry(dir, name), Ok(Some(at)) if at >= oldest);
            if !keep {
                expired.push(name.to_owned());
            }
        }
        for name in expired {
            match rustix::fs::unlinkat(dir, name.as_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                // A directory someone made there is not ours to remove.
                Err(Errno::ISDIR | Errno::PERM) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// How an entry (or the stamp) is made: a new empty file, opened only to
/// create it.
const NEW_ENTRY: OFlags =
    OFlags::RDONLY.union(OFlags::CREATE).union(OFlags::EXCL).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// When an entry was made (its modification time); `None` when there is
/// none, or it is not a regular file (such an entry does not count).
fn read_entry(dir: &OwnedFd, runner: &str) -> std::io::Result<Option<u64>> {
    let stat = match rustix::fs::statat(dir, runner, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file() {
        return Ok(None);
    }
    Ok(u64::try_from(stat.st_mtime).ok())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_runner_is_refused_within_the_retention_only() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path(), DEFAULT_RETENTION);
        ledger.check("r-1").expect("nothing recorded yet");
        ledger.record("r-1").unwrap();
        let refused = ledger.check("r-1").unwrap_err();
        let already = refused.downcast_ref::<AlreadyIngested>().expect("AlreadyIngested");
        assert_eq!(already.runner, "r-1");
        ledger.check("r-2").expect("another runner");

        // Past the retention: an old entry no longer counts, and the next
        // expiry removes it (at most one an hour: the first record made
        // one, so the stamp is set back to let the next one run).
        let old = std::fs::File::create(dir.path().join(INGESTED_DIR).join("r-old")).unwrap();
        old.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1000)).unwrap();
        ledger.check("r-old").expect("ingested long ago");
        ledger.record("r-2").unwrap();
        assert!(dir.path().join(INGESTED_DIR).join("r-old").exists(), "the last expiry was just now");
        let stamp =
            std::fs::File::options().write(true).open(dir.path().join(INGESTED_DIR).join(EXPIRED_STAMP)).unwrap();
        stamp.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1000)).unwrap();
        ledger.record("r-3").unwrap();
        assert!(!dir.path().join(INGESTED_DIR).join("r-old").exists());
        assert!(dir.path().join(INGESTED_DIR).join("r-1").exists());
        assert!(dir.path().join(INGESTED_DIR).join(EXPIRED_STAMP).exists(), "the stamp is never expired");

        // Retention zero: off.
        let off = Ledger::new(dir.path(), Duration::ZERO);
        off.check("r-1").expect("the ledger is off");
    }

    #[test]
    fn hostile_entries_neither_block_nor_count() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path(), DEFAULT_RETENTION);
        let entries = dir.path().join(INGESTED_DIR);
        std::fs::create_dir(&entries).unwrap();
        std::fs::write(entries.join("r-file"), "").unwrap();
        std::fs::create_dir(entries.join("r-dir")).unwrap();
        std::os::unix::fs::symlink("r-file", entries.join("r-link")).unwrap();
        let fifo = std::ffi::CString::new(entries.join("r-fifo").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path inside the temp dir.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        for name in ["r-dir", "r-link", "r-fifo"] {
            ledger.check(name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
        ledger.check("../x").expect("never in the ledger: the keeper refuses such a name");
        assert!(ledger.record("../x").is_err(), "never joined into a path");
    }

    #[test]
    fn a_ledger_that_is_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join(INGESTED_DIR)).unwrap();
        let ledger = Ledger::new(&root, DEFAULT_RETENTION);
        let e = format!("{:#}", ledger.record("r-1").unwrap_err());
        assert!(e.contains("not a directory"), "{e}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
