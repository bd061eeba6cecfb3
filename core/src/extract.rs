//! Deciding each storage's outcome (spec 4): scan, read, validate,
//! quarantine, delete.
//!
//! Everything here goes through [`StorageFs`], so the same code runs in the
//! sandbox and natively.

use crate::fs::{join, BoundedRead, EntryKind, Failure, FsError, FsErrorCode, FsResult, StorageFs};
use crate::model::{
    Outcome, Policy, QuarantineInfo, QuarantineReason, RootEntry, RunnerMetrics, Selection, SkipReason,
};
use crate::names::{entry_base, is_reserved, is_valid_runner_name, runner_name_of, DELETING_DIR};
use crate::parse::Corruption;
use crate::quarantine::{move_to_quarantine, quarantine_storage};
use crate::{files, parse, walk, FILE_SIZE_BYTES_LIMIT};

/// How far in the future a storage's modification time may be and still
/// count as just modified (age 0); further ahead it is clock skew.
pub const FUTURE_MTIME_TOLERANCE: f64 = 60.0;

/// A pass over the root's entries that applies a [`Selection`].
pub struct Scan<F: StorageFs> {
    fs: F,
    listing: F::Listing,
    selection: Selection,
    now: f64,
}

impl<F: StorageFs> Scan<F> {
    pub fn new(fs: F, selection: Selection) -> Result<Self, FsError> {
        let listing = fs.list("")?;
        let now = fs.now();
        Ok(Self { fs, listing, selection, now })
    }

    /// Up to `max` more entries; empty when the scan is over.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<RootEntry>, FsError> {
        let mut batch = Vec::new();
        while batch.len() < max {
            let Some(entry) = self.listing.next() else { break };
            let entry = entry?;
            if entry.name.as_deref().is_some_and(is_reserved) {
                continue;
            }
            let skipped = self.classify(entry.name.as_deref(), entry.kind);
            batch.push(RootEntry { name: entry.name, skipped });
        }
        Ok(batch)
    }

    /// `None` for a candidate, else why the entry is left alone.
    fn classify(&self, name: Option<&str>, kind: EntryKind) -> Option<SkipReason> {
        let Some(name) = name.filter(|name| is_valid_runner_name(name)) else {
            return Some(SkipReason::InvalidName);
        };
        if kind != EntryKind::Directory {
            return Some(SkipReason::NotADirectory);
        }
        if self.selection.exclude.iter().any(|excluded| excluded == name) {
            return Some(SkipReason::Excluded);
        }
        if let Some(include) = &self.selection.include {
            if !include.iter().any(|included| included == name) {
                return Some(SkipReason::NotIncluded);
            }
        }
        let min_age = self.selection.min_age_seconds?;
        // A storage whose age cannot be read is treated as old enough: the
        // extraction that follows reports any real problem.
        let modified = self.fs.lstat(name).ok()?.modified?;
        let age = self.now - modified;
        // A modification time far in the future (clock skew, or a job that
        // set it: a job can as well set one in the past) counts as old
        // enough, or the storage would be "too young" for as long as the
        // clock takes to catch up. A little ahead is ordinary clock jitter.
        if age < -FUTURE_MTIME_TOLERANCE {
            return None;
        }
        let age = age.max(0.0);
        (age < min_age).then_some(SkipReason::TooYoung(age))
    }
}

/// What one metrics file turned out to be.
enum FileState {
    Missing,
    Present(Vec<u8>),
    Corrupt(Corruption),
    Failed(FsError),
}

/// Reads one file of a storage: missing, its bytes, corrupt, or an I/O error.
/// Where opens may block, the file is `lstat`ed first, so that a FIFO is
/// never opened; where they cannot, it is opened at once, and `lstat`ed
/// only to explain a failed open: the same outcome and words either way.
fn read_storage_file(fs: &impl StorageFs, name: &str, file: &str) -> FileState {
    let path = &join(name, file);
    if !fs.opens_block() {
        return opened_first(fs, name, file, fs.read_bounded(path, FILE_SIZE_BYTES_LIMIT));
    }
    let meta = match fs.lstat(path) {
        Ok(meta) => meta,
        Err(e) if e.code == FsErrorCode::NotFound => return FileState::Missing,
        Err(e) => return FileState::Failed(e),
    };
    if meta.kind != EntryKind::File {
        return FileState::Corrupt(not_regular(meta.kind));
    }
    if meta.size > FILE_SIZE_BYTES_LIMIT as u64 {
        return FileState::Corrupt(oversized(meta.size));
    }
    match fs.read_bounded(path, FILE_SIZE_BYTES_LIMIT) {
        Ok(read) => read_state(read),
        // Swapped for a symlink (or a directory) between lstat and open.
        Err(e) if matches!(e.code, FsErrorCode::Symlink | FsErrorCode::IsADirectory) => {
            FileState::Corrupt(Corruption::new(QuarantineReason::NotRegularFile, e.to_string()))
        }
        Err(e) if e.code == FsErrorCode::NotFound => FileState::Missing,
        Err(e) => FileState::Failed(e),
    }
}

/// What the read of the file `name/file`, opened without an `lstat` first,
/// says of it (opens never block here), `lstat`ing it only to explain a
/// failed open (its path is made only then).
fn opened_first(fs: &impl StorageFs, name: &str, file: &str, read: FsResult<BoundedRead>) -> FileState {
    match read {
        Err(e) if e.code == FsErrorCode::NotFound => FileState::Missing,
        // A symlink (refused by the open) or a socket (which cannot be
        // opened): what the `lstat` would have said.
        Err(e) => match fs.lstat(&join(name, file)) {
            Ok(meta) if meta.kind != EntryKind::File => FileState::Corrupt(not_regular(meta.kind)),
            Err(gone) if gone.code == FsErrorCode::NotFound => FileState::Missing,
            _ => FileState::Failed(e),
        },
        Ok(BoundedRead::TooLarge(size)) => FileState::Corrupt(oversized(size)),
        Ok(read) => read_state(read),
    }
}

/// What an open file's bounded read says of it.
fn read_state(read: BoundedRead) -> FileState {
    match read {
        BoundedRead::Content(bytes) => FileState::Present(bytes),
        // Larger at the open than at the `lstat` (or than the limit, when
        // there was none: the caller says so with the size).
        BoundedRead::Oversized | BoundedRead::TooLarge(_) => FileState::Corrupt(Corruption::new(
            QuarantineReason::Oversized,
            format!("grew past the {FILE_SIZE_BYTES_LIMIT}-byte limit while being read"),
        )),
        BoundedRead::NotRegular(kind) => FileState::Corrupt(not_regular(kind)),
    }
}

fn not_regular(kind: EntryKind) -> Corruption {
    Corruption::new(QuarantineReason::NotRegularFile, format!("is {}, not a regular file", kind.describe()))
}

fn oversized(size: u64) -> Corruption {
    Corruption::new(
        QuarantineReason::Oversized,
        format!("larger than the {FILE_SIZE_BYTES_LIMIT}-byte limit (size {size} bytes)"),
    )
}

/// The four files of a storage, parsed.
#[derive(Default)]
struct StorageFiles {
    installation_start: Option<f64>,
    installed: Option<f64>,
    pre_job: Option<crate::model::PreJobMetrics>,
    post_job: Option<crate::model::PostJobMetrics>,
}

/// Why the files of a storage cannot be turned into metrics.
enum Problem {
    Corrupt { file: &'static str, corruption: Corruption },
    Failed(FsError),
}

/// A corrupt file that the lenient policy counted as missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    pub file: &'static str,
    pub corruption: Corruption,
}

/// Reads and parses all four files. Corruption anywhere wins over I/O
/// failures, since the storage is quarantined whole either way; under the
/// lenient policy a corrupt file counts as missing instead, and is listed.
/// `read_at_once`: the reads of the four files where the storage was
/// entered with them ([`StorageFs::read_storage`]); else each is
/// `lstat`ed and read in turn.
fn read_storage(
    fs: &impl StorageFs,
    name: &str,
    policy: Policy,
    read_at_once: Option<Vec<FsResult<BoundedRead>>>,
) -> Result<(StorageFiles, Vec<Dropped>), Problem> {
    let mut parsed = StorageFiles::default();
    let mut failure = None;
    let mut dropped = Vec::new();
    let mut read_at_once = read_at_once.map(Vec::into_iter);
    for file in files::ALL {
        let state = match read_at_once.as_mut().and_then(Iterator::next) {
            Some(read) => opened_first(fs, name, file, read),
            None => read_storage_file(fs, name, file),
        };
        let bytes = match state {
            FileState::Missing => continue,
            FileState::Present(bytes) => Ok(bytes),
            FileState::Corrupt(corruption) => Err(corruption),
            FileState::Failed(e) => {
                failure.get_or_insert(e);
                continue;
            }
        };
        let result = bytes.and_then(|bytes| match file {
            files::INSTALLATION_START => parse::parse_timestamp(&bytes).map(|v| parsed.installation_start = v),
            files::INSTALLED => parse::parse_timestamp(&bytes).map(|v| parsed.installed = v),
            files::PRE_JOB => parse::parse_pre_job(&bytes).map(|v| parsed.pre_job = v),
            _ => parse::parse_post_job(&bytes).map(|v| parsed.post_job = v),
        });
        match (result, policy) {
            (Ok(()), _) => {}
            (Err(corruption), Policy::Lenient) => dropped.push(Dropped { file, corruption }),
            (Err(corruption), Policy::Strict) => return Err(Problem::Corrupt { file, corruption }),
        }
    }
    match failure {
        Some(e) => Err(Problem::Failed(e)),
        None => Ok((parsed, dropped)),
    }
}

/// Decides one storage and acts on it (spec 4): quarantine if anything is
/// corrupt, delete if the runner never came up, else return its metrics and
/// leave it for [`delete_storage`]. With `keep`, only decides: nothing on
/// disk changes and a quarantine outcome has an empty location.
pub fn extract_storage(fs: &impl StorageFs, name: &str, keep: bool) -> Outcome {
    extract_storage_with(fs, name, keep, Policy::Strict).0
}

/// [`extract_storage`] under a policy: the lenient one extracts what is
/// sound and lists the corrupt files it counted as missing.
pub fn extract_storage_with(fs: &impl StorageFs, name: &str, keep: bool, policy: Policy) -> (Outcome, Vec<Dropped>) {
    let mut dropped = Vec::new();
    let outcome = decide_storage(fs, name, keep, policy, &mut dropped);
    (outcome, dropped)
}

fn decide_storage(fs: &impl StorageFs, name: &str, keep: bool, policy: Policy, dropped: &mut Vec<Dropped>) -> Outcome {
    if !is_valid_runner_name(name) {
        return Outcome::Skipped(SkipReason::InvalidName);
    }
    // Opened (no symlink followed) rather than `lstat`ed: the reads go
    // through the open directory. Where opens never block, the four files
    // are read with it (one host call in the fast build).
    let entered = if fs.opens_block() {
        fs.enter_dir(name).map(|()| None)
    } else {
        fs.read_storage(name, &files::ALL, FILE_SIZE_BYTES_LIMIT).map(Some)
    };
    let read_at_once = match entered {
        Ok(reads) => reads,
        Err(e) if matches!(e.code, FsErrorCode::Symlink | FsErrorCode::NotADirectory) => {
            return Outcome::Skipped(SkipReason::NotADirectory)
        }
        // Removed or moved by another process since the listing (spec 7).
        Err(e) if e.code == FsErrorCode::NotFound => return Outcome::Skipped(SkipReason::Vanished),
        Err(e) => return Outcome::Failed(e.into()),
    };
    let parsed = match read_storage(fs, name, policy, read_at_once) {
        Ok((parsed, lenient)) => {
            *dropped = lenient;
            parsed
        }
        Err(Problem::Failed(e)) => return Outcome::Failed(e.into()),
        Err(Problem::Corrupt { file, corruption }) if keep => {
            return Outcome::Quarantined(QuarantineInfo {
                reason: corruption.reason,
                file: Some(file.to_owned()),
                detail: corruption.detail,
                location: String::new(),
            });
        }
        Err(Problem::Corrupt { file, corruption }) => {
            return match quarantine_storage(fs, name, corruption.reason, Some(file), &corruption.detail) {
                Ok(info) => Outcome::Quarantined(info),
                Err(e) => Outcome::Failed(e.reworded(|e| {
                    format!(
                        "{file} is corrupt ({}: {}) but quarantine failed: {e}",
                        corruption.reason.as_str(),
                        corruption.detail
                    )
                })),
            };
        }
    };
    let Some(installed_timestamp) = parsed.installed else {
        if keep {
            return Outcome::NoData;
        }
        return match delete_storage(fs, name) {
            Ok(None) => Outcome::NoData,
            Ok(Some(info)) => Outcome::Quarantined(info),
            Err(e) => Outcome::Failed(e),
        };
    };
    Outcome::Extracted(RunnerMetrics {
        installation_start_timestamp: parsed.installation_start,
        installed_timestamp,
        pre_job: parsed.pre_job,
        post_job: parsed.post_job,
        runner_name: name.to_owned(),
    })
}

/// Deletes a storage without following symlinks. It is first renamed into
/// `.deleting/` (atomic: the runner name is gone at once), then emptied. If
/// it cannot be emptied it is quarantined as `undeletable`, so it is never
/// extracted twice; `Err` only when it is still in place under its name.
/// A storage that is already gone (another process removed it) is deleted.
pub fn delete_storage<F: StorageFs>(fs: &F, name: &str) -> Result<Option<QuarantineInfo>, Failure> {
    delete_storage_sharing(fs, name, &mut Shared::default())
}

/// What a batch of deletions shares, each taken by the first that needs
/// it: the handle on `.deleting/` (an open and a close fewer per storage)
/// and the clock's reading that names their entries there (a clock call
/// fewer; each entry keeps its runner's name, so they stay apart).
pub struct Shared<D> {
    deleting: Option<D>,
    now: Option<f64>,
}

impl<D> Default for Shared<D> {
    fn default() -> Self {
        Self { deleting: None, now: None }
    }
}

impl<D> Shared<D> {
    /// Whether a deletion opened `.deleting/` for the others.
    pub fn holds_deleting(&self) -> bool {
        self.deleting.is_some()
    }
}

/// [`delete_storage`] with what a batch of deletions shares ([`Shared`]).
/// A move through a shared handle that fails (`.deleting/` may have gone
/// since it was opened) is tried once more through a fresh one.
pub fn delete_storage_sharing<F: StorageFs>(
    fs: &F,
    name: &str,
    shared: &mut Shared<F::Dir>,
) -> Result<Option<QuarantineInfo>, Failure> {
    if !is_valid_runner_name(name) {
        return Err(Failure::new(format!("refusing to delete {name:?}: not a valid runner name")));
    }
    match fs.lstat(name) {
        Ok(meta) if meta.kind == EntryKind::Directory => {}
        Ok(meta) => return Err(Failure::new(format!("refusing to delete {name:?}: it is {}", meta.kind.describe()))),
        Err(e) if e.code == FsErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    // One handle on `.deleting/` for the move and the removal: single
    // names relative to it, never a path resolved twice.
    let base = entry_base(name, *shared.now.get_or_insert_with(|| fs.now()));
    let deleting = &mut shared.deleting;
    let moved = match deleting.as_ref().map(|shared| move_to_free_name(fs, name, shared, &base)) {
        Some(Ok(moved)) => moved,
        // None shared yet, or the shared one failed (`.deleting/` removed
        // since, say): a fresh handle, which the batch shares from now on.
        _ => {
            let fresh = deleting.insert(open_reserved_dir(fs, DELETING_DIR)?);
            move_to_free_name(fs, name, fresh, &base)?
        }
    };
    let Some(leftover) = moved else {
        return Ok(None);
    };
    let Some(deleting) = deleting.as_ref() else {
        return Err(Failure::new(format!("{DELETING_DIR} was not opened")));
    };
    use crate::walk::DirHandle;
    match walk::remove_tree_expecting(deleting, &<F::Dir as DirHandle>::name_from(&leftover), &files::ALL) {
        Ok(()) => Ok(None),
        Err(e) => {
            let doomed = join(DELETING_DIR, &leftover);
            move_to_quarantine(fs, &doomed, name, QuarantineReason::Undeletable, None, &e.to_string())
                .map(Some)
                .map_err(|q| {
                    Failure::from(e).joined(q, |e, q| {
                        format!("moved to {doomed} but could not delete it ({e}) nor quarantine it ({q})")
                    })
                })
        }
    }
}

/// Opens a reserved directory of the root, creating it first if needed.
fn open_reserved_dir<F: StorageFs>(fs: &F, dir: &str) -> Result<F::Dir, Failure> {
    match fs.open_dir(dir) {
        Ok(handle) => return Ok(handle),
        Err(e) if e.code == FsErrorCode::NotFound => {}
        Err(e) => return Err(Failure::from(e).context(format!("{dir} is not a directory that can be opened"))),
    }
    match fs.create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.code == FsErrorCode::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    Ok(fs.open_dir(dir)?)
}

/// Moves the root's entry `name` into `dir` as `base` (or `base.1`,
/// `base.2`... when taken); `None` when `name` is gone already. Tries the
/// move itself rather than probing names first: one call in the usual case.
fn move_to_free_name<F: StorageFs>(fs: &F, name: &str, dir: &F::Dir, base: &str) -> Result<Option<String>, Failure> {
    for attempt in 0..100u32 {
        let candidate = match attempt {
            0 => base.to_owned(),
            n => format!("{base}.{n}"),
        };
        match fs.move_into(name, dir, &candidate) {
            Ok(()) => return Ok(Some(candidate)),
            // Taken by a file or a directory that is not empty.
            Err(e)
                if matches!(
                    e.code,
                    FsErrorCode::AlreadyExists | FsErrorCode::NotEmpty | FsErrorCode::NotADirectory
                ) => {}
            // The storage vanished, or the target directory did: which one?
            Err(e) if e.code == FsErrorCode::NotFound => {
                return match fs.lstat(name) {
                    Err(gone) if gone.code == FsErrorCode::NotFound => Ok(None),
                    _ => Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Failure::new(format!("no free name for {base:?} in {DELETING_DIR}")))
}

/// Removes the entry `leftover` of `.deleting/` (a tree, file or symlink)
/// with the descriptor-relative walk of [`walk`]: never by a path through
/// anything a job could have replaced.
fn delete_in_deleting<F: StorageFs>(fs: &F, leftover: &str) -> Result<(), FsError> {
    use crate::walk::DirHandle;
    let deleting = fs.open_dir(DELETING_DIR)?;
    walk::remove_tree(&deleting, &F::Dir::name_from(leftover))
}

/// Finishes deletions cut short by a crash: everything in `.deleting/` was
/// already extracted (or had no data), so it is removed; what cannot be
/// removed is quarantined as `undeletable`, once (from `.quarantine/` it is
/// only ever purged by the operator). Returns how many were handled.
pub fn purge_deleting(fs: &impl StorageFs) -> Result<u32, Failure> {
    let listing = match fs.list(DELETING_DIR) {
        Ok(listing) => listing,
        Err(e) if e.code == FsErrorCode::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for entry in listing {
        match entry?.name {
            Some(name) => names.push(name),
            None => return Err(Failure::new(format!("{DELETING_DIR} holds an entry whose name is not UTF-8"))),
        }
    }
    let mut handled = 0u32;
    for leftover in names {
        let path = join(DELETING_DIR, &leftover);
        if let Err(e) = delete_in_deleting(fs, &leftover) {
            let runner = runner_name_of(&leftover);
            move_to_quarantine(fs, &path, runner, QuarantineReason::Undeletable, None, &e.to_string()).map_err(
                |q| Failure::from(e).joined(q, |e, q| format!("cannot delete {path} ({e}) nor quarantine it ({q})")),
            )?;
        }
        handled += 1;
    }
    Ok(handled)
}
