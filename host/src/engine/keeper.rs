//! The keeper component (world `keeper`, crate `keeper/`): the books of a
//! collect and the re-checks of everything the plugin claims, the same code
//! the Python and Node hosts run. One instance per run, in a store of its
//! own, seeing the storage root read-only as `/storage` (to check that a
//! storage reported deleted is gone).
//!
//! The keeper is our code, but it parses what the plugin hands over: a
//! trap in it stops the run (nothing is deleted on its word), it never
//! takes a storage down with it.

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
        path: "../wit/0.4.0",
        world: "keeper",
        // One set of types: the plugin's values pass through unconverted.
        with: { "github-runner:metrics/types": crate::bindings::github_runner::metrics::types },
    });
}

pub use generated::exports::github_runner::metrics::books::{Ended, NextCall};
use generated::Keeper as KeeperWorld;
pub(crate) use generated::KeeperPre;

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
        Ok(Self { store, bindings, run, calls: 0 })
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

    pub fn next(&mut self, last: Option<&Ended>) -> Result<NextCall> {
        self.call("next", |b, s, r| b.github_runner_metrics_books().run().call_next(s, r, last))
    }

    pub fn begin_storage(&mut self, name: &str) -> Result<Result<(), String>> {
        self.call("begin-storage", |b, s, r| b.github_runner_metrics_books().run().call_begin_storage(s, r, name))
    }

    pub fn end_storage(&mut self) -> Result<()> {
        self.call("end-storage", |b, s, r| b.github_runner_metrics_books().run().call_end_storage(s, r))
    }

    pub fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Result<Result<(), String>> {
        self.call("job-metrics", |b, s, r| b.github_runner_metrics_books().run().call_job_metrics(s, r, metrics))
    }

    /// The batch's lines, rendered by the keeper from the checked events;
    /// `Err` inside: the plugin's lie.
    pub fn append(&mut self, batch: &[StorageOutput]) -> Result<Result<Vec<String>, String>> {
        self.call("append", |b, s, r| b.github_runner_metrics_books().run().call_append(s, r, batch))
    }

    pub fn appended(&mut self, error: Option<&str>) -> Result<()> {
        self.call("appended", |b, s, r| b.github_runner_metrics_books().run().call_appended(s, r, error))
    }

    pub fn report(&mut self, report: &StorageReport) -> Result<Result<StorageReport, String>> {
        self.call("report", |b, s, r| b.github_runner_metrics_books().run().call_report(s, r, report))
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
    KeeperPre::new(pre).anyhow().context("the keeper does not export the keeper world of github-runner:metrics@0.4.0")
}
