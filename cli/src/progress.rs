//! The per-storage lines and the live status line on stderr.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use runner_metrics::summary::{OutcomeKind, StorageReport};

use crate::messages::*;

/// Per-storage lines on stderr (problems always, everything with
/// --verbose) and, when stderr is a terminal, a live status line: storages
/// done, rate, elapsed time. The total is unknown while the root is streamed,
/// so there is no percentage. Each update is one `write(2)` and there are at
/// most [`Progress::INTERVAL`]-spaced updates (10 per second), so a fast run
/// is not slowed down by its own progress line.
pub struct Progress {
    pub(crate) verbose: bool,
    /// The storage root, to print the guest's root-relative paths in full.
    pub(crate) root: Option<PathBuf>,
    /// Whether to draw the live line (stderr is a terminal).
    pub live: bool,
    pub(crate) seen: usize,
    pub(crate) started: Instant,
    /// When the live line was last drawn (the start until it is).
    pub(crate) last_draw: Instant,
    /// Whether the live line is on screen (to be cleared before other text).
    pub(crate) on_screen: bool,
}

impl Progress {
    /// Time between two draws of the live line; the first comes after it
    /// too, so a run that takes less prints no live line at all.
    pub const INTERVAL: Duration = Duration::from_millis(100);

    pub fn new(verbose: bool, root: &Path) -> Self {
        Self { root: Some(root.to_owned()), ..Self::with_live(verbose, std::io::stderr().is_terminal()) }
    }

    /// `live` forced, for tests.
    pub fn with_live(verbose: bool, live: bool) -> Self {
        let now = Instant::now();
        Self { verbose, root: None, live, seen: 0, started: now, last_draw: now, on_screen: false }
    }

    pub fn report(&mut self, report: &StorageReport) {
        self.seen += 1;
        let notable = matches!(report.outcome, OutcomeKind::Quarantined | OutcomeKind::Failed);
        if self.verbose || notable {
            // Formatted first and written at once: stderr is unbuffered, and
            // `escape_debug` through `eprintln!` wrote one byte per syscall.
            let clear = if self.on_screen { "\r\x1b[K" } else { "" };
            let line = format!(
                "{clear}{}: {}: {}\n",
                report.outcome.as_str(),
                printable(&report.name),
                plain(&report.detail, &report.errors, self.root.as_deref())
            );
            write_stderr(&line);
            self.on_screen = false; // drawn again at the next interval
        }
        if let Some(line) = self.due(Instant::now()) {
            write_stderr(&line);
        }
    }

    /// The live line to draw at `now`, if one is due.
    pub fn due(&mut self, now: Instant) -> Option<String> {
        if !self.live {
            return None;
        }
        if now.saturating_duration_since(self.last_draw) < Self::INTERVAL {
            return None;
        }
        self.last_draw = now;
        self.on_screen = true;
        Some(format!("\r\x1b[K{}", status_line(self.seen, now.saturating_duration_since(self.started))))
    }

    /// Clears the live line, if one was drawn.
    pub fn finish(&mut self) {
        if std::mem::take(&mut self.on_screen) {
            write_stderr("\r\x1b[K");
        }
    }
}

/// `1234 storages, 456/s, 2.7s` (the live line without its terminal codes).
pub fn status_line(done: usize, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 { done as f64 / seconds } else { 0.0 };
    let elapsed = if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        let whole = elapsed.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    };
    format!("{done} storages, {rate:.0}/s, {elapsed}")
}

/// One write on (unbuffered) stderr; errors are ignored (nowhere to say them).
pub(crate) fn write_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_shows_done_rate_and_elapsed_time() {
        assert_eq!(status_line(0, Duration::ZERO), "0 storages, 0/s, 0.0s");
        assert_eq!(status_line(250, Duration::from_millis(2500)), "250 storages, 100/s, 2.5s");
        assert_eq!(status_line(9000, Duration::from_secs(90)), "9000 storages, 100/s, 1m30s");
    }

    #[test]
    fn the_live_line_is_drawn_at_most_ten_times_a_second_and_only_on_a_terminal() {
        let mut quiet = Progress::with_live(false, false);
        assert_eq!(quiet.due(Instant::now() + Duration::from_secs(5)), None);
        let mut live = Progress::with_live(false, true);
        let start = live.started;
        assert_eq!(live.due(start + Duration::from_millis(50)), None, "nothing before the first interval");
        let line = live.due(start + Duration::from_millis(100)).expect("due");
        assert!(line.starts_with("\r\x1b[K0 storages"), "{line:?}");
        assert_eq!(live.due(start + Duration::from_millis(150)), None);
        assert!(live.due(start + Duration::from_millis(200)).is_some());
    }
}
