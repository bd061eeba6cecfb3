//! The system calls behind the confined filesystem, each resolving a guest
//! path the one way this layer allows: `openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` from a descriptor the guest
//! holds, so the kernel refuses a symlink at any position, `..` out of the
//! root and absolute paths, whatever the guest asks and however the tree
//! changes between two calls. Calls that act on a last component (`unlinkat`,
//! `mkdirat`, `renameat`, `fstatat`) get it alone, relative to a parent that
//! was opened that way, so they never resolve a path themselves.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

use super::bindings::wasi::filesystem::types::ErrorCode;

/// How every guest path is resolved.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);

/// Flags added to every open: never follow, never block (a FIFO swapped in
/// at any moment cannot stall the host), never leak into a child, and never
/// make a terminal device a job placed there the host's controlling
/// terminal (a service is a session leader without one).
pub(super) const ALWAYS: OFlags = OFlags::NOFOLLOW.union(OFlags::NONBLOCK).union(OFlags::CLOEXEC).union(OFlags::NOCTTY);

/// `openat2` may answer `EAGAIN` when a concurrent rename raced a `..`
/// lookup; a few retries, then the error.
const EAGAIN_RETRIES: usize = 8;

/// Is `openat2` there and allowed (no old kernel, no seccomp filter)?
/// Probes with an empty path, which touches no file: a kernel that has the
/// call says `ENOENT`.
pub fn probe() -> Result<(), Errno> {
    match rustix::fs::openat2(rustix::fs::CWD, "", OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), RESOLVE) {
        Ok(_) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Which mounts a lookup may enter. Below a storage none: a walk that met
/// a bind mount there would leave the root. From the root, only a storage
/// that is a bounded storage of ours (asked by name, and only once the
/// kernel said `EXDEV`, so plain storages pay nothing): a tmpfs, a bind of
/// another storage or of a directory outside, mounted on a storage by
/// someone else, is never entered, so it is never extracted (and logged)
/// on every run.
#[derive(Clone, Copy)]
pub enum Mounts<'a> {
    Stay,
    OwnStorages(&'a dyn Fn(&str) -> bool),
}

/// Opens `path` beneath `dir` (see the module docs). `follow` asks to follow
/// a symlink in the last component, which the kernel refuses too (`ELOOP`):
/// this layer follows none. A mount is entered only as `mounts` allows
/// (`RESOLVE_NO_XDEV` otherwise: `EXDEV`, the guest's `not-permitted`).
pub fn open(
    dir: BorrowedFd<'_>,
    path: &str,
    flags: OFlags,
    mode: Mode,
    follow: bool,
    mounts: Mounts<'_>,
) -> Result<OwnedFd, Errno> {
    check_path(path)?;
    let mut flags = flags | ALWAYS;
    if follow {
        flags -= OFlags::NOFOLLOW;
    }
    if flags.contains(OFlags::PATH) {
        // openat2 refuses flags that mean nothing to an O_PATH descriptor.
        flags -= OFlags::NONBLOCK | OFlags::NOCTTY;
    }
    // ... and a mode without O_CREAT.
    let mode = if flags.contains(OFlags::CREATE) { mode } else { Mode::empty() };
    match openat2(dir, path, flags, mode, RESOLVE | ResolveFlags::NO_XDEV) {
        Err(Errno::XDEV) => {}
        other => return other,
    }
    // A mount on the way: entered only if it is the first component's own.
    let Mounts::OwnStorages(own) = mounts else { return Err(Errno::XDEV) };
    let (first, rest) = path.split_once('/').map_or((path, ""), |(first, rest)| (first, rest.trim_start_matches('/')));
    if !plain_name(first) || !own(first) {
        return Err(Errno::XDEV);
    }
    if rest.is_empty() {
        return openat2(dir, first, flags, mode, RESOLVE);
    }
    let storage = openat2(dir, first, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty(), RESOLVE)?;
    openat2(storage.as_fd(), rest, flags, mode, RESOLVE | ResolveFlags::NO_XDEV)
}

/// `openat2`, retried a few times on `EAGAIN` (a concurrent rename raced a
/// `..` lookup).
fn openat2(
    dir: BorrowedFd<'_>,
    path: &str,
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, path, flags, mode, resolve) {
            Err(Errno::AGAIN | Errno::INTR) if tries < EAGAIN_RETRIES => tries += 1,
            other => return other,
        }
    }
}

/// Absolute paths name nothing here; an empty one is invalid.
fn check_path(path: &str) -> Result<(), Errno> {
    if path.starts_with('/') {
        Err(Errno::XDEV)
    } else if path.is_empty() {
        Err(Errno::NOENT)
    } else {
        Ok(())
    }
}

/// The directory a path's last component is in: the held one itself for a
/// single name, else its parent opened `O_PATH` beneath it.
pub enum Parent<'a> {
    Held(BorrowedFd<'a>),
    Opened(OwnedFd),
}

impl AsFd for Parent<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Held(fd) => *fd,
            Self::Opened(fd) => fd.as_fd(),
        }
    }
}

/// Splits `path` into the directory it is in and a last component that is a
/// plain name (not empty, `.` or `..`), for the calls that act on one.
pub fn parent<'a, 'p>(dir: BorrowedFd<'a>, path: &'p str, mounts: Mounts<'_>) -> Result<(Parent<'a>, &'p str), Errno> {
    check_path(path)?;
    let path = path.trim_end_matches('/');
    let (parent, leaf) = match path.rsplit_once('/') {
        None => (Parent::Held(dir), path),
        Some((head, leaf)) => {
            let head = if head.is_empty() { "." } else { head };
            (Parent::Opened(open(dir, head, OFlags::PATH | OFlags::DIRECTORY, Mode::empty(), false, mounts)?), leaf)
        }
    };
    if plain_name(leaf) {
        Ok((parent, leaf))
    } else {
        Err(Errno::INVAL)
    }
}

/// One component naming an entry of the directory it is resolved in (the
/// core's rule, which the guest follows too).
pub use runner_metrics_core::names::is_plain_name as plain_name;

/// Whether two descriptors are the same file.
pub fn same_object(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    matches!((rustix::fs::fstat(a), rustix::fs::fstat(b)), (Ok(a), Ok(b)) if a.st_dev == b.st_dev && a.st_ino == b.st_ino)
}

/// `lstat` of a path beneath `dir`: one `fstatat` for a plain name, else an
/// `O_PATH` open (which gives the symlink itself, never its target) and
/// `fstat`.
pub fn stat_at(dir: BorrowedFd<'_>, path: &str, follow: bool, mounts: Mounts<'_>) -> Result<Stat, Errno> {
    if plain_name(path) && !follow {
        return rustix::fs::statat(dir, path, AtFlags::SYMLINK_NOFOLLOW);
    }
    let fd = open(dir, path, OFlags::PATH, Mode::empty(), follow, mounts)?;
    rustix::fs::fstat(&fd)
}

/// Opens the directory a new listing reads: its own open file description,
/// so two listings of one descriptor do not share an offset.
pub fn reopen_dir(dir: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | ALWAYS, Mode::empty())
}

pub fn mkdir_at(dir: BorrowedFd<'_>, path: &str, mounts: Mounts<'_>) -> Result<(), Errno> {
    let (parent, leaf) = parent(dir, path, mounts)?;
    rustix::fs::mkdirat(parent, leaf, Mode::from_raw_mode(0o777))
}

pub fn unlink_at(dir: BorrowedFd<'_>, path: &str, directory: bool, mounts: Mounts<'_>) -> Result<(), Errno> {
    let (parent, leaf) = parent(dir, path, mounts)?;
    rustix::fs::unlinkat(parent, leaf, if directory { AtFlags::REMOVEDIR } else { AtFlags::empty() })
}

/// Renames within the root. Here `EXDEV` from the rename itself is a mount
/// boundary (a storage may be a mounted image), not an escape.
pub fn rename_at(
    (from_dir, from, from_mounts): (BorrowedFd<'_>, &str, Mounts<'_>),
    (to_dir, to, to_mounts): (BorrowedFd<'_>, &str, Mounts<'_>),
) -> Result<(), ErrorCode> {
    let (from_parent, from_leaf) = parent(from_dir, from, from_mounts).map_err(code)?;
    let (to_parent, to_leaf) = parent(to_dir, to, to_mounts).map_err(code)?;
    rustix::fs::renameat(from_parent, from_leaf, to_parent, to_leaf).map_err(|e| match e {
        Errno::XDEV => ErrorCode::CrossDevice,
        other => code(other),
    })
}

pub fn readlink_at(dir: BorrowedFd<'_>, path: &str, mounts: Mounts<'_>) -> Result<Vec<u8>, Errno> {
    let (parent, leaf) = parent(dir, path, mounts)?;
    rustix::fs::readlinkat(parent, leaf, Vec::new()).map(|target| target.into_bytes())
}

/// Sets times on a path's last component itself (never a symlink's target).
pub fn set_times_at(
    dir: BorrowedFd<'_>,
    path: &str,
    times: &rustix::fs::Timestamps,
    mounts: Mounts<'_>,
) -> Result<(), Errno> {
    let (parent, leaf) = parent(dir, path, mounts)?;
    rustix::fs::utimensat(parent, leaf, times, AtFlags::SYMLINK_NOFOLLOW)
}

/// The WASI name of an error. `EXDEV` from a lookup is an escape the kernel
/// refused (`..` out of the root, an absolute path): `not-permitted`, as
/// wasmtime-wasi says for the same attempt.
pub fn code(errno: Errno) -> ErrorCode {
    match errno {
        Errno::ACCESS => ErrorCode::Access,
        Errno::AGAIN => ErrorCode::WouldBlock,
        Errno::ALREADY => ErrorCode::Already,
        Errno::BADF => ErrorCode::BadDescriptor,
        Errno::BUSY => ErrorCode::Busy,
        Errno::DEADLK => ErrorCode::Deadlock,
        Errno::DQUOT => ErrorCode::Quota,
        Errno::EXIST => ErrorCode::Exist,
        Errno::FBIG => ErrorCode::FileTooLarge,
        Errno::ILSEQ => ErrorCode::IllegalByteSequence,
        Errno::INPROGRESS => ErrorCode::InProgress,
        Errno::INTR => ErrorCode::Interrupted,
        Errno::INVAL => ErrorCode::Invalid,
        Errno::IO => ErrorCode::Io,
        Errno::ISDIR => ErrorCode::IsDirectory,
        Errno::LOOP => ErrorCode::Loop,
        Errno::MLINK => ErrorCode::TooManyLinks,
        Errno::MSGSIZE => ErrorCode::MessageSize,
        Errno::NAMETOOLONG => ErrorCode::NameTooLong,
        Errno::NODEV => ErrorCode::NoDevice,
        Errno::NOENT => ErrorCode::NoEntry,
        Errno::NOLCK => ErrorCode::NoLock,
        Errno::NOMEM => ErrorCode::InsufficientMemory,
        Errno::NOSPC => ErrorCode::InsufficientSpace,
        Errno::NOTDIR => ErrorCode::NotDirectory,
        Errno::NOTEMPTY => ErrorCode::NotEmpty,
        Errno::NOTRECOVERABLE => ErrorCode::NotRecoverable,
        Errno::NOTTY => ErrorCode::NoTty,
        Errno::NXIO => ErrorCode::NoSuchDevice,
        Errno::OVERFLOW => ErrorCode::Overflow,
        Errno::PERM | Errno::XDEV => ErrorCode::NotPermitted,
        Errno::PIPE => ErrorCode::Pipe,
        Errno::ROFS => ErrorCode::ReadOnly,
        Errno::SPIPE => ErrorCode::InvalidSeek,
        Errno::TXTBSY => ErrorCode::TextFileBusy,
        Errno::NOSYS | Errno::OPNOTSUPP => ErrorCode::Unsupported,
        _ => ErrorCode::Io,
    }
}
