//! Where event lines go: the metrics log (appended and synced before any
//! storage is deleted), standard output, or memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
}

impl MetricsLog {
    /// Opens (creating it if needed) the log for appending. If the last line
    /// was cut short by a crash, it is terminated first, so it stays a line
    /// of its own and the next event starts on a fresh line. Bytes already
    /// written are never rewritten: a collector may have shipped them.
    pub fn open(path: &Path) -> io::Result<Self> {
        let with_path = |e: io::Error| io::Error::new(e.kind(), format!("metrics log {}: {e}", path.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(with_path)?;
        if !file.metadata().map_err(with_path)?.is_file() {
            return Err(with_path(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")));
        }
        terminate_partial_line(&mut file).map_err(with_path)?;
        Ok(Self { file, path: path.to_owned() })
    }
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
    }
}
