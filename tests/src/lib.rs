//! Shared fixtures of the end-to-end suite.
//!
//! Everything here works on real files in real temporary directories and on
//! the real guest component loaded through the host library: nothing is
//! mocked except, where a test says so, the event sink.
//!
//! One module per purpose, all re-exported here:
//!
//! * `runner_metrics_fixtures` (crate `tests/fixtures`, shared with the
//!   core's own tests), re-exported: the runner files and spec 6's fixture
//!   F, [`StorageRoot`] (a storage root on disk), [`snapshot`] (a whole
//!   tree recorded), [`deep_chain`], [`within`].
//! * `runs`: [`plugin`] opens the [`Plugin`] once per test binary, with a
//!   machine-code cache under the target directory (never the user's home
//!   cache); [`run`] is `collect` with a [`MemorySink`], gathering every
//!   report.
//! * `binaries`: [`cli_binary`] finds (building it if needed) the
//!   `runner-metrics` executable for the CLI tests, and the test-only ones.
//! * `privileges`: root, and tests rerun as an unprivileged user.
//! * `threats`: the threat suite's deadlines, neighbours and invariants.
//! * [`github_server`] answers list-jobs requests on 127.0.0.1, as GitHub
//!   would, for the job-metrics tests; [`schema`] validates event lines.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

pub use runner_metrics;

/// A local stand-in for the GitHub REST API (HTTP on 127.0.0.1).
pub mod github_server;
/// A validator for `docs/schema/event-line.schema.json`.
pub mod schema;
use runner_metrics::{
    collect, CollectOptions, EventSink, JobMetricsSource, MemorySink, OutcomeKind, Plugin, PluginOptions,
    StorageReport, Summary,
};

mod binaries;
mod privileges;
mod runs;
mod threats;

pub use binaries::*;
pub use privileges::*;
pub use runner_metrics_fixtures::*;
pub use runs::*;
pub use threats::*;
