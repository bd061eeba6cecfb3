//! One guest instance in its own store: sees only the storage root, is held
//! to memory and time limits, and turns any guest failure into an error
//! value instead of a crash. After a trap the instance is poisoned; callers
//! drop it and start a fresh one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx};

use crate::bindings::{
    CollectOptions, Failure, Interrupted, IntoAnyhow, Plugin as PluginBindings, PluginPre, PulledMetrics,
    QuarantinedStorage,
};
use crate::confined_fs::ConfinedFsCtx;
use crate::imports::{Lent, RunState};
use crate::limits::{Limits, StallWatch};

pub use crate::confined_fs::GUEST_ROOT;
pub use crate::imports::HostState;

/// A guest call that did not return: a trap (panic, deadline, memory) or a
/// host-side failure. `detail` includes what the guest printed on stderr.
#[derive(Debug, Clone)]
pub struct GuestFailure {
    pub detail: String,
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for GuestFailure {}

/// The result of one guest call: `Err` when the call itself failed (the
/// guest is then poisoned and must be dropped), else the guest's answer.
pub type CallResult<T> = std::result::Result<T, GuestFailure>;

/// One instance of the component in its own store.
pub struct Instance {
    store: Store<HostState>,
    bindings: PluginBindings,
    stderr: MemoryOutputPipe,
}

impl Instance {
    pub(crate) fn new(
        engine: &Engine,
        pre: &PluginPre<HostState>,
        limits: &Limits,
        stall_watch: Arc<StallWatch>,
        storage_root: &Path,
        confined: bool,
    ) -> Result<Self> {
        let stderr = MemoryOutputPipe::new(limits.stderr_bytes);
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stderr.clone()).allow_blocking_current_thread(true);
        if !confined {
            wasi.preopened_dir(storage_root, GUEST_ROOT, FsPerms::ReadWrite)
                .anyhow()
                .with_context(|| format!("granting the storage root {}", storage_root.display()))?;
        }
        let fs = ConfinedFsCtx::new(storage_root, GUEST_ROOT, true)?
            .on_busy_rename(busy_rename_hook(storage_root.to_owned()));
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_handles);
        let state = HostState {
            wasi: wasi.build(),
            fs,
            table,
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(16)
                .tables(64)
                .memories(4)
                .trap_on_grow_failure(true)
                .build(),
            deadline: Instant::now() + limits.call_timeout,
            call_timeout: limits.call_timeout,
            stall_watch,
            watch_stalls: !confined,
            watch: None,
            storage: None,
            root: storage_root.to_owned(),
            stalled: false,
            lent: None,
            imports: 0,
            fs_calls: 0,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limits);
        // One tick at a time: the callback holds the guest to `deadline`,
        // which the imports move as the guest goes from storage to storage.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() < ctx.data().deadline {
                Ok(UpdateDeadline::Continue(1))
            } else {
                Err(Trap::Interrupt.into())
            }
        });
        let bindings = pre.instantiate(&mut store).anyhow().context("instantiating the runner-metrics component")?;
        Ok(Self { store, bindings, stderr })
    }

    /// Arms the deadline, runs one call, and explains a failure. A call on
    /// one storage is also watched for blocking host calls, where they can
    /// block.
    fn call<T>(
        &mut self,
        what: &str,
        storage: Option<&str>,
        f: impl FnOnce(&PluginBindings, &mut Store<HostState>) -> wasmtime::Result<T>,
    ) -> CallResult<T> {
        let state = self.store.data_mut();
        state.deadline = Instant::now() + state.call_timeout;
        state.watch = state.watch(storage);
        let result = f(&self.bindings, &mut self.store);
        let state = self.store.data_mut();
        // A watch the ticker broke, here or (in a collect) seen by an import.
        let broken = state.watch.take().is_some_and(|id| state.stall_watch.end(id)) || state.stalled;
        if broken {
            return Err(self.stalled(what));
        }
        result.map_err(|e| self.explain(what, e))
    }

    /// It sat in a blocked host call past its deadline: whatever it
    /// answered after being freed is not trusted.
    fn stalled(&self, what: &str) -> GuestFailure {
        let timeout = self.store.data().call_timeout;
        GuestFailure { detail: format!("guest {what} blocked in a host call past its {timeout:?} deadline (a FIFO?)") }
    }

    /// Runs the guest's whole collect for `run`, which the imports reach
    /// while the call lasts (and no longer). A trap, or a stall on a
    /// storage, is `Err`; `run.current` says which storage it belongs to.
    pub(crate) fn collect(
        &mut self,
        run: &mut RunState<'_>,
        options: &CollectOptions,
        pulled: Option<&PulledMetrics>,
    ) -> CallResult<Result<(), Failure>> {
        self.lend(run, "collect", |b, s| b.github_runner_metrics_collector().call_collect(s, options, pulled))
    }

    /// Runs the guest's `recover` of what a trap interrupted, for `run`, as
    /// [`Instance::collect`] runs `collect`.
    pub(crate) fn recover(&mut self, run: &mut RunState<'_>, x: &Interrupted) -> CallResult<Result<(), Failure>> {
        self.lend(run, "recovery", |b, s| b.github_runner_metrics_collector().call_recover(s, x))
    }

    /// [`Instance::call`] with `run` lent to the imports for the call's
    /// duration (see [`Lent`]).
    fn lend(
        &mut self,
        run: &mut RunState<'_>,
        what: &str,
        f: impl FnOnce(&PluginBindings, &mut Store<HostState>) -> wasmtime::Result<Result<(), Failure>>,
    ) -> CallResult<Result<(), Failure>> {
        self.store.data_mut().lent = Some(Lent::new(run));
        let result = self.call(what, None, f);
        self.store.data_mut().lent = None;
        result
    }

    /// How many `host` imports and filesystem calls this instance made.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.store.data().imports, self.store.data().fs_calls)
    }

    fn explain(&self, what: &str, error: wasmtime::Error) -> GuestFailure {
        let cause = match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!("exceeded its {:?} deadline", self.store.data().call_timeout),
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

    /// The storages under `.quarantine/`, their reason files parsed in
    /// the guest.
    pub fn list_quarantine(&mut self) -> CallResult<std::result::Result<Vec<QuarantinedStorage>, Failure>> {
        self.call("quarantine listing", None, |b, s| b.github_runner_metrics_collector().call_list_quarantine(s))
    }
}

/// The confined filesystem's hook ([`crate::confined_fs::BusyRename`]) for
/// the root `root`: a rename the kernel refused because the storage is
/// mounted goes through [`crate::storage::bounded::move_out`], so the guest moves bounded storages
/// exactly as it moves plain ones. Names without an image are not ours.
fn busy_rename_hook(root: PathBuf) -> std::sync::Arc<crate::confined_fs::BusyRename> {
    use crate::confined_fs::ErrorCode;
    use crate::storage::bounded;
    std::sync::Arc::new(move |name: &str, rename: &mut dyn FnMut() -> std::result::Result<(), ErrorCode>| {
        if !runner_metrics_core::names::is_valid_runner_name(name)
            || std::fs::symlink_metadata(bounded::image_path(&root, name)).is_err()
        {
            return None;
        }
        Some(bounded::move_out(&root, name, rename).unwrap_or(Err(ErrorCode::Busy)))
    })
}
