//! The keeper component (world `keeper`, crate `keeper/`): the books of a
//! collect and the re-checks of everything the plugin claims, the same code
//! the Python and Node hosts run. One instance per run, in a store of its
//! own, seeing the storage root read-only as `/storage` (to check that a
//! storage reported deleted is gone).
//!
//! The keeper is our code, but it parses what the plugin hands over: a
//! trap in it stops the run (nothing is deleted on its word), it never
//! takes a storage down with it.
//!
//! The plugin's claims that want no answer (`begin-storage`,
//! `end-storage`, and `job-metrics` when the host has nothing to look up)
//! are held here and handed over with the next keeper call that wants one
//! (`wit/keeper-batch`): a keeper call costs more than the check it makes.
//! Nothing the host does waits on a held claim: a lie in one stops the
//! plugin at that next call (a job lookup, an append, a report, or the end
//! of the plugin call), before anything is done on the plugin's word, and
//! is booked against the storage it named, as before.

use std::path::Path;

use anyhow::{Context, Result};
use wasmtime::component::{ResourceAny, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{CollectOptions, IntoAnyhow, RunnerMetrics, StorageOutput, StorageReport};
use crate::confined_fs::GUEST_ROOT;
use crate::confined_fs::{link_wasi, ConfinedFsCtx, ConfinedFsState, ConfinedFsView};

mod generated {
    wasmtime::component::bindgen!({
        // The `keeper` world of the current version, plus the batched calls.
        path: ["../wit/0.4.0", "../wit/keeper-batch"],
        world: "runner-metrics:keeper-batch/keeper-batch",
        // One set of types: the plugin's values pass through unconverted.
        with: { "github-runner:metrics/types": crate::bindings::github_runner::metrics::types },
    });
}

pub use generated::exports::github_runner::metrics::books::{Ended, NextCall};
use generated::exports::runner_metrics::keeper_batch::claims::{Claim, Guest as Claims};
use generated::KeeperBatch as KeeperWorld;
pub(crate) use generated::KeeperBatchPre as KeeperPre;

/// Claims held at most before they are handed over on their own: a plugin
/// that begins storages in a loop costs a keeper call per this many.
const MAX_HELD_CLAIMS: usize = 64;

/// The keeper's memory for a plugin capped at `plugin_memory`: twice what
/// the plugin can hand over in one call, and room of its own, so that no
/// argument of a lying plugin is too big to be checked (and refused).
pub fn keeper_memory_bytes(plugin_memory: usize) -> usize {
    plugin_memory.saturating_mul(2).saturating_add(32 << 20)
}

pub struct KeeperState {
    wasi: WasiCtx,
    /// The root, read-only, as the confined filesystem grants it (unused
    /// on the wasmtime-wasi fallback, which has it preopened).
    fs: ConfinedFsCtx,
    fs_calls: u64,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for KeeperState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl ConfinedFsState for KeeperState {
    fn confined_fs(&mut self) -> ConfinedFsView<'_> {
        self.fs_calls += 1;
        ConfinedFsView { ctx: &self.fs, table: &mut self.table }
    }
}

/// One run's keeper: its instance and the run resource in it.
pub struct Keeper {
    store: Store<KeeperState>,
    bindings: KeeperWorld,
    run: ResourceAny,
    calls: u64,
    /// The plugin's claims not handed over yet, in order.
    held: Vec<Claim>,
}

impl Keeper {
    pub(crate) fn new(
        engine: &Engine,
        pre: &KeeperPre<KeeperState>,
        limits: &crate::limits::Limits,
        root: &Path,
        options: &CollectOptions,
        confined: bool,
    ) -> Result<Self> {
        let mut wasi = WasiCtx::builder();
        wasi.allow_blocking_current_thread(true);
        if !confined {
            wasi.preopened_dir(root, GUEST_ROOT, FsPerms::ReadOnly)
                .anyhow()
                .with_context(|| format!("granting the keeper the storage root {}", root.display()))?;
        }
        let fs = ConfinedFsCtx::new(root, GUEST_ROOT, false)?;
        let limits = StoreLimitsBuilder::new()
            .memory_size(keeper_memory_bytes(limits.memory_bytes))
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            engine,
            KeeperState { wasi: wasi.build(), fs, fs_calls: 0, table: ResourceTable::new(), limits },
        );
        store.limiter(|state| &mut state.limits);
        // The engine counts epochs for the plugin's deadlines; the keeper's
        // work is bounded by what it is handed, so it is never interrupted.
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Continue(u64::MAX / 2)));
        let bindings = pre.instantiate(&mut store).anyhow().context("instantiating the keeper component")?;
        let run = bindings.github_runner_metrics_books().run().call_constructor(&mut store, options).anyhow();
        let run = run.context("the keeper failed to start the run")?;
        Ok(Self { store, bindings, run, calls: 0, held: Vec::new() })
    }

    /// Calls the keeper: a trap in it is an error of the run.
    fn call<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&KeeperWorld, &mut Store<KeeperState>, ResourceAny) -> wasmtime::Result<T>,
    ) -> Result<T> {
        self.calls += 1;
        f(&self.bindings, &mut self.store, self.run).anyhow().with_context(|| format!("the keeper failed ({what})"))
    }

    /// How many calls the keeper got, and how many filesystem calls it made.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.calls, self.store.data().fs_calls)
    }

    /// The plugin call to make next. Claims still held are handed over
    /// first: a lie among them after a plugin call that returned ends it as
    /// a trap would have, had the claim been checked at once.
    pub fn next(&mut self, last: Option<&Ended>) -> Result<NextCall> {
        let lie = match self.take_held()? {
            Err(lie) if matches!(last, Some(Ended::Returned(_))) => Some(Ended::Trapped(format!("guest lied: {lie}"))),
            _ => None,
        };
        let last = lie.as_ref().or(last);
        self.call("next", |b, s, r| b.github_runner_metrics_books().run().call_next(s, r, last))
    }

    /// Held: checked with the next call that wants an answer.
    pub fn begin_storage(&mut self, name: &str) -> Result<Result<(), String>> {
        self.hold(Claim::BeginStorage(name.to_owned()))
    }

    /// Held: checked with the next call that wants an answer.
    pub fn end_storage(&mut self) -> Result<Result<(), String>> {
        self.hold(Claim::EndStorage)
    }

    /// Held, for a host with nothing to look up (its answer does not wait
    /// on the verdict): checked with the next call that wants an answer.
    pub fn hold_job_metrics(&mut self, metrics: RunnerMetrics) -> Result<Result<(), String>> {
        self.hold(Claim::JobMetrics(metrics))
    }

    pub fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Result<Result<(), String>> {
        self.call_with_held("job-metrics", |c, s, r, held| c.call_job_metrics(s, r, held, metrics))
    }

    /// The batch's lines, rendered by the keeper from the checked events;
    /// `Err` inside: the plugin's lie.
    pub fn append(&mut self, batch: &[StorageOutput]) -> Result<Result<Vec<String>, String>> {
        self.call_with_held("append", |c, s, r, held| c.call_append(s, r, held, batch))
    }

    pub fn appended(&mut self, error: Option<&str>) -> Result<()> {
        self.call("appended", |b, s, r| b.github_runner_metrics_books().run().call_appended(s, r, error))
    }

    /// The checked report; `None` inside: `report` as it is (nothing cut).
    pub fn report(&mut self, report: &StorageReport) -> Result<Result<Option<StorageReport>, String>> {
        self.call_with_held("report", |c, s, r, held| c.call_report(s, r, held, report))
    }

    /// Holds `claim`, handing the held ones over once there are many.
    fn hold(&mut self, claim: Claim) -> Result<Result<(), String>> {
        self.held.push(claim);
        if self.held.len() < MAX_HELD_CLAIMS {
            return Ok(Ok(()));
        }
        self.take_held()
    }

    /// Hands the held claims over on their own, if any.
    fn take_held(&mut self) -> Result<Result<(), String>> {
        if self.held.is_empty() {
            return Ok(Ok(()));
        }
        self.call_with_held("claims", |c, s, r, held| c.call_take(s, r, held))
    }

    /// Calls one of the batched functions with the held claims, which are
    /// then no longer held (the list keeps its room for the next ones).
    fn call_with_held<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&Claims, &mut Store<KeeperState>, ResourceAny, &[Claim]) -> wasmtime::Result<T>,
    ) -> Result<T> {
        let mut held = std::mem::take(&mut self.held);
        let result = self.call(what, |b, s, r| f(b.runner_metrics_keeper_batch_claims(), s, r, &held));
        held.clear();
        self.held = held;
        result
    }
}

/// Links the keeper: WASI only (its one preopen, read-only), nothing else;
/// its filesystem served as the plugin's is (`confined`, or the fallback).
pub(crate) fn link(
    engine: &Engine,
    component: &wasmtime::component::Component,
    confined: bool,
) -> Result<KeeperPre<KeeperState>> {
    let mut linker = wasmtime::component::Linker::<KeeperState>::new(engine);
    link_wasi(&mut linker, confined).context("linking WASI for the keeper")?;
    let pre = linker.instantiate_pre(component).anyhow().context("the keeper imports something other than WASI")?;
    KeeperPre::new(pre).anyhow().context(
        "the keeper does not export the keeper world of github-runner:metrics@0.4.0 and the batched calls of wit/keeper-batch",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::MAX_MESSAGE_BYTES;
    use crate::collect_options::CollectOptions as RunOptions;
    use crate::plugin::{Plugin, PluginOptions};

    fn keeper(root: &Path) -> Keeper {
        let plugin = Plugin::open(&PluginOptions::default()).unwrap();
        plugin.keeper(root, &RunOptions::events("small").to_wit()).unwrap()
    }

    fn recovery(call: NextCall) -> generated::exports::github_runner::metrics::books::Interrupted {
        match call {
            NextCall::Recover(x) => x,
            _ => panic!("not a recovery"),
        }
    }

    #[test]
    fn a_lie_in_a_held_claim_stops_the_plugin_call_it_came_in_as_a_trap_would() {
        let root = tempfile::tempdir().unwrap();
        let mut keeper = keeper(root.path());
        assert!(matches!(keeper.next(None).unwrap(), NextCall::Collect(_)));
        keeper.begin_storage("r-1").unwrap().unwrap();
        keeper.end_storage().unwrap().unwrap();
        // Held: no keeper call yet, so no verdict either.
        keeper.begin_storage("../r-2").unwrap().unwrap();
        let calls = keeper.counts().0;
        // The plugin returned without another call: the lie still counts.
        let x = recovery(keeper.next(Some(&Ended::Returned(None))).unwrap());
        assert!(x.lied && x.blamed.as_deref() == Some("../r-2"), "{x:?}");
        assert_eq!(keeper.counts().0, calls + 2, "the held claims and `next`");
    }

    #[test]
    fn held_claims_ride_with_the_next_call_that_wants_an_answer() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("r-1")).unwrap();
        let mut keeper = keeper(root.path());
        keeper.next(None).unwrap();
        let calls = keeper.counts().0;
        keeper.begin_storage("r-1").unwrap().unwrap();
        let report = StorageReport {
            name: "r-1".into(),
            outcome: crate::bindings::OutcomeKind::Failed,
            reason: None,
            file: None,
            detail: "kept".into(),
            events: 0,
            errors: Vec::new(),
        };
        assert!(keeper.report(&report).unwrap().unwrap().is_none(), "nothing cut: the report as given");
        assert_eq!(keeper.counts().0, calls + 1, "one call for the claim and the report");
        // A lie held behind a report stops it there.
        keeper.begin_storage("r-1").unwrap().unwrap();
        let lie = keeper.report(&report).unwrap().unwrap_err();
        assert!(lie.contains("already reported"), "{lie}");
        let x = recovery(keeper.next(Some(&Ended::Trapped(format!("guest lied: {lie}")))).unwrap());
        assert!(x.lied, "{x:?}");
    }

    #[test]
    fn a_report_comes_back_from_the_keeper_only_when_its_words_were_cut() {
        let root = tempfile::tempdir().unwrap();
        let mut keeper = keeper(root.path());
        keeper.next(None).unwrap();
        let long = "w".repeat(2 * MAX_MESSAGE_BYTES);
        let error = |cause: &str| crate::bindings::FsError {
            operation: crate::bindings::FsOperation::Remove,
            path: "r".into(),
            code: crate::bindings::FsErrorCode::Other,
            cause: cause.into(),
        };
        let report = |name: &str, detail: &str, cause: &str| StorageReport {
            name: name.into(),
            outcome: crate::bindings::OutcomeKind::Failed,
            reason: None,
            file: Some("f".into()),
            detail: detail.into(),
            events: 0,
            errors: vec![error(cause)],
        };
        let as_given = report("r-1", "kept", "busy");
        assert!(keeper.report(&as_given).unwrap().unwrap().is_none(), "nothing cut");
        for (name, detail, cause) in [("r-2", long.as_str(), "busy"), ("r-3", "kept", long.as_str())] {
            let cut = keeper.report(&report(name, detail, cause)).unwrap().unwrap().expect("cut");
            let words = [cut.detail.as_str(), cut.errors[0].cause.as_str()];
            assert!(words.iter().all(|w| w.len() <= MAX_MESSAGE_BYTES + 32), "{name}: bounded");
            assert!(words.iter().any(|w| w.ends_with("bytes cut)")), "{name}: says so");
            assert_eq!((cut.name.as_str(), cut.file.as_deref()), (name, Some("f")), "the rest as given");
        }
    }
}
