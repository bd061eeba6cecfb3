//! Whole trees recorded (paths, kinds, contents, times) to prove what changed and what did not.

use crate::*;

/// Files larger than this are recorded by [`snapshot`] and [`contents`] by
/// their size only (the threat suite's 1 TiB sparse file).
pub const LARGE_FILE_BYTES: u64 = 16 << 20;

/// What one path of a tree is, without following symlinks or opening FIFOs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    File(Vec<u8>),
    Dir,
    Symlink(PathBuf),
    Fifo,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    pub mode: u32,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i128,
}

/// Every path under `dir` (relative, `""` is `dir` itself) with its type,
/// content, mode and modification time.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    walk(dir, Path::new(""), &mut out, true);
    out
}

/// Like [`snapshot`] but only types and contents: for comparing a storage
/// with its moved copy (a rename changes the directory's ctime, and a move
/// may legitimately touch the top directory's mtime).
pub fn contents(dir: &Path) -> BTreeMap<PathBuf, NodeKind> {
    let mut out = BTreeMap::new();
    walk(dir, Path::new(""), &mut out, false);
    out.into_iter().map(|(k, v)| (k, v.kind)).collect()
}

fn walk(base: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>, with_times: bool) {
    let path = if rel.as_os_str().is_empty() { base.to_path_buf() } else { base.join(rel) };
    let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        NodeKind::Symlink(fs::read_link(&path).expect("readlink"))
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_file() && meta.len() > LARGE_FILE_BYTES {
        // A (sparse) file far beyond any metrics file: its size stands for
        // its content, so a snapshot never reads a terabyte.
        NodeKind::File(format!("<large file: {} bytes, not read>", meta.len()).into_bytes())
    } else if ft.is_file() {
        NodeKind::File(fs::read(&path).expect("read"))
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else {
        NodeKind::Other
    };
    let (mode, mtime_ns) = if with_times {
        (meta.permissions().mode(), i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()))
    } else {
        (0, 0)
    };
    out.insert(rel.to_path_buf(), Node { kind: kind.clone(), mode, mtime_ns });
    if kind == NodeKind::Dir {
        let mut names: Vec<_> = fs::read_dir(&path).expect("read_dir").map(|e| e.expect("entry").file_name()).collect();
        names.sort();
        for name in names {
            walk(base, &rel.join(name), out, with_times);
        }
    }
}

/// Human-readable differences between two snapshots ("" when equal).
pub fn diff<V: std::fmt::Debug + PartialEq>(before: &BTreeMap<PathBuf, V>, after: &BTreeMap<PathBuf, V>) -> String {
    let mut out = String::new();
    for (path, node) in before {
        match after.get(path) {
            None => out.push_str(&format!("removed: {}\n", path.display())),
            Some(other) if other != node => {
                out.push_str(&format!("changed: {}: {node:?} -> {other:?}\n", path.display()))
            }
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push_str(&format!("added: {}\n", path.display()));
    }
    out
}
