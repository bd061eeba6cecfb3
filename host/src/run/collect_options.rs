//! What a collect run is asked to do, and where it finds job metrics.

use std::time::Duration;

use crate::bindings::{self as wit, Policy, Selection};

/// What to write for each extracted storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emit {
    /// The lifecycle events of spec 5, for runners of this flavor.
    Events { flavor: String },
    /// The extracted `RunnerMetrics` as one JSON line each.
    Metrics,
}

/// How one collect run behaves.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    pub selection: Selection,
    pub emit: Emit,
    /// A dry run: nothing on disk changes (no quarantine, no deletion, no
    /// lock); the reports say what would happen.
    pub dry_run: bool,
    /// Extracted storages whose lines are written (and synced) together
    /// before they are deleted. Bigger batches mean fewer syncs.
    pub batch_size: usize,
    /// How long [`collect`] waits for another run on the same root to
    /// release the root's lock (spec 7); zero gives up at once with
    /// [`LockError::Busy`](crate::lock::LockError::Busy). Not used by
    /// [`collect_holding`], nor in a dry run.
    pub lock_wait: Duration,
    /// What a corrupt metrics file does to its runner: [`Policy::Strict`]
    /// quarantines the runner whole; [`Policy::Lenient`] counts the file as
    /// missing, issues the rest and says so in the report (spec 9).
    pub policy: Policy,
    /// How long an ingest remembers a runner it ingested (the ledger of
    /// `<dir>/.ingested/`, [`crate::ingest::ledger`]), so that the same
    /// runner ingested again in that time logs nothing; zero turns the
    /// ledger off. Not used by collect.
    pub remember_ingested: Duration,
}

impl CollectOptions {
    /// The batch size the guest is asked for and the host holds it to: at
    /// least 1, at most what the WIT's `u32` carries.
    pub(crate) fn batch(&self) -> usize {
        self.batch_size.clamp(1, u32::MAX as usize)
    }

    /// What the guest's `collect` is asked, for a fresh run.
    pub(crate) fn to_wit(&self) -> wit::CollectOptions {
        wit::CollectOptions {
            selection: self.selection.clone(),
            emit: match &self.emit {
                Emit::Events { flavor } => wit::Emit::Events(flavor.clone()),
                Emit::Metrics => wit::Emit::Metrics,
            },
            dry_run: self.dry_run,
            batch_size: u32::try_from(self.batch()).unwrap_or(u32::MAX),
            purge_deleting: !self.dry_run,
            done: Vec::new(),
            done_unnamed: 0,
            policy: self.policy,
            nonblocking_opens: false,
            pulled: None,
        }
    }

    pub fn events(flavor: impl Into<String>) -> Self {
        let emit = Emit::Events { flavor: flavor.into() };
        Self {
            selection: empty_selection(),
            emit,
            dry_run: false,
            batch_size: 64,
            lock_wait: Duration::ZERO,
            policy: Policy::Strict,
            remember_ingested: DEFAULT_RETENTION,
        }
    }
}

/// A selection that takes every storage.
pub fn empty_selection() -> Selection {
    Selection { exclude: Vec::new(), include: None, min_age_seconds: None }
}

pub use crate::engine::jobs::{JobMetricsSource, LookupCounts, NoJobMetrics};

/// How long `ingest` remembers a runner it ingested unless the caller says
/// (`ingest::ledger`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
