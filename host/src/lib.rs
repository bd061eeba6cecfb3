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
//!     &mut |report| eprintln!("{}: {} ({})", report.name, report.kind.as_str(), report.detail),
//! )?;
//! println!("{} storages extracted", summary.extracted);
//! # Ok(()) }
//! ```
//!
//! Layout: [`plugin`] loads the component once; [`sandbox`] is one guest
//! instance with its limits; [`collect`](mod@collect) is the pipeline;
//! [`check`] re-validates what the guest returns; [`log`] writes lines
//! durably; [`guest_api`] is what the pipeline asks of a guest;
//! [`github`] finds job metrics on the GitHub API; [`prometheus`] writes a
//! node_exporter textfile from the lines written; [`lock`] keeps runs over
//! one storage root apart.

pub mod bindings;
pub mod check;
pub mod collect;
pub mod github;
pub mod guest_api;
pub mod hooks;
pub mod limits;
pub mod lock;
pub mod log;
pub mod metrics_json;
#[cfg(feature = "native-guest")]
pub mod native;
pub mod plugin;
pub mod prometheus;
pub mod quarantine;
pub mod sandbox;
pub mod storage;
pub mod summary;

pub use bindings::{GithubJobMetrics, JobConclusion, RunnerMetrics, Selection};
pub use collect::{
    collect, collect_holding, collect_with, empty_selection, CollectOptions, Emit, JobMetricsSource, NoJobMetrics,
};
pub use github::{GithubJobs, GithubOptions};
pub use guest_api::{CallResult, GuestApi, GuestFactory, GuestFailure};
pub use limits::Limits;
pub use lock::{LockError, RootLock};
pub use log::{EventSink, MemorySink, MetricsLog, StdoutSink};
pub use plugin::{Plugin, PluginOptions};
pub use summary::{OutcomeKind, StorageReport, Summary};
