//! The top floor: one run over one storage root. [`collect`](mod@collect)
//! lends a run to the guest's pipeline and recovers from traps, with its
//! [`collect_options`]; [`ingest`](mod@ingest) hands it a pulled runner;
//! [`github`] looks job metrics up; `native` (feature `native-guest`)
//! is the benchmark's contender without a sandbox;
//! [`quarantine`] lists `.quarantine/` through the guest; [`hooks`] are
//! the runner's job hooks the CLI installs.

pub mod collect;
pub mod collect_options;
pub mod github;
pub mod hooks;
pub mod ingest;
#[cfg(feature = "native-guest")]
pub mod native;
pub mod quarantine;
