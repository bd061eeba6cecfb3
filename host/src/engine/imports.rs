//! What the host lends the guest's collect: the imports of the WIT `host`
//! interface (`begin-storage`, `end-storage`, `job-metrics`, `append`,
//! `report`).
//!
//! Every argument is the guest's claim. Each import passes it to the run's
//! keeper ([`crate::keeper`]), which re-checks it against the run's books
//! before the host acts on it (`begin-storage`, `end-storage`, and
//! `job-metrics` when there is nothing to look up, on which the host does
//! nothing, ride with the next import that wants an answer); a lie stops
//! the guest in the middle of that import (a trap), and the collect loop
//! ([`crate::collect`]) asks the keeper what comes next. Each import also
//! moves the per-storage deadline: the guest's time runs only while wasm
//! runs, and starts again after every import.

use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::github_runner::metrics::host::Host;
use crate::bindings::{
    GithubJobMetrics, OutcomeKind as WitKind, RunnerMetrics, StorageOutput, StorageReport as WitReport,
};
use crate::confined_fs::{ConfinedFsCtx, ConfinedFsState, ConfinedFsView};
use crate::engine::jobs::JobMetricsSource;
use crate::keeper::Keeper;
use crate::limits::StallWatch;
use crate::log::EventSink;
use crate::summary::{OutcomeKind, StorageReport, Summary};

/// One collect run as the host sees it, across every instance the run
/// needs (a trap replaces the instance, not the run): the caller's sink
/// and callbacks, and the keeper that holds the books.
pub struct RunState<'a> {
    pub(crate) root: PathBuf,
    pub(crate) keeper: Keeper,
    pub(crate) jobs: &'a mut dyn JobMetricsSource,
    pub(crate) sink: &'a mut dyn EventSink,
    pub(crate) on_report: &'a mut dyn FnMut(&StorageReport),
    pub(crate) summary: Summary,
    /// The keeper itself failed: the run stops with this.
    pub(crate) keeper_error: Option<anyhow::Error>,
}

impl<'a> RunState<'a> {
    pub(crate) fn new(
        root: PathBuf,
        keeper: Keeper,
        jobs: &'a mut dyn JobMetricsSource,
        sink: &'a mut dyn EventSink,
        on_report: &'a mut dyn FnMut(&StorageReport),
    ) -> Self {
        Self { root, keeper, jobs, sink, on_report, summary: Summary::default(), keeper_error: None }
    }

    /// The keeper's verdict on a claim: `Err` stops the guest, for a lie
    /// (which the keeper has booked) or because the keeper failed.
    fn checked<T>(&mut self, verdict: anyhow::Result<Result<T, String>>) -> wasmtime::Result<T> {
        match verdict {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(lie)) => Err(wasmtime::format_err!("guest lied: {lie}")),
            Err(e) => {
                let error = wasmtime::format_err!("{e:#}");
                self.keeper_error.get_or_insert(e);
                Err(error)
            }
        }
    }
}

/// The [`RunState`] of the `collect` (or `recover`) call in progress, lent
/// to the store for exactly that call (`Instance::lend` sets it and clears
/// it when the call returns). wasmtime's store data must be `'static`, the run
/// borrows the caller's sink and callbacks: this pointer bridges the two.
pub(crate) struct Lent(NonNull<RunState<'static>>);

// SAFETY: the pointer is dereferenced only by the imports, which wasmtime
// calls on the thread running `Instance::lend`, inside that call; the
// store is never sent to another thread while the call runs.
unsafe impl Send for Lent {}

impl Lent {
    pub(crate) fn new(run: &mut RunState<'_>) -> Self {
        Self(NonNull::from(run).cast())
    }
}

impl HostState {
    /// `looks-up-job-metrics` (`wit/confined-fs`): whether `job-metrics`
    /// can answer anything in this run. Not a claim: nothing to check.
    pub(crate) fn looks_up_job_metrics(&mut self) -> wasmtime::Result<bool> {
        self.pause()?;
        let answer = !self.run()?.jobs.answers_nothing();
        self.resume_same();
        Ok(answer)
    }

    /// The run being served.
    fn run<'r>(&self) -> wasmtime::Result<&'r mut RunState<'static>> {
        let lent = self.lent.as_ref().ok_or_else(|| wasmtime::format_err!("host import called outside collect"))?;
        // SAFETY: `lent` is set only for the duration of `Instance::lend`,
        // from a `&mut RunState` that the caller holds for that whole call
        // and does not touch until it returns; this import runs inside it.
        // The reference is used only until the import returns.
        Ok(unsafe { &mut *lent.0.as_ptr() })
    }

    /// Host time does not count against the guest: stop watching the
    /// storage while the import runs. A watch found broken means the guest
    /// sat in a blocked host call past its deadline: it is stopped.
    fn pause(&mut self) -> wasmtime::Result<()> {
        self.imports += 1;
        if let Some(id) = self.watch.take() {
            if self.stall_watch.end(id) {
                self.stalled = true;
                wasmtime::bail!("blocked in a host call past its deadline");
            }
        }
        Ok(())
    }

    /// The guest's time on its storage starts again. `storage` is the one it
    /// works on, as far as the watch is concerned: the keeper accepted it in
    /// `begin-storage`, and it ends with `end-storage` or its report.
    fn resume(&mut self, storage: Option<String>) {
        self.deadline = Instant::now() + self.call_timeout;
        self.watch = self.watch(storage.as_deref());
        self.storage = storage;
    }

    /// [`HostState::resume`] on the storage the guest was on before the
    /// import (one that neither begins nor ends a storage).
    fn resume_same(&mut self) {
        let storage = self.storage.take();
        self.resume(storage);
    }

    /// A watch on the storage `name`, where a host call can block: only
    /// the wasmtime-wasi fallback's opens can (the confined filesystem
    /// opens everything `O_NONBLOCK`), so on the confined layer no call
    /// pays for one (a path, a lock and a map entry per import).
    pub(crate) fn watch(&self, name: Option<&str>) -> Option<u64> {
        let name = name.filter(|_| self.watch_stalls)?;
        Some(self.stall_watch.begin(self.root.join(name), self.deadline))
    }
}

impl Host for HostState {
    fn begin_storage(&mut self, name: String) -> wasmtime::Result<()> {
        self.pause()?;
        let run = self.run()?;
        let verdict = run.keeper.begin_storage(&name);
        run.checked(verdict)?;
        self.resume(Some(name));
        Ok(())
    }

    fn end_storage(&mut self) -> wasmtime::Result<()> {
        self.pause()?;
        let run = self.run()?;
        let verdict = run.keeper.end_storage();
        run.checked(verdict)?;
        self.resume(None);
        Ok(())
    }

    fn job_metrics(&mut self, metrics: RunnerMetrics) -> wasmtime::Result<Option<GithubJobMetrics>> {
        // Only the WASI build asks when there is nothing to look up: the
        // fast build asked `looks-up-job-metrics` first.
        self.pause()?;
        let run = self.run()?;
        let answer = if run.jobs.answers_nothing() {
            // Nothing to look up: the answer is `None` whatever the claim,
            // so the claim is held (and checked) like `begin-storage`.
            let verdict = run.keeper.hold_job_metrics(metrics);
            run.checked(verdict)?;
            None
        } else {
            let verdict = run.keeper.job_metrics(&metrics);
            run.checked(verdict)?;
            run.jobs.job_metrics(&metrics)
        };
        self.resume_same();
        Ok(answer)
    }

    fn append(&mut self, batch: Vec<StorageOutput>) -> wasmtime::Result<Result<(), String>> {
        self.pause()?;
        let run = self.run()?;
        // The keeper's lines, rendered from the checked events: the plugin hands over none.
        let verdict = run.keeper.append(&batch);
        let lines = run.checked(verdict)?;
        let outcome =
            run.sink.append(&lines).map_err(|e| (format!("writing events to {}: {e}", run.sink.describe()), e));
        let booked = run.keeper.appended(outcome.as_ref().err().map(|(ours, _)| ours.as_str())).map(Ok);
        run.checked(booked)?;
        self.resume_same();
        Ok(outcome.map_err(|(_, e)| e.to_string()))
    }

    fn report(&mut self, report: WitReport) -> wasmtime::Result<()> {
        self.pause()?;
        let run = self.run()?;
        let verdict = run.keeper.report(&report);
        let report = run.checked(verdict)?.unwrap_or(report);
        // A storage the confined filesystem would not enter: said why.
        let detail = if report.outcome == WitKind::Failed && crate::storage::is_foreign_mount(&run.root, &report.name) {
            format!("{}: {}", crate::storage::FOREIGN_MOUNT, report.detail)
        } else {
            report.detail
        };
        let report = StorageReport {
            name: report.name,
            outcome: match report.outcome {
                WitKind::Extracted => OutcomeKind::Extracted,
                WitKind::NoData => OutcomeKind::NoData,
                WitKind::Quarantined => OutcomeKind::Quarantined,
                WitKind::Skipped => OutcomeKind::Skipped,
                WitKind::Failed => OutcomeKind::Failed,
            },
            reason: report.reason,
            file: report.file,
            detail,
            events: report.events,
            errors: report.errors.into_iter().map(crate::bindings::FsError::to_model).collect(),
        };
        run.summary.add(&report);
        (run.on_report)(&report);
        let storage = self.storage.take().filter(|name| *name != report.name);
        self.resume(storage);
        Ok(())
    }
}

/// `types` has no functions: nothing to lend.
impl crate::bindings::github_runner::metrics::types::Host for HostState {}

/// The store's data: WASI state, the limiter, the per-storage deadline and,
/// while a collect runs, the run that the imports serve. Nothing else is
/// reachable.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    /// The root as the confined filesystem grants it (unused when the
    /// plugin falls back to wasmtime-wasi's, which has it preopened).
    pub(crate) fs: ConfinedFsCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    /// When the guest's time on the current storage (or call) runs out;
    /// checked at every epoch tick while wasm runs.
    pub(crate) deadline: Instant,
    pub(crate) call_timeout: Duration,
    pub(crate) stall_watch: Arc<StallWatch>,
    /// Whether host calls can block and are watched ([`HostState::watch`]).
    pub(crate) watch_stalls: bool,
    /// The watch on the storage being handled, between imports.
    pub(crate) watch: Option<u64>,
    /// The storage that watch is on (see `imports.rs`).
    pub(crate) storage: Option<String>,
    pub(crate) root: PathBuf,
    /// A storage's watch was broken: the guest sat in a blocked host call.
    pub(crate) stalled: bool,
    /// The run a `collect` call serves (see [`Lent`]).
    pub(crate) lent: Option<Lent>,
    /// Calls of the `host` imports and of the confined filesystem, for
    /// [`crate::collect::CallCounts`].
    pub(crate) imports: u64,
    pub(crate) fs_calls: u64,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl ConfinedFsState for HostState {
    fn confined_fs(&mut self) -> ConfinedFsView<'_> {
        // wasmtime asks for the view once per host function call.
        self.fs_calls += 1;
        ConfinedFsView { ctx: &self.fs, table: &mut self.table }
    }
}
