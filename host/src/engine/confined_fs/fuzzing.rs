//! The layer driven from arbitrary bytes: the `confined_fs` fuzz target
//! (`fuzz/fuzz_targets/confined_fs.rs`) and its bounded replay in the tests
//! (`tests::fuzz_ops_never_touch_outside`) both call [`check_ops`].
//! Not an API: the bindings it calls are private to `confined_fs`.

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
        for (bit, flag) in
            [OpenFlags::CREATE, OpenFlags::DIRECTORY, OpenFlags::EXCLUSIVE, OpenFlags::TRUNCATE].into_iter().enumerate()
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
