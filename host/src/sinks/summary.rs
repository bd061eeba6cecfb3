//! What a run did: one report per storage, and counts per outcome. The
//! guest's own types (`runner_metrics_core::report`), so that the words
//! of a report are written once for every host.

pub use runner_metrics_core::report::{OutcomeKind, StorageReport, Summary};
