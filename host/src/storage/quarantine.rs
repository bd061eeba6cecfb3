//! Quarantined storages on the host (the storage commands): moved whole
//! into `.quarantine/` with a reason file, shown, restored, purged.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use runner_metrics_core::quarantine::ReasonFileError;
use std::time::Duration;

use serde::Serialize;

use super::*;

/// Moves the storage `name` whole into `<root>/.quarantine/<location>`, with
/// `<location>.reason.json` beside it (written first, so a quarantined
/// storage always has its reason). Returns the location.
pub fn move_to_quarantine(root: &Path, name: &str, reason: QuarantineReason, detail: &str) -> Result<String> {
    let path = require_name(root, name)?;
    require_plain_dir(&path, "the storage")?;
    bounded::move_out(root, name, || quarantine_path(root, &path, name, reason, None, detail))?
}

/// Moves `source` (a storage, or a leftover in `.deleting/`) beneath the
/// root into `.quarantine/` as a storage of `runner`, with the core's one
/// quarantine writer (the pipeline's). New files are made through a
/// confined run's staging directory. Returns the location.
pub(super) fn quarantine_path(
    root: &Path,
    source: &Path,
    runner: &str,
    reason: QuarantineReason,
    file: Option<&str>,
    detail: &str,
) -> Result<String> {
    let beneath = source.strip_prefix(root).ok().and_then(Path::to_str);
    let beneath = beneath.ok_or_else(|| error(ErrorKind::Io, source, "is not beneath the storage root"))?;
    runner_metrics_core::quarantine::move_to_quarantine(&native_fs(root), beneath, runner, reason, file, detail)
        .map(|info| info.location)
        .map_err(|why| error(ErrorKind::Io, source, format!("cannot be quarantined: {why}")))
}

/// One quarantined storage, from its reason file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantineEntry {
    /// The entry name under `<root>/.quarantine/`.
    pub location: String,
    pub runner_name: String,
    pub reason: String,
    pub file: Option<String>,
    pub detail: String,
    /// UNIX seconds.
    pub quarantined_at: f64,
    /// Whether the quarantined storage directory itself is present (a
    /// reason file can outlive it after a crash mid-restore).
    pub present: bool,
}

/// A quarantine location: one plain entry name, not a reason file. Its
/// name (`<runner>.<secs>.<micros>[.<n>]`) follows the runner-name rule.
pub(super) fn require_location(root: &Path, location: &str) -> Result<PathBuf> {
    let path = root.join(QUARANTINE_DIR).join(location);
    let ok = is_valid_runner_name(location) && !location.ends_with(REASON_SUFFIX);
    if !ok {
        return Err(error(
            ErrorKind::InvalidName,
            &path,
            format!("{location:?} is not a quarantine location (an entry name as `quarantine list` prints it)"),
        ));
    }
    Ok(path)
}

/// Reads `<root>/.quarantine/<location>.reason.json` with the core's one
/// reason-file reader (a small regular file, never through a symlink, one
/// of ours) and says whether the storage itself is still there.
pub fn show(root: &Path, location: &str) -> Result<QuarantineEntry> {
    let path = require_location(root, location)?;
    let reason_path = root.join(QUARANTINE_DIR).join(format!("{location}{REASON_SUFFIX}"));
    let stored = runner_metrics_core::quarantine::read_reason(&native_fs(root), location).map_err(|e| match e {
        ReasonFileError::Missing => {
            error(ErrorKind::NotFound, &reason_path, "no such quarantined storage (no reason file)")
        }
        ReasonFileError::Bad(why) => error(ErrorKind::BadReasonFile, &reason_path, why),
    })?;
    let present = match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => true,
        Ok(meta) => {
            return Err(error(
                ErrorKind::NotADirectory,
                &path,
                format!("is {}, not a quarantined storage", kind_of(&meta)),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_error(&path, "cannot be read", &e)),
    };
    Ok(QuarantineEntry {
        location: stored.location,
        runner_name: stored.runner_name,
        reason: stored.reason.as_str().to_owned(),
        file: stored.file,
        detail: stored.detail,
        quarantined_at: stored.quarantined_at,
        present,
    })
}

/// One entry inside a quarantined storage, as `lstat` sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContentEntry {
    /// The name, lossily decoded (it was chosen by the job).
    pub name: String,
    pub kind: &'static str,
    pub size: u64,
}

/// The top-level entries of a quarantined storage, never following
/// anything, sorted by name. For a bounded storage, the entries of its
/// image, mounted read-only for the listing.
pub fn quarantined_contents(root: &Path, location: &str) -> Result<Vec<ContentEntry>> {
    let path = require_location(root, location)?;
    require_plain_dir(&path, "the quarantined storage")?;
    match bounded::image_inside(&path) {
        Some(image) => bounded::image_contents(root, &image),
        None => list_entries(&path),
    }
}

/// The entries of the directory `path`, as `lstat` sees them, sorted.
pub(super) fn list_entries(path: &Path) -> Result<Vec<ContentEntry>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| io_error(path, "cannot list", &e))? {
        let entry = entry.map_err(|e| io_error(path, "cannot list", &e))?;
        let (kind, size) = match fs::symlink_metadata(entry.path()) {
            Ok(meta) => (kind_of(&meta), meta.len()),
            Err(_) => ("gone", 0),
        };
        found.push(ContentEntry { name: entry.file_name().to_string_lossy().into_owned(), kind, size });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Every quarantined storage with a readable reason file; the others are
/// returned apart, with the error, and are never acted on.
pub fn quarantine_entries(root: &Path) -> Result<(Vec<QuarantineEntry>, Vec<StorageError>)> {
    require_root(root)?;
    let dir = root.join(QUARANTINE_DIR);
    match fs::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(meta) => {
            return Err(error(ErrorKind::NotADirectory, &dir, format!("is {}, not a directory", kind_of(&meta))))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(io_error(&dir, "cannot be read", &e)),
    }
    let locations = runner_metrics_core::quarantine::locations(&native_fs(root))
        .map_err(|why| error(ErrorKind::Io, &dir, format!("cannot list: {why}")))?
        .unwrap_or_default();
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for location in locations {
        match show(root, &location) {
            Ok(entry) => good.push(entry),
            Err(e) => bad.push(e),
        }
    }
    Ok((good, bad))
}

/// Puts the quarantined storage at `location` back under its runner name
/// (from its reason file) and removes the reason file. Fails, touching
/// nothing, if that name is taken. A bounded storage's image is linked
/// back into `.images/` first and mounted again after the move.
pub fn restore(root: &Path, location: &str) -> Result<Storage> {
    let entry = show(root, location)?;
    let source = root.join(QUARANTINE_DIR).join(location);
    if !entry.present {
        return Err(error(
            ErrorKind::NotFound,
            &source,
            "the quarantined storage is gone (only its reason file is left)",
        ));
    }
    let target = require_name(root, &entry.runner_name)?;
    let image = bounded::image_inside(&source);
    if let Some(image) = &image {
        bounded::link_back(root, image, &entry.runner_name)?;
    }
    rename_noreplace(&source, &target).map_err(|e| {
        if image.is_some() {
            bounded::unlink_back(root, &entry.runner_name);
        }
        match e.kind() {
            io::ErrorKind::AlreadyExists => error(
                ErrorKind::AlreadyExists,
                &target,
                format!("cannot restore {location}: an entry named {:?} already exists", entry.runner_name),
            ),
            _ => io_error(&source, &format!("cannot move it back to {}", target.display()), &e),
        }
    })?;
    let reason_path = root.join(QUARANTINE_DIR).join(format!("{location}{REASON_SUFFIX}"));
    fs::remove_file(&reason_path)
        .map_err(|e| io_error(&reason_path, "the storage was restored but its reason file could not be removed", &e))?;
    if image.is_some() {
        bounded::reattach(root, &entry.runner_name, false).map_err(|e| StorageError {
            reason: format!("{}; the storage is restored, and the next collect or `storage list` mounts it", e.reason),
            ..e
        })?;
    }
    Ok(Storage { bounded: image.is_some(), ..Storage::plain(&entry.runner_name, target) })
}

/// What [`purge`] did.
#[derive(Debug, Default)]
pub struct PurgeReport {
    /// Locations deleted (with their reason files).
    pub purged: Vec<String>,
    /// Locations younger than the age given, left alone.
    pub kept: Vec<String>,
    /// Entries that could not be purged or whose reason file is not
    /// readable (never deleted: their age is unknown).
    pub errors: Vec<StorageError>,
}

/// Deletes the quarantined storages (and their reason files) quarantined
/// more than `older_than` ago. With `dry_run`, only reports what it would
/// delete. Each storage is moved to `.deleting/` and removed there; its
/// reason file goes only once the tree is gone. A tree that cannot be
/// removed is moved back beside its reason file (reported, never retried
/// in a loop, its reason kept); a removal cut short by a crash is finished
/// by the next collect.
pub fn purge(root: &Path, older_than: Duration, dry_run: bool) -> Result<PurgeReport> {
    let (entries, errors) = quarantine_entries(root)?;
    let mut report = PurgeReport { errors, ..PurgeReport::default() };
    let (now, _) = now();
    let cutoff = now - older_than.as_secs_f64();
    for entry in entries {
        if entry.quarantined_at >= cutoff {
            report.kept.push(entry.location);
            continue;
        }
        if dry_run {
            report.purged.push(entry.location);
            continue;
        }
        match purge_one(root, &entry, now) {
            Ok(()) => report.purged.push(entry.location),
            Err(e) => report.errors.push(e),
        }
    }
    Ok(report)
}

pub(super) fn purge_one(root: &Path, entry: &QuarantineEntry, now: f64) -> Result<()> {
    let quarantine = root.join(QUARANTINE_DIR);
    let reason_path = quarantine.join(format!("{}{REASON_SUFFIX}", entry.location));
    if entry.present {
        let source = quarantine.join(&entry.location);
        require_plain_dir(&source, "the quarantined storage")?;
        let deleting = ensure_reserved_dir(root, DELETING_DIR)?;
        let doomed = move_to_free_name(&source, &deleting, &entry_base(&entry.runner_name, now))?;
        if let Err(e) = remove_entry_at(&deleting, &doomed) {
            // Back where it was, with its original reason: the operator
            // sees it in `quarantine list` and nothing loops over it.
            let back = rename_noreplace(&deleting.join(&doomed), &source).map_or_else(
                |b| format!("; it stays in {} ({b}) and the next collect retries", deleting.display()),
                |()| "; left in quarantine with its reason".to_owned(),
            );
            return Err(StorageError { reason: format!("{}{back}", e.reason), ..e });
        }
        fs::remove_file(&reason_path).map_err(|e| io_error(&reason_path, "cannot remove the reason file", &e))?;
    } else {
        fs::remove_file(&reason_path).map_err(|e| io_error(&reason_path, "cannot remove the reason file", &e))?;
    }
    Ok(())
}

/// Parses an age such as `3600`, `90s`, `30m`, `12h` or `7d`.
pub fn parse_age(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 7.0 * 86_400.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use s, m, h, d or w)")),
    };
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not an age such as 3600, 30m, 12h or 7d"))?;
    let seconds = value * scale;
    if !seconds.is_finite() || !(0.0..=1e12).contains(&seconds) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}
