//! runner-metrics: extract GitHub self-hosted runner metrics inside a
//! WebAssembly sandbox and append lifecycle events to a JSON-lines log.
//!
//! ```no_run
//! use runner_metrics::{collect, CollectOptions, MetricsLog, NoJobMetrics, Plugin, PluginOptions};
//!
//! # fn main() -> anyhow::Result<()> {
//! let plugin = Plugin::open(&PluginOptions::with_default_cache())?;
//! let mut log = MetricsLog::open("/var/log/github-runner-metrics.log".as_ref())?;
//! let summary = collect(
//!     &plugin,
//!     "/home/ubuntu/runner-fs".as_ref(),
//!     &CollectOptions::events("small"),
//!     &mut NoJobMetrics,
//!     &mut log,
//!     &mut |report| eprintln!("{}: {} ({})", report.name, report.outcome.as_str(), report.detail),
//! )?;
//! println!("{} storages extracted", summary.extracted);
//! # Ok(()) }
//! ```
//!
//! Layout, in floors, each using only those beneath it:
//!
//! - [`sinks`] (the metrics log, the Prometheus textfile) and [`storage`]
//!   (storages, bounded ones and their mounts, the root's lock);
//! - [`engine`]: the WebAssembly runtime (plugin, instance, imports,
//!   keeper, limits, confined filesystem, bindings);
//! - [`run`]: one collect or ingest over one root, and its job lookups.
//!
//! [`os_sandbox`], the second wall, confines the process around a run.
//! The modules are also named at the crate root (`runner_metrics::collect`,
//! `runner_metrics::log`...), the paths embedders use.

pub mod engine;
pub mod os_sandbox;
pub mod run;
pub mod sinks;
pub mod storage;

pub(crate) use engine::imports;
pub use engine::{bindings, confined_fs, instance, keeper, limits, plugin};
#[cfg(feature = "native-guest")]
pub use run::native;
pub use run::{collect, collect_options, github, hooks, ingest, quarantine};
pub use sinks::{log, prometheus, summary};
pub use storage::lock;

pub use bindings::{GithubJobMetrics, JobConclusion, RunnerMetrics, Selection};
pub use collect::{
    collect, collect_holding, empty_selection, CollectOptions, Emit, JobMetricsSource, NoJobMetrics, Stopped,
};
pub use github::{GithubJobs, GithubOptions};
pub use ingest::{ingest, LooseFiles, Policy, PulledFiles, PulledRunner};
pub use instance::{CallResult, GuestFailure};
pub use limits::Limits;
pub use lock::{LockError, RootLock};
pub use log::{EventSink, MemorySink, MetricsLog, StdoutSink};
pub use plugin::{Plugin, PluginOptions};
pub use summary::{OutcomeKind, StorageReport, Summary};
