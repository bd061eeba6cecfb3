//! Re-validation of everything the plugin hands over. The plugin parses
//! hostile input, so its answers are claims: names must be valid and exist,
//! numbers finite and non-negative, strings bounded, each line one line of
//! JSON holding exactly the event it claims to be. A failed check is a lie:
//! the plugin is stopped and the storage concerned kept.

use std::path::Path;

use runner_metrics_core::fs::{EntryKind, FsErrorCode, FsResult, Meta, StorageFs};
use runner_metrics_core::names::DELETING_DIR;
pub use runner_metrics_core::report::{bound, bounded, MAX_MESSAGE_BYTES, UNNAMED};

use crate::bindings::{
    Emit, Event, Failure, FsError, OutcomeKind, PreJobMetrics, QuarantineReason, Rendered, RunnerMetrics, SkipReason,
    StorageOutput, StorageReport,
};
use crate::books::Books;

/// The longest string a metrics file can yield (the file size limit).
pub const MAX_FIELD_BYTES: usize = runner_metrics_core::FILE_SIZE_BYTES_LIMIT;
/// How much of a runner name starts a quarantine location (the guest keeps
/// entry names within the filesystem's 255-byte limit): the guest's own.
pub use runner_metrics_core::names::ENTRY_NAME_PREFIX;
/// The longest event line accepted from the guest.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// The most filesystem errors one report or failure may name (the guest's
/// sentences name at most two).
pub const MAX_FS_ERRORS: usize = 4;
/// The longest root-relative path an error may name: a storage, a reserved
/// directory and an entry of each, every component within the 255-byte limit.
pub const MAX_ERROR_PATH_BYTES: usize = 1024;

/// A runner name as spec section 2 defines it: the guest's own check, so
/// keeper and guest can never disagree on what a storage is.
pub use runner_metrics_core::names::{is_location_of, is_valid_runner_name};

fn time(what: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("{what} is {value}, not a finite number >= 0"))
    }
}

fn field(what: &str, value: &str) -> Result<(), String> {
    if value.len() <= MAX_FIELD_BYTES {
        Ok(())
    } else {
        Err(format!("{what} is {} bytes long, more than a metrics file can hold", value.len()))
    }
}

/// A root entry the guest says it works on: a runner name, as a path
/// component of the root.
pub fn storage_name(name: &str) -> Result<(), String> {
    if is_valid_runner_name(name) {
        Ok(())
    } else {
        Err(format!("named {:?} as a storage, which is not a valid runner name", bounded(name)))
    }
}

/// Metrics the guest extracted from the storage `name` (the storage being
/// a directory of the root is checked once, when its lines are appended).
pub fn metrics(name: &str, m: &RunnerMetrics) -> Result<(), String> {
    if m.runner_name != name {
        return Err(format!("guest answered for {:?} when asked about {name:?}", bounded(&m.runner_name)));
    }
    if let Some(start) = m.installation_start_timestamp {
        time("installation start timestamp", start)?;
    }
    time("installed timestamp", m.installed_timestamp)?;
    if let Some(pre) = &m.pre_job {
        pre_job(pre)?;
    }
    if let Some(post) = &m.post_job {
        time("post-job timestamp", post.timestamp)?;
    }
    Ok(())
}

fn pre_job(pre: &PreJobMetrics) -> Result<(), String> {
    time("pre-job timestamp", pre.timestamp)?;
    field("workflow", &pre.workflow)?;
    field("workflow_run_id", &pre.workflow_run_id)?;
    field("event", &pre.event)?;
    if let Some(repository) = &pre.repository {
        field("repository", repository)?;
        // Some '/' with at least one character on each side (spec 3.1).
        let has_inner_slash = repository.char_indices().any(|(i, c)| c == '/' && i > 0 && i + 1 < repository.len());
        if !has_inner_slash {
            return Err(format!("repository {:?} is not owner/repo", bounded(repository)));
        }
    }
    Ok(())
}

/// Events computed by the guest for runners of `flavor`: at most the three
/// that exist, every number finite and non-negative, every string one a
/// metrics file can hold, and the flavor the one asked for. What passes is
/// rendered here, so nothing else can reach the log.
pub fn events(events: &[Event], flavor: &str) -> Result<(), String> {
    if events.len() > 3 {
        return Err(format!("guest issued {} events for one runner; at most 3 exist", events.len()));
    }
    for event in events {
        let kind = event.kind();
        if event.flavor() != flavor {
            return Err(format!("guest issued a {kind} event of flavor {:?}, not {flavor:?}", bounded(event.flavor())));
        }
        match event {
            Event::RunnerInstalled(e) => {
                time("runner_installed timestamp", e.timestamp)?;
                time("runner_installed duration", e.duration)?;
            }
            Event::RunnerStart(e) => {
                time("runner_start timestamp", e.timestamp)?;
                time("runner_start idle", e.idle)?;
                if let Some(queue) = e.queue_duration {
                    time("runner_start queue_duration", queue)?;
                }
                field("runner_start workflow", &e.workflow)?;
                field("runner_start repo", &e.repo)?;
                field("runner_start github_event", &e.github_event)?;
            }
            Event::RunnerStop(e) => {
                time("runner_stop timestamp", e.timestamp)?;
                time("runner_stop job_duration", e.job_duration)?;
                field("runner_stop workflow", &e.workflow)?;
                field("runner_stop repo", &e.repo)?;
                field("runner_stop github_event", &e.github_event)?;
            }
        }
    }
    Ok(())
}

/// The lines of one extracted storage, before they are appended: a real
/// storage of the root, with what was asked for (`emit`), checked, then
/// rendered here (the plugin hands over no line, so it cannot write one).
pub fn storage_output(root: &Path, storage: &StorageOutput, emit: &Emit) -> Result<Vec<String>, String> {
    let name = &storage.runner_name;
    storage_name(name)?;
    match lstat(root, name) {
        Ok(meta) if meta.kind == EntryKind::Directory => {}
        _ => return Err(format!("appended lines for {name:?}, which is not a directory of the storage root")),
    }
    match (&storage.source, emit) {
        (Rendered::Events(issued), Emit::Events(flavor)) => events(issued, flavor)?,
        (Rendered::Metrics(m), Emit::Metrics) => metrics(name, m)?,
        (Rendered::Events(_), Emit::Metrics) => return Err("handed events when metrics were asked for".to_owned()),
        (Rendered::Metrics(_), Emit::Events(_)) => return Err("handed metrics when events were asked for".to_owned()),
    }
    let lines = storage.lines();
    // Bounded by the checks above; said again where it is cheap to.
    match lines.iter().find(|line| line.len() > MAX_LINE_BYTES) {
        Some(line) => Err(format!("the keeper's renderer wrote a {}-byte line", line.len())),
        None => Ok(lines),
    }
}

/// A report from the guest, checked against the run's books: strings
/// bounded, reasons known, each root entry reported once, and the lines it
/// claims for the storage equal to those appended for it; with it, whether
/// any of its words had to be cut (if not, it is the report as given).
/// `Err`: the lie, and the storage it concerns.
pub(crate) fn report(report: StorageReport, books: &Books) -> Result<(StorageReport, bool), (Option<String>, String)> {
    let kind = report.outcome;
    let name = report.name;
    let lie = |what: String| Err((None, what));
    if name.len() > 255 {
        return lie(format!("reported on a {}-byte name", name.len()));
    }
    let known_reason = |r: &str| QuarantineReason::from_str_exact(r).is_some() || SkipReason::NAMES.contains(&r);
    if let Some(reason) = report.reason.as_deref().filter(|r| !known_reason(r)) {
        return lie(format!("reported an unknown reason {:?}", bounded(reason)));
    }
    let events = report.events as usize;
    if name == UNNAMED || name == DELETING_DIR {
        let allowed = if name == UNNAMED { OutcomeKind::Skipped } else { OutcomeKind::Failed };
        if kind != allowed || events != 0 {
            return lie(format!("reported {name} as {} with {events} lines", kind.as_str()));
        }
    } else {
        if books.was_reported(&name) {
            return lie(format!("reported {:?} twice", bounded(&name)));
        }
        // Only a report of what was done to a storage needs a storage's
        // name; any root entry can be skipped, and any name the guest
        // offered can have failed (a report changes nothing on disk).
        if !matches!(kind, OutcomeKind::Skipped | OutcomeKind::Failed) {
            storage_name(&name).map_err(|e| (None, e))?;
        }
        let appended = books.appended_lines(&name);
        if !report_matches_appends(kind, events, appended) {
            let what = match appended {
                Some(count) => format!("{count} lines were appended"),
                None => "none were appended".to_owned(),
            };
            return Err((
                Some(name.clone()),
                format!("reported {name:?} as {} with {events} lines, but {what}", kind.as_str()),
            ));
        }
        if leaves_the_root(books.dry_run(), kind) {
            gone(books.root(), &name, kind, &report.detail).map_err(|lie| (Some(name.clone()), lie))?;
        }
    }
    let (mut file, mut detail) = (report.file, report.detail);
    let (errors, errors_cut) = bound_fs_errors(report.errors).map_err(|lie| (None, lie))?;
    let cut = file.as_mut().is_some_and(bound) | bound(&mut detail) | errors_cut;
    let report =
        StorageReport { name, outcome: kind, reason: report.reason, file, detail, events: report.events, errors };
    Ok((report, cut))
}

/// The filesystem errors a report or failure names: a few, each on a plain
/// root-relative path (no `..`, nothing absolute, no NUL), so a host that
/// writes the path in full under the root names a place inside it.
pub fn fs_errors(errors: Vec<FsError>) -> Result<Vec<FsError>, String> {
    bound_fs_errors(errors).map(|(errors, _)| errors)
}

/// [`fs_errors`], and whether a cause had to be cut.
fn bound_fs_errors(mut errors: Vec<FsError>) -> Result<(Vec<FsError>, bool), String> {
    if errors.len() > MAX_FS_ERRORS {
        return Err(format!("named {} filesystem errors in one message", errors.len()));
    }
    let mut cut = false;
    for error in &mut errors {
        let path = &error.path;
        let plain = path.len() <= MAX_ERROR_PATH_BYTES
            && !path.starts_with('/')
            && !path.contains('\0')
            && (path.is_empty() || path.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
        if !plain {
            return Err(format!("named {:?} as a path in the storage root", bounded(path)));
        }
        cut |= bound(&mut error.cause);
    }
    Ok((errors, cut))
}

/// Why a plugin call stopped, as the plugin says it: its message bounded,
/// and the filesystem errors it names only when they pass [`fs_errors`] (a
/// stop is reported either way).
pub fn failure(failure: Failure) -> Failure {
    Failure { message: bounded(&failure.message), errors: fs_errors(failure.errors).unwrap_or_default() }
}

/// Whether a storage reported as `kind` must have left the root (and is
/// checked to have left it): deleted, quarantined, unless nothing on disk
/// changes (a dry run).
pub(crate) fn leaves_the_root(dry_run: bool, kind: OutcomeKind) -> bool {
    !dry_run && matches!(kind, OutcomeKind::Extracted | OutcomeKind::NoData | OutcomeKind::Quarantined)
}

/// Whether a report of `kind` may carry `events` lines for a storage whose
/// durable lines number `appended` (`None`: nothing was appended for it).
fn report_matches_appends(kind: OutcomeKind, events: usize, appended: Option<usize>) -> bool {
    match appended {
        Some(count) => events == count && matches!(kind, OutcomeKind::Extracted | OutcomeKind::Failed),
        None => events == 0 && kind != OutcomeKind::Extracted,
    }
}

/// A storage reported deleted or quarantined has left the root, and a
/// quarantined one went to a location of its own under `.quarantine/`.
fn gone(root: &Path, name: &str, kind: OutcomeKind, detail: &str) -> Result<(), String> {
    if kind == OutcomeKind::Quarantined {
        let Some((_, location)) = detail.rsplit_once("moved to .quarantine/") else {
            return Err(format!("reported {name:?} as quarantined without saying where to"));
        };
        let plain = !location.contains('/') && location.len() <= 255 && !location.starts_with('.');
        if !plain || !is_location_of(location, name) {
            return Err(format!("reported quarantine location {:?} for {name:?}", bounded(location)));
        }
    }
    match lstat(root, name) {
        Err(e) if e.code == FsErrorCode::NotFound => Ok(()),
        _ => Err(format!("reported {name:?} as {}, but it is still in the storage root", kind.as_str())),
    }
}

/// `lstat` of the root's entry `name`, the plugin's way: in the component
/// one `stat-at` on the preopened root (std's `symlink_metadata` makes a
/// second WASI call there, for an inode number nothing here reads).
fn lstat(root: &Path, name: &str) -> FsResult<Meta> {
    #[cfg(target_arch = "wasm32")]
    {
        let _ = root;
        runner_metrics_core::fs::WasiFs::open()?.lstat(name)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        runner_metrics_core::fs::NativeFs::new(root).lstat(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(flavor: &str) -> Event {
        Event::RunnerInstalled(crate::bindings::RunnerInstalled {
            timestamp: 2.0,
            flavor: flavor.into(),
            duration: 1.0,
        })
    }

    #[test]
    fn events_are_checked_and_rendered_here_for_the_flavor_asked_for() {
        use crate::bindings::{RunnerStart, StorageOutput};
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("r-1")).unwrap();
        let flavor = Emit::Events("small".into());
        let output = |events: Vec<Event>| StorageOutput { runner_name: "r-1".into(), source: Rendered::Events(events) };
        let lines = storage_output(root.path(), &output(vec![installed("small")]), &flavor).unwrap();
        assert_eq!(lines, [r#"{"timestamp": 2.0, "event": "runner_installed", "flavor": "small", "duration": 1.0}"#]);
        let start = |workflow: String| {
            Event::RunnerStart(RunnerStart {
                timestamp: 3.0,
                flavor: "small".into(),
                workflow,
                repo: "o/r".into(),
                github_event: "push".into(),
                idle: 1.0,
                queue_duration: None,
            })
        };
        for (events, why) in [
            (vec![installed("large")], "of flavor \"large\", not \"small\""),
            (vec![installed("small"); 4], "at most 3 exist"),
            (vec![start("w".repeat(MAX_FIELD_BYTES + 1))], "workflow is 1025 bytes long"),
            (vec![installed(&"x".repeat(1 << 20))], "of flavor"),
        ] {
            let e = storage_output(root.path(), &output(events), &flavor).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
            assert!(e.len() < 2 * MAX_MESSAGE_BYTES, "the lie is bounded");
        }
        let e = storage_output(root.path(), &output(vec![installed("small")]), &Emit::Metrics).unwrap_err();
        assert!(e.contains("metrics were asked for"), "{e}");
        let gone = StorageOutput { runner_name: "r-2".into(), source: Rendered::Events(vec![]) };
        assert!(storage_output(root.path(), &gone, &flavor).unwrap_err().contains("not a directory"));
    }

    #[test]
    fn repositories_need_a_slash_with_something_on_each_side() {
        let pre = |repository: &str| PreJobMetrics {
            timestamp: 1.0,
            workflow: "w".into(),
            workflow_run_id: "1".into(),
            repository: Some(repository.into()),
            event: "push".into(),
            workflow_run_attempt: None,
        };
        // "//r" is accepted by the guest (found by fuzzing): '/' at 1 has
        // '/' before it and 'r' after it, as the reference's `.+/.+` allows.
        for ok in ["o/r", "//r", "a/b/c", "é/x"] {
            assert!(pre_job(&pre(ok)).is_ok(), "{ok}");
        }
        for bad in ["or", "/r", "o/", "/", ""] {
            assert!(pre_job(&pre(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_must_be_finite_and_non_negative() {
        assert!(time("t", 0.0).is_ok());
        assert!(time("t", -1.0).is_err());
        assert!(time("t", f64::NAN).is_err());
        assert!(time("t", f64::INFINITY).is_err());
    }

    #[test]
    fn named_filesystem_errors_stay_inside_the_root_and_bounded() {
        use runner_metrics_core::model::{FsErrorCode, FsOperation};
        let at = |path: &str| FsError::new(FsErrorCode::Other, FsOperation::Open, path, "x");
        for path in ["", "r-1", "r-1/pre-job-metrics.json", ".deleting/r-1.5.000001/a"] {
            assert!(fs_errors(vec![at(path)]).is_ok(), "{path:?}");
        }
        for path in ["../x", "r-1/../../x", "/etc/passwd", "a//b", "a/./b", "a/", "a\0b", &"a/".repeat(600)] {
            let lie = fs_errors(vec![at(path)]).unwrap_err();
            assert!(lie.contains("as a path in the storage root"), "{path:?}: {lie}");
        }
        assert!(fs_errors(vec![at("a"); MAX_FS_ERRORS + 1]).is_err(), "a bounded number");
        let long = FsError { cause: "y".repeat(MAX_MESSAGE_BYTES * 2), ..at("a") };
        assert!(fs_errors(vec![long]).unwrap()[0].cause.len() < MAX_MESSAGE_BYTES + 64, "causes bounded");
        // A stop keeps its words, and drops errors that fail the check.
        let stop = failure(Failure { message: "m".into(), errors: vec![at("../x")] });
        assert_eq!((stop.message.as_str(), stop.errors.len()), ("m", 0));
    }
}
