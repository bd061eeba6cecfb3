//! Where event lines go: the metrics log (appended and synced before any
//! storage is deleted), standard output, or memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::lock::kind_of;

/// The reference's default metrics log.
pub const DEFAULT_METRICS_LOG: &str = "/var/log/github-runner-metrics.log";
/// The environment variable that overrides it (as in the reference).
pub const METRICS_LOG_ENV: &str = "METRICS_LOG_PATH";

/// A destination for JSON lines. `append` returns only once the lines are
/// durable, because storages are deleted right after it.
pub trait EventSink {
    /// Appends lines (each without its newline) and makes them durable.
    fn append(&mut self, lines: &[String]) -> io::Result<()>;
    /// Where the lines go, for messages.
    fn describe(&self) -> String;
}

/// An append-only JSON-lines file, synced after each append.
pub struct MetricsLog {
    file: File,
    path: PathBuf,
    /// Whether a line cut short by a crash has been looked for yet.
    checked_last_line: bool,
}

impl MetricsLog {
    /// Opens (creating it if needed) the log for appending. Only a regular
    /// file is accepted: the path is opened non-blocking, so a FIFO, a
    /// device or a directory there is an error naming the path and what it
    /// is, never a hang.
    ///
    /// If the last line was cut short by a crash, it is terminated before the
    /// first append, so it stays a line of its own and the next event starts
    /// on a fresh line. (Before the first append rather than here: `collect`
    /// appends only once it holds the storage root's lock, so a run that is
    /// kept out by another never touches the other's log.) Bytes already
    /// written are never rewritten: a collector may have shipped them.
    pub fn open(path: &Path) -> io::Result<Self> {
        let with_path = |e: io::Error| io::Error::new(e.kind(), format!("metrics log {}: {e}", path.display()));
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true).mode(0o644);
        let file = open_regular_file(path, &mut options).map_err(with_path)?;
        Ok(Self { file, path: path.to_owned(), checked_last_line: false })
    }
}

/// Opens an operator-supplied path that must be a regular file, without
/// ever blocking: `O_NONBLOCK | O_CLOEXEC` are added to `options` (opening a
/// FIFO or a device could otherwise wait forever), the opened file is
/// `fstat`ed, and anything but a regular file is an `InvalidInput` error
/// saying what it is (`is a FIFO, not a regular file`). `O_NONBLOCK` is
/// cleared again on the regular file. The error does not name the path;
/// callers add it.
pub fn open_regular_file(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    open_regular_file_with(path, options, 0)
}

/// [`open_regular_file`] with more open flags (`O_NOFOLLOW`: a symlink is
/// an `InvalidInput` error saying so, not followed).
pub fn open_regular_file_with(path: &Path, options: &mut OpenOptions, flags: libc::c_int) -> io::Result<File> {
    let file = match options.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | flags).open(path) {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "is a directory, not a regular file"))
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) && flags & libc::O_NOFOLLOW != 0 => {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "is a symlink, not a regular file (not followed)"))
        }
        // A socket cannot be opened at all: say what is there.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(match std::fs::symlink_metadata(path) {
                Ok(meta) if !meta.is_file() => not_a_regular_file(&meta),
                _ => e,
            })
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_a_regular_file(&meta));
    }
    // SAFETY: plain fcntl calls on a descriptor `file` owns.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// The `InvalidInput` error of [`open_regular_file_with`]: what is there
/// instead (`is a FIFO, not a regular file`).
fn not_a_regular_file(meta: &std::fs::Metadata) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("is {}, not a regular file", kind_of(meta)))
}

/// Appends a newline if the file is non-empty and does not end with one.
fn terminate_partial_line(file: &mut File) -> io::Result<()> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(());
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        file.write_all(b"\n")?;
        file.sync_data()?;
    }
    Ok(())
}

/// All lines with their newlines, for one `write` call.
fn joined(lines: &[String]) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        buffer.extend_from_slice(line.as_bytes());
        buffer.push(b'\n');
    }
    buffer
}

impl EventSink for MetricsLog {
    fn append(&mut self, lines: &[String]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let with_path = |e: io::Error| io::Error::new(e.kind(), format!("metrics log {}: {e}", self.path.display()));
        if !self.checked_last_line {
            terminate_partial_line(&mut self.file).map_err(with_path)?;
            self.checked_last_line = true;
        }
        self.file.write_all(&joined(lines)).map_err(with_path)?;
        self.file.sync_data().map_err(with_path)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// Standard output (`--metrics-log -`), flushed after each append.
pub struct StdoutSink;

impl EventSink for StdoutSink {
    fn append(&mut self, lines: &[String]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(&joined(lines))?;
        out.flush()
    }

    fn describe(&self) -> String {
        "standard output".to_owned()
    }
}

/// Lines kept in memory, for embedding and tests.
#[derive(Debug, Default)]
pub struct MemorySink {
    pub lines: Vec<String>,
}

impl EventSink for MemorySink {
    fn append(&mut self, lines: &[String]) -> io::Result<()> {
        self.lines.extend_from_slice(lines);
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_lines_and_terminates_a_partial_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.log");
        std::fs::write(&path, "{\"ok\": 1}\n{\"cut").unwrap();
        let mut log = MetricsLog::open(&path).unwrap();
        log.append(&["{\"a\": 1}".to_owned(), "{\"b\": 2}".to_owned()]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"ok\": 1}\n{\"cut\n{\"a\": 1}\n{\"b\": 2}\n");
    }

    #[test]
    fn leaves_a_complete_log_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.log");
        std::fs::write(&path, "{\"ok\": 1}\n").unwrap();
        MetricsLog::open(&path).unwrap().append(&["{\"a\": 1}".to_owned()]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"ok\": 1}\n{\"a\": 1}\n");
    }

    #[test]
    fn refuses_a_directory_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let error = MetricsLog::open(dir.path()).err().expect("a directory is not a log");
        assert!(error.to_string().contains(&dir.path().display().to_string()), "{error}");
        assert!(error.to_string().contains("is a directory, not a regular file"), "{error}");
    }

    #[test]
    fn refuses_a_fifo_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let error = MetricsLog::open(&fifo).err().expect("a FIFO is not a log");
        assert!(error.to_string().contains("is a FIFO, not a regular file"), "{error}");
        assert!(error.to_string().contains(&fifo.display().to_string()), "{error}");
        // Read-only opening (a token file) is refused the same way.
        let error = open_regular_file(&fifo, OpenOptions::new().read(true)).expect_err("a FIFO");
        assert!(error.to_string().contains("is a FIFO"), "{error}");
    }

    #[test]
    fn refuses_a_socket_saying_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let error = MetricsLog::open(&socket).err().expect("a socket is not a log");
        assert!(error.to_string().contains("is a socket, not a regular file"), "{error}");
        assert!(error.to_string().contains(&socket.display().to_string()), "{error}");
    }

    #[test]
    fn the_log_is_still_appended_to_and_blocks_on_nothing_once_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.log");
        MetricsLog::open(&path).unwrap().append(&["{\"a\": 1}".to_owned()]).unwrap();
        MetricsLog::open(&path).unwrap().append(&["{\"b\": 2}".to_owned()]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\": 1}\n{\"b\": 2}\n");
        let log = MetricsLog::open(&path).unwrap();
        // SAFETY: F_GETFL on an open descriptor.
        let flags = unsafe { libc::fcntl(log.file.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0, "O_NONBLOCK cleared on the regular file");
        assert_ne!(flags & libc::O_APPEND, 0, "still O_APPEND");
    }
}
