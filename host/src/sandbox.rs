//! One guest instance in its own store: sees only the storage root, is held
//! to memory and time limits, and turns any guest failure into an error
//! value instead of a crash. After a trap the instance is poisoned; callers
//! drop it and start a fresh one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use wasmtime::component::{ResourceAny, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{
    Event, ExtractorPre, GithubJobMetrics, IntoAnyhow, Outcome, QuarantineInfo, QuarantineReason, QuarantinedStorage,
    RootEntry, RunnerMetrics, Selection,
};
use crate::guest_api::GuestApi;
use crate::limits::{Limits, StallWatch};

/// Where the storage root appears inside the sandbox.
pub const GUEST_ROOT: &str = "/storage";

/// The store's data: WASI state and the limiter. Nothing else is reachable.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

pub use crate::guest_api::{CallResult, GuestFailure};

/// One instance of the component in its own store.
pub struct Sandbox {
    store: Store<HostState>,
    bindings: crate::bindings::Extractor,
    stderr: MemoryOutputPipe,
    deadline_ticks: u64,
    call_timeout: std::time::Duration,
    stall_watch: Arc<StallWatch>,
    root: PathBuf,
}

impl Sandbox {
    pub(crate) fn new(
        engine: &Engine,
        pre: &ExtractorPre<HostState>,
        limits: &Limits,
        stall_watch: Arc<StallWatch>,
        storage_root: &Path,
    ) -> Result<Self> {
        let stderr = MemoryOutputPipe::new(limits.stderr_bytes);
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stderr.clone())
            .allow_blocking_current_thread(true)
            .preopened_dir(storage_root, GUEST_ROOT, FsPerms::ReadWrite)
            .anyhow()
            .with_context(|| format!("granting the storage root {}", storage_root.display()))?;
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_handles);
        let state = HostState {
            wasi: wasi.build(),
            table,
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(16)
                .tables(64)
                .memories(4)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(limits.deadline_ticks());
        let bindings = pre.instantiate(&mut store).anyhow().context("instantiating the runner-metrics component")?;
        Ok(Self {
            store,
            bindings,
            stderr,
            deadline_ticks: limits.deadline_ticks(),
            call_timeout: limits.call_timeout,
            stall_watch,
            root: storage_root.to_owned(),
        })
    }

    /// Arms the deadline, runs one call, and explains a failure. A call on
    /// one storage is also watched for blocking host calls.
    fn call<T>(
        &mut self,
        what: &str,
        storage: Option<&str>,
        f: impl FnOnce(&crate::bindings::Extractor, &mut Store<HostState>) -> wasmtime::Result<T>,
    ) -> CallResult<T> {
        self.store.set_epoch_deadline(self.deadline_ticks);
        let watch =
            storage.map(|name| self.stall_watch.begin(self.root.join(name), Instant::now() + self.call_timeout));
        let result = f(&self.bindings, &mut self.store);
        let broken = watch.is_some_and(|id| self.stall_watch.end(id));
        if broken {
            // It sat in a blocked host call past its deadline: whatever it
            // answered after being freed is not trusted.
            let cause = format!("blocked in a host call past its {:?} deadline (a FIFO?)", self.call_timeout);
            return Err(GuestFailure { detail: format!("guest {what} {cause}") });
        }
        result.map_err(|e| self.explain(what, e))
    }

    fn explain(&self, what: &str, error: wasmtime::Error) -> GuestFailure {
        let cause = match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!("exceeded its {:?} deadline", self.call_timeout),
            Some(trap) => format!("trapped: {trap}"),
            // The root cause only: the full chain carries a multi-line
            // wasm backtrace, which belongs in no report or reason file.
            None => format!("failed: {}", error.root_cause().to_string().escape_debug()),
        };
        let stderr = self.stderr.contents();
        let printed = String::from_utf8_lossy(&stderr);
        let printed = printed.trim();
        let detail = if printed.is_empty() {
            format!("guest {what} {cause}")
        } else {
            format!("guest {what} {cause}; guest stderr: {}", printed.escape_debug())
        };
        GuestFailure { detail }
    }

    pub fn start_scan(&mut self, selection: &Selection) -> CallResult<ResourceAny> {
        self.call("scan", None, |b, s| b.github_runner_metrics_extraction().scan().call_constructor(s, selection))
    }

    pub fn next_batch(
        &mut self,
        scan: ResourceAny,
        max: u32,
    ) -> CallResult<std::result::Result<Vec<RootEntry>, String>> {
        self.call("scan", None, |b, s| b.github_runner_metrics_extraction().scan().call_next_batch(s, scan, max))
    }

    pub fn extract_storage(&mut self, name: &str, keep: bool) -> CallResult<Outcome> {
        self.call("extraction", Some(name), |b, s| {
            b.github_runner_metrics_extraction().call_extract_storage(s, name, keep)
        })
    }

    pub fn delete_storage(&mut self, name: &str) -> CallResult<std::result::Result<Option<QuarantineInfo>, String>> {
        self.call("deletion", Some(name), |b, s| b.github_runner_metrics_extraction().call_delete_storage(s, name))
    }

    pub fn purge_deleting(&mut self) -> CallResult<std::result::Result<u32, String>> {
        self.call("purge of .deleting", None, |b, s| b.github_runner_metrics_extraction().call_purge_deleting(s))
    }

    pub fn quarantine_storage(
        &mut self,
        name: &str,
        reason: QuarantineReason,
        detail: &str,
    ) -> CallResult<std::result::Result<QuarantineInfo, String>> {
        self.call("quarantine", Some(name), |b, s| {
            b.github_runner_metrics_extraction().call_quarantine_storage(s, name, reason, detail)
        })
    }

    pub fn list_quarantine(&mut self) -> CallResult<std::result::Result<Vec<QuarantinedStorage>, String>> {
        self.call("quarantine listing", None, |b, s| b.github_runner_metrics_extraction().call_list_quarantine(s))
    }

    pub fn issue_events(
        &mut self,
        metrics: &RunnerMetrics,
        flavor: &str,
        job: Option<GithubJobMetrics>,
    ) -> CallResult<Vec<Event>> {
        self.call("events", None, |b, s| b.github_runner_metrics_events().call_issue_events(s, metrics, flavor, job))
    }

    pub fn render_event(&mut self, event: &Event) -> CallResult<String> {
        self.call("rendering", None, |b, s| b.github_runner_metrics_events().call_render_event(s, event))
    }
}

/// The product path: every call crosses into the component, under the
/// instance's memory cap and per-call deadline.
impl GuestApi for Sandbox {
    type Scan = ResourceAny;

    fn start_scan(&mut self, selection: &Selection) -> CallResult<ResourceAny> {
        Sandbox::start_scan(self, selection)
    }
    fn next_batch(&mut self, scan: ResourceAny, max: u32) -> CallResult<std::result::Result<Vec<RootEntry>, String>> {
        Sandbox::next_batch(self, scan, max)
    }
    fn extract_storage(&mut self, name: &str, keep: bool) -> CallResult<Outcome> {
        Sandbox::extract_storage(self, name, keep)
    }
    fn delete_storage(&mut self, name: &str) -> CallResult<std::result::Result<Option<QuarantineInfo>, String>> {
        Sandbox::delete_storage(self, name)
    }
    fn purge_deleting(&mut self) -> CallResult<std::result::Result<u32, String>> {
        Sandbox::purge_deleting(self)
    }
    fn quarantine_storage(
        &mut self,
        name: &str,
        reason: QuarantineReason,
        detail: &str,
    ) -> CallResult<std::result::Result<QuarantineInfo, String>> {
        Sandbox::quarantine_storage(self, name, reason, detail)
    }
    fn issue_events(
        &mut self,
        metrics: &RunnerMetrics,
        flavor: &str,
        job: Option<GithubJobMetrics>,
    ) -> CallResult<Vec<Event>> {
        Sandbox::issue_events(self, metrics, flavor, job)
    }
    fn render_event(&mut self, event: &Event) -> CallResult<String> {
        Sandbox::render_event(self, event)
    }
}
