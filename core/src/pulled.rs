//! Pulled metrics (spec 9): a manager that shares no directory with its
//! runners reads their files itself (one by one, or as the tar stream of
//! the runner's metrics directory) and hands the bytes over. They are
//! staged here as the storage `<root>/<runner>`, and from then on that
//! storage is collected like any other: the same reads, parsers, policy,
//! events, quarantine and deletion, so nothing about a pulled runner is
//! decided twice.
//!
//! A tar stream is written into the storage as `pulled.tar` before it is
//! parsed, so whatever happens next (corruption, a trap in the reader),
//! the bytes are kept with the storage. A stream the reader refuses makes
//! the runner corrupt under both policies: the lenient policy counts a
//! corrupt *file* as missing, but none of a refused stream's files can be
//! told apart from the rest.

use crate::extract::delete_storage;
use crate::fs::{join, Failure, FsErrorCode, StorageFs};
use crate::model::{LooseFiles, PulledFiles, PulledMetrics, QuarantineInfo};
use crate::names::is_valid_runner_name;
use crate::quarantine::quarantine_storage;
use crate::tar::{read_metrics_tar, TarLimits};
use crate::{files, FILE_SIZE_BYTES_LIMIT};

/// The name a pulled tar stream is kept under inside its storage.
pub const STREAM_FILE: &str = "pulled.tar";

/// The most bytes of one loose file that cross into the guest: the limit
/// plus one, so an oversized file is seen to be oversized.
pub const MAX_LOOSE_BYTES: usize = FILE_SIZE_BYTES_LIMIT + 1;

/// The most bytes of a tar stream that cross into the guest: the reader's
/// bound plus one, so a longer stream is seen to be oversized.
pub fn max_stream_bytes() -> usize {
    TarLimits::default().max_bytes + 1
}

/// How staging ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Staged {
    /// `<root>/<runner>` holds the pulled files: collect it.
    Ready,
    /// The tar stream was refused: the storage, with the stream in it, is
    /// quarantined already.
    Quarantined(QuarantineInfo),
}

/// Stages `pulled` as the storage `<root>/<name>`. `Err`: nothing was
/// staged (nothing of it is left in the root), and why: an invalid name or
/// installation start, bytes past their bound (the host must cut them),
/// a storage of that name already in the root, or a write that failed.
pub fn stage(fs: &impl StorageFs, name: &str, pulled: &PulledMetrics) -> Result<Staged, Failure> {
    if !is_valid_runner_name(name) {
        return Err(Failure::new(format!("refusing to stage pulled metrics as {name:?}: not a valid runner name")));
    }
    if let Some(start) = pulled.installation_start.filter(|t| !t.is_finite() || *t < 0.0) {
        return Err(Failure::new(format!("installation start {start} of {name} is not a finite time >= 0")));
    }
    check_bounds(name, &pulled.files).map_err(Failure::new)?;
    if matches!(&pulled.files, PulledFiles::Tar(stream) if stream.is_empty()) {
        // Not even tar's end blocks: the pull itself failed (ssh could not
        // connect, tar was missing), and there are no bytes to keep.
        return Err(Failure::new(format!("the tar stream of {name} is empty (did the pull fail?): nothing to stage")));
    }
    match fs.create_dir(name) {
        Ok(()) => {}
        Err(e) if e.code == FsErrorCode::AlreadyExists => {
            return Err(Failure::new(format!(
                "{name} is already in the storage root (left by an earlier run?): collect it first, \
                 then pull again"
            )))
        }
        Err(e) => return Err(Failure::from(e).context(format!("staging {name}"))),
    }
    match write_files(fs, name, pulled) {
        Ok(None) => Ok(Staged::Ready),
        Ok(Some(corruption)) => quarantine_storage(fs, name, corruption.reason, Some(STREAM_FILE), &corruption.detail)
            .map(Staged::Quarantined)
            .map_err(|e| unstage(fs, name, e.context(format!("quarantining the refused stream of {name}")))),
        Err(e) => Err(unstage(fs, name, e.context(format!("staging {name}")))),
    }
}

/// Bytes past their bound are the host's mistake: refused before a write.
fn check_bounds(name: &str, source: &PulledFiles) -> Result<(), String> {
    let too_long = |what: &str, len: usize, max: usize| {
        (len > max).then(|| format!("pulled {what} of {name} holds {len} bytes; at most {max} may cross"))
    };
    let error = match source {
        PulledFiles::Tar(stream) => too_long("tar stream", stream.len(), max_stream_bytes()),
        PulledFiles::Loose(loose) => loose_files(loose)
            .into_iter()
            .find_map(|(file, bytes)| bytes.and_then(|b| too_long(file, b.len(), MAX_LOOSE_BYTES))),
    };
    error.map_or(Ok(()), Err)
}

fn loose_files(files: &LooseFiles) -> [(&'static str, Option<&Vec<u8>>); 3] {
    [
        (files::INSTALLED, files.installed.as_ref()),
        (files::PRE_JOB, files.pre_job.as_ref()),
        (files::POST_JOB, files.post_job.as_ref()),
    ]
}

/// Writes the storage's files. `Ok(Some)`: the tar stream was refused (it
/// is written, the rest is not).
fn write_files(
    fs: &impl StorageFs,
    name: &str,
    pulled: &PulledMetrics,
) -> Result<Option<crate::parse::Corruption>, Failure> {
    let write = |file: &str, bytes: &[u8]| fs.write_new_file(&join(name, file), bytes);
    let parsed;
    let loose = match &pulled.files {
        PulledFiles::Loose(loose) => loose,
        PulledFiles::Tar(stream) => {
            write(STREAM_FILE, stream)?;
            match read_metrics_tar(stream, &TarLimits::default()) {
                Ok(found) => {
                    parsed = found;
                    &parsed
                }
                Err(corruption) => return Ok(Some(corruption)),
            }
        }
    };
    if let Some(start) = pulled.installation_start {
        write(files::INSTALLATION_START, start.to_string().as_bytes())?;
    }
    for (file, bytes) in loose_files(loose) {
        if let Some(bytes) = bytes {
            write(file, bytes)?;
        }
    }
    Ok(None)
}

/// Removes what was staged after a failure, so nothing half-staged is left
/// to be collected; says so when even that fails.
fn unstage(fs: &impl StorageFs, name: &str, why: Failure) -> Failure {
    match delete_storage(fs, name) {
        Ok(_) => why,
        Err(e) => why.joined(e, |why, e| format!("{why}; what was staged is left in the storage root: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::NativeFs;
    use crate::model::QuarantineReason;

    fn runner(files: PulledFiles) -> PulledMetrics {
        PulledMetrics { installation_start: Some(1.5), files }
    }

    #[test]
    fn loose_files_are_staged_as_a_storage_with_the_managers_installation_start() {
        let dir = tempfile::tempdir().unwrap();
        let fs = NativeFs::new(dir.path());
        let loose = LooseFiles { installed: Some(b"2".to_vec()), pre_job: Some(b"{}".to_vec()), post_job: None };
        assert_eq!(stage(&fs, "r1", &runner(PulledFiles::Loose(loose))).unwrap(), Staged::Ready);
        let storage = dir.path().join("r1");
        assert_eq!(std::fs::read(storage.join(files::INSTALLATION_START)).unwrap(), b"1.5");
        assert_eq!(std::fs::read(storage.join(files::INSTALLED)).unwrap(), b"2");
        assert_eq!(std::fs::read(storage.join(files::PRE_JOB)).unwrap(), b"{}");
        assert!(!storage.join(files::POST_JOB).exists());
        // A second pull of the same runner finds it there and stages nothing.
        let again = stage(&fs, "r1", &runner(PulledFiles::Loose(LooseFiles::default()))).unwrap_err().message;
        assert!(again.contains("already in the storage root"), "{again}");
        assert_eq!(std::fs::read(storage.join(files::INSTALLED)).unwrap(), b"2");
    }

    #[test]
    fn a_refused_stream_is_quarantined_whole_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let fs = NativeFs::new(dir.path());
        let garbage = vec![7u8; 3000];
        let Staged::Quarantined(info) = stage(&fs, "r1", &runner(PulledFiles::Tar(garbage.clone()))).unwrap() else {
            panic!("not quarantined");
        };
        assert_eq!(info.reason, QuarantineReason::InvalidArchive);
        assert_eq!(info.file.as_deref(), Some(STREAM_FILE));
        let kept = dir.path().join(".quarantine").join(&info.location).join(STREAM_FILE);
        assert_eq!(std::fs::read(kept).unwrap(), garbage);
        assert!(!dir.path().join("r1").exists());
    }

    #[test]
    fn bad_requests_stage_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let fs = NativeFs::new(dir.path());
        let long = LooseFiles { pre_job: Some(vec![b' '; MAX_LOOSE_BYTES + 1]), ..LooseFiles::default() };
        let cases = [
            (".quarantine", runner(PulledFiles::Tar(vec![])), "valid runner"),
            ("../x", runner(PulledFiles::Tar(vec![])), "valid runner"),
            ("r1", PulledMetrics { installation_start: Some(f64::NAN), ..runner(PulledFiles::Tar(vec![])) }, "finite"),
            ("r1", runner(PulledFiles::Loose(long)), "at most 1025"),
            ("r1", runner(PulledFiles::Tar(vec![0; max_stream_bytes() + 1])), "at most"),
            ("r1", runner(PulledFiles::Tar(vec![])), "is empty (did the pull fail?)"),
        ];
        for (name, pulled, expected) in cases {
            let e = stage(&fs, name, &pulled).unwrap_err().message;
            assert!(e.contains(expected), "{e}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
