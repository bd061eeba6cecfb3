//! The component's exports: a thin layer from the WIT bindings to the plain
//! Rust modules, which speak the same generated types (`model.rs`). No
//! logic and no conversions live here.
//!
//! One crate, two worlds of `wit/0.4.0`: the plugin (default: what hosts
//! call, the whole collect driving the imported `host` interface) and,
//! with the feature `command`, the command component for `wasmtime run`
//! (`cli_run.rs`), which exports the fine-grained `extraction` and
//! `events` interfaces for `--invoke`. With the feature `fast-fs`, the
//! plugin is built for `plugin-fast` (`wit/confined-fs`): the same plugin,
//! reading a storage's files through the Rust host's `storage-files`, and
//! not asking for job metrics when its host says it has none to give.

use crate::fs::WasiFs;
use crate::model::*;
use crate::quarantine;

#[cfg(not(any(feature = "command", feature = "fast-fs")))]
wit_bindgen::generate!({
    path: "../wit/0.4.0",
    world: "plugin",
    with: { "github-runner:metrics/types@0.4.0": crate::model::generated::github_runner::metrics::types },
});

// The fast build, which only the Rust host runs: the plugin world plus the
// host's `storage-files` (`wit/confined-fs`), which takes WASI's own
// descriptors, and `looks-up-job-metrics`.
#[cfg(all(feature = "fast-fs", not(feature = "command")))]
wit_bindgen::generate!({
    path: ["../wit/0.4.0", "../wit/confined-fs"],
    world: "runner-metrics:confined-fs/plugin-fast",
    with: {
        "github-runner:metrics/types@0.4.0": crate::model::generated::github_runner::metrics::types,
        "wasi:filesystem/types@0.2.12": wasi::filesystem::types,
        "wasi:io/streams@0.2.12": wasi::io::streams,
        "wasi:io/error@0.2.12": wasi::io::error,
        "wasi:io/poll@0.2.12": wasi::io::poll,
        "wasi:clocks/wall-clock@0.2.12": wasi::clocks::wall_clock,
    },
    // The `plugin` world's own interfaces, as its build generates them.
    generate_all,
});

#[cfg(all(feature = "fast-fs", feature = "command"))]
compile_error!("the features `fast-fs` and `command` build different components: choose one");

#[cfg(feature = "command")]
wit_bindgen::generate!({
    path: "../wit/0.4.0",
    world: "command",
    with: { "github-runner:metrics/types@0.4.0": crate::model::generated::github_runner::metrics::types },
});

struct Component;

export!(Component);

/// The storage root every export works on: WASI's, seen through the
/// hostile double's filesystem in the test-only hostile build.
#[cfg(not(feature = "hostile"))]
type RootFs = WasiFs;
#[cfg(feature = "hostile")]
type RootFs = crate::hostile::HostileFs<WasiFs>;

// The identity conversion in the shipped build.
#[allow(clippy::useless_conversion)]
fn open_root() -> Result<RootFs, Failure> {
    WasiFs::open().map(Into::into).map_err(Failure::from)
}

/// The fine-grained calls of the command component, for `--invoke`.
#[cfg(feature = "command")]
mod fine_grained {
    use std::cell::RefCell;

    use super::*;
    use crate::{events, extract, render};
    use exports::github_runner::metrics::extraction::{self, GuestScan};

    /// The `scan` resource: a streaming pass over the storage root.
    pub struct ScanResource {
        inner: RefCell<Result<extract::Scan<RootFs>, Failure>>,
    }

    impl GuestScan for ScanResource {
        fn new(selection: Selection) -> Self {
            let inner = open_root().and_then(|fs| extract::Scan::new(fs, selection).map_err(Failure::from));
            Self { inner: RefCell::new(inner) }
        }

        fn next_batch(&self, max: u32) -> Result<Vec<RootEntry>, Failure> {
            let mut inner = self.inner.borrow_mut();
            let scan = inner.as_mut().map_err(|e| e.clone())?;
            scan.next_batch(max as usize).map_err(Failure::from)
        }
    }

    impl extraction::Guest for Component {
        type Scan = ScanResource;

        fn extract_storage(runner_name: String, dry_run: bool) -> Outcome {
            match open_root() {
                Ok(fs) => extract::extract_storage(&fs, &runner_name, dry_run),
                Err(e) => Outcome::Failed(e),
            }
        }

        fn delete_storage(runner_name: String) -> Result<Option<QuarantineInfo>, Failure> {
            extract::delete_storage(&open_root()?, &runner_name)
        }

        fn purge_deleting() -> Result<u32, Failure> {
            extract::purge_deleting(&open_root()?)
        }

        fn quarantine_storage(
            runner_name: String,
            reason: QuarantineReason,
            detail: String,
        ) -> Result<QuarantineInfo, Failure> {
            quarantine::quarantine_storage(&open_root()?, &runner_name, reason, None, &detail)
        }

        fn list_quarantine() -> Result<Vec<QuarantinedStorage>, Failure> {
            quarantine::list_quarantine(&open_root()?)
        }
    }

    impl exports::github_runner::metrics::events::Guest for Component {
        fn issue_events(metrics: RunnerMetrics, flavor: String, job_metrics: Option<GithubJobMetrics>) -> Vec<Event> {
            events::issue_events(metrics, &flavor, job_metrics.as_ref())
        }

        fn render_event(event: Event) -> String {
            render::render_event(&event)
        }
    }
}

/// The plugin's whole collect, over WASI and the imported `host`.
#[cfg(not(feature = "command"))]
mod plugin {
    use super::*;
    use crate::pipeline;
    use github_runner::metrics::host;

    impl exports::github_runner::metrics::collector::Guest for Component {
        fn collect(options: CollectOptions, pulled: Option<PulledMetrics>) -> Result<(), Failure> {
            // The identity conversion in the shipped build.
            #[allow(clippy::useless_conversion)]
            let fs: RootFs = WasiFs::open()?.with_nonblocking_opens(options.nonblocking_opens).into();
            #[cfg(not(feature = "hostile"))]
            let mut conduct = pipeline::Honest;
            #[cfg(feature = "hostile")]
            let mut conduct = crate::hostile::Hostile::new(&options.selection);
            pipeline::collect_with(&fs, &options, pulled.as_ref(), &mut ImportedHost::new(), &mut conduct)
        }

        fn recover(interrupted: Interrupted) -> Result<(), Failure> {
            pipeline::recover(&open_root()?, &interrupted, &mut ImportedHost::new())
        }

        fn list_quarantine() -> Result<Vec<QuarantinedStorage>, Failure> {
            quarantine::list_quarantine(&open_root()?)
        }
    }

    /// The pipeline's host: the component's imports.
    struct ImportedHost {
        /// Whether `job-metrics` can answer anything; the fast build asks
        /// its host once (`wit/confined-fs`), the WASI build always asks.
        looks_up_job_metrics: bool,
    }

    impl ImportedHost {
        fn new() -> Self {
            #[cfg(feature = "fast-fs")]
            let looks_up_job_metrics = super::looks_up_job_metrics();
            #[cfg(not(feature = "fast-fs"))]
            let looks_up_job_metrics = true;
            Self { looks_up_job_metrics }
        }
    }

    impl pipeline::Host for ImportedHost {
        fn begin_storage(&mut self, name: &str) {
            host::begin_storage(name)
        }

        fn end_storage(&mut self) {
            host::end_storage()
        }

        fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Option<GithubJobMetrics> {
            // `None` is what a host with nothing to look up would answer.
            if !self.looks_up_job_metrics {
                return None;
            }
            host::job_metrics(metrics)
        }

        fn append(&mut self, batch: Vec<StorageOutput>) -> Result<(), String> {
            host::append(&batch)
        }

        fn report(&mut self, report: StorageReport) {
            host::report(&report)
        }
    }
}
