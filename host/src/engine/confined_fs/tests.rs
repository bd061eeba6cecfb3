//! The threat suite: every attack the confined filesystem exists to refuse,
//! made through the host functions a guest calls (`preopens` and
//! `types::HostDescriptor` / `HostDirectoryEntryStream` on a
//! [`ConfinedFsView`]), so what is tested is what a guest gets.
//!
//! Each test works in its own temporary directory: `<tmp>/root` is granted,
//! `<tmp>/outside` is a sibling of sentinels (`secret`, `b`, `a/b`, `dir/`)
//! laid out so that a path that escaped would name something real. Dropping
//! the fixture asserts that `outside` is unchanged (names, kinds, contents,
//! link targets, modes, link counts, modification and change times).
//!
//! Safety rule of this suite: no symlink or path ever points outside the
//! temporary directory; the "absolute" targets are the absolute path of the
//! test's own `outside`.
//!
//! Magic links (`/proc/self/fd/N`, `/proc/self/root`, ...) are refused by
//! `RESOLVE_NO_MAGICLINKS` (which `RESOLVE_NO_SYMLINKS` implies as well).
//! No test plants one: a magic link only exists under `/proc`, so reaching
//! one from a temporary root would need a symlink pointing at `/proc`, which
//! this suite's safety rule forbids. The symlink tests below cover the
//! resolution step that would meet one.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wasmtime::component::{Resource, ResourceTable};

use super::bindings::wasi::clocks::wall_clock::Datetime;
use super::bindings::wasi::filesystem::preopens::Host as _;
use super::bindings::wasi::filesystem::types::{
    DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode, HostDescriptor,
    HostDirectoryEntryStream, NewTimestamp, OpenFlags, PathFlags,
};
use super::fuzzing::{snapshot, Snapshot};
use super::{ConfinedFsCtx, ConfinedFsView, Descriptor};

type R<T> = Result<T, ErrorCode>;
type Fd = Resource<Descriptor>;

const READ: DescriptorFlags = DescriptorFlags::READ;
const FOLLOW: PathFlags = PathFlags::SYMLINK_FOLLOW;

fn write_file(path: impl AsRef<Path>, content: &str) {
    std::fs::write(path, content).expect("write");
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL")
}

fn mkfifo(path: &Path) {
    // SAFETY: a valid C string; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c_path(path).as_ptr(), 0o644) }, 0, "mkfifo {}", path.display());
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `f` on another thread and fails if it has not returned in `secs`
/// seconds: a call that blocks fails the test instead of hanging it.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || _ = tx.send(f()));
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("blocked for more than {secs} s"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(worker.join().expect_err("no value sent, so it panicked"))
        }
    }
}

/// A grant and its guest-side handles. Dropping it checks `outside`.
struct Fx {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    outside_before: Snapshot,
    ctx: ConfinedFsCtx,
    table: ResourceTable,
    preopen: u32,
}

impl Drop for Fx {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_eq!(snapshot(&self.outside), self.outside_before, "outside changed");
        }
    }
}

impl Fx {
    /// `root/` holds `file` ("inside\n"), the directories `a/b/` and
    /// `inside/` (with `a/b`, `b` and `secret`, the targets of the links that
    /// stay in the root).
    fn new() -> Self {
        Self::with(true)
    }

    fn read_only() -> Self {
        Self::with(false)
    }

    fn with(writable: bool) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (root, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
        for dir in [root.join("a/b"), root.join("inside/a"), outside.join("a"), outside.join("dir")] {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        write_file(root.join("file"), "inside\n");
        write_file(root.join("inside/a/b"), "inside a/b\n");
        write_file(root.join("inside/b"), "inside b\n");
        write_file(root.join("inside/secret"), "inside secret\n");
        write_file(outside.join("secret"), "secret\n");
        write_file(outside.join("b"), "outside b\n");
        write_file(outside.join("a/b"), "outside a/b\n");
        write_file(outside.join("dir/inner"), "outside dir/inner\n");
        let outside_before = snapshot(&outside);
        let ctx = ConfinedFsCtx::new(&root, "/storage", writable).expect("grant");
        let mut fx = Self { _tmp: tmp, root, outside, outside_before, ctx, table: ResourceTable::new(), preopen: 0 };
        let dirs = fx.view().get_directories().expect("preopens");
        assert_eq!(dirs.len(), 1);
        assert_eq!(dirs[0].1, "/storage");
        fx.preopen = dirs[0].0.rep();
        fx
    }

    fn view(&mut self) -> ConfinedFsView<'_> {
        ConfinedFsView { ctx: &self.ctx, table: &mut self.table }
    }

    /// The preopened root, as the guest passes it (borrowed).
    fn root(&self) -> Fd {
        Resource::new_borrow(self.preopen)
    }

    fn open(&mut self, dir: &Fd, path: &str, pf: PathFlags, of: OpenFlags, df: DescriptorFlags) -> R<Fd> {
        self.view().open_at(b(dir), pf, path.into(), of, df).expect("no trap")
    }

    fn open_file(&mut self, path: &str, df: DescriptorFlags) -> R<Fd> {
        let root = self.root();
        self.open(&root, path, PathFlags::empty(), OpenFlags::empty(), df)
    }

    fn open_dir(&mut self, dir: &Fd, path: &str, df: DescriptorFlags) -> R<Fd> {
        self.open(dir, path, PathFlags::empty(), OpenFlags::DIRECTORY, df)
    }

    fn stat_at(&mut self, dir: &Fd, path: &str, pf: PathFlags) -> R<DescriptorStat> {
        self.view().stat_at(b(dir), pf, path.into()).expect("no trap")
    }

    fn kind_at(&mut self, path: &str) -> R<DescriptorType> {
        let root = self.root();
        self.stat_at(&root, path, PathFlags::empty()).map(|st| st.type_)
    }

    fn read(&mut self, fd: &Fd, len: u64, offset: u64) -> R<(Vec<u8>, bool)> {
        self.view().read(b(fd), len, offset).expect("no trap")
    }

    fn write(&mut self, fd: &Fd, data: &[u8], offset: u64) -> R<u64> {
        self.view().write(b(fd), data.to_vec(), offset).expect("no trap")
    }

    fn mkdir(&mut self, dir: &Fd, path: &str) -> R<()> {
        self.view().create_directory_at(b(dir), path.into()).expect("no trap")
    }

    fn rmdir(&mut self, dir: &Fd, path: &str) -> R<()> {
        self.view().remove_directory_at(b(dir), path.into()).expect("no trap")
    }

    fn unlink(&mut self, dir: &Fd, path: &str) -> R<()> {
        self.view().unlink_file_at(b(dir), path.into()).expect("no trap")
    }

    fn rename(&mut self, from_dir: &Fd, from: &str, to_dir: &Fd, to: &str) -> R<()> {
        self.view().rename_at(b(from_dir), from.into(), b(to_dir), to.into()).expect("no trap")
    }

    fn readlink(&mut self, dir: &Fd, path: &str) -> R<String> {
        self.view().readlink_at(b(dir), path.into()).expect("no trap")
    }

    /// Sets both times of `path` to 1970-01-01T00:00:01.
    fn set_times(&mut self, dir: &Fd, path: &str, pf: PathFlags) -> R<()> {
        let t = || NewTimestamp::Timestamp(Datetime { seconds: 1, nanoseconds: 0 });
        self.view().set_times_at(b(dir), pf, path.into(), t(), t()).expect("no trap")
    }

    fn hash_at(&mut self, dir: &Fd, path: &str, pf: PathFlags) -> R<()> {
        self.view().metadata_hash_at(b(dir), pf, path.into()).expect("no trap").map(drop)
    }

    /// A whole listing: the entries, and the errors met along the way.
    fn list(&mut self, dir: &Fd) -> (Vec<DirectoryEntry>, Vec<ErrorCode>) {
        let stream = self.view().read_directory(b(dir)).expect("no trap").expect("listing");
        let (mut entries, mut errors) = (Vec::new(), Vec::new());
        for _ in 0..1000 {
            match self.view().read_directory_entry(Resource::new_borrow(stream.rep())).expect("no trap") {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => break,
                Err(e) => errors.push(e),
            }
        }
        HostDirectoryEntryStream::drop(&mut self.view(), stream).expect("no trap");
        entries.sort_by(|x, y| x.name.cmp(&y.name));
        (entries, errors)
    }

    fn names(&mut self, dir: &Fd) -> Vec<String> {
        self.list(dir).0.into_iter().map(|e| e.name).collect()
    }

    fn close(&mut self, fd: Fd) {
        HostDescriptor::drop(&mut self.view(), fd).expect("no trap");
    }
}

/// A borrow of a handle, as a guest passes one.
fn b(fd: &Fd) -> Fd {
    Resource::new_borrow(fd.rep())
}

fn err<T>(r: R<T>) -> Option<ErrorCode> {
    r.err()
}

// ---------------------------------------------------------------------------
// Symlinks at every position of a path.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Pos {
    First,
    Middle,
    Last,
}

#[derive(Clone, Copy, Debug)]
enum Target {
    /// `../outside` (or `../../outside/secret`...): out by `..`.
    Relative,
    /// The absolute path of this test's `outside`.
    Absolute,
    /// `root/inside`: stays in the root, and is still refused.
    Inside,
}

#[derive(Debug)]
struct Case {
    pos: Pos,
    target: Target,
    path: &'static str,
    link: PathBuf,
    link_target: PathBuf,
}

/// Plants a symlink at `pos` of the path it returns: `link/a/b`, `a/link/b`
/// or `a/b/link`, pointing where `target` says (a directory for the first
/// two positions, a file for the last, each existing so a followed link
/// would name something real).
fn plant(fx: &Fx, pos: Pos, target: Target) -> Case {
    let (path, link, up, leaf) = match pos {
        Pos::First => ("link/a/b", "link", "", ""),
        Pos::Middle => ("a/link/b", "a/link", "../", ""),
        Pos::Last => ("a/b/link", "a/b/link", "../../", "/secret"),
    };
    let link_target = PathBuf::from(match target {
        Target::Relative => format!("{up}../outside{leaf}"),
        Target::Absolute => format!("{}{leaf}", fx.outside.display()),
        Target::Inside => format!("{up}inside{leaf}"),
    });
    let link = fx.root.join(link);
    symlink(&link_target, &link).expect("symlink");
    Case { pos, target, path, link, link_target }
}

/// Runs `check` on a fresh fixture for each position and target, then
/// checks that the link's targets (outside, by the fixture's drop, and
/// `root/inside`) are unchanged.
fn each_link(mut check: impl FnMut(&mut Fx, &Case)) {
    for pos in [Pos::First, Pos::Middle, Pos::Last] {
        for target in [Target::Relative, Target::Absolute, Target::Inside] {
            let mut fx = Fx::new();
            let case = plant(&fx, pos, target);
            let inside = snapshot(&fx.root.join("inside"));
            check(&mut fx, &case);
            assert_eq!(snapshot(&fx.root.join("inside")), inside, "{case:?}: root/inside changed");
        }
    }
}

/// The refusal of a call that acts on a last component (mkdir, unlink,
/// rmdir, rename, readlink, set-times) when the link is not that component:
/// such calls open the parent path `O_DIRECTORY | O_NOFOLLOW`, so a link
/// that ends the parent path (`a/link` of `a/link/b`) is "not a directory",
/// one further up (`link` of `link/a/b`) a symlink met on the way (`ELOOP`).
fn parent_refusal(case: &Case) -> ErrorCode {
    match case.pos {
        Pos::Middle => ErrorCode::NotDirectory,
        _ => ErrorCode::Loop,
    }
}

#[test]
fn planted_links_point_where_intended() {
    // The matrix below is only as good as its links: check the targets.
    each_link(|fx, case| {
        let via = case.link.parent().unwrap().join(&case.link_target);
        let resolved = std::fs::canonicalize(&via).expect("the planted link resolves");
        let expected = match (case.target, case.pos) {
            (Target::Inside, Pos::Last) => fx.root.join("inside/secret"),
            (Target::Inside, _) => fx.root.join("inside"),
            (_, Pos::Last) => fx.outside.join("secret"),
            _ => fx.outside.clone(),
        };
        assert_eq!(resolved, std::fs::canonicalize(expected).unwrap(), "{case:?}");
        assert!(std::fs::metadata(fx.root.join(case.path)).is_ok(), "{case:?}: the path through it exists");
    });
}

#[test]
fn symlink_in_path_open_at() {
    each_link(|fx, case| {
        let root = fx.root();
        for pf in [PathFlags::empty(), FOLLOW] {
            for of in [OpenFlags::empty(), OpenFlags::DIRECTORY] {
                let expected = match (case.pos, pf == FOLLOW, of == OpenFlags::DIRECTORY) {
                    (Pos::Last, false, true) => ErrorCode::NotDirectory,
                    _ => ErrorCode::Loop,
                };
                let got = err(fx.open(&root, case.path, pf, of, READ));
                assert_eq!(got, Some(expected), "{case:?} {pf:?} {of:?}");
            }
            // Writing through it: truncating or reusing the link's target
            // is refused before any lookup (a file is written only by the
            // open that creates it); creating below it meets the link.
            let rw = READ | DescriptorFlags::WRITE;
            for of in [OpenFlags::TRUNCATE, OpenFlags::CREATE, OpenFlags::CREATE | OpenFlags::TRUNCATE] {
                let got = err(fx.open(&root, case.path, pf, of, rw));
                assert_eq!(got, Some(ErrorCode::NotPermitted), "{case:?} {of:?}");
            }
            let below = format!("{}/new", case.path);
            let got = err(fx.open(&root, &below, pf, OpenFlags::CREATE | OpenFlags::EXCLUSIVE, rw));
            assert_eq!(got, Some(ErrorCode::Loop), "{case:?} {pf:?}");
        }
    });
}

#[test]
fn symlink_in_path_stat_at() {
    each_link(|fx, case| {
        let root = fx.root();
        let plain = fx.stat_at(&root, case.path, PathFlags::empty()).map(|st| st.type_);
        let hash = fx.hash_at(&root, case.path, PathFlags::empty());
        if case.pos == Pos::Last {
            // The link itself, never its target.
            assert_eq!(plain, Ok(DescriptorType::SymbolicLink), "{case:?}");
            assert_eq!(hash, Ok(()), "{case:?}");
        } else {
            assert_eq!(plain, Err(ErrorCode::Loop), "{case:?}");
            assert_eq!(hash, Err(ErrorCode::Loop), "{case:?}");
        }
        assert_eq!(err(fx.stat_at(&root, case.path, FOLLOW)), Some(ErrorCode::Loop), "{case:?}");
        assert_eq!(fx.hash_at(&root, case.path, FOLLOW), Err(ErrorCode::Loop), "{case:?}");
    });
}

#[test]
fn symlink_in_path_create_directory_at() {
    each_link(|fx, case| {
        let root = fx.root();
        let expected = if case.pos == Pos::Last { ErrorCode::Exist } else { parent_refusal(case) };
        assert_eq!(fx.mkdir(&root, case.path), Err(expected), "{case:?}");
        // One level down, the link is never the parent path's last component.
        let below = format!("{}/new", case.path);
        let expected = if case.pos == Pos::Last { ErrorCode::NotDirectory } else { ErrorCode::Loop };
        assert_eq!(fx.mkdir(&root, &below), Err(expected), "{case:?}");
    });
}

#[test]
fn symlink_in_path_unlink_file_at() {
    each_link(|fx, case| {
        let root = fx.root();
        if case.pos == Pos::Last {
            // Removes the link itself; its target stays (checked by each_link).
            assert_eq!(fx.unlink(&root, case.path), Ok(()), "{case:?}");
            assert!(std::fs::symlink_metadata(&case.link).is_err(), "{case:?}: the link is gone");
        } else {
            assert_eq!(fx.unlink(&root, case.path), Err(parent_refusal(case)), "{case:?}");
        }
    });
}

#[test]
fn symlink_in_path_remove_directory_at() {
    each_link(|fx, case| {
        let root = fx.root();
        let expected = if case.pos == Pos::Last { ErrorCode::NotDirectory } else { parent_refusal(case) };
        assert_eq!(fx.rmdir(&root, case.path), Err(expected), "{case:?}");
        assert!(std::fs::symlink_metadata(&case.link).is_ok(), "{case:?}");
    });
}

#[test]
fn symlink_in_path_rename_at_source() {
    each_link(|fx, case| {
        let root = fx.root();
        if case.pos == Pos::Last {
            // Moves the link itself, never its target.
            assert_eq!(fx.rename(&root, case.path, &root, "moved"), Ok(()), "{case:?}");
            let moved = std::fs::read_link(fx.root.join("moved")).expect("the link moved");
            assert_eq!(moved, case.link_target, "{case:?}");
        } else {
            assert_eq!(fx.rename(&root, case.path, &root, "moved"), Err(parent_refusal(case)), "{case:?}");
            assert!(std::fs::symlink_metadata(fx.root.join("moved")).is_err(), "{case:?}");
        }
    });
}

#[test]
fn symlink_in_path_rename_at_destination() {
    each_link(|fx, case| {
        let root = fx.root();
        write_file(fx.root.join("src"), "planted\n");
        if case.pos == Pos::Last {
            // Replaces the link itself, never writes through it.
            assert_eq!(fx.rename(&root, "src", &root, case.path), Ok(()), "{case:?}");
            assert_eq!(std::fs::read_to_string(&case.link).unwrap(), "planted\n", "{case:?}");
            assert!(std::fs::symlink_metadata(&case.link).unwrap().is_file(), "{case:?}");
        } else {
            assert_eq!(fx.rename(&root, "src", &root, case.path), Err(parent_refusal(case)), "{case:?}");
            assert!(fx.root.join("src").is_file(), "{case:?}");
        }
    });
}

#[test]
fn symlink_in_path_readlink_at() {
    each_link(|fx, case| {
        let root = fx.root();
        let got = fx.readlink(&root, case.path);
        if case.pos == Pos::Last {
            // Reading a link's own text follows nothing.
            assert_eq!(got, Ok(case.link_target.to_str().unwrap().to_owned()), "{case:?}");
        } else {
            assert_eq!(got, Err(parent_refusal(case)), "{case:?}");
        }
    });
}

#[test]
fn symlink_in_path_set_times_at() {
    each_link(|fx, case| {
        let root = fx.root();
        for pf in [PathFlags::empty(), FOLLOW] {
            let got = fx.set_times(&root, case.path, pf);
            if case.pos == Pos::Last {
                // On the link itself even when asked to follow; the target's
                // times are checked unchanged (outside and root/inside).
                assert_eq!(got, Ok(()), "{case:?} {pf:?}");
                assert_eq!(std::fs::symlink_metadata(&case.link).unwrap().mtime(), 1, "{case:?}");
            } else {
                assert_eq!(got, Err(parent_refusal(case)), "{case:?} {pf:?}");
            }
        }
    });
}

// ---------------------------------------------------------------------------
// `..`, absolute paths.

const ESCAPES: &[&str] =
    &["..", "../", "../outside", "../outside/secret", "a/../../outside", "a/../../outside/secret", "a/b/../../../root"];

#[test]
fn dotdot_escapes_are_refused_for_lookups() {
    let mut fx = Fx::new();
    let root = fx.root();
    for &path in ESCAPES {
        for pf in [PathFlags::empty(), FOLLOW] {
            for of in [OpenFlags::empty(), OpenFlags::DIRECTORY] {
                assert_eq!(err(fx.open(&root, path, pf, of, READ)), Some(ErrorCode::NotPermitted), "{path} {of:?}");
            }
            assert_eq!(err(fx.stat_at(&root, path, pf)), Some(ErrorCode::NotPermitted), "{path} {pf:?}");
            assert_eq!(fx.hash_at(&root, path, pf), Err(ErrorCode::NotPermitted), "{path} {pf:?}");
        }
    }
}

#[test]
fn dotdot_escapes_are_refused_for_changes() {
    let mut fx = Fx::new();
    let root = fx.root();
    let np = Err(ErrorCode::NotPermitted);
    let create = OpenFlags::CREATE | OpenFlags::EXCLUSIVE;
    let rw = READ | DescriptorFlags::WRITE;
    assert_eq!(err(fx.open(&root, "../outside/new", PathFlags::empty(), create, rw)), np.err());
    assert_eq!(err(fx.open(&root, "../outside/secret", PathFlags::empty(), OpenFlags::TRUNCATE, rw)), np.err());
    assert_eq!(fx.mkdir(&root, "../outside/new"), np);
    assert_eq!(fx.mkdir(&root, "a/../../outside/new"), np);
    assert_eq!(fx.unlink(&root, "../outside/secret"), np);
    assert_eq!(fx.rmdir(&root, "../outside/dir"), np);
    assert_eq!(fx.rename(&root, "../outside/secret", &root, "stolen"), np);
    assert_eq!(fx.rename(&root, "file", &root, "../outside/planted"), np);
    assert_eq!(fx.rename(&root, "file", &root, "a/../../outside/secret"), np);
    assert_eq!(err(fx.readlink(&root, "../outside/secret")), np.err());
    assert_eq!(fx.set_times(&root, "../outside/secret", PathFlags::empty()), np);
    // `..` as the last component would act on the parent's parent.
    assert_eq!(fx.mkdir(&root, ".."), Err(ErrorCode::Invalid));
    assert_eq!(fx.rmdir(&root, "a/.."), Err(ErrorCode::Invalid));
    assert_eq!(fx.unlink(&root, "a/b/.."), Err(ErrorCode::Invalid));
    assert_eq!(fx.rename(&root, "a/..", &root, "x"), Err(ErrorCode::Invalid));
    assert!(fx.root.join("file").is_file());
}

#[test]
fn dotdot_that_stays_inside_is_allowed() {
    let mut fx = Fx::new();
    let root = fx.root();
    let up = fx.open_dir(&root, "a/..", READ).expect("a/.. is the root");
    assert!(fx.view().is_same_object(b(&up), b(&root)).unwrap());
    assert_eq!(fx.kind_at("a/.."), Ok(DescriptorType::Directory));
    assert_eq!(fx.kind_at("a/b/../../file"), Ok(DescriptorType::RegularFile));
    let file = fx.open_file("a/../file", READ).expect("a/../file");
    assert_eq!(fx.read(&file, 100, 0), Ok((b"inside\n".to_vec(), false)));
    assert_eq!(fx.mkdir(&root, "a/../new"), Ok(()));
    assert!(fx.root.join("new").is_dir());
}

#[test]
fn a_held_descriptor_is_its_own_root() {
    let mut fx = Fx::new();
    let root = fx.root();
    let a = fx.open_dir(&root, "a", READ | DescriptorFlags::MUTATE_DIRECTORY).unwrap();
    for path in ["..", "../file", "b/../../file"] {
        assert_eq!(err(fx.open_file_in(&a, path)), Some(ErrorCode::NotPermitted), "{path}");
        assert_eq!(err(fx.stat_at(&a, path, PathFlags::empty())), Some(ErrorCode::NotPermitted), "{path}");
    }
    assert_eq!(fx.unlink(&a, "../file"), Err(ErrorCode::NotPermitted));
    assert!(fx.root.join("file").is_file());
}

impl Fx {
    fn open_file_in(&mut self, dir: &Fd, path: &str) -> R<Fd> {
        self.open(dir, path, PathFlags::empty(), OpenFlags::empty(), READ)
    }
}

#[test]
fn absolute_paths_are_refused() {
    let mut fx = Fx::new();
    let root = fx.root();
    let (outside, root_path) = (fx.outside.display().to_string(), fx.root.display().to_string());
    let paths = ["/".to_owned(), "//".to_owned(), outside.clone(), format!("{outside}/secret"), root_path.clone()];
    let np = Some(ErrorCode::NotPermitted);
    for path in &paths {
        assert_eq!(err(fx.open_file(path, READ)), np, "{path}");
        assert_eq!(err(fx.open_dir(&root, path, READ)), np, "{path}");
        assert_eq!(err(fx.stat_at(&root, path, PathFlags::empty())), np, "{path}");
        assert_eq!(err(fx.mkdir(&root, &format!("{path}/new"))), np, "{path}");
        assert_eq!(err(fx.unlink(&root, &format!("{path}/secret"))), np, "{path}");
        assert_eq!(err(fx.rename(&root, "file", &root, &format!("{path}/planted"))), np, "{path}");
        assert_eq!(err(fx.readlink(&root, path)), np, "{path}");
    }
    assert_eq!(err(fx.open_file(&format!("{root_path}/file"), READ)), np);
}

// ---------------------------------------------------------------------------
// Special files: nothing blocks, nothing is opened that is not a file.

#[test]
fn fifo_without_writer_opens_at_once_and_reads_nothing() {
    within(10, || {
        let mut fx = Fx::new();
        mkfifo(&fx.root.join("fifo"));
        let start = Instant::now();
        let fifo = fx.open_file("fifo", READ).expect("a FIFO opens for reading without a writer");
        assert!(start.elapsed() < Duration::from_millis(500), "open took {:?}", start.elapsed());
        assert_eq!(fx.view().get_type(b(&fifo)).unwrap(), Ok(DescriptorType::Fifo));
        assert_eq!(fx.kind_at("fifo"), Ok(DescriptorType::Fifo));
        let start = Instant::now();
        // pread on a pipe: no data, no wait.
        assert_eq!(fx.read(&fifo, 64, 0), Err(ErrorCode::InvalidSeek));
        assert!(start.elapsed() < Duration::from_millis(500), "read took {:?}", start.elapsed());
    });
}

#[test]
fn fifo_without_reader_refuses_to_open_for_writing() {
    within(10, || {
        let mut fx = Fx::new();
        mkfifo(&fx.root.join("fifo"));
        let start = Instant::now();
        // Never opened: writing needs a new file.
        let got = fx.open_file("fifo", DescriptorFlags::WRITE);
        assert_eq!(err(got), Some(ErrorCode::NotPermitted));
        let root = fx.root();
        let got = fx.open(
            &root,
            "fifo",
            PathFlags::empty(),
            OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
            DescriptorFlags::WRITE,
        );
        assert_eq!(err(got), Some(ErrorCode::Exist));
        assert!(start.elapsed() < Duration::from_millis(500), "open took {:?}", start.elapsed());
    });
}

#[test]
fn socket_lists_as_socket_and_cannot_be_opened() {
    let mut fx = Fx::new();
    let _listener = std::os::unix::net::UnixListener::bind(fx.root.join("sock")).expect("bind");
    let root = fx.root();
    let (entries, errors) = fx.list(&root);
    assert!(errors.is_empty(), "{errors:?}");
    let sock = entries.iter().find(|e| e.name == "sock").expect("listed");
    assert_eq!(sock.type_, DescriptorType::Socket);
    assert_eq!(fx.kind_at("sock"), Ok(DescriptorType::Socket));
    assert_eq!(err(fx.open_file("sock", READ)), Some(ErrorCode::NoSuchDevice));
}

/// Makes the character device `(major, minor)` at `node` (inside the test's
/// temporary root); `false`, with the skip said for `test`, where it cannot.
fn make_char_device(node: &Path, (major, minor): (u32, u32), test: &str) -> bool {
    if !is_root() {
        runner_metrics_test_skip::skip(test, "mknod needs root");
        return false;
    }
    // SAFETY: a valid C string; mknod only creates the node.
    let made = unsafe { libc::mknod(c_path(node).as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(major, minor)) };
    if made != 0 {
        runner_metrics_test_skip::skip(test, &format!("mknod refused here ({})", std::io::Error::last_os_error()));
    }
    made == 0
}

#[test]
fn char_device_lists_and_stats_as_character_device() {
    let mut fx = Fx::new();
    // The numbers of /dev/null, made inside the temporary root.
    if !make_char_device(&fx.root.join("null"), (1, 3), "char_device_lists_and_stats_as_character_device") {
        return;
    }
    let root = fx.root();
    let (entries, _) = fx.list(&root);
    let null = entries.iter().find(|e| e.name == "null").expect("listed");
    assert_eq!(null.type_, DescriptorType::CharacterDevice);
    assert_eq!(fx.kind_at("null"), Ok(DescriptorType::CharacterDevice));
}

// ---------------------------------------------------------------------------
// The tree changing under the guest.

#[test]
fn directory_swapped_for_symlink_between_calls() {
    let mut fx = Fx::new();
    let root = fx.root();
    write_file(fx.root.join("a/file"), "real a/file\n");
    write_file(fx.outside.join("file"), "outside file\n");
    fx.outside_before = snapshot(&fx.outside);
    let held = fx.open_dir(&root, "a", READ | DescriptorFlags::MUTATE_DIRECTORY).expect("a");
    // Between two guest calls: `a` moves away, a link to outside takes its place.
    std::fs::rename(fx.root.join("a"), fx.root.join("moved")).unwrap();
    symlink("../outside", fx.root.join("a")).unwrap();

    assert_eq!(err(fx.open_file("a/file", READ)), Some(ErrorCode::Loop));
    assert_eq!(err(fx.open_dir(&root, "a", READ)), Some(ErrorCode::NotDirectory));
    assert_eq!(err(fx.stat_at(&root, "a/file", PathFlags::empty())), Some(ErrorCode::Loop));
    // (The calls on a last component open the parent `a` with O_NOFOLLOW.)
    assert_eq!(fx.mkdir(&root, "a/new"), Err(ErrorCode::NotDirectory));
    assert_eq!(fx.unlink(&root, "a/file"), Err(ErrorCode::NotDirectory));
    assert_eq!(fx.rename(&root, "file", &root, "a/file"), Err(ErrorCode::NotDirectory));
    assert_eq!(fx.mkdir(&root, "a/dir/new"), Err(ErrorCode::Loop));

    // The descriptor held before keeps naming the real directory.
    let file = fx.open_file_in(&held, "file").expect("the moved directory's file");
    assert_eq!(fx.read(&file, 100, 0), Ok((b"real a/file\n".to_vec(), false)));
    assert_eq!(fx.mkdir(&held, "new"), Ok(()));
    assert!(fx.root.join("moved/new").is_dir());
    assert_eq!(fx.unlink(&held, "file"), Ok(()));
    assert!(!fx.root.join("moved/file").exists());
    assert_eq!(fx.names(&held), ["b", "new"]);
    assert_eq!(err(fx.open_file_in(&held, "../outside/file")), Some(ErrorCode::NotPermitted));
}

/// Unmounts on drop (lazily, so a failing test still cleans up).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        // SAFETY: a valid C string; umount2 only detaches this mount.
        unsafe { libc::umount2(c_path(&self.0).as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn paths_crossing_a_mount() {
    if !is_root() {
        runner_metrics_test_skip::skip("paths_crossing_a_mount", "mounting a tmpfs needs root");
        return;
    }
    let mut fx = Fx::new();
    let mnt = fx.root.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let (none, tmpfs) = (CString::new("none").unwrap(), CString::new("tmpfs").unwrap());
    // SAFETY: valid C strings; a tmpfs mounted on a directory of our temp root.
    let rc = unsafe { libc::mount(none.as_ptr(), c_path(&mnt).as_ptr(), tmpfs.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        runner_metrics_test_skip::skip(
            "paths_crossing_a_mount",
            &format!("mount refused here ({})", std::io::Error::last_os_error()),
        );
        return;
    }
    let _mounted = Mounted(mnt.clone());
    std::fs::write(mnt.join("f"), "on tmpfs").unwrap();
    std::fs::create_dir(mnt.join("d")).unwrap();
    // A mount that is not a bounded storage of ours (none is, here) is
    // never entered, even from the root: no open, listing, creation,
    // removal or rename in it (a tmpfs or bind mounted on a storage by
    // someone else would otherwise be extracted on every run).
    let root = fx.root();
    let rw = READ | DescriptorFlags::WRITE;
    let create = OpenFlags::CREATE | OpenFlags::EXCLUSIVE;
    let refused = Some(ErrorCode::NotPermitted);
    assert_eq!(err(fx.open(&root, "mnt/new", PathFlags::empty(), create, rw)), refused);
    assert_eq!(err(fx.open_file_in(&root, "mnt/f")), refused);
    assert_eq!(err(fx.open_dir(&root, "mnt", READ)), refused);
    assert_eq!(err(fx.stat_at(&root, "mnt/f", PathFlags::empty())), refused);
    assert_eq!(fx.mkdir(&root, "mnt/e"), Err(ErrorCode::NotPermitted));
    assert_eq!(fx.rmdir(&root, "mnt/d"), Err(ErrorCode::NotPermitted));
    assert_eq!(fx.unlink(&root, "mnt/f"), Err(ErrorCode::NotPermitted));
    assert_eq!(fx.rename(&root, "mnt/f", &root, "f"), Err(ErrorCode::NotPermitted));
    // The mount point itself is seen (a directory) and reported by name.
    assert_eq!(fx.kind_at("mnt"), Ok(DescriptorType::Directory));
    assert_eq!(std::fs::read_to_string(mnt.join("f")).unwrap(), "on tmpfs");
    assert!(mnt.join("d").is_dir() && !mnt.join("e").exists() && !mnt.join("new").exists());
}

// ---------------------------------------------------------------------------
// Odd paths.

#[test]
fn name_longer_than_name_max_is_too_long() {
    let mut fx = Fx::new();
    let root = fx.root();
    let long = "x".repeat(256);
    let before = snapshot(&fx.root);
    let too_long = Some(ErrorCode::NameTooLong);
    for path in [long.clone(), format!("a/{long}"), format!("{long}/file")] {
        assert_eq!(err(fx.open(&root, &path, PathFlags::empty(), OpenFlags::CREATE, READ)), too_long, "{path}");
        assert_eq!(err(fx.stat_at(&root, &path, PathFlags::empty())), too_long, "{path}");
        assert_eq!(err(fx.mkdir(&root, &path)), too_long, "{path}");
        assert_eq!(err(fx.unlink(&root, &path)), too_long, "{path}");
    }
    assert_eq!(snapshot(&fx.root), before);
}

#[test]
fn path_longer_than_path_max_is_refused() {
    let mut fx = Fx::new();
    let root = fx.root();
    let path = format!("{}a", "a/".repeat(2048));
    assert_eq!(path.len(), 4097);
    let refused = |e: Option<ErrorCode>| matches!(e, Some(ErrorCode::NameTooLong | ErrorCode::NoEntry));
    assert!(refused(err(fx.open_file(&path, READ))));
    assert!(refused(err(fx.open(&root, &path, PathFlags::empty(), OpenFlags::CREATE, READ))));
    assert!(refused(err(fx.stat_at(&root, &path, PathFlags::empty()))));
    assert!(refused(err(fx.mkdir(&root, &path))));
    assert!(refused(err(fx.unlink(&root, &path))));
    assert!(refused(err(fx.rename(&root, "file", &root, &path))));
}

#[test]
fn nul_byte_in_path_is_an_error() {
    let mut fx = Fx::new();
    let root = fx.root();
    let before = snapshot(&fx.root);
    for path in ["\0", "file\0", "a\0b", "a/\0/b", "fi\0le"] {
        let create = OpenFlags::CREATE;
        assert_eq!(err(fx.open(&root, path, PathFlags::empty(), create, READ)), Some(ErrorCode::Invalid), "{path:?}");
        assert_eq!(err(fx.stat_at(&root, path, PathFlags::empty())), Some(ErrorCode::Invalid), "{path:?}");
        assert_eq!(fx.mkdir(&root, path), Err(ErrorCode::Invalid), "{path:?}");
        assert_eq!(fx.unlink(&root, path), Err(ErrorCode::Invalid), "{path:?}");
        assert_eq!(fx.rename(&root, "file", &root, path), Err(ErrorCode::Invalid), "{path:?}");
    }
    assert_eq!(snapshot(&fx.root), before);
}

#[test]
fn empty_path_names_nothing() {
    let mut fx = Fx::new();
    let root = fx.root();
    let before = snapshot(&fx.root);
    let none = Some(ErrorCode::NoEntry);
    assert_eq!(err(fx.open_file("", READ)), none);
    assert_eq!(err(fx.open(&root, "", PathFlags::empty(), OpenFlags::CREATE, READ)), none);
    assert_eq!(err(fx.stat_at(&root, "", PathFlags::empty())), none);
    assert_eq!(err(fx.stat_at(&root, "", FOLLOW)), none);
    assert_eq!(err(fx.mkdir(&root, "")), none);
    assert_eq!(err(fx.rmdir(&root, "")), none);
    assert_eq!(err(fx.unlink(&root, "")), none);
    assert_eq!(err(fx.rename(&root, "", &root, "x")), none);
    assert_eq!(err(fx.rename(&root, "file", &root, "")), none);
    assert_eq!(err(fx.readlink(&root, "")), none);
    assert_eq!(snapshot(&fx.root), before);
}

// ---------------------------------------------------------------------------
// Rights.

#[test]
fn read_only_grant_refuses_every_change() {
    let mut fx = Fx::read_only();
    let root = fx.root();
    let before = snapshot(&fx.root);
    let np = Some(ErrorCode::NotPermitted);
    let w = DescriptorFlags::WRITE;
    assert_eq!(fx.view().get_flags(b(&root)).unwrap(), Ok(READ));
    assert_eq!(err(fx.open_file("file", w)), np);
    assert_eq!(err(fx.open_file("file", READ | w)), np);
    assert_eq!(err(fx.open(&root, "new", PathFlags::empty(), OpenFlags::CREATE, READ)), np);
    assert_eq!(err(fx.open(&root, "file", PathFlags::empty(), OpenFlags::TRUNCATE, READ)), np);
    assert_eq!(err(fx.open_dir(&root, "a", READ | DescriptorFlags::MUTATE_DIRECTORY)), np);
    assert_eq!(err(fx.mkdir(&root, "new")), np);
    assert_eq!(err(fx.unlink(&root, "file")), np);
    assert_eq!(err(fx.rmdir(&root, "a/b")), np);
    assert_eq!(err(fx.rename(&root, "file", &root, "renamed")), np);
    assert_eq!(err(fx.set_times(&root, "file", PathFlags::empty())), np);
    let file = fx.open_file("file", READ).expect("reading is granted");
    assert_eq!(fx.read(&file, 100, 0), Ok((b"inside\n".to_vec(), false)));
    assert_eq!(err(fx.write(&file, b"x", 0)), np);
    assert_eq!(err(fx.view().set_size(b(&file), 0).unwrap()), np);
    assert_eq!(snapshot(&fx.root), before);
}

#[test]
fn files_are_written_only_by_the_open_that_creates_them() {
    // What a compromised plugin would do to a runner's file, another
    // storage's image or a reason file: write into it, truncate it.
    let mut fx = Fx::new();
    let root = fx.root();
    let before = snapshot(&fx.root);
    let np = Some(ErrorCode::NotPermitted);
    let (w, rw) = (DescriptorFlags::WRITE, READ | DescriptorFlags::WRITE);
    for df in [w, rw] {
        assert_eq!(err(fx.open_file("file", df)), np, "{df:?}");
        for of in [OpenFlags::empty(), OpenFlags::CREATE, OpenFlags::TRUNCATE, OpenFlags::CREATE | OpenFlags::TRUNCATE]
        {
            assert_eq!(err(fx.open(&root, "file", PathFlags::empty(), of, df)), np, "{of:?} {df:?}");
        }
    }
    assert_eq!(err(fx.open(&root, "file", PathFlags::empty(), OpenFlags::TRUNCATE, READ)), np);
    let create = OpenFlags::CREATE | OpenFlags::EXCLUSIVE;
    assert_eq!(err(fx.open(&root, "file", PathFlags::empty(), create, rw)), Some(ErrorCode::Exist));
    let file = fx.open_file("file", READ).expect("reading is granted");
    assert_eq!(err(fx.write(&file, b"x", 0)), np);
    assert_eq!(err(fx.view().set_size(b(&file), 0).unwrap()), np);
    assert_eq!(snapshot(&fx.root), before, "nothing changed");
    // A new file is written by the open that made it.
    let new = fx.open(&root, "new", PathFlags::empty(), create, w).expect("create");
    assert_eq!(fx.write(&new, b"reason", 0), Ok(6));
    assert_eq!(std::fs::read(fx.root.join("new")).unwrap(), b"reason");
}

#[test]
fn descriptor_never_gets_more_than_its_parent() {
    for writable in [false, true] {
        let mut fx = Fx::with(writable);
        let root = fx.root();
        let before = snapshot(&fx.root);
        let np = Some(ErrorCode::NotPermitted);
        // Read-only either way: a read-only grant, or a read-only open.
        let a = fx.open_dir(&root, "a", READ).expect("a");
        assert_eq!(fx.view().get_flags(b(&a)).unwrap(), Ok(READ));
        assert_eq!(err(fx.open_dir(&a, "b", READ | DescriptorFlags::MUTATE_DIRECTORY)), np);
        assert_eq!(err(fx.open(&a, "new", PathFlags::empty(), OpenFlags::CREATE, READ | DescriptorFlags::WRITE)), np);
        assert_eq!(err(fx.mkdir(&a, "new")), np);
        assert_eq!(err(fx.rmdir(&a, "b")), np);
        assert_eq!(err(fx.rename(&a, "b", &a, "c")), np);
        assert_eq!(err(fx.rename(&root, "file", &a, "file")), np);
        let b_dir = fx.open_dir(&a, "b", READ).expect("a/b");
        assert_eq!(err(fx.mkdir(&b_dir, "new")), np);
        assert_eq!(snapshot(&fx.root), before, "writable grant: {writable}");
    }
}

#[test]
fn symlink_at_and_link_at_are_refused() {
    let mut fx = Fx::new();
    let root = fx.root();
    let before = snapshot(&fx.root);
    let np = Err(ErrorCode::NotPermitted);
    let abs = fx.outside.display().to_string();
    for (target, name) in [("../outside/secret", "evil"), ("file", "alias"), (abs.as_str(), "abs")] {
        let got = fx.view().symlink_at(b(&root), target.into(), name.into()).unwrap();
        assert_eq!(got, np, "{target}");
    }
    for (pf, from) in [(PathFlags::empty(), "file"), (FOLLOW, "file"), (PathFlags::empty(), "../outside/secret")] {
        let got = fx.view().link_at(b(&root), pf, from.into(), b(&root), "hard".into()).unwrap();
        assert_eq!(got, np, "{from}");
    }
    assert_eq!(snapshot(&fx.root), before);
}

// ---------------------------------------------------------------------------
// Listings and reads.

#[test]
fn listing_skips_dots_and_reports_non_utf8_names() {
    let mut fx = Fx::new();
    let list = fx.root.join("list");
    std::fs::create_dir_all(list.join("z")).unwrap();
    let good: Vec<String> = (0..12).map(|i| format!("f{i:02}")).collect();
    for name in &good {
        write_file(list.join(name), "");
    }
    // Three names WASI cannot carry, among the good ones (in whatever order
    // the directory lists them): each is one error, and the listing goes on.
    for bad in [&b"bad\xff"[..], b"\xc3\x28", b"\xed\xa0\x80"] {
        write_file(list.join(std::ffi::OsStr::from_bytes(bad)), "");
    }
    let root = fx.root();
    let dir = fx.open_dir(&root, "list", READ).unwrap();
    let (entries, errors) = fx.list(&dir);
    let mut expected: Vec<_> = good.iter().map(|n| (n.as_str(), DescriptorType::RegularFile)).collect();
    expected.push(("z", DescriptorType::Directory));
    let got: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.type_)).collect();
    assert_eq!(got, expected, "every good name, no `.` or `..`");
    assert_eq!(errors, [ErrorCode::IllegalByteSequence; 3]);
}

#[test]
fn two_listings_of_one_descriptor_are_independent() {
    let mut fx = Fx::new();
    for name in ["p", "q", "r", "s"] {
        write_file(fx.root.join("a").join(name), "");
    }
    let root = fx.root();
    let a = fx.open_dir(&root, "a", READ).unwrap();
    let first = fx.view().read_directory(b(&a)).unwrap().unwrap();
    let next = |fx: &mut Fx| fx.view().read_directory_entry(Resource::new_borrow(first.rep())).unwrap();
    let one = next(&mut fx).unwrap().expect("a first entry");
    // A second listing in between starts from the beginning...
    assert_eq!(fx.names(&a), ["b", "p", "q", "r", "s"]);
    // ... and the first one goes on where it was.
    let mut rest = vec![one.name];
    while let Some(entry) = next(&mut fx).unwrap() {
        rest.push(entry.name);
    }
    rest.sort();
    assert_eq!(rest, ["b", "p", "q", "r", "s"]);
}

#[test]
fn read_with_huge_len_returns_the_file_or_one_mib() {
    let mut fx = Fx::new();
    write_file(fx.root.join("big"), &"z".repeat(3 << 20));
    let small = fx.open_file("file", READ).unwrap();
    assert_eq!(fx.read(&small, u64::MAX, 0), Ok((b"inside\n".to_vec(), false)));
    assert_eq!(fx.read(&small, u64::MAX, 3), Ok((b"ide\n".to_vec(), false)));
    assert_eq!(fx.read(&small, u64::MAX, 7), Ok((Vec::new(), true)));
    assert_eq!(fx.read(&small, u64::MAX, u64::MAX), Err(ErrorCode::Invalid));
    let big = fx.open_file("big", READ).unwrap();
    let (data, end) = fx.read(&big, u64::MAX, 0).unwrap();
    assert_eq!((data.len(), end), (1 << 20, false));
    fx.close(big);
}

// ---------------------------------------------------------------------------
// The fuzz target's property, replayed on fixed inputs (CI has no nightly).

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The committed seed corpus of the `confined_fs` fuzz target: hand-written
/// escapes (`../outside/secret`, through `link`, renames out, a FIFO opened
/// every way, a read-only grant...).
fn fuzz_seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/confined_fs");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "the confined_fs corpus has only {} seeds", seeds.len());
    seeds
}

#[test]
fn fuzz_ops_never_touch_outside() {
    within(300, || {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let seeds = fuzz_seeds();
        for seed in &seeds {
            super::fuzzing::check_ops(seed);
        }
        for i in 0..2000 {
            // Half the inputs extend a seed, so they start from an escape.
            let mut ops = if i % 2 == 0 { seeds[i / 2 % seeds.len()].clone() } else { Vec::new() };
            let len = (rng.next() % 256) as usize;
            ops.extend((0..len).map(|_| rng.next() as u8));
            super::fuzzing::check_ops(&ops);
        }
    });
}

// ---------------------------------------------------------------------------
// A terminal device in the root.

/// Set in the child processes of the test below: how the child opens the
/// terminal node (`confined`: this layer's `kernel::open`, which every guest
/// open goes through; `plain`: `open(2)` without `O_NOCTTY`, the control).
const TTY_CHILD: &str = "RUNNER_METRICS_TEST_TTY_CHILD";
/// The terminal node the child opens.
const TTY_NODE: &str = "RUNNER_METRICS_TEST_TTY_NODE";

/// In a child made a session leader without a controlling terminal (as a
/// service is): opens the node and says whether it became the controlling
/// terminal (`TIOCGSID` answers only for one's own controlling terminal).
fn tty_child(how: &str, node: &Path) {
    use std::os::fd::AsRawFd;
    let opened = match how {
        "confined" => {
            let parent = std::fs::File::open(node.parent().expect("a parent")).expect("open the root");
            let name = node.file_name().and_then(|n| n.to_str()).expect("a name");
            let flags = rustix::fs::OFlags::RDONLY;
            super::kernel::open(
                std::os::fd::AsFd::as_fd(&parent),
                name,
                flags,
                rustix::fs::Mode::empty(),
                false,
                super::kernel::Mounts::Stay,
            )
            .map_err(|e| e.to_string())
        }
        _ => {
            // SAFETY: a valid C string; the descriptor is owned right away.
            let fd = unsafe { libc::open(c_path(node).as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
            if fd < 0 {
                Err(std::io::Error::last_os_error().to_string())
            } else {
                // SAFETY: open just returned this descriptor.
                Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
            }
        }
    };
    let fd = opened.unwrap_or_else(|e| panic!("opening {} ({how}): {e}", node.display()));
    let mut session: libc::pid_t = 0;
    // SAFETY: TIOCGSID writes one pid_t.
    let ours = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGSID, &mut session) } == 0;
    println!("controlling terminal: {}", if ours { "yes" } else { "no" });
}

#[test]
fn a_terminal_device_in_the_root_never_becomes_the_controlling_terminal() {
    const NAME: &str = "a_terminal_device_in_the_root_never_becomes_the_controlling_terminal";
    if let (Some(how), Some(node)) = (std::env::var_os(TTY_CHILD), std::env::var_os(TTY_NODE)) {
        return tty_child(how.to_str().unwrap_or(""), Path::new(&node));
    }
    if !is_root() {
        runner_metrics_test_skip::skip(NAME, "mounting a devpts instance needs root");
        return;
    }
    // A devpts instance of our own in the temporary directory (a terminal
    // opens only through its own devpts), and one pseudo-terminal in it.
    let tmp = tempfile::tempdir().expect("tempdir");
    let pts = tmp.path().join("pts");
    std::fs::create_dir(&pts).expect("mkdir");
    let options = CString::new("newinstance,ptmxmode=0600,mode=0600").expect("no NUL");
    // SAFETY: valid C strings; the mount is detached when the guard drops.
    let mounted = unsafe {
        libc::mount(c"devpts".as_ptr(), c_path(&pts).as_ptr(), c"devpts".as_ptr(), 0, options.as_ptr().cast())
    };
    if mounted != 0 {
        runner_metrics_test_skip::skip(NAME, &format!("devpts refused here ({})", std::io::Error::last_os_error()));
        return;
    }
    let _mounted = Mounted(pts.clone());
    let master = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(pts.join("ptmx"))
        .expect("open our devpts' ptmx");
    let (mut number, unlock): (libc::c_uint, libc::c_int) = (0, 0);
    // SAFETY: TIOCGPTN writes one unsigned int, TIOCSPTLCK reads one int.
    let ready = unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) == 0
            && libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) == 0
    };
    assert!(ready, "a pseudo-terminal: {}", std::io::Error::last_os_error());
    let node = pts.join(number.to_string());
    let test = format!("{}::{NAME}", module_path!().split_once("::").map_or("", |(_, path)| path));
    let child_says = |how: &str| -> String {
        let mut command = std::process::Command::new(std::env::current_exe().expect("the test binary"));
        command
            .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(TTY_CHILD, how)
            .env(TTY_NODE, &node);
        // SAFETY: setsid is async-signal-safe; the child is a new session
        // with no controlling terminal, as a service is.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let out = command.output().expect("run the child");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "child ({how}): {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // (libtest prints it on its own "test ... " line.)
        let said = stdout.split_once("controlling terminal: ").and_then(|(_, rest)| rest.split_whitespace().next());
        said.unwrap_or(&stdout).to_owned()
    };
    // The control: a plain open makes the terminal the child's own, so the
    // test can tell.
    assert_eq!(child_says("plain"), "yes", "the control did not acquire the terminal");
    assert_eq!(child_says("confined"), "no", "the confined layer's open made the node the controlling terminal");
    drop(master);
}

// ---------------------------------------------------------------------------
// `storage-files`: the fast build's one call for a storage's files. It must
// refuse and report exactly what open-at, stat and read would, and bound
// what a lying guest can make the host do.

mod storage_files {
    use super::*;
    use crate::confined_fs::bindings::runner_metrics::confined_fs::storage_files::{
        Host as _, OpenedFile, ReadError, ReadStep,
    };
    use crate::confined_fs::storage_files::{MAX_LIMIT, MAX_NAMES};

    type Answer = Result<OpenedFile, ReadError>;

    impl Fx {
        fn read_files(&mut self, dir: &Fd, names: &[&str], limit: u32) -> wasmtime::Result<Vec<Answer>> {
            let answers =
                self.view().read_files(b(dir), None, names.iter().map(|n| (*n).to_owned()).collect(), limit)?;
            Ok(answers.expect("without a storage, no err"))
        }

        /// `read-files` with a `storage` of `dir`.
        fn read_storage(&mut self, dir: &Fd, storage: &str, names: &[&str]) -> R<Vec<Answer>> {
            let names = names.iter().map(|n| (*n).to_owned()).collect();
            self.view().read_files(b(dir), Some(storage.to_owned()), names, 1024).expect("no trap")
        }

        fn remove_known(&mut self, dir: &Fd, name: &str, files: &[&str]) -> wasmtime::Result<R<()>> {
            self.view().remove_known(b(dir), name.to_owned(), files.iter().map(|f| (*f).to_owned()).collect())
        }
    }

    fn opened(answer: &Answer) -> (DescriptorType, u64, &[u8]) {
        let file = answer.as_ref().expect("opened");
        (file.type_, file.size, &file.head)
    }

    fn open_error(answer: &Answer) -> ErrorCode {
        match answer {
            Err(ReadError { step: ReadStep::Open, code }) => *code,
            other => panic!("expected a refused open, got {other:?}"),
        }
    }

    #[test]
    fn reads_regular_files_and_says_what_everything_else_is() {
        let mut fx = Fx::new();
        let s = fx.root.join("s");
        std::fs::create_dir(&s).expect("mkdir");
        write_file(s.join("small"), "1700000000.5");
        std::fs::write(s.join("exact"), vec![b'x'; 16]).expect("write");
        std::fs::write(s.join("big"), vec![b'x'; 17]).expect("write");
        std::fs::write(s.join("empty"), b"").expect("write");
        mkfifo(&s.join("fifo"));
        std::fs::create_dir(s.join("sub")).expect("mkdir");
        // Both stay in the temporary directory: one into the root, one out.
        symlink("../file", s.join("in")).expect("symlink");
        symlink(fx.outside.join("secret"), s.join("out")).expect("symlink");
        let root = fx.root();
        let dir = fx.open_dir(&root, "s", READ).expect("open s");
        let names = ["small", "exact", "big", "empty", "fifo", "sub", "in", "out"];
        let answers = fx.read_files(&dir, &names, 16).expect("no trap");
        assert_eq!(answers.len(), names.len());
        assert_eq!(opened(&answers[0]), (DescriptorType::RegularFile, 12, &b"1700000000.5"[..]));
        assert_eq!(opened(&answers[1]), (DescriptorType::RegularFile, 16, &[b'x'; 16][..]));
        // Larger than the limit: stat'ed, not read.
        assert_eq!(opened(&answers[2]), (DescriptorType::RegularFile, 17, &b""[..]));
        assert_eq!(opened(&answers[3]), (DescriptorType::RegularFile, 0, &b""[..]));
        assert_eq!(opened(&answers[4]).0, DescriptorType::Fifo);
        assert!(opened(&answers[4]).2.is_empty(), "a FIFO is never read");
        assert_eq!(opened(&answers[5]).0, DescriptorType::Directory);
        assert!(opened(&answers[5]).2.is_empty());
        // No symlink is followed, wherever it points.
        assert_eq!(open_error(&answers[6]), ErrorCode::Loop);
        assert_eq!(open_error(&answers[7]), ErrorCode::Loop);
        // What open-at says of the same names.
        for (name, answer) in names.iter().zip(&answers) {
            let path = format!("s/{name}");
            let by_open = fx.open_file(&path, READ).map(|fd| fx.close(fd));
            assert_eq!(by_open.err(), answer.as_ref().err().map(|e| e.code), "{name}");
        }
    }

    #[test]
    fn a_fifo_without_writer_does_not_hold_the_call() {
        let fx = Fx::new();
        mkfifo(&fx.root.join("fifo"));
        let answers = within(5, move || {
            let mut fx = fx;
            let root = fx.root();
            fx.read_files(&root, &["fifo"], 1024).expect("no trap")
        });
        assert_eq!(opened(&answers[0]).0, DescriptorType::Fifo);
    }

    #[test]
    fn a_device_is_never_read() {
        let mut fx = Fx::new();
        // The numbers of /dev/zero (endless bytes), made inside the temporary root.
        if !make_char_device(&fx.root.join("zero"), (1, 5), "storage_files::a_device_is_never_read") {
            return;
        }
        let root = fx.root();
        let answers = fx.read_files(&root, &["zero"], 1024).expect("no trap");
        assert_eq!(opened(&answers[0]), (DescriptorType::CharacterDevice, 0, &b""[..]));
    }

    #[test]
    fn names_that_are_not_one_plain_component_are_refused() {
        let mut fx = Fx::new();
        let root = fx.root();
        let inside = fx.open_dir(&root, "inside", READ).expect("open inside");
        // Each would name a file that exists: `inside/a/b`, the root's `file`, `outside/secret`.
        let names = ["a/b", "../file", "../../outside/secret", "..", ".", "", "/file"];
        let answers = fx.read_files(&inside, &names, 1024).expect("no trap");
        for (name, answer) in names.iter().zip(&answers) {
            assert_eq!(open_error(answer), ErrorCode::Invalid, "{name:?}");
        }
    }

    #[test]
    fn a_storage_named_reads_as_its_directory_opened_first_does() {
        let mut fx = Fx::new();
        let s = fx.root.join("s");
        std::fs::create_dir(&s).expect("mkdir");
        write_file(s.join("small"), "1700000000.5");
        std::fs::write(s.join("big"), vec![b'x'; 2000]).expect("write");
        mkfifo(&s.join("fifo"));
        symlink(fx.outside.join("secret"), s.join("out")).expect("symlink");
        let names = ["small", "big", "fifo", "out", "missing", "../file"];
        let root = fx.root();
        let dir = fx.open_dir(&root, "s", READ).expect("open s");
        let through_dir = fx.read_files(&dir, &names, 1024).expect("no trap");
        // The bindings' types compare by their debug form.
        assert_eq!(format!("{:?}", fx.read_storage(&root, "s", &names)), format!("{:?}", Ok::<_, ()>(&through_dir)));
        assert_eq!(opened(&through_dir[0]).2, b"1700000000.5");
    }

    #[test]
    fn a_storage_is_opened_as_open_at_opens_a_directory_or_the_call_says_why_not() {
        let mut fx = Fx::new();
        // A symlink to a directory outside (whose sentinels must stay
        // unread), one to a directory inside, a file, nothing.
        symlink(fx.outside.join("dir"), fx.root.join("out")).expect("symlink");
        symlink(fx.root.join("inside"), fx.root.join("in")).expect("symlink");
        let root = fx.root();
        for storage in ["out", "in", "file", "missing"] {
            let Err(as_open_at) = fx.open_dir(&root, storage, READ) else { panic!("open-at refuses {storage:?}") };
            assert_eq!(fx.read_storage(&root, storage, &["inner", "secret"]).err(), Some(as_open_at), "{storage:?}");
        }
        // Not one plain name: each would reach a file that exists.
        let inside = fx.open_dir(&root, "inside", READ).expect("open inside");
        for storage in ["..", ".", "", "a/b", "../outside", "/inside"] {
            let read = fx.read_storage(&inside, storage, &["secret", "b", "file"]);
            assert_eq!(read.err(), Some(ErrorCode::Invalid), "{storage:?}");
        }
    }

    #[test]
    fn more_than_an_honest_guest_asks_stops_the_guest() {
        let mut fx = Fx::new();
        let root = fx.root();
        let many = vec!["file"; MAX_NAMES + 1];
        let trap = fx.read_files(&root, &many, 1024).expect_err("too many names");
        assert!(trap.to_string().contains("names"), "{trap}");
        let trap = fx.read_files(&root, &["file"], MAX_LIMIT + 1).expect_err("too large a limit");
        assert!(trap.to_string().contains("limit"), "{trap}");
        // At the bounds, an answer.
        let answers = fx.read_files(&root, &["file"; MAX_NAMES], MAX_LIMIT).expect("no trap");
        assert!(answers.iter().all(|a| opened(a).2 == b"inside\n"));
    }

    #[test]
    fn remove_known_empties_and_removes_a_storage_of_known_files() {
        let mut fx = Fx::new();
        let s = fx.root.join("s");
        std::fs::create_dir(&s).expect("mkdir");
        write_file(s.join("one"), "1");
        write_file(s.join("two"), "2");
        let root = fx.root();
        // `three` is missing: no error.
        assert_eq!(fx.remove_known(&root, "s", &["one", "two", "three"]).expect("no trap"), Ok(()));
        assert!(!s.exists());
    }

    #[test]
    fn remove_known_leaves_what_it_was_not_told_of_and_says_so() {
        let mut fx = Fx::new();
        let s = fx.root.join("s");
        std::fs::create_dir_all(s.join("sub")).expect("mkdir");
        write_file(s.join("one"), "1");
        write_file(s.join("extra"), "x");
        // A symlink named like a known file is unlinked itself, never its target.
        symlink(fx.outside.join("secret"), s.join("two")).expect("symlink");
        let root = fx.root();
        let removed = fx.remove_known(&root, "s", &["one", "two", "sub"]).expect("no trap");
        assert_eq!(removed, Err(ErrorCode::NotEmpty));
        let mut left: Vec<_> = std::fs::read_dir(&s).expect("s").map(|e| e.expect("entry").file_name()).collect();
        left.sort();
        // `sub` is a directory: unlink-file-at does not remove it.
        assert_eq!(left, ["extra", "sub"], "the known files went, the rest stayed");
    }

    #[test]
    fn remove_known_follows_no_symlink_and_names_only_plain_names() {
        let mut fx = Fx::new();
        // `s` is a symlink to a directory outside (its sentinels must stay).
        symlink(fx.outside.join("dir"), fx.root.join("s")).expect("symlink");
        std::fs::create_dir(fx.root.join("t")).expect("mkdir");
        let root = fx.root();
        // What open-at says of it as a directory (the kernel: not one).
        let as_open_at = fx.open_dir(&root, "s", READ).err();
        assert_eq!(as_open_at, Some(ErrorCode::NotDirectory));
        assert_eq!(fx.remove_known(&root, "s", &["inner"]).expect("no trap").err(), as_open_at);
        assert!(fx.root.join("s").symlink_metadata().is_ok(), "the link itself stays too");
        for (name, files) in [("..", &["x"][..]), ("t/../t", &["x"]), ("t", &["../file"]), ("t", &["a/b"]), ("", &[])] {
            assert_eq!(
                fx.remove_known(&root, name, files).expect("no trap"),
                Err(ErrorCode::Invalid),
                "{name:?} {files:?}"
            );
        }
        assert!(fx.root.join("file").exists() && fx.root.join("t").exists());
    }

    #[test]
    fn remove_known_needs_a_directory_it_may_change_and_bounds_the_names() {
        let mut fx = Fx::read_only();
        std::fs::create_dir(fx.root.join("s")).expect("mkdir");
        let root = fx.root();
        assert_eq!(fx.remove_known(&root, "s", &[]).expect("no trap"), Err(ErrorCode::NotPermitted));
        assert!(fx.root.join("s").exists());
        let trap = fx.remove_known(&root, "s", &["f"; MAX_NAMES + 1]).expect_err("too many files");
        assert!(trap.to_string().contains("files"), "{trap}");
    }
}
