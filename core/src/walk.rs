//! Removing a tree a hostile job may be changing while we remove it: the one
//! implementation, used by the guest (over `wasi:filesystem` descriptors) and
//! by the host (over Linux file descriptors, `storage delete` and
//! `quarantine purge`).
//!
//! # Why by descriptor
//! A job can keep a descriptor on its storage directory (a bind mount does)
//! after we rename the storage into `.deleting/`, and keep changing it. A
//! walk that names `top/sub/child` by a path from the root resolves `sub`
//! again at every call, so a job that swaps `sub` for a symlink `../..`
//! mid-walk redirects the walk to the root: it would empty a sibling runner
//! or `.quarantine`. Here every step names **one component relative to a
//! directory we hold open**:
//!
//! * a directory is entered with a no-follow, directory-only open of one
//!   name relative to its parent's descriptor: a symlink swapped in is
//!   refused (`ELOOP`/`ENOTDIR`) and looked at again, then unlinked;
//! * once open, the descriptor keeps naming *that* directory wherever the
//!   job moves it, and a job can only move things within its own storage
//!   (its view ends there), so everything reached through it is the job's;
//! * entries are unlinked relative to the descriptor of the directory that
//!   holds them, never through a path;
//! * a directory is removed by name from its parent's descriptor once it
//!   looked empty; if the name now holds something else (the job moved
//!   ours away and put another entry there) that removal fails or removes
//!   the job's own empty directory, and the parent is listed again, so the
//!   moved directory is found where it went;
//! * depth is not limited by descriptors: at [`MAX_HELD`] open levels a
//!   deeper directory is renamed (descriptor to descriptor) out to the top
//!   directory (`.deleting/`) under a fresh name and removed from there, so
//!   any depth the kernel allows is removed with a bounded number of open
//!   descriptors and no path ever longer than one name;
//! * a job that keeps creating entries cannot keep the walk forever: every
//!   operation counts against [`MAX_OPERATIONS`].

use std::collections::VecDeque;

use crate::fs::{EntryKind, FsError, FsErrorCode, FsOperation, FsResult};

/// Directory levels held open at once; deeper directories are moved out to
/// the top directory (well under the guest's 256-handle cap).
pub const MAX_HELD: usize = 32;
/// Names read per listing, so memory stays bounded whatever a directory
/// holds (at most about 4 MiB of names). A bigger directory is listed again
/// after each batch is removed; wasmtime-wasi materialises a whole listing
/// per call, so each relisting costs the host the remaining entries, which
/// a big batch keeps to a few passes (100,000 entries: 7).
pub const LISTING_BATCH: usize = 16 * 1024;
/// Syscall-level operations one removal may take before it gives up (a job
/// that keeps adding entries as fast as they go would otherwise win).
pub const MAX_OPERATIONS: u64 = 1 << 22;
/// Times an entry may change kind under us, or a directory be found not
/// empty right after it was listed empty, before the walk gives up.
pub const MAX_RACES: u32 = 1000;

/// One listing: each entry's name (`None` when it cannot be named) and its
/// kind when the listing says.
pub type Entries<N> = Vec<(Option<N>, Option<EntryKind>)>;

/// An open directory: the operations the walk needs, each on one name
/// relative to this directory, none following a symlink.
pub trait DirHandle: Sized {
    /// How entries are named: UTF-8 in WASI, bytes natively.
    type Name: Clone;

    /// A name from text (for names we make, such as spill names).
    fn name_from(text: &str) -> Self::Name;
    /// The name as text for messages (lossy where it is not UTF-8).
    fn show(name: &Self::Name) -> String;
    /// Opens the directory `name`: directory only, no symlink followed,
    /// never blocking.
    fn open_dir(&self, name: &Self::Name) -> FsResult<Self>;
    /// Up to `max` entries, from the beginning (a fresh pass each call),
    /// without `.` and `..`. A `None` name cannot be named (not UTF-8 in
    /// WASI). The kind is the listing's own when it has one.
    fn read_entries(&self, max: usize) -> FsResult<Entries<Self::Name>>;
    /// `lstat` of one entry.
    fn kind_at(&self, name: &Self::Name) -> FsResult<EntryKind>;
    /// Unlinks a non-directory (a symlink itself, never its target).
    fn unlink(&self, name: &Self::Name) -> FsResult<()>;
    /// Removes an empty directory.
    fn rmdir(&self, name: &Self::Name) -> FsResult<()>;
    /// Renames `name` of this directory to `to_name` in `to`, replacing at
    /// most an empty directory.
    fn rename_to(&self, name: &Self::Name, to: &Self, to_name: &Self::Name) -> FsResult<()>;
    /// Whether `child`, just opened from this directory, is on the same
    /// mount: the walk never crosses into another (a bind mount inside a
    /// storage would lead it out of the root). `true` where the handle
    /// cannot tell; the Rust host's confined filesystem refuses such an
    /// open itself (`RESOLVE_NO_XDEV`).
    fn same_mount(&self, _child: &Self) -> bool {
        true
    }
    /// Removes the directory `name` if it holds nothing but `files`: opens
    /// it, unlinks each of them there (a missing one is no error), and
    /// removes it. `Err` when it could not be opened or removed; what was
    /// unlinked stays unlinked. The fast build does it in one host call.
    fn remove_known(&self, name: &Self::Name, files: &[&str]) -> FsResult<()> {
        let dir = self.open_dir(name)?;
        for file in files {
            // A missing file, or one that is a directory now: the rmdir
            // below fails, and the caller deals with what is left.
            let _ = dir.unlink(&Self::name_from(file));
        }
        drop(dir);
        self.rmdir(name)
    }
}

/// The error of a directory that is another mount: not entered, not
/// emptied; the walk stops there and says where.
fn another_mount(path: &str) -> FsError {
    FsError::new(
        FsErrorCode::PermissionDenied,
        FsOperation::OpenDirectory,
        path,
        "another filesystem is mounted there: not entered, nothing in it removed",
    )
}

/// One directory being emptied.
struct Frame<D: DirHandle> {
    dir: D,
    /// Its name in the parent frame's directory (or in `top`).
    name: D::Name,
    pending: Vec<(D::Name, Option<EntryKind>)>,
    /// The last listing was cut at [`LISTING_BATCH`]: list again before
    /// trying to remove the directory.
    more: bool,
}

/// Counts operations and races against their limits.
struct Budget {
    operations: u64,
    races: u32,
}

impl Budget {
    fn step(&mut self, where_: impl FnOnce() -> String) -> FsResult<()> {
        self.operations += 1;
        if self.operations > MAX_OPERATIONS {
            return Err(FsError::new(
                FsErrorCode::Other,
                FsOperation::Remove,
                &where_(),
                format!("gave up after {MAX_OPERATIONS} operations: entries keep appearing"),
            ));
        }
        Ok(())
    }

    fn race(&mut self, where_: impl FnOnce() -> String) -> FsResult<()> {
        self.races += 1;
        if self.races > MAX_RACES {
            return Err(FsError::new(
                FsErrorCode::Other,
                FsOperation::Remove,
                &where_(),
                "entries keep changing kind or reappearing while being removed",
            ));
        }
        Ok(())
    }
}

/// [`remove_tree`] for a directory that usually holds only the files named
/// `expected`: those are unlinked by name and the directory removed, with
/// no listing (a storage is three or four known files). Anything else in
/// it, or anything that fails, and the whole walk of [`remove_tree`] runs.
pub fn remove_tree_expecting<D: DirHandle>(top: &D, name: &D::Name, expected: &[&str]) -> FsResult<()> {
    if top.remove_known(name, expected).is_ok() {
        return Ok(());
    }
    remove_tree(top, name)
}

/// Removes the entry `name` of `top` (a file, a symlink or a whole tree)
/// without following any symlink, by descriptor as the module explains.
/// `top` must be a directory of ours (`.deleting/`): directories deeper
/// than [`MAX_HELD`] are moved there under `<name>.deep<n>` and removed
/// too. `Err` names the root-relative-to-`top` path where it stopped; what
/// was not removed is then still under `name` or a `.deep` name in `top`.
pub fn remove_tree<D: DirHandle>(top: &D, name: &D::Name) -> FsResult<()> {
    let base: String = D::show(name).chars().take(200).collect();
    let mut budget = Budget { operations: 0, races: 0 };
    let mut queue = VecDeque::from([name.clone()]);
    let mut spilled = 0u64;
    while let Some(next) = queue.pop_front() {
        remove_one(top, next, &base, &mut spilled, &mut queue, &mut budget)?;
    }
    Ok(())
}

/// `top`'s entry `name`: unlinked if it is not a directory, else emptied
/// and removed, spilling too-deep directories into `queue`.
fn remove_one<D: DirHandle>(
    top: &D,
    name: D::Name,
    base: &str,
    spilled: &mut u64,
    queue: &mut VecDeque<D::Name>,
    budget: &mut Budget,
) -> FsResult<()> {
    let shown = || D::show(&name);
    budget.step(shown)?;
    // Open it as a directory first (one call for the usual case); only
    // what is not a directory is unlinked.
    let dir = loop {
        match top.open_dir(&name) {
            Ok(dir) if !top.same_mount(&dir) => return Err(another_mount(&shown())),
            Ok(dir) => break dir,
            Err(e) if e.code == FsErrorCode::NotFound => return Ok(()),
            Err(e) if matches!(e.code, FsErrorCode::Symlink | FsErrorCode::NotADirectory) => match top.unlink(&name) {
                Ok(()) => return Ok(()),
                Err(e) if e.code == FsErrorCode::NotFound => return Ok(()),
                // Swapped for a directory since: open it after all.
                Err(e) if swapped_for_directory(top, &name, &e) => {
                    budget.race(shown)?;
                }
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    };
    let pending = list(&dir, &shown)?;
    let more = pending.len() >= LISTING_BATCH;
    let mut stack = vec![Frame { dir, name: name.clone(), pending, more }];
    let here = |stack: &[Frame<D>], child: Option<&D::Name>| {
        let mut path: Vec<String> = stack.iter().map(|f| D::show(&f.name)).collect();
        path.extend(child.map(D::show));
        path.join("/")
    };
    while let Some(frame) = stack.last_mut() {
        if let Some((child, kind)) = frame.pending.pop() {
            budget.step(|| here(&stack, Some(&child)))?;
            let frame = stack.last().expect("the frame just popped from");
            let kind = match kind {
                Some(kind) => kind,
                None => match frame.dir.kind_at(&child) {
                    Ok(kind) => kind,
                    Err(e) if e.code == FsErrorCode::NotFound => continue,
                    Err(e) => return Err(e),
                },
            };
            if kind != EntryKind::Directory {
                match frame.dir.unlink(&child) {
                    Ok(()) => {}
                    Err(e) if e.code == FsErrorCode::NotFound => {}
                    // Swapped for a directory since it was listed: look again.
                    Err(e) if swapped_for_directory(&frame.dir, &child, &e) => {
                        budget.race(|| here(&stack, Some(&child)))?;
                        stack.last_mut().expect("a frame").pending.push((child, None));
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            if stack.len() >= MAX_HELD {
                spill(top, &frame.dir, &child, base, spilled, queue, budget)?;
                continue;
            }
            match frame.dir.open_dir(&child) {
                Ok(dir) if !frame.dir.same_mount(&dir) => return Err(another_mount(&here(&stack, Some(&child)))),
                Ok(dir) => {
                    let pending = list(&dir, &|| here(&stack, Some(&child)))?;
                    let more = pending.len() >= LISTING_BATCH;
                    stack.push(Frame { dir, name: child, pending, more });
                }
                Err(e) if e.code == FsErrorCode::NotFound => {}
                // Swapped for a symlink or a file since it was listed.
                Err(e) if matches!(e.code, FsErrorCode::Symlink | FsErrorCode::NotADirectory) => {
                    budget.race(|| here(&stack, Some(&child)))?;
                    stack.last_mut().expect("a frame").pending.push((child, None));
                }
                Err(e) => return Err(e),
            }
            continue;
        }
        if frame.more {
            let pending = {
                let frame = stack.last().expect("a frame");
                list(&frame.dir, &|| here(&stack, None))?
            };
            let frame = stack.last_mut().expect("a frame");
            frame.more = pending.len() >= LISTING_BATCH;
            frame.pending = pending;
            continue;
        }
        // Looks empty: remove it by name from its parent.
        let finished = stack.pop().expect("a frame");
        let parent = stack.last().map_or(top, |f| &f.dir);
        budget.step(|| here(&stack, Some(&finished.name)))?;
        match parent.rmdir(&finished.name) {
            Ok(()) => {}
            // Moved away (or replaced by a non-directory) by the job: it is
            // still somewhere below the parent, which is listed again.
            Err(e) if matches!(e.code, FsErrorCode::NotFound | FsErrorCode::NotADirectory) => match stack.last_mut() {
                Some(parent) => parent.more = true,
                None => queue.push_back(finished.name),
            },
            Err(e) if e.code == FsErrorCode::NotEmpty => {
                budget.race(|| here(&stack, Some(&finished.name)))?;
                let pending = list(&finished.dir, &|| here(&stack, Some(&finished.name)))?;
                let more = pending.len() >= LISTING_BATCH;
                stack.push(Frame { pending, more, ..finished });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether `unlink` of `dir`'s entry `name` failed because it is a
/// directory now (`EISDIR`, or `EPERM` where the system says so), rather
/// than for a reason of its own, such as a parent the user may not write
/// (`EACCES`): that one is the error to report, not a race to retry.
fn swapped_for_directory<D: DirHandle>(dir: &D, name: &D::Name, e: &FsError) -> bool {
    match e.code {
        FsErrorCode::IsADirectory => true,
        FsErrorCode::PermissionDenied => matches!(dir.kind_at(name), Ok(EntryKind::Directory)),
        _ => false,
    }
}

/// Moves the too-deep directory `child` of `dir` out to `top` under a fresh
/// `<base>.deep<n>` name, queued for removal.
fn spill<D: DirHandle>(
    top: &D,
    dir: &D,
    child: &D::Name,
    base: &str,
    spilled: &mut u64,
    queue: &mut VecDeque<D::Name>,
    budget: &mut Budget,
) -> FsResult<()> {
    for _ in 0..100 {
        *spilled += 1;
        let fresh = D::name_from(&format!("{base}.deep{spilled}"));
        budget.step(|| D::show(&fresh))?;
        match top.kind_at(&fresh) {
            Err(e) if e.code == FsErrorCode::NotFound => {}
            Ok(_) => continue,
            Err(e) => return Err(e),
        }
        match dir.rename_to(child, top, &fresh) {
            Ok(()) => {
                queue.push_back(fresh);
                return Ok(());
            }
            Err(e) if e.code == FsErrorCode::NotFound => return Ok(()),
            // Something of that name is there already: another name.
            Err(e) if matches!(e.code, FsErrorCode::AlreadyExists | FsErrorCode::NotEmpty) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(FsError::new(FsErrorCode::Other, FsOperation::MoveOut, &D::show(child), "no free name in the top directory"))
}

/// A listing whose unnameable entries are an error (they cannot be removed).
fn list<D: DirHandle>(dir: &D, here: &dyn Fn() -> String) -> FsResult<Vec<(D::Name, Option<EntryKind>)>> {
    let mut named = Vec::new();
    for (name, kind) in dir.read_entries(LISTING_BATCH)? {
        match name {
            Some(name) => named.push((name, kind)),
            None => {
                return Err(FsError::new(
                    FsErrorCode::Other,
                    FsOperation::Remove,
                    &here(),
                    "holds an entry whose name is not UTF-8 (it cannot be named here)",
                ))
            }
        }
    }
    Ok(named)
}
