//! What a run did: one report per storage, and counts per outcome.

use serde::Serialize;

/// The five outcomes of spec section 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeKind {
    Extracted,
    NoData,
    Quarantined,
    Skipped,
    Failed,
}

impl OutcomeKind {
    pub const ALL: [OutcomeKind; 5] = [Self::Extracted, Self::NoData, Self::Quarantined, Self::Skipped, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Extracted => "extracted",
            Self::NoData => "no-data",
            Self::Quarantined => "quarantined",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }
}

/// What happened to one root entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageReport {
    /// The entry's name (`<non-UTF-8 name>` when it has none).
    pub name: String,
    #[serde(rename = "outcome")]
    pub kind: OutcomeKind,
    /// Why, and what was done (deleted, moved where, kept).
    pub detail: String,
    /// Lines written for this storage.
    pub events: usize,
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
        *self.count_mut(report.kind) += 1;
        if report.kind == OutcomeKind::Extracted || report.events > 0 {
            self.lines_written += report.events;
        }
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
