//! The collect pipeline: scan the root in one sandbox, decide each storage
//! in a worker sandbox (replaced after any trap), write the lines durably in
//! batches, and only then delete the storages they came from.
//!
//! The loop is generic over [`GuestFactory`] so that the benchmark can drive
//! the natively compiled guest through exactly this code; the product always
//! uses [`Plugin`] (sandboxes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bindings::{GithubJobMetrics, Outcome, QuarantineReason, RunnerMetrics, Selection, SkipReason};
use crate::check;
use crate::guest_api::{GuestApi, GuestFactory};
use crate::lock::{RootLock, LOCK_FILE};
use crate::log::EventSink;
use crate::plugin::Plugin;
use crate::summary::{OutcomeKind, StorageReport, Summary};

/// What to write for each extracted storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emit {
    /// The lifecycle events of spec 5, for runners of this flavor.
    Events { flavor: String },
    /// The extracted `RunnerMetrics` as one JSON line each.
    Metrics,
}

/// How one collect run behaves.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    pub selection: Selection,
    pub emit: Emit,
    /// Change nothing on disk: no quarantine, no deletion.
    pub keep: bool,
    /// Extracted storages whose lines are written (and synced) together
    /// before they are deleted. Bigger batches mean fewer syncs.
    pub batch_size: usize,
    /// How long [`collect`] waits for another run on the same root to
    /// release the root's lock before it gives up with
    /// [`LockError::Busy`](crate::lock::LockError::Busy) (spec 7). Zero:
    /// give up at once. Not used by [`collect_holding`], nor with `keep`.
    pub lock_wait: Duration,
}

impl CollectOptions {
    pub fn events(flavor: impl Into<String>) -> Self {
        Self {
            selection: empty_selection(),
            emit: Emit::Events { flavor: flavor.into() },
            keep: false,
            batch_size: 64,
            lock_wait: Duration::ZERO,
        }
    }
}

/// A selection that takes every storage.
pub fn empty_selection() -> Selection {
    Selection { exclude: Vec::new(), include: None, min_age_seconds: None }
}

/// Finds GitHub job metrics for a runner (spec 5); `None` when unknown.
pub trait JobMetricsSource {
    fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Option<GithubJobMetrics>;
}

/// No job metrics for anyone.
pub struct NoJobMetrics;

impl JobMetricsSource for NoJobMetrics {
    fn job_metrics(&mut self, _: &RunnerMetrics) -> Option<GithubJobMetrics> {
        None
    }
}

impl<F: FnMut(&RunnerMetrics) -> Option<GithubJobMetrics>> JobMetricsSource for F {
    fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Option<GithubJobMetrics> {
        self(metrics)
    }
}

/// Storages listed per scan call.
const SCAN_BATCH: u32 = 256;

/// Runs one collect over `root`. Every storage seen gets exactly one report;
/// `Err` only when the run could not start or had to stop (the root cannot
/// be listed, the log cannot be written), with the reports so far already
/// delivered and the rest of the storages untouched.
///
/// Unless `options.keep` (which changes nothing on disk), the root's lock
/// ([`crate::lock`]) is taken first and held for the whole run, waiting at
/// most `options.lock_wait` for another run to finish: when it does not,
/// the error is a [`LockError`](crate::lock::LockError) (find it with
/// `downcast_ref`) and nothing was touched.
pub fn collect(
    plugin: &Plugin,
    root: &Path,
    options: &CollectOptions,
    jobs: &mut dyn JobMetricsSource,
    sink: &mut dyn EventSink,
    on_report: &mut dyn FnMut(&StorageReport),
) -> Result<Summary> {
    collect_with(plugin, root, options, jobs, sink, on_report)
}

/// [`collect`] with any kind of guest (the benchmark passes the native one).
pub fn collect_with<G: GuestFactory>(
    guests: &G,
    root: &Path,
    options: &CollectOptions,
    jobs: &mut dyn JobMetricsSource,
    sink: &mut dyn EventSink,
    on_report: &mut dyn FnMut(&StorageReport),
) -> Result<Summary> {
    let root = root.canonicalize().with_context(|| format!("storage root {}", root.display()))?;
    if options.keep {
        return run_collect(guests, root, options, jobs, sink, on_report);
    }
    let lock = RootLock::acquire(&root, options.lock_wait)?;
    collect_holding(guests, &lock, options, jobs, sink, on_report)
}

/// [`collect_with`] over the root of a lock the caller already holds (and
/// keeps holding afterwards), for callers that have more to do under the
/// same lock (the CLI writes the Prometheus textfile, which accumulates
/// across runs, before it lets the next run in).
pub fn collect_holding<G: GuestFactory>(
    guests: &G,
    lock: &RootLock,
    options: &CollectOptions,
    jobs: &mut dyn JobMetricsSource,
    sink: &mut dyn EventSink,
    on_report: &mut dyn FnMut(&StorageReport),
) -> Result<Summary> {
    run_collect(guests, lock.root().to_owned(), options, jobs, sink, on_report)
}

fn run_collect<G: GuestFactory>(
    guests: &G,
    root: PathBuf,
    options: &CollectOptions,
    jobs: &mut dyn JobMetricsSource,
    sink: &mut dyn EventSink,
    on_report: &mut dyn FnMut(&StorageReport),
) -> Result<Summary> {
    let mut scanner = guests.guest(&root)?;
    let scan = scanner.start_scan(&options.selection).map_err(anyhow::Error::new)?;
    let mut run = Run {
        guests,
        root,
        options,
        jobs,
        sink,
        on_report,
        worker: None,
        pending: Vec::new(),
        lines: Vec::new(),
        summary: Summary::default(),
    };
    if !options.keep {
        run.purge_deleting()?;
    }
    loop {
        let listed = match scanner.next_batch(scan, SCAN_BATCH) {
            Ok(Ok(batch)) => Ok(batch),
            Ok(Err(e)) => {
                Err(anyhow::anyhow!("listing the storage root {}: {}", run.root.display(), check::bounded(&e)))
            }
            Err(trap) => {
                Err(anyhow::Error::new(trap).context(format!("listing the storage root {}", run.root.display())))
            }
        };
        let batch = match listed {
            Ok(batch) => batch,
            Err(e) => {
                // Storages already extracted still get their lines written
                // and a report; the rest stay untouched for the next run.
                run.flush()?;
                return Err(e);
            }
        };
        if batch.is_empty() {
            break;
        }
        for entry in batch {
            if entry.name.as_deref() == Some(LOCK_FILE) {
                continue; // the project's own lock file, held by this run
            }
            let label = entry.name.clone().unwrap_or_else(|| "<non-UTF-8 name>".to_owned());
            if let Err(lie) = check::root_entry(&entry) {
                run.report(label, OutcomeKind::Failed, lie, 0);
                continue;
            }
            match (entry.name, entry.skipped) {
                (_, Some(reason)) => run.report(label, OutcomeKind::Skipped, skip_detail(&reason), 0),
                (Some(name), None) => run.candidate(&name)?,
                (None, None) => run.report(label, OutcomeKind::Failed, "guest offered a nameless storage".into(), 0),
            }
        }
    }
    run.flush()?;
    Ok(run.summary)
}

/// A storage whose lines wait to be written before it is deleted.
struct Pending {
    name: String,
    /// How many of the run's queued lines are this storage's.
    events: usize,
}

/// The state of one collect run.
struct Run<'a, G: GuestFactory> {
    guests: &'a G,
    root: PathBuf,
    options: &'a CollectOptions,
    jobs: &'a mut dyn JobMetricsSource,
    sink: &'a mut dyn EventSink,
    on_report: &'a mut dyn FnMut(&StorageReport),
    /// Reused across storages until it traps.
    worker: Option<G::Guest>,
    pending: Vec<Pending>,
    /// The lines of `pending`, in order: written in one append, never copied.
    lines: Vec<String>,
    summary: Summary,
}

impl<G: GuestFactory> Run<'_, G> {
    fn report(&mut self, name: String, kind: OutcomeKind, detail: String, events: usize) {
        let report = StorageReport { name, kind, detail, events };
        self.summary.add(&report);
        (self.on_report)(&report);
    }

    fn worker(&mut self) -> Result<&mut G::Guest> {
        if self.worker.is_none() {
            self.worker = Some(self.guests.guest(&self.root)?);
        }
        Ok(self.worker.as_mut().expect("just created"))
    }

    /// Finishes deletions a crash cut short. A failure here is reported
    /// (the leftovers stay in `.deleting/`) and the run goes on.
    fn purge_deleting(&mut self) -> Result<()> {
        let problem = match self.worker()?.purge_deleting() {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => check::bounded(&e),
            Err(trap) => {
                self.worker = None;
                trap.detail
            }
        };
        self.report(".deleting".to_owned(), OutcomeKind::Failed, format!("leftover deletions kept: {problem}"), 0);
        Ok(())
    }

    /// Decides one candidate storage.
    fn candidate(&mut self, name: &str) -> Result<()> {
        let keep = self.options.keep;
        let outcome = match self.worker()?.extract_storage(name, keep) {
            Ok(outcome) => outcome,
            Err(failure) => return self.after_trap(name, failure.detail),
        };
        if let Err(lie) = check::outcome(&self.root, name, &outcome) {
            self.worker = None; // a lying guest is not trusted with the next storage
            self.report(name.to_owned(), OutcomeKind::Failed, format!("kept: {lie}"), 0);
            return Ok(());
        }
        match outcome {
            Outcome::Extracted(metrics) => self.extracted(name, metrics)?,
            Outcome::NoData => self.report(name.to_owned(), OutcomeKind::NoData, no_data_detail(keep), 0),
            Outcome::Quarantined(info) => {
                let detail = quarantine_detail(&info.reason, info.file.as_deref(), &info.detail, &info.location);
                self.report(name.to_owned(), OutcomeKind::Quarantined, detail, 0);
            }
            Outcome::Skipped(reason) => self.report(name.to_owned(), OutcomeKind::Skipped, skip_detail(&reason), 0),
            Outcome::Failed(message) => {
                self.report(name.to_owned(), OutcomeKind::Failed, format!("kept: {}", check::bounded(&message)), 0)
            }
        }
        Ok(())
    }

    /// The guest trapped on this storage: quarantine it with a fresh
    /// instance (or, in a dry run, report it), and go on.
    fn after_trap(&mut self, name: &str, detail: String) -> Result<()> {
        self.worker = None;
        if self.options.keep {
            self.report(name.to_owned(), OutcomeKind::Failed, format!("kept: {detail}"), 0);
            return Ok(());
        }
        let detail = check::bounded(&detail);
        match self.worker()?.quarantine_storage(name, QuarantineReason::SandboxTrap, &detail) {
            Ok(Ok(info)) => {
                let text = quarantine_detail(&info.reason, None, &detail, &info.location);
                self.report(name.to_owned(), OutcomeKind::Quarantined, text, 0);
            }
            Ok(Err(e)) => {
                let text = format!("kept: {detail}; quarantine failed: {}", check::bounded(&e));
                self.report(name.to_owned(), OutcomeKind::Failed, text, 0);
            }
            Err(again) => {
                self.worker = None;
                let text = format!("kept: {detail}; quarantine trapped too: {again}");
                self.report(name.to_owned(), OutcomeKind::Failed, text, 0);
            }
        }
        Ok(())
    }

    /// Turns extracted metrics into lines and queues the storage.
    fn extracted(&mut self, name: &str, metrics: RunnerMetrics) -> Result<()> {
        let lines = match &self.options.emit {
            Emit::Metrics => Ok(vec![crate::metrics_json::to_line(&metrics)]),
            Emit::Events { flavor } => {
                let flavor = flavor.clone();
                let job = self.jobs.job_metrics(&metrics);
                self.event_lines(&metrics, &flavor, job)
            }
        };
        match lines {
            Ok(lines) => {
                self.pending.push(Pending { name: name.to_owned(), events: lines.len() });
                self.lines.extend(lines);
                if self.pending.len() >= self.options.batch_size.max(1) {
                    self.flush()?;
                }
                Ok(())
            }
            Err(EventsError::Trap(detail)) => self.after_trap(name, detail),
            Err(EventsError::Invalid(lie)) => {
                self.worker = None;
                self.report(name.to_owned(), OutcomeKind::Failed, format!("kept: {lie}"), 0);
                Ok(())
            }
        }
    }

    fn event_lines(
        &mut self,
        metrics: &RunnerMetrics,
        flavor: &str,
        job: Option<GithubJobMetrics>,
    ) -> std::result::Result<Vec<String>, EventsError> {
        let worker = self.worker().map_err(|e| EventsError::Trap(format!("{e:#}")))?;
        let events = worker.issue_events(metrics, flavor, job).map_err(|f| EventsError::Trap(f.detail))?;
        check::events(&events).map_err(EventsError::Invalid)?;
        let mut lines = Vec::with_capacity(events.len());
        for event in &events {
            let line = worker.render_event(event).map_err(|f| EventsError::Trap(f.detail))?;
            check::line(&line, event, flavor).map_err(EventsError::Invalid)?;
            lines.push(line);
        }
        Ok(lines)
    }

    /// Writes the queued lines durably, then deletes their storages.
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let written = self.sink.append(&self.lines);
        self.lines.clear();
        if let Err(e) = written {
            for p in pending {
                self.report(p.name, OutcomeKind::Failed, format!("kept: events not written: {e}"), 0);
            }
            return Err(anyhow::anyhow!("writing events to {}: {e}", self.sink.describe()));
        }
        for p in pending {
            let events = p.events;
            if self.options.keep {
                self.report(p.name, OutcomeKind::Extracted, "kept (dry run)".to_owned(), events);
                continue;
            }
            let deleted = self.worker()?.delete_storage(&p.name);
            let (kind, detail) = match deleted {
                Ok(Ok(None)) => (OutcomeKind::Extracted, "deleted".to_owned()),
                Ok(Ok(Some(info))) => (
                    OutcomeKind::Extracted,
                    format!(
                        "could not be deleted, so moved to .quarantine/{}: {}",
                        info.location,
                        check::bounded(&info.detail)
                    ),
                ),
                Ok(Err(e)) => (OutcomeKind::Failed, format!("events written but storage kept: {}", check::bounded(&e))),
                Err(trap) => {
                    self.worker = None;
                    (OutcomeKind::Failed, format!("events written but storage kept: {trap}"))
                }
            };
            self.report(p.name, kind, detail, events);
        }
        Ok(())
    }
}

enum EventsError {
    Trap(String),
    Invalid(String),
}

fn no_data_detail(keep: bool) -> String {
    if keep {
        "no installed timestamp; would be deleted".to_owned()
    } else {
        "no installed timestamp; deleted".to_owned()
    }
}

fn skip_detail(reason: &SkipReason) -> String {
    match reason {
        SkipReason::Excluded => "excluded".to_owned(),
        SkipReason::NotIncluded => "not included".to_owned(),
        SkipReason::TooYoung(age) => format!("too young ({age:.0}s old)"),
        SkipReason::NotADirectory => "not a plain directory; left alone".to_owned(),
        SkipReason::InvalidName => "not a valid runner name; left alone".to_owned(),
        SkipReason::Vanished => "gone before it was handled".to_owned(),
    }
}

fn quarantine_detail(reason: &QuarantineReason, file: Option<&str>, detail: &str, location: &str) -> String {
    let place = if location.is_empty() {
        "would be quarantined".to_owned()
    } else {
        format!("moved to .quarantine/{location}")
    };
    let file = file.map(|f| format!(" {f}")).unwrap_or_default();
    format!("{}:{file} {}; {place}", reason.as_str(), check::bounded(detail))
}
