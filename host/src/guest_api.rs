//! What the collect pipeline asks of a guest, as two small traits.
//!
//! The pipeline ([`collect`](mod@crate::collect)) is written against these
//! rather than against [`Sandbox`] so that exactly the same loop (batching,
//! re-validation in [`check`](crate::check), trap handling, durable writes,
//! deletion order) can drive two guests:
//!
//! - [`Sandbox`]: the product path, the WebAssembly component in wasmtime;
//! - `NativeGuest` (feature `native-guest`, [`crate::native`]): the same
//!   guest logic compiled natively, with no sandbox. It exists to measure
//!   what the sandbox costs on top of our own code, and is never used by the
//!   `runner-metrics` binary.

use std::fmt;
use std::path::Path;

use anyhow::Result;

use crate::bindings::{
    Event, GithubJobMetrics, Outcome, QuarantineInfo, QuarantineReason, RootEntry, RunnerMetrics, Selection,
};

/// A guest call that did not return: a trap (panic, deadline, memory) or a
/// host-side failure. `detail` includes what the guest printed on stderr.
#[derive(Debug, Clone)]
pub struct GuestFailure {
    pub detail: String,
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for GuestFailure {}

/// The result of one guest call: `Err` when the call itself failed (the
/// guest is then poisoned and must be dropped), else the guest's answer.
pub type CallResult<T> = std::result::Result<T, GuestFailure>;

/// The calls the collect pipeline makes, one per WIT export it uses. Every
/// answer is untrusted: the pipeline re-checks it.
pub trait GuestApi {
    /// A handle on a scan in progress (a WIT resource in the component).
    type Scan: Copy;

    /// Starts listing the storage root with a selection.
    fn start_scan(&mut self, selection: &Selection) -> CallResult<Self::Scan>;
    /// Up to `max` more root entries; empty when the listing is over.
    fn next_batch(&mut self, scan: Self::Scan, max: u32) -> CallResult<std::result::Result<Vec<RootEntry>, String>>;
    /// Decides one storage (and quarantines or deletes it, unless `keep`).
    fn extract_storage(&mut self, name: &str, keep: bool) -> CallResult<Outcome>;
    /// Deletes a storage whose events are durable.
    fn delete_storage(&mut self, name: &str) -> CallResult<std::result::Result<Option<QuarantineInfo>, String>>;
    /// Finishes deletions a crash cut short.
    fn purge_deleting(&mut self) -> CallResult<std::result::Result<u32, String>>;
    /// Quarantines a storage the guest could not handle.
    fn quarantine_storage(
        &mut self,
        name: &str,
        reason: QuarantineReason,
        detail: &str,
    ) -> CallResult<std::result::Result<QuarantineInfo, String>>;
    /// The lifecycle events of one runner's metrics (spec 5).
    fn issue_events(
        &mut self,
        metrics: &RunnerMetrics,
        flavor: &str,
        job: Option<GithubJobMetrics>,
    ) -> CallResult<Vec<Event>>;
    /// One event as its JSON line (without the newline).
    fn render_event(&mut self, event: &Event) -> CallResult<String>;
}

/// Makes fresh guests that see one storage root. The pipeline asks for a
/// new one after any trap or lie: a poisoned guest is never reused.
pub trait GuestFactory {
    type Guest: GuestApi;

    fn guest(&self, storage_root: &Path) -> Result<Self::Guest>;
}
