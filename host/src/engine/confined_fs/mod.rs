//! The guest's `wasi:filesystem`, served by the host itself instead of by
//! wasmtime-wasi's general implementation: purpose-built for hostile storage
//! (docs/security.md, "The confined filesystem").
//!
//! - **Confined by the kernel**: every guest path goes through `openat2`
//!   with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`
//!   from a descriptor the guest holds (`kernel.rs`): no symlink is followed
//!   at any position, nothing outside the root can be named.
//! - **Nothing blocks**: every open is `O_NONBLOCK | O_NOFOLLOW`.
//! - **One system call per guest call** where the call is one operation: no
//!   `statx` after an open, listings stream `getdents64` and trust `d_type`,
//!   no async runtime.
//!
//! wasmtime-wasi keeps serving clocks, random, cli and io ([`link_wasi`]).
//! Where the kernel lacks `openat2` (or a seccomp filter refuses it) the
//! plugin falls back to wasmtime-wasi's filesystem ([`Layer`]).

mod descriptor;
mod kernel;
mod listing;
mod storage_files;

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::WasiView;

use crate::bindings::IntoAnyhow;

pub use bindings::wasi::filesystem::types::ErrorCode;
pub use descriptor::{Descriptor, DirectoryEntryStream};

mod bindings {
    wasmtime::component::bindgen!({
        // `plugin-fast` (in the same package) includes the public plugin world.
        path: ["../wit/0.4.0", "../wit/confined-fs"],
        world: "runner-metrics:confined-fs/confined-fs",
        imports: { default: trappable },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:filesystem/types.descriptor": super::Descriptor,
            "wasi:filesystem/types.directory-entry-stream": super::DirectoryEntryStream,
        },
        require_store_data_send: true,
    });
}

/// Where the storage root appears inside the sandbox.
pub const GUEST_ROOT: &str = "/storage";

/// Which implementation serves the guest's `wasi:filesystem`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layer {
    /// This module where the kernel has `openat2`, else wasmtime-wasi's.
    #[default]
    Auto,
    /// This module; opening a plugin fails where the kernel cannot.
    Confined,
    /// wasmtime-wasi's implementation (the fallback, forced).
    Wasi,
}

impl Layer {
    /// `RUNNER_METRICS_FILESYSTEM=confined|wasi|auto` overrides the
    /// default (tests and benchmarks run both layers).
    pub fn from_env() -> Result<Self> {
        match std::env::var("RUNNER_METRICS_FILESYSTEM").ok().as_deref() {
            None | Some("") | Some("auto") => Ok(Self::Auto),
            Some("confined") => Ok(Self::Confined),
            Some("wasi") => Ok(Self::Wasi),
            Some(other) => {
                anyhow::bail!("RUNNER_METRICS_FILESYSTEM={other:?}: expected \"confined\", \"wasi\" or \"auto\"")
            }
        }
    }

    /// The layer to use on this kernel, and why when it is the fallback.
    pub fn resolve(self) -> Result<(bool, Option<String>)> {
        match (self, kernel::probe()) {
            (Self::Wasi, _) => Ok((false, None)),
            (_, Ok(())) => Ok((true, None)),
            (Self::Confined, Err(e)) => {
                anyhow::bail!("the confined filesystem needs openat2(2), which this kernel refuses: {e}")
            }
            (Self::Auto, Err(e)) => Ok((
                false,
                Some(format!(
                    "openat2(2) is unavailable ({e}): the sandbox's filesystem is served by wasmtime-wasi \
                     (symlinks are still refused, but by user-space checks, not by the kernel)"
                )),
            )),
        }
    }
}

/// Moves a mount point of the root that the kernel refused to rename
/// (`EBUSY`): given its name, and the rename to make once it is a plain
/// directory. `None`: not one the hook knows; the guest gets `busy`.
pub type BusyRename =
    dyn Fn(&str, &mut dyn FnMut() -> Result<(), ErrorCode>) -> Option<Result<(), ErrorCode>> + Send + Sync;

/// What the guest may reach: one preopened directory.
pub struct ConfinedFsCtx {
    root: Arc<OwnedFd>,
    guest_path: String,
    flags: bindings::wasi::filesystem::types::DescriptorFlags,
    busy_rename: Option<Arc<BusyRename>>,
    /// Whether a name of the root is a bounded storage of ours, mounted:
    /// the one kind of mount a lookup from the root enters
    /// (`kernel::Mounts`).
    own_mount: Box<dyn Fn(&str) -> bool + Send + Sync>,
    /// Where new files are made, when the process installed a staging
    /// directory for this root (a confined run: `staging.rs`).
    staging: Option<Arc<crate::storage::staging::Staging>>,
}

impl ConfinedFsCtx {
    /// Grants `root` (trusted: the operator named it, so symlinks in it are
    /// followed) as `guest_path`, read-only unless `writable`.
    pub fn new(root: &Path, guest_path: &str, writable: bool) -> Result<Self> {
        use bindings::wasi::filesystem::types::DescriptorFlags;
        let fd = rustix::fs::open(
            root,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .with_context(|| format!("opening the storage root {}", root.display()))?;
        let flags =
            if writable { DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY } else { DescriptorFlags::READ };
        let staging = if writable { crate::storage::staging::for_root(fd.as_fd()) } else { None };
        let root_path = root.to_owned();
        let own_mount = Box::new(move |name: &str| crate::storage::bounded::is_own_mount(&root_path, name));
        Ok(Self { root: Arc::new(fd), guest_path: guest_path.to_owned(), flags, busy_rename: None, own_mount, staging })
    }

    /// Lets `hook` move the root's mount points (bounded storages, which
    /// the guest moves into `.deleting/` or `.quarantine/` like any
    /// storage). Asked only when the kernel refused such a rename of a
    /// plain name of the root with `EBUSY`: no cost for plain storages.
    pub fn on_busy_rename(mut self, hook: Arc<BusyRename>) -> Self {
        self.busy_rename = Some(hook);
        self
    }
}

/// What the host functions work on: the grant and the store's table.
pub struct ConfinedFsView<'a> {
    pub ctx: &'a ConfinedFsCtx,
    pub table: &'a mut ResourceTable,
}

/// A store whose data serves the confined filesystem.
pub trait ConfinedFsState: Send {
    fn confined_fs(&mut self) -> ConfinedFsView<'_>;
}

struct Confined;

impl HasData for Confined {
    type Data<'a> = ConfinedFsView<'a>;
}

/// Links WASI into `linker` with the guest's filesystem served by this
/// module (`confined`) or by wasmtime-wasi.
pub fn link_wasi<T: WasiView + ConfinedFsState + 'static>(linker: &mut Linker<T>, confined: bool) -> Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, random, sync};
    use wasmtime_wasi::random::WasiRandom;
    if !confined {
        return wasmtime_wasi::p2::add_to_linker_sync(linker).anyhow().context("linking WASI");
    }
    let l = linker;
    (|| -> wasmtime::Result<()> {
        clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
        clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
        random::random::add_to_linker::<T, WasiRandom>(l, random_of::<T>)?;
        random::insecure::add_to_linker::<T, WasiRandom>(l, random_of::<T>)?;
        random::insecure_seed::add_to_linker::<T, WasiRandom>(l, random_of::<T>)?;
        cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
        wasmtime_wasi::p2::bindings::io::error::add_to_linker::<T, Table>(l, |t| t.ctx().table)?;
        sync::io::poll::add_to_linker::<T, Table>(l, |t| t.ctx().table)?;
        sync::io::streams::add_to_linker::<T, Table>(l, |t| t.ctx().table)?;
        bindings::wasi::filesystem::types::add_to_linker::<T, Confined>(l, T::confined_fs)?;
        bindings::wasi::filesystem::preopens::add_to_linker::<T, Confined>(l, T::confined_fs)?;
        bindings::runner_metrics::confined_fs::storage_files::add_to_linker::<T, Confined>(l, T::confined_fs)
    })()
    .anyhow()
    .context("linking WASI with the confined filesystem")
}

fn random_of<T: WasiView>(t: &mut T) -> &mut wasmtime_wasi::random::WasiRandomCtx {
    let wasmtime_wasi::WasiCtxView { ctx, .. } = t.ctx();
    ctx.random()
}

/// The store's resource table, which serves `wasi:io`.
struct Table;

impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

#[cfg(test)]
mod tests;

/// The layer driven from arbitrary bytes, for the fuzz target and its
/// replay in the tests (not an API).
#[doc(hidden)]
pub mod fuzzing;
