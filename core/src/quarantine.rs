//! Quarantined storages: the one writer (a storage moved whole into
//! `<root>/.quarantine/<location>`, its reason file beside it) and the one
//! reason-file reader. The pipeline uses them over WASI in the plugin; the
//! host's storage commands use them natively ([`crate::fs::NativeFs`]), so
//! a reason file is written and read by the same lines everywhere.

use crate::fs::{join, BoundedRead, EntryKind, Failure, FsErrorCode, StorageFs};
use crate::model::{QuarantineInfo, QuarantineReason, QuarantinedStorage};
use crate::names::{entry_base, is_location_of, is_valid_runner_name, runner_name_of, QUARANTINE_DIR};

/// Suffix of the reason file written beside each quarantined storage.
pub const REASON_SUFFIX: &str = ".reason.json";
/// A reason file larger than this is not ours and is not read.
pub const REASON_FILE_LIMIT: usize = 16 * 1024;

/// Moves the root's storage `name` whole into `.quarantine/`, with a reason
/// file beside it.
pub fn quarantine_storage(
    fs: &impl StorageFs,
    name: &str,
    reason: QuarantineReason,
    file: Option<&str>,
    detail: &str,
) -> Result<QuarantineInfo, Failure> {
    if !is_valid_runner_name(name) {
        return Err(Failure::new(format!("refusing to quarantine {name:?}: not a valid runner name")));
    }
    match fs.lstat(name) {
        Ok(meta) if meta.kind == EntryKind::Directory => {}
        Ok(meta) => {
            return Err(Failure::new(format!("refusing to quarantine {name:?}: it is {}", meta.kind.describe())))
        }
        Err(e) => return Err(e.into()),
    }
    move_to_quarantine(fs, name, name, reason, file, detail)
}

/// Moves `source` (a root-relative path: a storage, or a leftover in
/// `.deleting/`) to `.quarantine/` as a storage of `runner`. The reason file
/// is written first and removed again if the move fails, so a quarantined
/// storage always has its reason.
pub fn move_to_quarantine(
    fs: &impl StorageFs,
    source: &str,
    runner: &str,
    reason: QuarantineReason,
    file: Option<&str>,
    detail: &str,
) -> Result<QuarantineInfo, Failure> {
    ensure_reserved_dir(fs, QUARANTINE_DIR)?;
    let now = fs.now();
    let record = reason_record(runner, reason, file, detail, now);
    let base = entry_base(runner, now);
    for attempt in 0..100u32 {
        let location = match attempt {
            0 => base.clone(),
            n => format!("{base}.{n}"),
        };
        let target = join(QUARANTINE_DIR, &location);
        let reason_path = format!("{target}{REASON_SUFFIX}");
        match fs.lstat(&target) {
            Err(e) if e.code == FsErrorCode::NotFound => {}
            Ok(_) => continue,
            Err(e) => return Err(e.into()),
        }
        match fs.write_new_file(&reason_path, record.as_bytes()) {
            Ok(()) => {}
            Err(e) if e.code == FsErrorCode::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
        match fs.rename(source, &target) {
            Ok(()) => {
                return Ok(QuarantineInfo {
                    reason,
                    file: file.map(str::to_owned),
                    detail: detail.to_owned(),
                    location,
                })
            }
            // Taken since the check (natively the rename never replaces):
            // the next name.
            Err(e) if matches!(e.code, FsErrorCode::AlreadyExists | FsErrorCode::NotEmpty) => {
                let _ = fs.remove_file(&reason_path);
            }
            Err(e) => {
                let _ = fs.remove_file(&reason_path);
                return Err(e.into());
            }
        }
    }
    Err(Failure::new(format!("no free quarantine name for {runner:?}")))
}

/// Makes sure a reserved directory of the root exists and is a directory.
fn ensure_reserved_dir(fs: &impl StorageFs, dir: &str) -> Result<(), Failure> {
    match fs.lstat(dir) {
        Ok(meta) if meta.kind == EntryKind::Directory => Ok(()),
        Ok(meta) => Err(Failure::new(format!("{dir} is {}, not a directory", meta.kind.describe()))),
        Err(e) if e.code == FsErrorCode::NotFound => match fs.create_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.code == FsErrorCode::AlreadyExists => Ok(()),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// The reason file's content: one JSON object.
fn reason_record(name: &str, reason: QuarantineReason, file: Option<&str>, detail: &str, now: f64) -> String {
    let value = serde_json::json!({
        "runner_name": name,
        "reason": reason.as_str(),
        "file": file,
        "detail": detail,
        "quarantined_at": now,
    });
    value.to_string()
}

/// The locations under `.quarantine/` that have a reason file, sorted.
/// `None`: there is no `.quarantine/`.
pub fn locations(fs: &impl StorageFs) -> Result<Option<Vec<String>>, Failure> {
    let listing = match fs.list(QUARANTINE_DIR) {
        Ok(listing) => listing,
        Err(e) if e.code == FsErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut found = Vec::new();
    for entry in listing {
        let entry = entry?;
        if let Some(location) = entry.name.as_deref().and_then(|n| n.strip_suffix(REASON_SUFFIX)) {
            found.push(location.to_owned());
        }
    }
    found.sort();
    Ok(Some(found))
}

/// The storages under `<root>/.quarantine/`, from their reason files.
/// A reason file that is not ours is listed with what can be said about it
/// (reason `invalid-value`, the problem as its detail).
pub fn list_quarantine(fs: &impl StorageFs) -> Result<Vec<QuarantinedStorage>, Failure> {
    let locations = locations(fs)?.unwrap_or_default();
    Ok(locations
        .into_iter()
        .map(|location| {
            read_reason(fs, &location).unwrap_or_else(|e| QuarantinedStorage {
                runner_name: runner_name_of(&location).to_owned(),
                location,
                reason: QuarantineReason::InvalidValue,
                file: None,
                detail: e.to_string(),
                quarantined_at: 0.0,
            })
        })
        .collect())
}

/// Why a reason file could not be read as one of ours.
#[derive(Debug, Clone, PartialEq)]
pub enum ReasonFileError {
    /// There is no reason file at that location.
    Missing,
    /// It cannot be read, or is not a reason file we wrote: why.
    Bad(String),
}

impl std::fmt::Display for ReasonFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("no reason file"),
            Self::Bad(why) => f.write_str(why),
        }
    }
}

/// Reads `.quarantine/<location>.reason.json` (a small regular file, never
/// through a symlink) and checks it is one of ours: JSON naming a valid
/// runner whose name starts the location, a known reason, and a time.
pub fn read_reason(fs: &impl StorageFs, location: &str) -> Result<QuarantinedStorage, ReasonFileError> {
    let path = join(QUARANTINE_DIR, &format!("{location}{REASON_SUFFIX}"));
    let bad = |why: String| ReasonFileError::Bad(format!("reason file {path}: {why}"));
    let bytes = match fs.read_bounded(&path, REASON_FILE_LIMIT) {
        Ok(BoundedRead::Content(bytes)) => bytes,
        Ok(BoundedRead::Oversized | BoundedRead::TooLarge(_)) => {
            return Err(bad(format!("larger than {REASON_FILE_LIMIT} bytes")))
        }
        Ok(BoundedRead::NotRegular(kind)) => return Err(bad(format!("is {}, not a regular file", kind.describe()))),
        Err(e) if e.code == FsErrorCode::NotFound => return Err(ReasonFileError::Missing),
        Err(e) => return Err(ReasonFileError::Bad(format!("reason file unreadable: {e}"))),
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let runner_name = text("runner_name").ok_or_else(|| bad("no runner_name".to_owned()))?;
    if !is_valid_runner_name(&runner_name) || !is_location_of(location, &runner_name) {
        return Err(bad(format!("runner_name {runner_name:?} is not a valid runner name matching the location")));
    }
    let reason = text("reason").ok_or_else(|| bad("no reason".to_owned()))?;
    let reason = QuarantineReason::from_str_exact(&reason).ok_or_else(|| bad(format!("unknown reason {reason:?}")))?;
    let quarantined_at = value
        .get("quarantined_at")
        .and_then(|v| v.as_f64())
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or_else(|| bad("quarantined_at is not a number >= 0".to_owned()))?;
    Ok(QuarantinedStorage {
        location: location.to_owned(),
        runner_name,
        reason,
        file: text("file"),
        detail: text("detail").unwrap_or_default(),
        quarantined_at,
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::fs::{FsError, FsOperation, FsResult, Meta, NativeDir, NativeFs};

    /// The filesystem as it looks to a writer that races another: every
    /// quarantine location seems free when checked, whatever is there.
    struct FreeAtCheck(NativeFs);

    impl StorageFs for FreeAtCheck {
        type Listing = <NativeFs as StorageFs>::Listing;
        type Dir = NativeDir;
        fn open_dir(&self, name: &str) -> FsResult<NativeDir> {
            self.0.open_dir(name)
        }
        fn enter_dir(&self, name: &str) -> FsResult<()> {
            self.0.enter_dir(name)
        }
        fn list(&self, dir: &str) -> FsResult<Self::Listing> {
            self.0.list(dir)
        }
        fn lstat(&self, path: &str) -> FsResult<Meta> {
            match path.strip_prefix(".quarantine/") {
                Some(_) => Err(FsError::new(FsErrorCode::NotFound, FsOperation::Stat, path, "not there (yet)")),
                None => self.0.lstat(path),
            }
        }
        fn read_bounded(&self, path: &str, limit: usize) -> FsResult<BoundedRead> {
            self.0.read_bounded(path, limit)
        }
        fn rename(&self, from: &str, to: &str) -> FsResult<()> {
            self.0.rename(from, to)
        }
        fn move_into(&self, name: &str, dir: &NativeDir, new_name: &str) -> FsResult<()> {
            self.0.move_into(name, dir, new_name)
        }
        fn create_dir(&self, path: &str) -> FsResult<()> {
            self.0.create_dir(path)
        }
        fn write_new_file(&self, path: &str, bytes: &[u8]) -> FsResult<()> {
            self.0.write_new_file(path, bytes)
        }
        fn remove_file(&self, path: &str) -> FsResult<()> {
            self.0.remove_file(path)
        }
        fn now(&self) -> f64 {
            1_700_000_000.5
        }
    }

    #[test]
    fn a_location_taken_after_the_check_is_skipped_not_replaced_nor_an_error() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("r-1")).unwrap();
        // Another run's quarantined storage already holds the first name.
        let taken = root.path().join(".quarantine").join(entry_base("r-1", 1_700_000_000.5));
        std::fs::create_dir_all(&taken).unwrap();
        std::fs::write(taken.join("theirs"), b"x").unwrap();
        let fs = FreeAtCheck(NativeFs::new(root.path()));
        let info = quarantine_storage(&fs, "r-1", QuarantineReason::InvalidJson, None, "d").unwrap();
        assert_eq!(info.location, format!("{}.1", entry_base("r-1", 1_700_000_000.5)));
        assert_eq!(std::fs::read(taken.join("theirs")).unwrap(), b"x", "the other storage is untouched");
        let reasons = std::fs::read_dir(root.path().join(".quarantine")).unwrap().count();
        assert_eq!(reasons, 3, "both storages and one reason file (the first attempt's is removed)");
    }
}
