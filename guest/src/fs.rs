//! The few filesystem operations the guest needs, behind one trait.
//!
//! In the component they go straight to `wasi:filesystem` (so symlinks are
//! never followed and nothing but a regular file is opened); natively they go
//! to `std` + `libc` with the same guarantees, so the extraction logic is
//! tested and benchmarked natively against itself. Every path is relative to
//! the storage root and built only from validated names and constants.

use std::fmt;

/// What kind of thing a directory entry is, without following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    /// FIFO, socket, device or unknown.
    Other(&'static str),
}

impl EntryKind {
    /// A word for error messages: "a symlink", "a FIFO", ...
    pub fn describe(self) -> &'static str {
        match self {
            Self::File => "a regular file",
            Self::Directory => "a directory",
            Self::Symlink => "a symlink",
            Self::Other(what) => what,
        }
    }
}

/// The metadata of an entry (`lstat`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta {
    pub kind: EntryKind,
    pub size: u64,
    /// Last modification, UNIX seconds, when the platform keeps it.
    pub modified: Option<f64>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq)]
pub struct DirEntry {
    /// `None` when the name is not valid UTF-8 (it cannot be named in a path).
    pub name: Option<String>,
    pub kind: EntryKind,
}

/// The result of a bounded read of a file that `lstat` called regular.
#[derive(Debug, Clone, PartialEq)]
pub enum BoundedRead {
    /// At most `limit` bytes.
    Content(Vec<u8>),
    /// More than `limit` bytes were there (the file may have grown).
    Oversized,
    /// The opened file is not a regular file (it was swapped after `lstat`).
    NotRegular(EntryKind),
}

/// Coarse classes of filesystem errors: whose fault and what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsErrorKind {
    NotFound,
    AlreadyExists,
    /// A symlink where none may be (`O_NOFOLLOW` refused it), or a loop.
    Symlink,
    NotADirectory,
    IsADirectory,
    /// A directory that still holds entries (`ENOTEMPTY`).
    NotEmpty,
    PermissionDenied,
    /// Anything else: I/O error, no space, name too long, ...
    Other,
}

/// A failed filesystem operation: which one, on what path, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsError {
    pub kind: FsErrorKind,
    pub message: String,
}

impl FsError {
    pub fn new(kind: FsErrorKind, op: &str, path: &str, cause: impl fmt::Display) -> Self {
        Self { kind, message: format!("{op} {path:?}: {cause}") }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FsError {}

pub type FsResult<T> = Result<T, FsError>;

/// Filesystem access relative to the storage root. No method follows a
/// symlink in any path component it is given.
pub trait StorageFs {
    /// A streaming listing of one directory.
    type Listing: Iterator<Item = FsResult<DirEntry>>;
    /// An open directory, for the descriptor-relative walk of [`crate::walk`].
    type Dir: crate::walk::DirHandle;

    /// Opens a directory of the root (one component, never through a
    /// symlink) for [`crate::walk`].
    fn open_dir(&self, name: &str) -> FsResult<Self::Dir>;

    /// Opens the root's directory `name` (one component, no symlink
    /// followed, directory only) for the reads of paths under it that
    /// follow: one call where an `lstat` and then an open would be two.
    /// A symlink is `Symlink`, anything else that is not a directory
    /// `NotADirectory`.
    fn enter_dir(&self, name: &str) -> FsResult<()>;
    /// Lists a directory (`""` is the root).
    fn list(&self, dir: &str) -> FsResult<Self::Listing>;
    /// `lstat`: metadata of the entry itself, never of a symlink's target.
    fn lstat(&self, path: &str) -> FsResult<Meta>;
    /// Opens a regular file without following symlinks and without blocking
    /// on FIFOs, and reads at most `limit + 1` bytes of it.
    fn read_bounded(&self, path: &str, limit: usize) -> FsResult<BoundedRead>;
    /// Atomically renames within the root.
    fn rename(&self, from: &str, to: &str) -> FsResult<()>;
    /// Atomically moves the root's entry `name` to `new_name` in the open
    /// directory `dir`: one call on single names, no path resolved twice.
    /// Replaces at most an empty directory.
    fn move_into(&self, name: &str, dir: &Self::Dir, new_name: &str) -> FsResult<()>;
    fn create_dir(&self, path: &str) -> FsResult<()>;
    /// Creates a new file (fails if anything exists there), writes `bytes`
    /// and syncs it.
    fn write_new_file(&self, path: &str, bytes: &[u8]) -> FsResult<()>;
    /// Removes a non-directory entry (a symlink itself, never its target).
    fn remove_file(&self, path: &str) -> FsResult<()>;
    /// The current UNIX time in seconds.
    fn now(&self) -> f64;
}

/// A borrowed filesystem is a filesystem, so a scan can own or borrow one.
impl<T: StorageFs> StorageFs for &T {
    type Listing = T::Listing;
    type Dir = T::Dir;
    fn open_dir(&self, name: &str) -> FsResult<Self::Dir> {
        (**self).open_dir(name)
    }
    fn enter_dir(&self, name: &str) -> FsResult<()> {
        (**self).enter_dir(name)
    }
    fn list(&self, dir: &str) -> FsResult<Self::Listing> {
        (**self).list(dir)
    }
    fn lstat(&self, path: &str) -> FsResult<Meta> {
        (**self).lstat(path)
    }
    fn read_bounded(&self, path: &str, limit: usize) -> FsResult<BoundedRead> {
        (**self).read_bounded(path, limit)
    }
    fn rename(&self, from: &str, to: &str) -> FsResult<()> {
        (**self).rename(from, to)
    }
    fn move_into(&self, name: &str, dir: &Self::Dir, new_name: &str) -> FsResult<()> {
        (**self).move_into(name, dir, new_name)
    }
    fn create_dir(&self, path: &str) -> FsResult<()> {
        (**self).create_dir(path)
    }
    fn write_new_file(&self, path: &str, bytes: &[u8]) -> FsResult<()> {
        (**self).write_new_file(path, bytes)
    }
    fn remove_file(&self, path: &str) -> FsResult<()> {
        (**self).remove_file(path)
    }
    fn now(&self) -> f64 {
        (**self).now()
    }
}

/// What [`StorageFs::enter_dir`] says of an entry of kind `kind` where it
/// checks rather than opens.
pub fn directory_or_error(name: &str, kind: EntryKind) -> FsResult<()> {
    match kind {
        EntryKind::Directory => Ok(()),
        EntryKind::Symlink => Err(FsError::new(FsErrorKind::Symlink, "open directory", name, "a symlink")),
        other => Err(FsError::new(FsErrorKind::NotADirectory, "open directory", name, other.describe())),
    }
}

/// Joins a directory and a name into a root-relative path.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::{mount_of, NativeDir, NativeFs};

#[cfg(target_arch = "wasm32")]
pub use wasi_fs::{WasiDir, WasiFs};

#[cfg(not(target_arch = "wasm32"))]
mod native {
    //! `std` + `libc`: `O_NOFOLLOW | O_NONBLOCK` opens, `lstat` everywhere.
    use super::*;
    use crate::walk::DirHandle;
    use std::ffi::{CStr, CString};
    use std::fs::{self, File, OpenOptions};
    use std::io::{self, Read, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    use std::path::{Path, PathBuf};
    use std::time::{SystemTime, UNIX_EPOCH};

    /// The storage root on the host's own filesystem.
    #[derive(Debug, Clone)]
    pub struct NativeFs {
        root: PathBuf,
    }

    impl NativeFs {
        pub fn new(root: impl Into<PathBuf>) -> Self {
            Self { root: root.into() }
        }

        fn path(&self, rel: &str) -> PathBuf {
            if rel.is_empty() {
                self.root.clone()
            } else {
                self.root.join(rel)
            }
        }
    }

    fn kind_of(ft: fs::FileType) -> EntryKind {
        if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_dir() {
            EntryKind::Directory
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_fifo() {
            EntryKind::Other("a FIFO")
        } else if ft.is_socket() {
            EntryKind::Other("a socket")
        } else if ft.is_block_device() || ft.is_char_device() {
            EntryKind::Other("a device")
        } else {
            EntryKind::Other("an entry of unknown type")
        }
    }

    fn error(op: &str, path: &str, e: io::Error) -> FsError {
        let kind = match e.kind() {
            io::ErrorKind::NotFound => FsErrorKind::NotFound,
            io::ErrorKind::AlreadyExists => FsErrorKind::AlreadyExists,
            io::ErrorKind::PermissionDenied => FsErrorKind::PermissionDenied,
            io::ErrorKind::NotADirectory => FsErrorKind::NotADirectory,
            io::ErrorKind::IsADirectory => FsErrorKind::IsADirectory,
            io::ErrorKind::DirectoryNotEmpty => FsErrorKind::NotEmpty,
            _ if e.raw_os_error() == Some(libc::ELOOP) => FsErrorKind::Symlink,
            _ => FsErrorKind::Other,
        };
        FsError::new(kind, op, path, e)
    }

    fn modified(meta: &fs::Metadata) -> Option<f64> {
        let time = meta.modified().ok()?;
        Some(match time.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            Err(_) => 0.0,
        })
    }

    /// A directory listing that reports non-UTF-8 names as `None`.
    pub struct Listing {
        inner: fs::ReadDir,
        dir: String,
    }

    impl Iterator for Listing {
        type Item = FsResult<DirEntry>;
        fn next(&mut self) -> Option<Self::Item> {
            let entry = match self.inner.next()? {
                Ok(entry) => entry,
                Err(e) => return Some(Err(error("list", &self.dir, e))),
            };
            let kind = match entry.file_type() {
                Ok(ft) => kind_of(ft),
                Err(e) => return Some(Err(error("stat", &self.dir, e))),
            };
            Some(Ok(DirEntry { name: entry.file_name().into_string().ok(), kind }))
        }
    }

    impl StorageFs for NativeFs {
        type Listing = Listing;
        type Dir = NativeDir;

        fn open_dir(&self, name: &str) -> FsResult<NativeDir> {
            let root = NativeDir::open(&self.root).map_err(|e| error("open", "", e))?;
            root.open_dir(&NativeDir::name_from(name))
        }

        fn enter_dir(&self, name: &str) -> FsResult<()> {
            // Paths are resolved whole natively: the check is all there is.
            directory_or_error(name, self.lstat(name)?.kind)
        }

        fn list(&self, dir: &str) -> FsResult<Listing> {
            let inner = fs::read_dir(self.path(dir)).map_err(|e| error("list", dir, e))?;
            Ok(Listing { inner, dir: dir.to_owned() })
        }

        fn lstat(&self, path: &str) -> FsResult<Meta> {
            let meta = fs::symlink_metadata(self.path(path)).map_err(|e| error("stat", path, e))?;
            Ok(Meta { kind: kind_of(meta.file_type()), size: meta.len(), modified: modified(&meta) })
        }

        fn read_bounded(&self, path: &str, limit: usize) -> FsResult<BoundedRead> {
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(self.path(path))
                .map_err(|e| error("open", path, e))?;
            let meta = file.metadata().map_err(|e| error("stat", path, e))?;
            let kind = kind_of(meta.file_type());
            if kind != EntryKind::File {
                return Ok(BoundedRead::NotRegular(kind));
            }
            read_at_most(file, limit).map_err(|e| error("read", path, e))
        }

        fn rename(&self, from: &str, to: &str) -> FsResult<()> {
            fs::rename(self.path(from), self.path(to)).map_err(|e| error("rename", from, e))
        }

        fn move_into(&self, name: &str, dir: &NativeDir, new_name: &str) -> FsResult<()> {
            let root = NativeDir::open(&self.root).map_err(|e| error("open", "", e))?;
            root.rename_to(&NativeDir::name_from(name), dir, &NativeDir::name_from(new_name))
        }

        fn create_dir(&self, path: &str) -> FsResult<()> {
            fs::create_dir(self.path(path)).map_err(|e| error("create directory", path, e))
        }

        fn write_new_file(&self, path: &str, bytes: &[u8]) -> FsResult<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(self.path(path))
                .map_err(|e| error("create", path, e))?;
            file.write_all(bytes).map_err(|e| error("write", path, e))?;
            file.sync_data().map_err(|e| error("sync", path, e))
        }

        fn remove_file(&self, path: &str) -> FsResult<()> {
            fs::remove_file(self.path(path)).map_err(|e| error("remove", path, e))
        }

        fn now(&self) -> f64 {
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
        }
    }

    /// An open directory on the host's filesystem: Linux descriptors and the
    /// `*at` calls, for [`crate::walk`]. Names are bytes (any name a job
    /// made can be removed).
    #[derive(Debug)]
    pub struct NativeDir {
        fd: OwnedFd,
    }

    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn describe_name(name: &CStr) -> String {
        String::from_utf8_lossy(name.to_bytes()).into_owned()
    }

    fn at_error(op: &str, name: &CStr, e: io::Error) -> FsError {
        let mut e = error(op, &describe_name(name), e);
        // rmdir(2) may say EEXIST for "not empty" (POSIX allows both).
        if e.kind == FsErrorKind::AlreadyExists && op == "remove directory" {
            e.kind = FsErrorKind::NotEmpty;
        }
        e
    }

    /// Which mount an open file is on: its mount id (`statx`, Linux 5.8),
    /// else its device (a bind mount of the same filesystem then looks the
    /// same: older kernels only).
    pub fn mount_of(fd: &OwnedFd) -> Option<(u64, u64)> {
        // SAFETY: an all-zero statx is a valid value for the kernel to fill.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        let empty = c"";
        // SAFETY: a valid descriptor, an empty NUL-terminated path with
        // AT_EMPTY_PATH, and a buffer of the right type.
        let rc = unsafe {
            libc::statx(
                fd.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
                libc::STATX_MNT_ID,
                &mut stx,
            )
        };
        if rc != 0 {
            return None;
        }
        if stx.stx_mask & libc::STATX_MNT_ID != 0 {
            Some((0, stx.stx_mnt_id))
        } else {
            Some((u64::from(stx.stx_dev_major) << 32 | u64::from(stx.stx_dev_minor), 1))
        }
    }

    impl NativeDir {
        /// Opens a directory the caller trusts (the storage root, or one
        /// of its reserved directories), following symlinks as the
        /// operator configured them.
        pub fn open(path: &Path) -> io::Result<Self> {
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path)?;
            Ok(Self { fd: OwnedFd::from(file) })
        }

        pub fn as_raw_fd(&self) -> RawFd {
            self.fd.as_raw_fd()
        }
    }

    impl crate::walk::DirHandle for NativeDir {
        type Name = CString;

        fn name_from(text: &str) -> CString {
            CString::new(text.replace('\0', "")).unwrap_or_default()
        }

        fn show(name: &CString) -> String {
            describe_name(name)
        }

        fn open_dir(&self, name: &CString) -> FsResult<Self> {
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
            // SAFETY: `name` is NUL-terminated; the result is checked.
            let fd = unsafe { libc::openat(self.fd.as_raw_fd(), name.as_ptr(), flags) };
            if fd < 0 {
                return Err(at_error("open directory", name, io::Error::last_os_error()));
            }
            // SAFETY: `fd` was just opened and is owned by nobody else.
            Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
        }

        fn read_entries(&self, max: usize) -> FsResult<crate::walk::Entries<CString>> {
            let failed = |e: io::Error| error("list", "", e);
            // fdopendir takes ownership of its descriptor: give it a duplicate.
            // SAFETY: fcntl on a valid descriptor.
            let dup = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                return Err(failed(io::Error::last_os_error()));
            }
            // SAFETY: `dup` is a valid directory descriptor we own.
            let stream = unsafe { libc::fdopendir(dup) };
            if stream.is_null() {
                let e = io::Error::last_os_error();
                // SAFETY: still ours when fdopendir fails.
                unsafe { libc::close(dup) };
                return Err(failed(e));
            }
            // The duplicate shares the offset: start from the beginning.
            // SAFETY: `stream` is a valid DIR*.
            unsafe { libc::rewinddir(stream) };
            let mut entries = Vec::new();
            let result = loop {
                if entries.len() >= max {
                    break Ok(());
                }
                // SAFETY: errno is thread-local; `stream` is valid.
                unsafe { *libc::__errno_location() = 0 };
                let entry = unsafe { libc::readdir(stream) };
                if entry.is_null() {
                    let errno = io::Error::last_os_error();
                    break if errno.raw_os_error() == Some(0) { Ok(()) } else { Err(failed(errno)) };
                }
                // SAFETY: d_name is NUL-terminated within the entry.
                let (name, d_type) = unsafe { (CStr::from_ptr((*entry).d_name.as_ptr()), (*entry).d_type) };
                if name.to_bytes() == b"." || name.to_bytes() == b".." {
                    continue;
                }
                let kind = match d_type {
                    libc::DT_DIR => Some(EntryKind::Directory),
                    libc::DT_REG => Some(EntryKind::File),
                    libc::DT_LNK => Some(EntryKind::Symlink),
                    libc::DT_UNKNOWN => None,
                    _ => Some(EntryKind::Other("a special file")),
                };
                entries.push((Some(name.to_owned()), kind));
            };
            // SAFETY: closes the stream and `dup`.
            unsafe { libc::closedir(stream) };
            result.map(|()| entries)
        }

        fn kind_at(&self, name: &CString) -> FsResult<EntryKind> {
            // SAFETY: `st` is written by fstatat before it is read.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            let rc = unsafe { libc::fstatat(self.fd.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
            check(rc).map_err(|e| at_error("stat", name, e))?;
            Ok(match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => EntryKind::Directory,
                libc::S_IFREG => EntryKind::File,
                libc::S_IFLNK => EntryKind::Symlink,
                libc::S_IFIFO => EntryKind::Other("a FIFO"),
                libc::S_IFSOCK => EntryKind::Other("a socket"),
                libc::S_IFBLK | libc::S_IFCHR => EntryKind::Other("a device"),
                _ => EntryKind::Other("an entry of unknown type"),
            })
        }

        fn unlink(&self, name: &CString) -> FsResult<()> {
            // SAFETY: `name` is NUL-terminated.
            check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), 0) })
                .map_err(|e| at_error("remove", name, e))
        }

        fn rmdir(&self, name: &CString) -> FsResult<()> {
            // SAFETY: `name` is NUL-terminated.
            check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) })
                .map_err(|e| at_error("remove directory", name, e))
        }

        fn same_mount(&self, child: &Self) -> bool {
            match (mount_of(&self.fd), mount_of(&child.fd)) {
                (Some(parent), Some(child)) => parent == child,
                // No answer from the kernel: not the same, so not entered.
                _ => false,
            }
        }

        fn rename_to(&self, name: &CString, to: &Self, to_name: &CString) -> FsResult<()> {
            let (from, to) = (self.fd.as_raw_fd(), to.fd.as_raw_fd());
            // Never replace what is there (plain rename(2) replaces an empty
            // directory or a file); filesystems without the flag fall back.
            // SAFETY: both names are NUL-terminated, both descriptors valid.
            let rc = unsafe { libc::renameat2(from, name.as_ptr(), to, to_name.as_ptr(), libc::RENAME_NOREPLACE) };
            match check(rc) {
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
                    // SAFETY: as above.
                    check(unsafe { libc::renameat(from, name.as_ptr(), to, to_name.as_ptr()) })
                }
                other => other,
            }
            .map_err(|e| at_error("move", name, e))
        }
    }

    /// Reads until EOF or `limit + 1` bytes, whichever comes first.
    fn read_at_most(file: File, limit: usize) -> io::Result<BoundedRead> {
        let mut content = Vec::with_capacity(limit.saturating_add(1).min(64 * 1024));
        file.take(limit as u64 + 1).read_to_end(&mut content)?;
        Ok(if content.len() > limit { BoundedRead::Oversized } else { BoundedRead::Content(content) })
    }
}

#[cfg(target_arch = "wasm32")]
mod wasi_fs {
    //! `wasi:filesystem` directly: std cannot open without following symlinks.
    use super::*;
    use std::cell::{OnceCell, RefCell};
    use std::rc::Rc;
    use wasi::filesystem::types::{
        Descriptor, DescriptorFlags, DescriptorType, DirectoryEntryStream, ErrorCode, OpenFlags, PathFlags,
    };

    /// Where the host mounts the storage root inside the sandbox.
    pub const GUEST_ROOT: &str = "/storage";

    /// The storage root, preopened by the host as [`GUEST_ROOT`].
    pub struct WasiFs {
        root: Rc<Descriptor>,
        /// The directory holding the last multi-component path used, opened
        /// once (without following a symlink in its last component): the
        /// four files of a storage are then reached with single-component
        /// names, which the host resolves with one syscall instead of three
        /// (open the parent, stat, close). Dropped by anything that renames,
        /// creates or removes a directory, so it never outlives what it names.
        parent: RefCell<Option<(String, Descriptor)>>,
        /// Set once the host has answered `unsupported` through a cached
        /// directory (the Node WASI shim does, for descriptors it did not
        /// preopen): from then on every path goes through the root.
        through_root_only: std::cell::Cell<bool>,
    }

    thread_local! {
        /// The preopen, found once per instance. `get_directories` makes new
        /// handles (and a host allocation) on every call, and every export
        /// used to call it: one storage cost five lookups.
        static ROOT: OnceCell<Rc<Descriptor>> = const { OnceCell::new() };
    }

    impl WasiFs {
        /// Finds the preopened storage root (once; later calls share it).
        pub fn open() -> FsResult<Self> {
            ROOT.with(|cached| {
                if let Some(root) = cached.get() {
                    return Ok(Self {
                        root: Rc::clone(root),
                        parent: RefCell::new(None),
                        through_root_only: Default::default(),
                    });
                }
                let root = wasi::filesystem::preopens::get_directories()
                    .into_iter()
                    .find(|(_, path)| path == GUEST_ROOT)
                    .map(|(root, _)| Rc::new(root))
                    .ok_or_else(|| {
                        FsError::new(
                            FsErrorKind::NotFound,
                            "find preopen",
                            GUEST_ROOT,
                            "the host granted no storage root",
                        )
                    })?;
                let _ = cached.set(Rc::clone(&root));
                Ok(Self { root, parent: RefCell::new(None), through_root_only: Default::default() })
            })
        }

        /// Runs `f` on the directory that holds `path` and the last
        /// component of `path`: the root, or the cached parent directory.
        fn at<T>(&self, path: &str, f: impl Fn(&Descriptor, &str) -> Result<T, ErrorCode>) -> Result<T, ErrorCode> {
            let Some((dir, leaf)) = path.rsplit_once('/') else {
                return f(&self.root, Self::rel(path));
            };
            if !self.through_root_only.get() {
                match self.with_dir(dir, |descriptor| f(descriptor, leaf)) {
                    Err(ErrorCode::Unsupported) => self.give_up_dir_cache(),
                    other => return other,
                }
            }
            f(&self.root, path)
        }

        /// Stops using cached directories (the host cannot serve them).
        fn give_up_dir_cache(&self) {
            self.through_root_only.set(true);
            self.forget_dir();
        }

        /// Runs `f` on the directory `dir` (root-relative), opening and
        /// caching it unless it is the cached one.
        fn with_dir<T>(&self, dir: &str, f: impl FnOnce(&Descriptor) -> Result<T, ErrorCode>) -> Result<T, ErrorCode> {
            let mut cached = self.parent.borrow_mut();
            if cached.as_ref().is_none_or(|(name, _)| name != dir) {
                *cached = None;
                let flags = DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY;
                let opened = self.root.open_at(PathFlags::empty(), dir, OpenFlags::DIRECTORY, flags)?;
                *cached = Some((dir.to_owned(), opened));
            }
            let (_, descriptor) = cached.as_ref().expect("just cached");
            f(descriptor)
        }

        /// Forgets the cached directory (it may have moved or gone).
        fn forget_dir(&self) {
            *self.parent.borrow_mut() = None;
        }

        /// The root itself is `"."` in WASI paths.
        fn rel(path: &str) -> &str {
            if path.is_empty() {
                "."
            } else {
                path
            }
        }
    }

    fn kind_of(t: DescriptorType) -> EntryKind {
        match t {
            DescriptorType::RegularFile => EntryKind::File,
            DescriptorType::Directory => EntryKind::Directory,
            DescriptorType::SymbolicLink => EntryKind::Symlink,
            DescriptorType::Fifo => EntryKind::Other("a FIFO"),
            DescriptorType::Socket => EntryKind::Other("a socket"),
            DescriptorType::BlockDevice | DescriptorType::CharacterDevice => EntryKind::Other("a device"),
            DescriptorType::Unknown => EntryKind::Other("an entry of unknown type"),
        }
    }

    fn error(op: &str, path: &str, code: ErrorCode) -> FsError {
        let kind = match code {
            ErrorCode::NoEntry => FsErrorKind::NotFound,
            ErrorCode::Exist => FsErrorKind::AlreadyExists,
            ErrorCode::Loop => FsErrorKind::Symlink,
            ErrorCode::NotDirectory => FsErrorKind::NotADirectory,
            ErrorCode::IsDirectory => FsErrorKind::IsADirectory,
            ErrorCode::NotEmpty => FsErrorKind::NotEmpty,
            ErrorCode::Access | ErrorCode::NotPermitted => FsErrorKind::PermissionDenied,
            _ => FsErrorKind::Other,
        };
        FsError::new(kind, op, path, code.message())
    }

    /// A streaming listing of a WASI directory.
    pub struct Listing {
        stream: DirectoryEntryStream,
        dir: String,
        done: bool,
    }

    impl Iterator for Listing {
        type Item = FsResult<DirEntry>;
        fn next(&mut self) -> Option<Self::Item> {
            if self.done {
                return None;
            }
            match self.stream.read_directory_entry() {
                Ok(Some(entry)) => Some(Ok(DirEntry { name: Some(entry.name), kind: kind_of(entry.type_) })),
                Ok(None) => {
                    self.done = true;
                    None
                }
                // wasmtime reports a non-UTF-8 name as this error and goes on.
                Err(ErrorCode::IllegalByteSequence) => {
                    Some(Ok(DirEntry { name: None, kind: EntryKind::Other("an entry with a non-UTF-8 name") }))
                }
                Err(code) => {
                    self.done = true;
                    Some(Err(error("list", &self.dir, code)))
                }
            }
        }
    }

    thread_local! {
        /// Set once the host refused `mutate-directory` (the Node WASI shim
        /// does: it has no descriptors of its own, see docs/hosts.md).
        static NO_MUTATE_FLAG: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Opens the directory `name` (one component, no symlink followed) for
    /// removing entries: wasmtime grants that only with `mutate-directory`;
    /// a host that does not know the flag gets the open without it.
    fn open_dir_at(parent: &Descriptor, name: &str) -> Result<Descriptor, ErrorCode> {
        let open = |flags| parent.open_at(PathFlags::empty(), name, OpenFlags::DIRECTORY, flags);
        if !NO_MUTATE_FLAG.get() {
            match open(DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY) {
                Err(ErrorCode::Unsupported) => NO_MUTATE_FLAG.set(true),
                other => return other,
            }
        }
        open(DescriptorFlags::READ)
    }

    /// An open directory inside the sandbox, for [`crate::walk`].
    pub struct WasiDir(Descriptor);

    impl crate::walk::DirHandle for WasiDir {
        type Name = String;

        fn name_from(text: &str) -> String {
            text.to_owned()
        }

        fn show(name: &String) -> String {
            name.clone()
        }

        fn open_dir(&self, name: &String) -> FsResult<Self> {
            open_dir_at(&self.0, name).map(WasiDir).map_err(|e| error("open directory", name, e))
        }

        fn read_entries(&self, max: usize) -> FsResult<crate::walk::Entries<String>> {
            let stream = self.0.read_directory().map_err(|e| error("list", "", e))?;
            let mut entries = Vec::new();
            while entries.len() < max {
                match stream.read_directory_entry() {
                    Ok(Some(entry)) => entries.push((Some(entry.name), Some(kind_of(entry.type_)))),
                    Ok(None) => break,
                    Err(ErrorCode::IllegalByteSequence) => entries.push((None, None)),
                    Err(code) => return Err(error("list", "", code)),
                }
            }
            Ok(entries)
        }

        fn kind_at(&self, name: &String) -> FsResult<EntryKind> {
            let stat = self.0.stat_at(PathFlags::empty(), name).map_err(|e| error("stat", name, e))?;
            Ok(kind_of(stat.type_))
        }

        fn unlink(&self, name: &String) -> FsResult<()> {
            self.0.unlink_file_at(name).map_err(|e| error("remove", name, e))
        }

        fn rmdir(&self, name: &String) -> FsResult<()> {
            self.0.remove_directory_at(name).map_err(|e| error("remove directory", name, e))
        }

        fn rename_to(&self, name: &String, to: &Self, to_name: &String) -> FsResult<()> {
            self.0.rename_at(name, &to.0, to_name).map_err(|e| error("move", name, e))
        }
    }

    impl StorageFs for WasiFs {
        type Listing = Listing;
        type Dir = WasiDir;

        fn open_dir(&self, name: &str) -> FsResult<WasiDir> {
            open_dir_at(&self.root, name).map(WasiDir).map_err(|e| error("open directory", name, e))
        }

        fn enter_dir(&self, name: &str) -> FsResult<()> {
            if !self.through_root_only.get() {
                match self.with_dir(name, |_| Ok(())) {
                    Err(ErrorCode::Unsupported) => self.give_up_dir_cache(),
                    other => return other.map_err(|e| error("open directory", name, e)),
                }
            }
            // No cached directories on this host: the check only.
            directory_or_error(name, self.lstat(name)?.kind)
        }

        fn list(&self, dir: &str) -> FsResult<Listing> {
            let stream = if dir.is_empty() {
                self.root.read_directory()
            } else {
                // Cached: what is listed is usually unlinked next.
                let mut opened = false;
                let mut listed = Err(ErrorCode::Unsupported);
                if !self.through_root_only.get() {
                    listed = self.with_dir(dir, |d| {
                        opened = true;
                        d.read_directory()
                    });
                }
                if matches!(listed, Err(ErrorCode::Unsupported)) {
                    self.give_up_dir_cache();
                    let opened = self
                        .root
                        .open_at(PathFlags::empty(), dir, OpenFlags::DIRECTORY, DescriptorFlags::READ)
                        .map_err(|e| error("open directory", dir, e))?;
                    opened.read_directory()
                } else if !opened {
                    return Err(error("open directory", dir, listed.err().unwrap_or(ErrorCode::Io)));
                } else {
                    listed
                }
            }
            .map_err(|e| error("list", dir, e))?;
            Ok(Listing { stream, dir: dir.to_owned(), done: false })
        }

        fn lstat(&self, path: &str) -> FsResult<Meta> {
            let stat =
                self.at(path, |d, leaf| d.stat_at(PathFlags::empty(), leaf)).map_err(|e| error("stat", path, e))?;
            Ok(Meta {
                kind: kind_of(stat.type_),
                size: stat.size,
                modified: stat.data_modification_timestamp.map(|t| t.seconds as f64 + f64::from(t.nanoseconds) / 1e9),
            })
        }

        fn read_bounded(&self, path: &str, limit: usize) -> FsResult<BoundedRead> {
            // No SYMLINK_FOLLOW: a symlink anywhere in the path is refused.
            let file = self
                .at(path, |d, leaf| d.open_at(PathFlags::empty(), leaf, OpenFlags::empty(), DescriptorFlags::READ))
                .map_err(|e| error("open", path, e))?;
            let stat = file.stat().map_err(|e| error("stat", path, e))?;
            let kind = kind_of(stat.type_);
            if kind != EntryKind::File {
                return Ok(BoundedRead::NotRegular(kind));
            }
            let wanted = limit as u64 + 1;
            let mut content = Vec::new();
            loop {
                let have = content.len() as u64;
                if have >= wanted {
                    break;
                }
                let asked = wanted - have;
                let (chunk, end) = file.read(asked, have).map_err(|e| error("read", path, e))?;
                let chunk_len = chunk.len() as u64;
                if content.is_empty() && chunk_len <= asked {
                    // The common case: the whole file in one read, no copy.
                    content = chunk;
                } else {
                    content.extend_from_slice(chunk.get(..asked as usize).unwrap_or(&chunk));
                }
                // A short read that reaches the size `stat` gave is the end:
                // wasmtime reports `end` only on the following, empty read,
                // which would cost a second host call for every file. (A
                // short read before that size, which a host may return for
                // any reason, just reads on.)
                let reached_size = have + chunk_len >= stat.size;
                if end || chunk_len == 0 || (chunk_len < asked && reached_size) {
                    break;
                }
            }
            Ok(if content.len() > limit { BoundedRead::Oversized } else { BoundedRead::Content(content) })
        }

        fn rename(&self, from: &str, to: &str) -> FsResult<()> {
            self.forget_dir();
            self.root.rename_at(from, &self.root, to).map_err(|e| error("rename", from, e))
        }

        fn move_into(&self, name: &str, dir: &WasiDir, new_name: &str) -> FsResult<()> {
            self.forget_dir();
            self.root.rename_at(name, &dir.0, new_name).map_err(|e| error("move", name, e))
        }

        fn create_dir(&self, path: &str) -> FsResult<()> {
            self.forget_dir();
            self.root.create_directory_at(path).map_err(|e| error("create directory", path, e))
        }

        fn write_new_file(&self, path: &str, bytes: &[u8]) -> FsResult<()> {
            let file = self
                .root
                .open_at(PathFlags::empty(), path, OpenFlags::CREATE | OpenFlags::EXCLUSIVE, DescriptorFlags::WRITE)
                .map_err(|e| error("create", path, e))?;
            let mut written = 0usize;
            while let Some(rest) = bytes.get(written..).filter(|rest| !rest.is_empty()) {
                let n = file.write(rest, written as u64).map_err(|e| error("write", path, e))?;
                if n == 0 {
                    return Err(FsError::new(FsErrorKind::Other, "write", path, "no progress"));
                }
                written += n as usize;
            }
            file.sync_data().map_err(|e| error("sync", path, e))
        }

        fn remove_file(&self, path: &str) -> FsResult<()> {
            self.at(path, |d, leaf| d.unlink_file_at(leaf)).map_err(|e| error("remove", path, e))
        }

        fn now(&self) -> f64 {
            let now = wasi::clocks::wall_clock::now();
            now.seconds as f64 + f64::from(now.nanoseconds) / 1e9
        }
    }
}
