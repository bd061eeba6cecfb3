//! What a run says about each root entry: the outcome, the reason, and the
//! one sentence an operator reads. Written once, here, for every host.

use serde::Serialize;

use crate::model::{Failure, QuarantineInfo, SkipReason};
pub use crate::model::{OutcomeKind, StorageReport};

/// A report as one JSON object (the command component's `--json`): its
/// fields in WIT order, `errors` only when it names any.
impl Serialize for StorageReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("outcome", &self.outcome)?;
        map.serialize_entry("reason", &self.reason)?;
        map.serialize_entry("file", &self.file)?;
        map.serialize_entry("detail", &self.detail)?;
        map.serialize_entry("events", &self.events)?;
        if !self.errors.is_empty() {
            map.serialize_entry("errors", &self.errors)?;
        }
        map.end()
    }
}

/// How an entry whose name is not UTF-8 is named in reports.
pub const UNNAMED: &str = "<non-UTF-8 name>";

impl StorageReport {
    /// A report without a reason or a file to blame.
    pub fn new(name: impl Into<String>, outcome: OutcomeKind, detail: impl Into<String>, events: u32) -> Self {
        Self { name: name.into(), outcome, reason: None, file: None, detail: detail.into(), events, errors: Vec::new() }
    }

    /// A report whose detail is `failure`'s message, naming its filesystem
    /// errors (a failed storage's, or a deletion's that was cut short).
    pub fn with_failure(name: impl Into<String>, outcome: OutcomeKind, failure: Failure, events: u32) -> Self {
        Self { errors: failure.errors, ..Self::new(name, outcome, failure.message, events) }
    }

    /// An entry left alone.
    pub fn skipped(name: impl Into<String>, reason: &SkipReason) -> Self {
        Self {
            reason: Some(reason.as_str().to_owned()),
            ..Self::new(name, OutcomeKind::Skipped, skip_detail(reason), 0)
        }
    }

    /// A storage moved to (or, in a dry run, bound for) `.quarantine/`.
    pub fn quarantined(name: impl Into<String>, info: &QuarantineInfo) -> Self {
        Self {
            reason: Some(info.reason.as_str().to_owned()),
            file: info.file.clone(),
            ..Self::new(name, OutcomeKind::Quarantined, quarantine_detail(info), 0)
        }
    }

    /// A storage without an installed timestamp.
    pub fn no_data(name: impl Into<String>, keep: bool) -> Self {
        let detail = if keep { "no installed timestamp; would be deleted" } else { "no installed timestamp; deleted" };
        Self::new(name, OutcomeKind::NoData, detail, 0)
    }
}

pub fn skip_detail(reason: &SkipReason) -> String {
    match reason {
        SkipReason::Excluded => "excluded".to_owned(),
        SkipReason::NotIncluded => "not included".to_owned(),
        SkipReason::TooYoung(age) => format!("too young ({age:.0}s old)"),
        SkipReason::NotADirectory => "not a plain directory; left alone".to_owned(),
        SkipReason::InvalidName => "not a valid runner name; left alone".to_owned(),
        SkipReason::Vanished => "gone before it was handled".to_owned(),
    }
}

/// `REASON: [FILE] DETAIL; moved to .quarantine/LOCATION`.
pub fn quarantine_detail(info: &QuarantineInfo) -> String {
    let place = if info.location.is_empty() {
        "would be quarantined".to_owned()
    } else {
        format!("moved to .quarantine/{}", info.location)
    };
    let file = info.file.as_deref().map(|f| format!(" {f}")).unwrap_or_default();
    format!("{}:{file} {}; {place}", info.reason.as_str(), info.detail)
}

/// A report's detail with what the lenient policy counted as missing put
/// in front of it: `counted as missing (lenient policy): FILE (REASON:
/// DETAIL); ...; DETAIL`.
pub fn with_dropped(detail: &str, dropped: &[crate::extract::Dropped]) -> String {
    if dropped.is_empty() {
        return detail.to_owned();
    }
    let files: Vec<String> = dropped
        .iter()
        .map(|d| format!("{} ({}: {})", d.file, d.corruption.reason.as_str(), d.corruption.detail))
        .collect();
    format!("counted as missing (lenient policy): {}; {detail}", files.join("; "))
}

/// An extracted storage whose events are written but that could not be
/// deleted, and was quarantined instead so it is not extracted twice.
pub fn undeletable_detail(info: &QuarantineInfo) -> String {
    format!("could not be deleted, so moved to .quarantine/{}: {}", info.location, info.detail)
}

/// Counts for a whole run. Bounded: reports are streamed, not kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub extracted: usize,
    pub no_data: usize,
    pub quarantined: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Lines written to the sink.
    pub lines_written: usize,
}

impl Summary {
    pub fn add(&mut self, report: &StorageReport) {
        *self.count_mut(report.outcome) += 1;
        self.lines_written += report.events as usize;
    }

    pub fn count(&self, kind: OutcomeKind) -> usize {
        match kind {
            OutcomeKind::Extracted => self.extracted,
            OutcomeKind::NoData => self.no_data,
            OutcomeKind::Quarantined => self.quarantined,
            OutcomeKind::Skipped => self.skipped,
            OutcomeKind::Failed => self.failed,
        }
    }

    fn count_mut(&mut self, kind: OutcomeKind) -> &mut usize {
        match kind {
            OutcomeKind::Extracted => &mut self.extracted,
            OutcomeKind::NoData => &mut self.no_data,
            OutcomeKind::Quarantined => &mut self.quarantined,
            OutcomeKind::Skipped => &mut self.skipped,
            OutcomeKind::Failed => &mut self.failed,
        }
    }

    /// Storages that reached an outcome.
    pub fn total(&self) -> usize {
        OutcomeKind::ALL.iter().map(|&k| self.count(k)).sum()
    }
}

/// The longest message or detail a report keeps from the guest.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Cuts a message to [`MAX_MESSAGE_BYTES`], on a char boundary, saying
/// how much was cut: guest words are bounded before any host keeps them.
pub fn bounded(message: &str) -> String {
    match cut_at(message) {
        None => message.to_owned(),
        Some(end) => cut(message, end),
    }
}

/// [`bounded`] in place, for a message already owned (no copy when it is
/// short enough, the usual case). Says whether it cut.
pub fn bound(message: &mut String) -> bool {
    let Some(end) = cut_at(message) else { return false };
    *message = cut(message, end);
    true
}

/// Where a message longer than [`MAX_MESSAGE_BYTES`] is cut.
fn cut_at(message: &str) -> Option<usize> {
    if message.len() <= MAX_MESSAGE_BYTES {
        return None;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Some(end)
}

fn cut(message: &str, end: usize) -> String {
    format!("{}... ({} bytes cut)", &message[..end], message.len() - end)
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn bounded_cuts_long_messages_on_char_boundaries() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = bounded(&long);
        assert!(cut.len() < long.len() && cut.len() <= MAX_MESSAGE_BYTES + 32);
        assert!(cut.ends_with("bytes cut)"));
        assert_eq!(bounded("short"), "short");
        let mut owned = long.clone();
        assert!(bound(&mut owned), "cut");
        assert_eq!(owned, cut);
        let mut short = "short".to_owned();
        assert!(!bound(&mut short), "not cut");
        assert_eq!(short, "short");
    }
}
