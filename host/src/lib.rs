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
//! instance with its limits; [`collect`](mod@collect) lends a run to the
//! guest's pipeline and recovers from traps; the imports the guest calls
//! pass everything it hands over to the run's [`keeper`], a component of
//! its own that re-checks it; [`log`] writes lines durably;
//! [`github`] finds job metrics on the GitHub API; [`prometheus`] writes a
//! node_exporter textfile from the lines written; [`lock`] keeps runs over
//! one storage root apart.

pub mod bindings;
pub mod collect;
pub mod collect_options;
pub mod confined_fs;
pub mod github;
pub mod hooks;
mod imports;
pub mod ingest;
pub mod keeper;
pub mod limits;
pub mod lock;
pub mod log;
#[cfg(feature = "native-guest")]
pub mod native;
pub mod os_sandbox;
pub mod plugin;
pub mod prometheus;
pub mod quarantine;
pub mod sandbox;
pub mod storage;
pub mod summary;

pub use bindings::{GithubJobMetrics, JobConclusion, RunnerMetrics, Selection};
pub use collect::{collect, collect_holding, empty_selection, CollectOptions, Emit, JobMetricsSource, NoJobMetrics};
pub use github::{GithubJobs, GithubOptions};
pub use ingest::{ingest, LooseFiles, Policy, PulledFiles, PulledRunner};
pub use limits::Limits;
pub use lock::{LockError, RootLock};
pub use log::{EventSink, MemorySink, MetricsLog, StdoutSink};
pub use plugin::{Plugin, PluginOptions};
pub use sandbox::{CallResult, GuestFailure};
pub use summary::{OutcomeKind, StorageReport, Summary};
