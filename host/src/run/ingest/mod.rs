//! Pulled metrics (spec 9), for managers that share no directory with their
//! runners and read the files over SSH instead. The bytes go into the
//! guest as they are (a tar stream is parsed there too, by a bounded
//! reader); the guest stages them as the storage `<root>/<runner>` and
//! collects that one storage like any other: the same parsers, policy,
//! events, durable append, quarantine and deletion, the same keeper, the
//! same trap recovery. So a pulled runner gets exactly one report, and a
//! corrupt one stays under `<root>/.quarantine/` with its reason, where
//! `quarantine list` finds it.
//!
//! A runner's events reach the log once: the directory's ledger
//! ([`ledger`]) remembers each runner ingested, and an ingest of a runner
//! it remembers logs nothing and ends in [`ledger::AlreadyIngested`].
//!
//! At most the limit plus one byte of each file (and of a tar stream)
//! crosses into the guest: [`bounded`] cuts the rest, [`read_stream`] and
//! [`read_file`] never read it.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

pub use crate::bindings::{LooseFiles, Policy, PulledFiles};
use crate::collect::{self, CollectOptions, JobMetricsSource};
use crate::lock::RootLock;
use crate::log::EventSink;
use crate::plugin::Plugin;
use crate::summary::{OutcomeKind, StorageReport, Summary};

pub mod ledger;

/// A runner's metrics as a manager pulled them: the runner's name (all the
/// keeper sees of it) and the files (which only the plugin is handed).
#[derive(Debug, Clone)]
pub struct PulledRunner {
    pub runner_name: String,
    /// The manager's installation start (for example the VM's creation
    /// time), written as `runner-installation-start.timestamp`.
    pub installation_start: Option<f64>,
    pub files: PulledFiles,
}

/// The most bytes of one pulled file, and of a tar stream, read and handed
/// to the guest: each bound plus one (so a longer one is seen to be too
/// long). The guest's own constants: it refuses more.
pub use runner_metrics_core::pulled::{max_stream_bytes, MAX_LOOSE_BYTES};

/// Collects one pulled runner in `root` (a directory of its own for pulled
/// runners; created if missing), under the root's lock like [`collect`](crate::collect()).
/// `options.selection` is not used: only the pulled runner is looked at.
/// `Err` when the run could not start or had to stop (a runner of that name
/// already in the root, the log cannot be written), with its report
/// delivered when there is one; [`ledger::AlreadyIngested`] when the root
/// ingested this runner within `options.remember_ingested` (nothing is
/// staged or logged then).
pub fn ingest(
    plugin: &Plugin,
    root: &Path,
    pulled: PulledRunner,
    options: &CollectOptions,
    jobs: &mut dyn JobMetricsSource,
    sink: &mut dyn EventSink,
    on_report: &mut dyn FnMut(&StorageReport),
) -> Result<Summary> {
    ensure_root(root)?;
    let lock = RootLock::acquire(root, options.lock_wait)?;
    ingest_holding(plugin, &lock, pulled, options, jobs, sink, on_report)
}

/// [`ingest`] in the root of a lock the caller holds.
pub fn ingest_holding(
    plugin: &Plugin,
    lock: &RootLock,
    pulled: PulledRunner,
    options: &CollectOptions,
    jobs: &mut dyn JobMetricsSource,
    sink: &mut dyn EventSink,
    on_report: &mut dyn FnMut(&StorageReport),
) -> Result<Summary> {
    anyhow::ensure!(!options.dry_run, "pulled metrics are staged on disk, so they cannot be collected in a dry run");
    let ledger = ledger::Ledger::new(lock.root(), options.remember_ingested);
    ledger.check(&pulled.runner_name)?;
    let runner = pulled.runner_name.clone();
    // Remembered once its report is final and its events are synced (the
    // report comes after the append): extracted, no data or quarantined.
    // A failed runner stays staged, for `collect` to take.
    let mut done = false;
    let mut report = |r: &StorageReport| {
        done |= r.name == runner
            && matches!(r.outcome, OutcomeKind::Extracted | OutcomeKind::NoData | OutcomeKind::Quarantined);
        on_report(r)
    };
    let result = collect::run_pulled(plugin, lock.root().to_owned(), bounded(pulled), options, jobs, sink, &mut report);
    if done {
        ledger.record(&runner).context("the runner's events are in the log, but a retry would log them again")?;
    }
    result
}

/// Makes the directory for pulled runners if it is missing (one level:
/// its parent must exist), so a manager can name a fresh one.
pub fn ensure_root(root: &Path) -> Result<()> {
    match std::fs::create_dir(root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", root.display())),
    }
}

/// `pulled` with every file cut to [`MAX_LOOSE_BYTES`] and a stream to
/// [`max_stream_bytes`]: what is longer is oversized either way, and only
/// that much crosses into the guest.
pub fn bounded(mut pulled: PulledRunner) -> PulledRunner {
    match &mut pulled.files {
        PulledFiles::Tar(stream) => stream.truncate(max_stream_bytes()),
        PulledFiles::Loose(loose) => {
            for bytes in [&mut loose.installed, &mut loose.pre_job, &mut loose.post_job].into_iter().flatten() {
                bytes.truncate(MAX_LOOSE_BYTES);
            }
        }
    }
    pulled
}

/// Reads a tar stream (stdin, an SSH channel), at most
/// [`max_stream_bytes`] of it: a stream that never ends is cut there, and
/// found oversized by the guest.
pub fn read_stream(reader: impl Read) -> std::io::Result<Vec<u8>> {
    let mut stream = Vec::new();
    reader.take(max_stream_bytes() as u64).read_to_end(&mut stream)?;
    Ok(stream)
}

/// Reads one pulled file the manager saved: never following a symlink,
/// never blocking on a FIFO or device, at most [`MAX_LOOSE_BYTES`].
/// `Ok(None)`: there is no such file (it counts as missing). Anything but
/// a regular file is an error naming the path.
pub fn read_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let opened = crate::log::open_regular_file_with(path, std::fs::OpenOptions::new().read(true), libc::O_NOFOLLOW);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_LOOSE_BYTES as u64).read_to_end(&mut bytes).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bound_plus_one_byte_is_read_or_passed_on() {
        let endless = std::io::repeat(b'x');
        assert_eq!(read_stream(endless).unwrap().len(), max_stream_bytes());
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("pre-job-metrics.json");
        std::fs::write(&big, vec![b' '; 5000]).unwrap();
        assert_eq!(read_file(&big).unwrap().unwrap().len(), MAX_LOOSE_BYTES);
        assert_eq!(read_file(&dir.path().join("missing")).unwrap(), None);
        let pulled = PulledRunner {
            runner_name: "r".into(),
            installation_start: None,
            files: PulledFiles::Loose(LooseFiles { installed: Some(vec![0; 9999]), pre_job: None, post_job: None }),
        };
        let PulledFiles::Loose(loose) = bounded(pulled).files else { unreachable!() };
        assert_eq!(loose.installed.unwrap().len(), MAX_LOOSE_BYTES);
    }

    #[test]
    fn symlinks_fifos_and_directories_are_refused_by_name_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"1").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path inside the temp dir.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for (path, what) in [(&link, "symlink"), (&fifo, "FIFO"), (&dir.path().to_owned(), "directory")] {
            let e = format!("{:#}", read_file(path).unwrap_err());
            assert!(e.contains(what) && e.contains(&path.display().to_string()), "{e}");
        }
    }
}
