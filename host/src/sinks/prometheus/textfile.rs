//! The textfile on disk: checked before a run, read back without following
//! a link or blocking on a FIFO, replaced atomically.

use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::Context;

use crate::lock::kind_of;
use crate::log::open_regular_file_with;

/// The largest previous file read back (ours are a few KiB per flavor).
const MAX_PREVIOUS_BYTES: u64 = 4 << 20;

/// The directory a textfile is written in (its temporary file too).
pub fn textfile_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Checks, before a run, that `path` can be a textfile: its directory
/// exists, and whatever is at `path` already is a regular file (not a
/// symlink, FIFO, directory, device or socket). Nothing is read or created.
pub fn check_textfile(path: &Path) -> anyhow::Result<()> {
    let dir = textfile_dir(path);
    anyhow::ensure!(dir.is_dir(), "Prometheus textfile {}: {} is not a directory", path.display(), dir.display());
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => Ok(()),
        Ok(meta) => Err(not_a_regular_file(path, &meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("Prometheus textfile {}", path.display())),
    }
}

fn not_a_regular_file(path: &Path, meta: &std::fs::Metadata) -> anyhow::Error {
    anyhow::anyhow!(
        "Prometheus textfile {}: is {}, not a regular file; refusing to read or replace it",
        path.display(),
        kind_of(meta)
    )
}

/// The text of the file this module wrote last time, if any. Opened as the
/// metrics log is ([`open_regular_file_with`]: never blocking on a FIFO or a
/// device, `fstat`ed, anything but a regular file refused saying what it
/// is), and without following a symlink out of the directory. A file that
/// is not UTF-8 is not ours: it counts as absent (the counters restart,
/// which Prometheus handles as a reset).
pub fn read_previous(path: &Path) -> anyhow::Result<Option<String>> {
    let context = || format!("Prometheus textfile {}: refusing to read or replace it", path.display());
    let file = match open_regular_file_with(path, std::fs::OpenOptions::new().read(true), libc::O_NOFOLLOW) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(context),
    };
    let mut bytes = Vec::new();
    file.take(MAX_PREVIOUS_BYTES).read_to_end(&mut bytes).with_context(context)?;
    Ok(String::from_utf8(bytes).ok())
}

/// Writes `content` to a temporary file beside `path` (node_exporter ignores
/// names not ending in `.prom`), syncs it, and renames it over `path`.
pub fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    let dir = textfile_dir(path);
    let mut temp = tempfile::Builder::new().prefix(".runner-metrics.").suffix(".tmp").tempfile_in(dir)?;
    temp.write_all(content)?;
    std::fs::set_permissions(temp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.prom");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = format!("{:#}", read_previous(&fifo).unwrap_err());
        assert!(err.contains(&fifo.display().to_string()) && err.contains("FIFO"), "{err}");
        assert!(check_textfile(&fifo).unwrap_err().to_string().contains("FIFO"));

        let target = dir.path().join("target.prom");
        std::fs::write(&target, "runner_metrics_storages_total{outcome=\"extracted\"} 1\n").unwrap();
        let link = dir.path().join("link.prom");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = format!("{:#}", read_previous(&link).unwrap_err());
        assert!(err.contains("is a symlink, not a regular file"), "{err}");

        let socket = dir.path().join("socket.prom");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let err = format!("{:#}", read_previous(&socket).unwrap_err());
        assert!(err.contains(&socket.display().to_string()) && err.contains("is a socket"), "{err}");

        let sub = dir.path().join("dir.prom");
        std::fs::create_dir(&sub).unwrap();
        assert!(format!("{:#}", read_previous(&sub).unwrap_err()).contains("is a directory"));

        assert!(read_previous(&target).unwrap().unwrap().contains("extracted"));
        assert!(read_previous(&dir.path().join("absent.prom")).unwrap().is_none());
        check_textfile(&target).unwrap();
        check_textfile(&dir.path().join("absent.prom")).unwrap();
        assert!(check_textfile(&dir.path().join("missing").join("x.prom")).is_err());
    }
}
