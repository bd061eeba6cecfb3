//! The few filesystem operations the guest needs, behind one trait.
//!
//! In the component they go straight to `wasi:filesystem` (so symlinks are
//! never followed and nothing but a regular file is opened); natively they go
//! to `std` + `libc` with the same guarantees, so the extraction logic is
//! tested and benchmarked natively against itself. Every path is relative to
//! the storage root and built only from validated names and constants.

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
    /// The opened file is larger than `limit` (this size): nothing was read.
    TooLarge(u64),
}

pub use crate::model::{Failure, FsError, FsErrorCode, FsOperation};

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
    /// [`StorageFs::enter_dir`] of the storage `name`, then
    /// [`StorageFs::read_bounded`] of each of `names` in it, in order: the
    /// metrics files of a storage, opened without an `lstat` first, so only
    /// where opens never block. `Err`: what `enter_dir` says. The plugin's
    /// fast build does it all in one host call.
    fn read_storage(&self, name: &str, names: &[&str], limit: usize) -> FsResult<Vec<FsResult<BoundedRead>>> {
        self.enter_dir(name)?;
        Ok(read_one_by_one(self, name, names, limit))
    }
    /// Atomically renames within the root. Natively it never replaces an
    /// entry; over WASI an empty directory may be replaced, so callers
    /// check the target first.
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
    /// Whether an open may block (a FIFO without a writer): then a file is
    /// `lstat`ed before it is opened, so that a FIFO is never opened.
    fn opens_block(&self) -> bool {
        true
    }
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
    fn read_storage(&self, name: &str, names: &[&str], limit: usize) -> FsResult<Vec<FsResult<BoundedRead>>> {
        (**self).read_storage(name, names, limit)
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
    fn opens_block(&self) -> bool {
        (**self).opens_block()
    }
}

/// The reads of [`StorageFs::read_storage`] as one
/// [`StorageFs::read_bounded`] per name: the default, and the fast build's
/// way where its host call cannot serve.
pub fn read_one_by_one<F: StorageFs + ?Sized>(
    fs: &F,
    dir: &str,
    names: &[&str],
    limit: usize,
) -> Vec<FsResult<BoundedRead>> {
    names.iter().map(|name| fs.read_bounded(&join(dir, name), limit)).collect()
}

/// What a bounded read of an open file found, from its `fstat` (`kind`,
/// `size`) and, for a regular file of at most `limit` bytes, the first
/// `limit + 1` bytes `read` returns (called only then): the one rule of
/// every reader, natively, over WASI and over the fast build's host call.
pub fn bounded_read<E>(
    kind: EntryKind,
    size: u64,
    limit: usize,
    read: impl FnOnce() -> Result<Vec<u8>, E>,
) -> Result<BoundedRead, E> {
    if kind != EntryKind::File {
        return Ok(BoundedRead::NotRegular(kind));
    }
    if size > limit as u64 {
        return Ok(BoundedRead::TooLarge(size));
    }
    let content = read()?;
    Ok(if content.len() > limit { BoundedRead::Oversized } else { BoundedRead::Content(content) })
}

/// What [`StorageFs::enter_dir`] says of an entry of kind `kind` where it
/// checks rather than opens.
pub fn directory_or_error(name: &str, kind: EntryKind) -> FsResult<()> {
    match kind {
        EntryKind::Directory => Ok(()),
        EntryKind::Symlink => Err(FsError::new(FsErrorCode::Symlink, FsOperation::OpenDirectory, name, "a symlink")),
        other => Err(FsError::new(FsErrorCode::NotADirectory, FsOperation::OpenDirectory, name, other.describe())),
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
pub use native::{c_path, cause_of, mount_of, rename_noreplace, CreateNew, NativeDir, NativeFs};

#[cfg(target_arch = "wasm32")]
pub use wasi_fs::{WasiDir, WasiFs, GUEST_ROOT};

#[cfg(not(target_arch = "wasm32"))]
mod native;

#[cfg(target_arch = "wasm32")]
mod wasi_fs;
