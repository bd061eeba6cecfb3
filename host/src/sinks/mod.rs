//! The bottom floor, beside `storage`: where a run's lines and counts go.
//! [`log`] appends lines durably (the metrics log, or stdout);
//! [`prometheus`] writes a node_exporter textfile from the lines written;
//! [`summary`] is what a run reports per storage and in all.
//! Uses nothing of the floors above.

pub mod log;
pub mod prometheus;
pub mod summary;
