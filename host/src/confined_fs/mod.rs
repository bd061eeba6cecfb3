//! The guest's `wasi:filesystem`, served by the host itself instead of by
//! wasmtime-wasi's general implementation: purpose-built for hostile storage
//! (docs/security.md, "The confined filesystem").
//!
//! - **Confined by the kernel**: every guest path goes through `openat2`
//!   with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`
//!   from a descriptor the guest holds ([`kernel`]): no symlink is followed
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

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::WasiView;

use crate::bindings::IntoAnyhow;

pub use descriptor::{Descriptor, DirectoryEntryStream};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/confined-fs",
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

/// What the guest may reach: one preopened directory.
pub struct ConfinedFsCtx {
    root: Arc<OwnedFd>,
    guest_path: String,
    flags: bindings::wasi::filesystem::types::DescriptorFlags,
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
        Ok(Self { root: Arc::new(fd), guest_path: guest_path.to_owned(), flags })
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
        bindings::wasi::filesystem::preopens::add_to_linker::<T, Confined>(l, T::confined_fs)
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

/// The layer driven from arbitrary bytes: the `confined_fs` fuzz target
/// (`fuzz/fuzz_targets/confined_fs.rs`) and its bounded replay in the tests
/// (`tests::fuzz_ops_never_touch_outside`) both call [`fuzzing::check_ops`].
/// Not an API: the bindings it calls are private to this module.
#[doc(hidden)]
pub mod fuzzing {
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};

    use wasmtime::component::{Resource, ResourceTable};

    use super::bindings::wasi::clocks::wall_clock::Datetime;
    use super::bindings::wasi::filesystem::preopens::Host as _;
    use super::bindings::wasi::filesystem::types::{
        DescriptorFlags, HostDescriptor, HostDirectoryEntryStream, NewTimestamp, OpenFlags, PathFlags,
    };
    use super::{ConfinedFsCtx, ConfinedFsView, Descriptor};

    /// The names paths are made of: the tree [`check_ops`] plants, and every
    /// spelling of an escape (`..`, `/`, an empty component, a NUL, a name
    /// over `NAME_MAX`, the sibling's own names).
    const COMPONENTS: &[&str] =
        &["a", "b", "dir", "file", "link", "fifo", "sock", "..", ".", "", "/", "outside", "secret", "\0"];
    const MAX_CALLS: usize = 96;
    const MAX_HANDLES: usize = 8;

    /// The link [`check_ops`] plants in the root; the guest cannot make one.
    pub const LINK_TARGET: &str = "../outside";

    struct Bytes<'a>(&'a [u8]);

    impl Bytes<'_> {
        fn byte(&mut self) -> u8 {
            let Some((&b, rest)) = self.0.split_first() else { return 0 };
            self.0 = rest;
            b
        }

        fn index(&mut self, len: usize) -> Option<usize> {
            (len > 0).then(|| usize::from(self.byte()) % len)
        }

        /// Zero to four components joined by `/`.
        fn path(&mut self) -> String {
            let mut path = String::new();
            for i in 0..self.byte() % 5 {
                if i > 0 {
                    path.push('/');
                }
                match self.index(COMPONENTS.len() + 1) {
                    Some(c) if c < COMPONENTS.len() => path.push_str(COMPONENTS[c]),
                    _ => path.push_str(&"x".repeat(256)),
                }
            }
            path
        }

        fn number(&mut self) -> u64 {
            match self.byte() % 6 {
                0 => 0,
                1 => u64::from(self.byte()),
                2 => 1 << 20,
                3 => 1 << 40,
                4 => i64::MAX as u64 + 1,
                _ => u64::MAX,
            }
        }

        fn path_flags(&mut self) -> PathFlags {
            if self.byte().is_multiple_of(2) {
                PathFlags::empty()
            } else {
                PathFlags::SYMLINK_FOLLOW
            }
        }

        fn open_flags(&mut self) -> OpenFlags {
            let bits = self.byte();
            let mut flags = OpenFlags::empty();
            for (bit, flag) in [OpenFlags::CREATE, OpenFlags::DIRECTORY, OpenFlags::EXCLUSIVE, OpenFlags::TRUNCATE]
                .into_iter()
                .enumerate()
            {
                if bits & (1 << bit) != 0 {
                    flags |= flag;
                }
            }
            flags
        }

        fn descriptor_flags(&mut self) -> DescriptorFlags {
            let bits = self.byte();
            let mut flags = DescriptorFlags::empty();
            for (bit, flag) in [
                DescriptorFlags::READ,
                DescriptorFlags::WRITE,
                DescriptorFlags::MUTATE_DIRECTORY,
                DescriptorFlags::FILE_INTEGRITY_SYNC,
                DescriptorFlags::DATA_INTEGRITY_SYNC,
            ]
            .into_iter()
            .enumerate()
            {
                if bits & (1 << bit) != 0 {
                    flags |= flag;
                }
            }
            flags
        }

        fn timestamp(&mut self) -> NewTimestamp {
            match self.byte() % 3 {
                0 => NewTimestamp::NoChange,
                1 => NewTimestamp::Now,
                _ => NewTimestamp::Timestamp(Datetime {
                    seconds: self.number(),
                    nanoseconds: u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()]),
                }),
            }
        }
    }

    fn borrow<T: 'static>(handles: &[u32], at: usize) -> Resource<T> {
        Resource::new_borrow(handles[at])
    }

    /// Decodes `ops` into a sequence of guest calls on the storage `root`
    /// (granted writable unless the first byte is odd) and makes them,
    /// keeping the descriptors and listings they open in small vectors.
    /// Never panics; returns how many calls trapped (a host function
    /// returning `Err`, which kills a real guest): every handle used is
    /// live, so any trap is a bug.
    pub fn run_ops(root: &Path, ops: &[u8]) -> usize {
        /// The guest's view of a call: `None` when it trapped.
        fn call<T>(traps: &mut usize, r: wasmtime::Result<T>) -> Option<T> {
            r.map_err(|_| *traps += 1).ok()
        }
        let mut b = Bytes(ops);
        let Ok(ctx) = ConfinedFsCtx::new(root, "/storage", b.byte() % 2 == 0) else { return 0 };
        let mut table = ResourceTable::new();
        let mut v = ConfinedFsView { ctx: &ctx, table: &mut table };
        let (mut fds, mut streams): (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
        let t = &mut 0;
        for _ in 0..MAX_CALLS {
            if b.0.is_empty() {
                break;
            }
            let op = b.byte() % 18;
            if op == 17 || fds.is_empty() {
                if let Some(dirs) = call(t, v.get_directories()) {
                    fds.extend(dirs.into_iter().map(|(fd, _)| fd.rep()));
                }
                continue;
            }
            let Some(fd) = b.index(fds.len()) else { continue };
            let d = || borrow::<Descriptor>(&fds, fd);
            match op {
                0 => {
                    let (pf, path, of, df) = (b.path_flags(), b.path(), b.open_flags(), b.descriptor_flags());
                    if let Some(Ok(new)) = call(t, v.open_at(d(), pf, path, of, df)) {
                        if fds.len() < MAX_HANDLES {
                            fds.push(new.rep());
                        } else {
                            call(t, HostDescriptor::drop(&mut v, new));
                        }
                    }
                }
                1 => _ = call(t, v.stat_at(d(), b.path_flags(), b.path())),
                2 => _ = call(t, v.read(d(), b.number(), b.number())),
                3 => {
                    let len = usize::from(b.byte() % 64);
                    _ = call(t, v.write(d(), vec![b'w'; len], b.number()));
                }
                4 => _ = call(t, v.create_directory_at(d(), b.path())),
                5 => _ = call(t, v.unlink_file_at(d(), b.path())),
                6 => _ = call(t, v.remove_directory_at(d(), b.path())),
                7 => {
                    let from = b.path();
                    let to = b.index(fds.len()).unwrap_or(fd);
                    _ = call(t, v.rename_at(d(), from, borrow(&fds, to), b.path()));
                }
                8 => {
                    if let Some(Ok(stream)) = call(t, v.read_directory(d())) {
                        if streams.len() < MAX_HANDLES {
                            streams.push(stream.rep());
                        } else {
                            call(t, HostDirectoryEntryStream::drop(&mut v, stream));
                        }
                    }
                }
                9 => {
                    if let Some(s) = b.index(streams.len()) {
                        for _ in 0..=b.byte() % 8 {
                            call(t, v.read_directory_entry(borrow(&streams, s)));
                        }
                    }
                }
                10 => _ = call(t, HostDescriptor::drop(&mut v, Resource::new_own(fds.swap_remove(fd)))),
                11 => {
                    if let Some(s) = b.index(streams.len()) {
                        call(t, HostDirectoryEntryStream::drop(&mut v, Resource::new_own(streams.swap_remove(s))));
                    }
                }
                12 => _ = call(t, v.readlink_at(d(), b.path())),
                13 => {
                    let (pf, path, atim, mtim) = (b.path_flags(), b.path(), b.timestamp(), b.timestamp());
                    _ = call(t, v.set_times_at(d(), pf, path, atim, mtim));
                }
                14 => {
                    call(t, v.metadata_hash_at(d(), b.path_flags(), b.path()));
                    call(t, v.stat(d()));
                    call(t, v.get_type(d()));
                    call(t, v.get_flags(d()));
                }
                15 => _ = call(t, v.set_size(d(), b.number())),
                _ => {
                    let (from, to) = (b.path(), b.path());
                    let to_fd = b.index(fds.len()).unwrap_or(fd);
                    call(t, v.symlink_at(d(), from.clone(), to.clone()));
                    call(t, v.link_at(d(), b.path_flags(), from, borrow(&fds, to_fd), to));
                }
            }
        }
        *t
    }

    /// What a tree holds, for "unchanged" checks: every name with its kind,
    /// contents (or link target), mode, modification and change times.
    pub type Snapshot = BTreeMap<PathBuf, String>;

    /// A snapshot of the tree under `dir` (not following symlinks).
    pub fn snapshot(dir: &Path) -> Snapshot {
        fn walk(base: &Path, dir: &Path, out: &mut Snapshot) {
            let mut entries: Vec<_> = std::fs::read_dir(dir).map(|r| r.flatten().collect()).unwrap_or_default();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let path = entry.path();
                let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
                let content = if meta.is_file() {
                    format!("{:?}", std::fs::read(&path).unwrap_or_default())
                } else if meta.file_type().is_symlink() {
                    format!("symlink -> {:?}", std::fs::read_link(&path).unwrap_or_default())
                } else {
                    String::new()
                };
                let key = path.strip_prefix(base).unwrap_or(&path).to_path_buf();
                let line = format!(
                    "mode {:o} nlink {} mtime {}.{} ctime {}.{} {content}",
                    meta.mode(),
                    meta.nlink(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                    meta.ctime(),
                    meta.ctime_nsec()
                );
                out.insert(key, line);
                if meta.is_dir() {
                    walk(base, &path, out);
                }
            }
        }
        let mut out = Snapshot::new();
        walk(dir, dir, &mut out);
        out
    }

    /// One fuzz input: a fresh `<tmp>/root` (a directory, a file, a FIFO, a
    /// socket and `link -> ../outside`) beside `<tmp>/outside` (sentinels),
    /// `ops` run on the root, then: `outside` is unchanged, no call trapped,
    /// and the only symlink in the root is still the planted one.
    pub fn check_ops(ops: &[u8]) {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let (root, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
        for dir in [root.join("dir/a"), outside.join("dir/a"), outside.join("a")] {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        for (path, content) in [
            (root.join("file"), "inside\n"),
            (outside.join("secret"), "secret\n"),
            (outside.join("file"), "outside file\n"),
            (outside.join("a/b"), "outside a/b\n"),
            (outside.join("dir/a/file"), "outside dir/a/file\n"),
        ] {
            std::fs::write(path, content).expect("write");
        }
        let fifo = std::ffi::CString::new(root.join("fifo").into_os_string().into_encoded_bytes()).expect("no NUL");
        // SAFETY: a valid C string; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");
        let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).expect("bind");
        std::os::unix::fs::symlink(LINK_TARGET, root.join("link")).expect("symlink");
        let before = snapshot(&outside);

        let traps = run_ops(&root, ops);

        assert_eq!(snapshot(&outside), before, "outside changed; ops {ops:?}");
        assert_eq!(traps, 0, "a call trapped; ops {ops:?}");
        for (path, line) in snapshot(&root) {
            if let Some((_, target)) = line.split_once(" symlink -> ") {
                assert_eq!(target, format!("{LINK_TARGET:?}"), "a symlink {path:?} appeared; ops {ops:?}");
            }
        }
    }
}
