//! `wasi:filesystem` directly: std cannot open without following symlinks.
use super::*;
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use wasi::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, DirectoryEntryStream, ErrorCode, OpenFlags, PathFlags,
};

#[cfg(feature = "fast-fs")]
mod fast;

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
    /// The host said its opens never block (`collect-options.nonblocking-opens`).
    nonblocking_opens: bool,
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
                    nonblocking_opens: false,
                });
            }
            let root = wasi::filesystem::preopens::get_directories()
                .into_iter()
                .find(|(_, path)| path == GUEST_ROOT)
                .map(|(root, _)| Rc::new(root))
                .ok_or_else(|| {
                    FsError::new(
                        FsErrorCode::NotFound,
                        FsOperation::FindPreopen,
                        GUEST_ROOT,
                        "the host granted no storage root",
                    )
                })?;
            let _ = cached.set(Rc::clone(&root));
            Ok(Self {
                root,
                parent: RefCell::new(None),
                through_root_only: Default::default(),
                nonblocking_opens: false,
            })
        })
    }

    /// This root, as a host whose opens never block lends it (see
    /// [`StorageFs::opens_block`]).
    pub fn with_nonblocking_opens(self, nonblocking: bool) -> Self {
        Self { nonblocking_opens: nonblocking, ..self }
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

fn error(op: FsOperation, path: &str, code: ErrorCode) -> FsError {
    let kind = match code {
        ErrorCode::NoEntry => FsErrorCode::NotFound,
        ErrorCode::Exist => FsErrorCode::AlreadyExists,
        ErrorCode::Loop => FsErrorCode::Symlink,
        ErrorCode::NotDirectory => FsErrorCode::NotADirectory,
        ErrorCode::IsDirectory => FsErrorCode::IsADirectory,
        ErrorCode::NotEmpty => FsErrorCode::NotEmpty,
        ErrorCode::Access | ErrorCode::NotPermitted => FsErrorCode::PermissionDenied,
        _ => FsErrorCode::Other,
    };
    // WASI's words without their gloss (`, similar to `EACCES` in POSIX.`).
    let message = code.message();
    let cause = message.split_once(", similar to `").map_or(&*message, |(words, _)| words);
    FsError::new(kind, op, path, cause)
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
                Some(Err(error(FsOperation::List, &self.dir, code)))
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
        open_dir_at(&self.0, name).map(WasiDir).map_err(|e| error(FsOperation::OpenDirectory, name, e))
    }

    fn read_entries(&self, max: usize) -> FsResult<crate::walk::Entries<String>> {
        let stream = self.0.read_directory().map_err(|e| error(FsOperation::List, "", e))?;
        let mut entries = Vec::new();
        while entries.len() < max {
            match stream.read_directory_entry() {
                Ok(Some(entry)) => entries.push((Some(entry.name), Some(kind_of(entry.type_)))),
                Ok(None) => break,
                Err(ErrorCode::IllegalByteSequence) => entries.push((None, None)),
                Err(code) => return Err(error(FsOperation::List, "", code)),
            }
        }
        Ok(entries)
    }

    fn kind_at(&self, name: &String) -> FsResult<EntryKind> {
        let stat = self.0.stat_at(PathFlags::empty(), name).map_err(|e| error(FsOperation::Stat, name, e))?;
        Ok(kind_of(stat.type_))
    }

    fn unlink(&self, name: &String) -> FsResult<()> {
        self.0.unlink_file_at(name).map_err(|e| error(FsOperation::Remove, name, e))
    }

    fn rmdir(&self, name: &String) -> FsResult<()> {
        self.0.remove_directory_at(name).map_err(|e| error(FsOperation::RemoveDirectory, name, e))
    }

    fn rename_to(&self, name: &String, to: &Self, to_name: &String) -> FsResult<()> {
        self.0.rename_at(name, &to.0, to_name).map_err(|e| error(FsOperation::Move, name, e))
    }

    #[cfg(feature = "fast-fs")]
    fn remove_known(&self, name: &String, files: &[&str]) -> FsResult<()> {
        fast::remove_known(&self.0, name, files)
    }
}

/// At most `limit + 1` bytes from the start of an open file whose `stat`
/// said `size` bytes.
fn read_head(file: &Descriptor, size: u64, limit: usize, path: &str) -> FsResult<Vec<u8>> {
    let wanted = limit as u64 + 1;
    let mut content = Vec::new();
    loop {
        let have = content.len() as u64;
        if have >= wanted {
            break;
        }
        let asked = wanted - have;
        let (chunk, end) = file.read(asked, have).map_err(|e| error(FsOperation::Read, path, e))?;
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
        let reached_size = have + chunk_len >= size;
        if end || chunk_len == 0 || (chunk_len < asked && reached_size) {
            break;
        }
    }
    Ok(content)
}

impl StorageFs for WasiFs {
    type Listing = Listing;
    type Dir = WasiDir;

    fn open_dir(&self, name: &str) -> FsResult<WasiDir> {
        open_dir_at(&self.root, name).map(WasiDir).map_err(|e| error(FsOperation::OpenDirectory, name, e))
    }

    fn enter_dir(&self, name: &str) -> FsResult<()> {
        if !self.through_root_only.get() {
            match self.with_dir(name, |_| Ok(())) {
                Err(ErrorCode::Unsupported) => self.give_up_dir_cache(),
                other => return other.map_err(|e| error(FsOperation::OpenDirectory, name, e)),
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
                    .map_err(|e| error(FsOperation::OpenDirectory, dir, e))?;
                opened.read_directory()
            } else if !opened {
                return Err(error(FsOperation::OpenDirectory, dir, listed.err().unwrap_or(ErrorCode::Io)));
            } else {
                listed
            }
        }
        .map_err(|e| error(FsOperation::List, dir, e))?;
        Ok(Listing { stream, dir: dir.to_owned(), done: false })
    }

    fn lstat(&self, path: &str) -> FsResult<Meta> {
        let stat = self
            .at(path, |d, leaf| d.stat_at(PathFlags::empty(), leaf))
            .map_err(|e| error(FsOperation::Stat, path, e))?;
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
            .map_err(|e| error(FsOperation::Open, path, e))?;
        let stat = file.stat().map_err(|e| error(FsOperation::Stat, path, e))?;
        bounded_read(kind_of(stat.type_), stat.size, limit, || read_head(&file, stat.size, limit, path))
    }

    #[cfg(feature = "fast-fs")]
    fn read_storage(&self, name: &str, names: &[&str], limit: usize) -> FsResult<Vec<FsResult<BoundedRead>>> {
        fast::read_storage(self, name, names, limit)
    }

    fn rename(&self, from: &str, to: &str) -> FsResult<()> {
        self.forget_dir();
        self.root.rename_at(from, &self.root, to).map_err(|e| error(FsOperation::Rename, from, e))
    }

    fn move_into(&self, name: &str, dir: &WasiDir, new_name: &str) -> FsResult<()> {
        self.forget_dir();
        self.root.rename_at(name, &dir.0, new_name).map_err(|e| error(FsOperation::Move, name, e))
    }

    fn create_dir(&self, path: &str) -> FsResult<()> {
        self.forget_dir();
        self.root.create_directory_at(path).map_err(|e| error(FsOperation::CreateDirectory, path, e))
    }

    fn write_new_file(&self, path: &str, bytes: &[u8]) -> FsResult<()> {
        let file = self
            .root
            .open_at(PathFlags::empty(), path, OpenFlags::CREATE | OpenFlags::EXCLUSIVE, DescriptorFlags::WRITE)
            .map_err(|e| error(FsOperation::Create, path, e))?;
        let mut written = 0usize;
        while let Some(rest) = bytes.get(written..).filter(|rest| !rest.is_empty()) {
            let n = file.write(rest, written as u64).map_err(|e| error(FsOperation::Write, path, e))?;
            if n == 0 {
                return Err(FsError::new(FsErrorCode::Other, FsOperation::Write, path, "no progress"));
            }
            written += n as usize;
        }
        file.sync_data().map_err(|e| error(FsOperation::Sync, path, e))
    }

    fn remove_file(&self, path: &str) -> FsResult<()> {
        self.at(path, |d, leaf| d.unlink_file_at(leaf)).map_err(|e| error(FsOperation::Remove, path, e))
    }

    fn now(&self) -> f64 {
        let now = wasi::clocks::wall_clock::now();
        now.seconds as f64 + f64::from(now.nanoseconds) / 1e9
    }

    fn opens_block(&self) -> bool {
        !self.nonblocking_opens
    }
}
