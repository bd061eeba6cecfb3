//! The runner-metrics guest: everything that touches untrusted runner data.
//!
//! Plain Rust modules hold the logic so it compiles, is tested and is
//! benchmarked natively; `component` is a thin `wit-bindgen` layer on top that
//! exists only on `wasm32`.

pub mod events;
pub mod extract;
pub mod fs;
#[cfg(feature = "hostile")]
pub mod hostile;
pub mod json;
pub mod model;
pub mod names;
pub mod parse;
pub mod pipeline;
pub mod pulled;
pub mod quarantine;
pub mod render;
pub mod report;
pub mod tar;
pub mod walk;

#[cfg(all(target_arch = "wasm32", feature = "component", feature = "command"))]
mod cli_run;
#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

/// A metrics or timestamp file larger than this is corrupt (spec 2).
pub const FILE_SIZE_BYTES_LIMIT: usize = 1024;

/// The file names a runner storage may hold (spec 2).
pub mod files {
    pub const INSTALLATION_START: &str = "runner-installation-start.timestamp";
    pub const INSTALLED: &str = "runner-installed.timestamp";
    pub const PRE_JOB: &str = "pre-job-metrics.json";
    pub const POST_JOB: &str = "post-job-metrics.json";
    /// All four, in the order they are checked.
    pub const ALL: [&str; 4] = [INSTALLATION_START, INSTALLED, PRE_JOB, POST_JOB];
}
