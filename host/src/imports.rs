//! What the host lends the guest's collect: the four imports of the WIT
//! `host` interface (`begin-storage`, `end-storage`, `job-metrics`,
//! `append`, `report`).
//!
//! Every argument is the guest's claim. Each import re-checks it
//! ([`check`]) before acting on it; a lie stops the guest in the middle of
//! its call (a trap), and the collect loop ([`crate::collect`]) then keeps
//! the storage concerned and goes on with a fresh instance. Each import also
//! moves the per-storage deadline: the guest's time runs only while wasm
//! runs, and starts again after every import.

use std::collections::HashSet;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::time::Instant;

use runner_metrics_guest::names::DELETING_DIR;
use runner_metrics_guest::report::UNNAMED;

use crate::bindings::github_runner::metrics::host::Host;
use crate::bindings::{
    AppendedStorage, GithubJobMetrics, Interrupted, RunnerMetrics, StorageLines, StorageReport as WitReport,
};
use crate::check;
use crate::collect::{CollectOptions, Emit, JobMetricsSource};
use crate::log::EventSink;
use crate::sandbox::GuestFailure;
use crate::sandbox::HostState;
use crate::summary::{OutcomeKind, StorageReport, Summary};

/// One collect run as the host sees it, across every instance the run
/// needs (a trap replaces the instance, not the run).
pub struct RunState<'a> {
    pub(crate) root: PathBuf,
    pub(crate) emit: Emit,
    pub(crate) keep: bool,
    pub(crate) batch_size: usize,
    pub(crate) jobs: &'a mut dyn JobMetricsSource,
    pub(crate) sink: &'a mut dyn EventSink,
    pub(crate) on_report: &'a mut dyn FnMut(&StorageReport),
    /// The root entry the guest said it works on, until it is reported.
    pub(crate) current: Option<String>,
    /// Storages whose lines are durable but that are not reported yet, in
    /// append order, with their line counts.
    pub(crate) appended: Vec<(String, usize)>,
    /// Root entries reported so far: each is reported once.
    pub(crate) reported: HashSet<String>,
    pub(crate) unnamed_reported: u32,
    pub(crate) summary: Summary,
    /// A lie caught in an import: the storage it concerns, and what it was.
    pub(crate) lie: Option<(Option<String>, String)>,
    /// Why the sink refused an append (the host's own words).
    pub(crate) append_error: Option<String>,
}

impl<'a> RunState<'a> {
    pub(crate) fn new(
        root: PathBuf,
        options: &CollectOptions,
        jobs: &'a mut dyn JobMetricsSource,
        sink: &'a mut dyn EventSink,
        on_report: &'a mut dyn FnMut(&StorageReport),
    ) -> Self {
        Self {
            root,
            emit: options.emit.clone(),
            keep: options.keep,
            batch_size: options.batch(),
            jobs,
            sink,
            on_report,
            current: None,
            appended: Vec::new(),
            reported: HashSet::new(),
            unnamed_reported: 0,
            summary: Summary::default(),
            lie: None,
            append_error: None,
        }
    }

    /// Counts a report, remembers its entry as done, and hands it on.
    pub(crate) fn deliver(&mut self, report: StorageReport) {
        if report.name == UNNAMED {
            self.unnamed_reported = self.unnamed_reported.saturating_add(1);
        } else if report.name != DELETING_DIR {
            self.reported.insert(report.name.clone());
        }
        if self.current.as_deref() == Some(report.name.as_str()) {
            self.current = None;
        }
        self.summary.add(&report);
        (self.on_report)(&report);
    }
}

impl RunState<'_> {
    /// What a trap (`failure`) interrupted, for the guest's `recover` in a
    /// fresh instance: the storages durable but not reported, the storage
    /// to blame (the one the guest lied about, or the one it was working
    /// on), and whether that storage's recovery (`previous`) trapped too.
    pub(crate) fn interrupted(&mut self, failure: &GuestFailure, previous: Option<&Interrupted>) -> Interrupted {
        let lie = self.lie.take();
        let current = self.current.take();
        let lied = lie.is_some();
        let (blamed, mut cause) = match lie {
            Some((storage, what)) => (storage, format!("guest lied: {}", check::bounded(&what))),
            None => (current, check::bounded(&failure.detail)),
        };
        let trapped_again = previous.is_some_and(|p| p.blamed.is_some() && p.blamed == blamed);
        if let (true, Some(p)) = (trapped_again, previous) {
            cause = check::bounded(&format!("{}; trapped again: {cause}", p.cause));
        }
        let lines = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Interrupted {
            appended: self
                .appended
                .iter()
                .map(|(n, l)| AppendedStorage { name: n.clone(), lines: lines(*l) })
                .collect(),
            blamed,
            cause,
            lied,
            trapped_again,
            keep: self.keep,
        }
    }
}

/// The [`RunState`] of the `collect` (or `recover`) call in progress, lent
/// to the store for exactly that call (`Sandbox::lend` sets it and clears
/// it when the call returns). wasmtime's store data must be `'static`, the run
/// borrows the caller's sink and callbacks: this pointer bridges the two.
pub(crate) struct Lent(NonNull<RunState<'static>>);

// SAFETY: the pointer is dereferenced only by the imports, which wasmtime
// calls on the thread running `Sandbox::lend`, inside that call; the
// store is never sent to another thread while the call runs.
unsafe impl Send for Lent {}

impl Lent {
    pub(crate) fn new(run: &mut RunState<'_>) -> Self {
        Self(NonNull::from(run).cast())
    }
}

impl HostState {
    /// The run being served.
    fn run<'r>(&self) -> wasmtime::Result<&'r mut RunState<'static>> {
        let lent = self.lent.as_ref().ok_or_else(|| wasmtime::format_err!("host import called outside collect"))?;
        // SAFETY: `lent` is set only for the duration of `Sandbox::lend`,
        // from a `&mut RunState` that the caller holds for that whole call
        // and does not touch until it returns; this import runs inside it.
        // The reference is used only until the import returns.
        Ok(unsafe { &mut *lent.0.as_ptr() })
    }

    /// Host time does not count against the guest: stop watching the
    /// storage while the import runs. A watch found broken means the guest
    /// sat in a blocked host call past its deadline: it is stopped.
    fn pause(&mut self) -> wasmtime::Result<()> {
        if let Some(id) = self.watch.take() {
            if self.stall_watch.end(id) {
                self.stalled = true;
                wasmtime::bail!("blocked in a host call past its deadline");
            }
        }
        Ok(())
    }

    /// The guest's time on its storage starts again.
    fn resume(&mut self, current: Option<&str>) {
        self.deadline = Instant::now() + self.call_timeout;
        self.watch = current.map(|name| self.stall_watch.begin(self.root.join(name), self.deadline));
    }
}

/// Records a lie and stops the guest.
fn lied(run: &mut RunState<'_>, storage: Option<String>, what: String) -> wasmtime::Error {
    let error = wasmtime::format_err!("guest lied: {what}");
    run.lie = Some((storage, what));
    error
}

impl Host for HostState {
    fn begin_storage(&mut self, name: String) -> wasmtime::Result<()> {
        self.pause()?;
        let run = self.run()?;
        if name != DELETING_DIR {
            if let Err(lie) = check::storage_name(&name) {
                // Reported under that name (when it can be), so that the
                // resumed collect does not offer it again.
                let storage = (name.len() <= 255).then(|| name.clone());
                return Err(lied(run, storage, lie));
            }
            if run.reported.contains(&name) {
                return Err(lied(run, None, format!("began work on {name:?}, which it had already reported")));
            }
        }
        self.resume(Some(&name));
        run.current = Some(name);
        Ok(())
    }

    fn end_storage(&mut self) -> wasmtime::Result<()> {
        self.pause()?;
        self.run()?.current = None;
        self.resume(None);
        Ok(())
    }

    fn job_metrics(&mut self, metrics: RunnerMetrics) -> wasmtime::Result<Option<GithubJobMetrics>> {
        self.pause()?;
        let run = self.run()?;
        let Some(current) = run.current.clone() else {
            return Err(lied(run, None, "asked for job metrics outside any storage".to_owned()));
        };
        if let Err(lie) = check::metrics(&current, &metrics) {
            return Err(lied(run, Some(current), lie));
        }
        let answer = run.jobs.job_metrics(&metrics);
        self.resume(Some(&current));
        Ok(answer)
    }

    fn append(&mut self, batch: Vec<StorageLines>) -> wasmtime::Result<Result<(), String>> {
        self.pause()?;
        let run = self.run()?;
        if batch.len() > run.batch_size {
            let lie = format!("appended {} storages at once; batches hold at most {}", batch.len(), run.batch_size);
            return Err(lied(run, None, lie));
        }
        let mut names = HashSet::with_capacity(batch.len());
        for storage in &batch {
            let name = &storage.runner_name;
            let again = run.reported.contains(name) || run.appended.iter().any(|(n, _)| n == name);
            if again || !names.insert(name.as_str()) {
                return Err(lied(run, None, format!("appended lines for {name:?} twice")));
            }
            if let Err(lie) = check::storage_lines(&run.root, storage, &run.emit) {
                return Err(lied(run, Some(name.clone()), lie));
            }
        }
        // The lines move into one append, never copied (docs/benchmarks.md).
        let stored: Vec<(String, usize)> = batch.iter().map(|s| (s.runner_name.clone(), s.lines.len())).collect();
        let lines: Vec<String> = batch.into_iter().flat_map(|s| s.lines).collect();
        if let Err(e) = run.sink.append(&lines) {
            run.append_error = Some(format!("writing events to {}: {e}", run.sink.describe()));
            let current = run.current.clone();
            self.resume(current.as_deref());
            return Ok(Err(e.to_string()));
        }
        run.appended.extend(stored);
        let current = run.current.clone();
        self.resume(current.as_deref());
        Ok(Ok(()))
    }

    fn report(&mut self, report: WitReport) -> wasmtime::Result<()> {
        self.pause()?;
        let run = self.run()?;
        let report = match check::report(report, run) {
            Ok(report) => report,
            Err((storage, lie)) => return Err(lied(run, storage, lie)),
        };
        run.deliver(report);
        let current = run.current.clone();
        self.resume(current.as_deref());
        Ok(())
    }
}

/// Whether a report of `kind` may carry `events` lines for a storage whose
/// durable lines number `appended` (`None`: nothing was appended for it).
pub(crate) fn report_matches_appends(kind: OutcomeKind, events: usize, appended: Option<usize>) -> bool {
    match appended {
        Some(count) => events == count && matches!(kind, OutcomeKind::Extracted | OutcomeKind::Failed),
        None => events == 0 && kind != OutcomeKind::Extracted,
    }
}

/// `types` has no functions: nothing to lend.
impl crate::bindings::github_runner::metrics::types::Host for HostState {}
