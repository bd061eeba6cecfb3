//! The component's exports: a thin layer from the WIT bindings to the plain
//! Rust modules. Conversions only; no logic lives here.
//!
//! One crate, two worlds of `wit/0.3.0`: the plugin (default: the whole
//! collect, driving the imported `host` interface) and, with the feature
//! `command`, the command component for `wasmtime run` (`cli_run.rs`). Both
//! export the fine-grained `extraction` and `events` interfaces.

use std::cell::RefCell;

use crate::fs::WasiFs;
use crate::{events, extract, model, render};

#[cfg(not(feature = "command"))]
wit_bindgen::generate!({
    path: "../wit/0.3.0",
    world: "plugin",
    with: { "github-runner:metrics/types@0.3.0": crate::wit::generated::github_runner::metrics::types },
});

#[cfg(feature = "command")]
wit_bindgen::generate!({
    path: "../wit/0.3.0",
    world: "command",
    with: { "github-runner:metrics/types@0.3.0": crate::wit::generated::github_runner::metrics::types },
});

use crate::wit::{self, *};
use exports::github_runner::metrics::extraction::{self, GuestScan};

struct Component;

export!(Component);

/// The `scan` resource: a streaming pass over the storage root.
pub struct ScanResource {
    inner: RefCell<Result<extract::Scan<WasiFs>, String>>,
}

impl GuestScan for ScanResource {
    fn new(selection: wit::Selection) -> Self {
        let inner =
            WasiFs::open().and_then(|fs| extract::Scan::new(fs, selection_from_wit(selection))).map_err(|e| e.message);
        Self { inner: RefCell::new(inner) }
    }

    fn next_batch(&self, max: u32) -> Result<Vec<wit::RootEntry>, String> {
        let mut inner = self.inner.borrow_mut();
        let scan = inner.as_mut().map_err(|e| e.clone())?;
        let batch = scan.next_batch(max as usize).map_err(|e| e.message)?;
        Ok(batch
            .into_iter()
            .map(|entry| wit::RootEntry { name: entry.name, skipped: entry.skipped.map(skip_to_wit) })
            .collect())
    }
}

impl extraction::Guest for Component {
    type Scan = ScanResource;

    fn extract_storage(runner_name: String, keep: bool) -> wit::Outcome {
        match WasiFs::open() {
            Ok(fs) => outcome_to_wit(extract::extract_storage(&fs, &runner_name, keep)),
            Err(e) => wit::Outcome::Failed(e.message),
        }
    }

    fn delete_storage(runner_name: String) -> Result<Option<wit::QuarantineInfo>, String> {
        let fs = WasiFs::open().map_err(|e| e.message)?;
        extract::delete_storage(&fs, &runner_name).map(|q| q.map(quarantine_to_wit))
    }

    fn purge_deleting() -> Result<u32, String> {
        let fs = WasiFs::open().map_err(|e| e.message)?;
        extract::purge_deleting(&fs)
    }

    fn quarantine_storage(
        runner_name: String,
        reason: wit::QuarantineReason,
        detail: String,
    ) -> Result<wit::QuarantineInfo, String> {
        let fs = WasiFs::open().map_err(|e| e.message)?;
        extract::quarantine_storage(&fs, &runner_name, reason_from_wit(reason), None, &detail).map(quarantine_to_wit)
    }

    fn list_quarantine() -> Result<Vec<wit::QuarantinedStorage>, String> {
        let fs = WasiFs::open().map_err(|e| e.message)?;
        Ok(extract::list_quarantine(&fs)?
            .into_iter()
            .map(|q| wit::QuarantinedStorage {
                location: q.location,
                runner_name: q.runner_name,
                reason: reason_to_wit(q.reason),
                file: q.file,
                detail: q.detail,
                quarantined_at: q.quarantined_at,
            })
            .collect())
    }
}

impl exports::github_runner::metrics::events::Guest for Component {
    fn issue_events(
        metrics: wit::RunnerMetrics,
        flavor: String,
        job_metrics: Option<wit::GithubJobMetrics>,
    ) -> Vec<wit::Event> {
        let job = job_metrics.map(job_from_wit);
        events::issue_events(&metrics_from_wit(metrics), &flavor, job.as_ref()).into_iter().map(event_to_wit).collect()
    }

    fn render_event(event: wit::Event) -> String {
        render::render_event(&event_from_wit(event))
    }
}

/// The plugin's whole collect, over WASI and the imported `host`.
#[cfg(not(feature = "command"))]
mod plugin {
    use super::*;
    use crate::pipeline;
    use crate::report::StorageReport;
    use github_runner::metrics::host;

    impl exports::github_runner::metrics::collector::Guest for Component {
        fn collect(options: wit::CollectOptions) -> Result<(), String> {
            let fs = WasiFs::open().map_err(|e| e.message)?;
            let options = options_from_wit(options);
            #[cfg(not(feature = "hostile"))]
            let mut conduct = pipeline::Honest;
            #[cfg(feature = "hostile")]
            let mut conduct = crate::hostile::Hostile::new(&options.selection);
            pipeline::collect_with(&fs, &options, &mut ImportedHost, &mut conduct)
        }

        fn recover(x: wit::Interrupted) -> Result<(), String> {
            let fs = WasiFs::open().map_err(|e| e.message)?;
            let x = pipeline::Interrupted {
                appended: x.appended.into_iter().map(|a| (a.name, a.lines as usize)).collect(),
                blamed: x.blamed,
                cause: x.cause,
                lied: x.lied,
                trapped_again: x.trapped_again,
                keep: x.keep,
            };
            pipeline::recover(&fs, &x, &mut ImportedHost)
        }
    }

    /// The pipeline's host: the component's imports.
    struct ImportedHost;

    impl pipeline::Host for ImportedHost {
        fn begin_storage(&mut self, name: &str) {
            host::begin_storage(name)
        }

        fn end_storage(&mut self) {
            host::end_storage()
        }

        fn job_metrics(&mut self, metrics: &model::RunnerMetrics) -> Option<model::GithubJobMetrics> {
            host::job_metrics(&metrics_to_wit(metrics.clone())).map(job_from_wit)
        }

        fn append(&mut self, batch: Vec<pipeline::StorageLines>) -> Result<(), String> {
            let batch: Vec<wit::StorageLines> = batch.into_iter().map(lines_to_wit).collect();
            host::append(&batch)
        }

        fn report(&mut self, report: StorageReport) {
            host::report(&report_to_wit(report))
        }
    }

    fn options_from_wit(o: wit::CollectOptions) -> pipeline::CollectOptions {
        pipeline::CollectOptions {
            selection: selection_from_wit(o.selection),
            emit: match o.emit {
                wit::Emit::Events(flavor) => pipeline::Emit::Events { flavor },
                wit::Emit::Metrics => pipeline::Emit::Metrics,
            },
            keep: o.keep,
            batch_size: o.batch_size as usize,
            purge_deleting: o.purge_deleting,
            done: o.done.into_iter().collect(),
            done_unnamed: o.done_unnamed as usize,
            policy: policy_from_wit(o.policy),
            pulled: o.pulled.map(pulled_from_wit),
        }
    }

    fn lines_to_wit(s: pipeline::StorageLines) -> wit::StorageLines {
        let source = match s.source {
            pipeline::Rendered::Events(events) => wit::Rendered::Events(events.into_iter().map(event_to_wit).collect()),
            pipeline::Rendered::Metrics(m) => wit::Rendered::Metrics(metrics_to_wit(m)),
        };
        wit::StorageLines { runner_name: s.runner_name, source, lines: s.lines }
    }

    fn report_to_wit(r: StorageReport) -> wit::StorageReport {
        use crate::report::OutcomeKind as K;
        wit::StorageReport {
            name: r.name,
            outcome: match r.kind {
                K::Extracted => wit::OutcomeKind::Extracted,
                K::NoData => wit::OutcomeKind::NoData,
                K::Quarantined => wit::OutcomeKind::Quarantined,
                K::Skipped => wit::OutcomeKind::Skipped,
                K::Failed => wit::OutcomeKind::Failed,
            },
            reason: r.reason,
            file: r.file,
            detail: r.detail,
            events: u32::try_from(r.events).unwrap_or(u32::MAX),
        }
    }
}
