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
    create_new: CreateNew,
    /// Files are opened without an `lstat` first (its opens never block:
    /// `O_NONBLOCK`). Off by default, so the `lstat` path is what the
    /// native tests and the benchmark's native contender run.
    open_first: bool,
}

/// How a new file `name` is made in the directory `dir` and opened for
/// writing: never through a symlink, never over an existing entry.
pub type CreateNew = fn(dir: &Path, name: &str) -> io::Result<File>;

impl NativeFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), create_new: create_in_place, open_first: false }
    }

    /// Files read by opening them at once, as the plugin does under a host
    /// whose opens never block ([`StorageFs::opens_block`]).
    pub fn opening_files_first(self) -> Self {
        Self { open_first: true, ..self }
    }

    /// New files made by `create_new` instead of in place: the host's, under
    /// a confined run, makes them in its staging directory and moves them.
    pub fn creating_files_with(self, create_new: CreateNew) -> Self {
        Self { create_new, ..self }
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

fn error(op: FsOperation, path: &str, e: io::Error) -> FsError {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => FsErrorCode::NotFound,
        io::ErrorKind::AlreadyExists => FsErrorCode::AlreadyExists,
        io::ErrorKind::PermissionDenied => FsErrorCode::PermissionDenied,
        io::ErrorKind::NotADirectory => FsErrorCode::NotADirectory,
        io::ErrorKind::IsADirectory => FsErrorCode::IsADirectory,
        io::ErrorKind::DirectoryNotEmpty => FsErrorCode::NotEmpty,
        _ if e.raw_os_error() == Some(libc::ELOOP) => FsErrorCode::Symlink,
        _ => FsErrorCode::Other,
    };
    FsError::new(kind, op, path, cause_of(&e))
}

/// An I/O error's words without the `(os error N)` tail: the same cause as
/// WASI's, whichever build made the error.
pub fn cause_of(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
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
            Err(e) => return Some(Err(error(FsOperation::List, &self.dir, e))),
        };
        let kind = match entry.file_type() {
            Ok(ft) => kind_of(ft),
            Err(e) => return Some(Err(error(FsOperation::Stat, &self.dir, e))),
        };
        Some(Ok(DirEntry { name: entry.file_name().into_string().ok(), kind }))
    }
}

impl StorageFs for NativeFs {
    type Listing = Listing;
    type Dir = NativeDir;

    fn open_dir(&self, name: &str) -> FsResult<NativeDir> {
        let root = NativeDir::open(&self.root).map_err(|e| error(FsOperation::Open, "", e))?;
        root.open_dir(&NativeDir::name_from(name))
    }

    fn enter_dir(&self, name: &str) -> FsResult<()> {
        // Paths are resolved whole natively: the check is all there is.
        directory_or_error(name, self.lstat(name)?.kind)
    }

    fn list(&self, dir: &str) -> FsResult<Listing> {
        let inner = fs::read_dir(self.path(dir)).map_err(|e| error(FsOperation::List, dir, e))?;
        Ok(Listing { inner, dir: dir.to_owned() })
    }

    fn lstat(&self, path: &str) -> FsResult<Meta> {
        let meta = fs::symlink_metadata(self.path(path)).map_err(|e| error(FsOperation::Stat, path, e))?;
        Ok(Meta { kind: kind_of(meta.file_type()), size: meta.len(), modified: modified(&meta) })
    }

    fn read_bounded(&self, path: &str, limit: usize) -> FsResult<BoundedRead> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(self.path(path))
            .map_err(|e| error(FsOperation::Open, path, e))?;
        let meta = file.metadata().map_err(|e| error(FsOperation::Stat, path, e))?;
        bounded_read(kind_of(meta.file_type()), meta.len(), limit, || {
            read_at_most(file, limit).map_err(|e| error(FsOperation::Read, path, e))
        })
    }

    fn rename(&self, from: &str, to: &str) -> FsResult<()> {
        rename_noreplace(&self.path(from), &self.path(to)).map_err(|e| error(FsOperation::Rename, from, e))
    }

    fn move_into(&self, name: &str, dir: &NativeDir, new_name: &str) -> FsResult<()> {
        let root = NativeDir::open(&self.root).map_err(|e| error(FsOperation::Open, "", e))?;
        root.rename_to(&NativeDir::name_from(name), dir, &NativeDir::name_from(new_name))
    }

    fn create_dir(&self, path: &str) -> FsResult<()> {
        fs::create_dir(self.path(path)).map_err(|e| error(FsOperation::CreateDirectory, path, e))
    }

    fn write_new_file(&self, path: &str, bytes: &[u8]) -> FsResult<()> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let mut file = (self.create_new)(&self.path(dir), name).map_err(|e| error(FsOperation::Create, path, e))?;
        file.write_all(bytes).map_err(|e| error(FsOperation::Write, path, e))?;
        file.sync_data().map_err(|e| error(FsOperation::Sync, path, e))
    }

    fn remove_file(&self, path: &str) -> FsResult<()> {
        fs::remove_file(self.path(path)).map_err(|e| error(FsOperation::Remove, path, e))
    }

    fn now(&self) -> f64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
    }

    fn opens_block(&self) -> bool {
        !self.open_first
    }
}

/// [`NativeFs`]'s default [`CreateNew`]: the file is made where it goes.
fn create_in_place(dir: &Path, name: &str) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir.join(name))
}

/// A path for a libc call.
pub fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// `rename` that fails with `AlreadyExists` instead of replacing an entry
/// (plain rename(2) silently replaces an empty directory or a file).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let (a, b) = (c_path(from)?, c_path(to)?);
    // SAFETY: both are valid NUL-terminated paths for the call.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_NOREPLACE) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // Filesystems without RENAME_NOREPLACE: check, then rename.
    if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
        return Err(e);
    }
    if fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "target exists"));
    }
    fs::rename(from, to)
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

fn at_error(op: FsOperation, name: &CStr, e: io::Error) -> FsError {
    let mut e = error(op, &describe_name(name), e);
    // rmdir(2) may say EEXIST for "not empty" (POSIX allows both).
    if e.code == FsErrorCode::AlreadyExists && op == FsOperation::RemoveDirectory {
        e.code = FsErrorCode::NotEmpty;
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
            return Err(at_error(FsOperation::OpenDirectory, name, io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    fn read_entries(&self, max: usize) -> FsResult<crate::walk::Entries<CString>> {
        let failed = |e: io::Error| error(FsOperation::List, "", e);
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
        check(rc).map_err(|e| at_error(FsOperation::Stat, name, e))?;
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
            .map_err(|e| at_error(FsOperation::Remove, name, e))
    }

    fn rmdir(&self, name: &CString) -> FsResult<()> {
        // SAFETY: `name` is NUL-terminated.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) })
            .map_err(|e| at_error(FsOperation::RemoveDirectory, name, e))
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
        .map_err(|e| at_error(FsOperation::Move, name, e))
    }
}

/// At most `limit + 1` bytes from the start of `file` (until EOF or that many).
fn read_at_most(file: File, limit: usize) -> io::Result<Vec<u8>> {
    let mut content = Vec::with_capacity(limit.saturating_add(1).min(64 * 1024));
    file.take(limit as u64 + 1).read_to_end(&mut content)?;
    Ok(content)
}
