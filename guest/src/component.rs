//! The component's exports: a thin layer from the WIT bindings to the plain
//! Rust modules. Conversions only; no logic lives here.
//!
//! One crate, two worlds of `wit/0.2.0`: the plugin (default: the whole
//! collect, driving the imported `host` interface) and, with the feature
//! `command`, the command component for `wasmtime run` (`cli_run.rs`). Both
//! export the fine-grained `extraction` and `events` interfaces.

use std::cell::RefCell;

use crate::fs::WasiFs;
use crate::{events, extract, model, render};

#[cfg(not(feature = "command"))]
wit_bindgen::generate!({
    path: "../wit/0.2.0",
    world: "plugin",
});

#[cfg(feature = "command")]
wit_bindgen::generate!({
    path: "../wit/0.2.0",
    world: "command",
});

use exports::github_runner::metrics::extraction::{self, GuestScan};
use github_runner::metrics::types as wit;

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
            pipeline::collect(&fs, &options_from_wit(options), &mut ImportedHost)
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

fn selection_from_wit(selection: wit::Selection) -> model::Selection {
    model::Selection {
        exclude: selection.exclude,
        include: selection.include,
        min_age_seconds: selection.min_age_seconds,
    }
}

fn job_from_wit(job: wit::GithubJobMetrics) -> model::GithubJobMetrics {
    model::GithubJobMetrics { queue_duration: job.queue_duration, conclusion: job.conclusion.map(conclusion_from_wit) }
}

fn skip_to_wit(reason: model::SkipReason) -> wit::SkipReason {
    match reason {
        model::SkipReason::Excluded => wit::SkipReason::Excluded,
        model::SkipReason::NotIncluded => wit::SkipReason::NotIncluded,
        model::SkipReason::TooYoung(age) => wit::SkipReason::TooYoung(age),
        model::SkipReason::NotADirectory => wit::SkipReason::NotADirectory,
        model::SkipReason::InvalidName => wit::SkipReason::InvalidName,
        model::SkipReason::Vanished => wit::SkipReason::Vanished,
    }
}

fn reason_to_wit(reason: model::QuarantineReason) -> wit::QuarantineReason {
    use model::QuarantineReason as M;
    use wit::QuarantineReason as W;
    match reason {
        M::Oversized => W::Oversized,
        M::NotRegularFile => W::NotRegularFile,
        M::InvalidUtf8 => W::InvalidUtf8,
        M::InvalidJson => W::InvalidJson,
        M::InvalidValue => W::InvalidValue,
        M::InvalidTimestamp => W::InvalidTimestamp,
        M::SandboxTrap => W::SandboxTrap,
        M::Undeletable => W::Undeletable,
    }
}

fn reason_from_wit(reason: wit::QuarantineReason) -> model::QuarantineReason {
    use model::QuarantineReason as M;
    use wit::QuarantineReason as W;
    match reason {
        W::Oversized => M::Oversized,
        W::NotRegularFile => M::NotRegularFile,
        W::InvalidUtf8 => M::InvalidUtf8,
        W::InvalidJson => M::InvalidJson,
        W::InvalidValue => M::InvalidValue,
        W::InvalidTimestamp => M::InvalidTimestamp,
        W::SandboxTrap => M::SandboxTrap,
        W::Undeletable => M::Undeletable,
    }
}

fn quarantine_to_wit(q: model::QuarantineInfo) -> wit::QuarantineInfo {
    wit::QuarantineInfo { reason: reason_to_wit(q.reason), file: q.file, detail: q.detail, location: q.location }
}

fn outcome_to_wit(outcome: model::Outcome) -> wit::Outcome {
    match outcome {
        model::Outcome::Extracted(m) => wit::Outcome::Extracted(metrics_to_wit(m)),
        model::Outcome::NoData => wit::Outcome::NoData,
        model::Outcome::Quarantined(q) => wit::Outcome::Quarantined(quarantine_to_wit(q)),
        model::Outcome::Skipped(reason) => wit::Outcome::Skipped(skip_to_wit(reason)),
        model::Outcome::Failed(message) => wit::Outcome::Failed(message),
    }
}

fn status_to_wit(status: model::PostJobStatus) -> wit::PostJobStatus {
    use model::PostJobStatus as M;
    use wit::PostJobStatus as W;
    match status {
        M::Normal => W::Normal,
        M::Abnormal => W::Abnormal,
        M::RepoPolicyCheckFailure => W::RepoPolicyCheckFailure,
        M::ExternalContributorCheckFailure => W::ExternalContributorCheckFailure,
    }
}

fn status_from_wit(status: wit::PostJobStatus) -> model::PostJobStatus {
    use model::PostJobStatus as M;
    use wit::PostJobStatus as W;
    match status {
        W::Normal => M::Normal,
        W::Abnormal => M::Abnormal,
        W::RepoPolicyCheckFailure => M::RepoPolicyCheckFailure,
        W::ExternalContributorCheckFailure => M::ExternalContributorCheckFailure,
    }
}

fn conclusion_to_wit(c: model::JobConclusion) -> wit::JobConclusion {
    use model::JobConclusion as M;
    use wit::JobConclusion as W;
    match c {
        M::ActionRequired => W::ActionRequired,
        M::Cancelled => W::Cancelled,
        M::Failure => W::Failure,
        M::Neutral => W::Neutral,
        M::Skipped => W::Skipped,
        M::Success => W::Success,
        M::TimedOut => W::TimedOut,
    }
}

fn conclusion_from_wit(c: wit::JobConclusion) -> model::JobConclusion {
    use model::JobConclusion as M;
    use wit::JobConclusion as W;
    match c {
        W::ActionRequired => M::ActionRequired,
        W::Cancelled => M::Cancelled,
        W::Failure => M::Failure,
        W::Neutral => M::Neutral,
        W::Skipped => M::Skipped,
        W::Success => M::Success,
        W::TimedOut => M::TimedOut,
    }
}

fn metrics_to_wit(m: model::RunnerMetrics) -> wit::RunnerMetrics {
    wit::RunnerMetrics {
        installation_start_timestamp: m.installation_start_timestamp,
        installed_timestamp: m.installed_timestamp,
        pre_job: m.pre_job.map(|p| wit::PreJobMetrics {
            timestamp: p.timestamp,
            workflow: p.workflow,
            workflow_run_id: p.workflow_run_id,
            repository: p.repository,
            event: p.event,
        }),
        post_job: m.post_job.map(|p| wit::PostJobMetrics {
            timestamp: p.timestamp,
            status: status_to_wit(p.status),
            status_info: p.status_code.map(|code| wit::CodeInformation { code }),
        }),
        runner_name: m.runner_name,
    }
}

fn metrics_from_wit(m: wit::RunnerMetrics) -> model::RunnerMetrics {
    model::RunnerMetrics {
        installation_start_timestamp: m.installation_start_timestamp,
        installed_timestamp: m.installed_timestamp,
        pre_job: m.pre_job.map(|p| model::PreJobMetrics {
            timestamp: p.timestamp,
            workflow: p.workflow,
            workflow_run_id: p.workflow_run_id,
            repository: p.repository,
            event: p.event,
        }),
        post_job: m.post_job.map(|p| model::PostJobMetrics {
            timestamp: p.timestamp,
            status: status_from_wit(p.status),
            status_code: p.status_info.map(|info| info.code),
        }),
        runner_name: m.runner_name,
    }
}

fn event_to_wit(event: model::Event) -> wit::Event {
    match event {
        model::Event::RunnerInstalled(e) => wit::Event::RunnerInstalled(wit::RunnerInstalled {
            timestamp: e.timestamp,
            flavor: e.flavor,
            duration: e.duration,
        }),
        model::Event::RunnerStart(e) => wit::Event::RunnerStart(wit::RunnerStart {
            timestamp: e.timestamp,
            flavor: e.flavor,
            workflow: e.workflow,
            repo: e.repo,
            github_event: e.github_event,
            idle: e.idle,
            queue_duration: e.queue_duration,
        }),
        model::Event::RunnerStop(e) => wit::Event::RunnerStop(wit::RunnerStop {
            timestamp: e.timestamp,
            flavor: e.flavor,
            workflow: e.workflow,
            repo: e.repo,
            github_event: e.github_event,
            status: status_to_wit(e.status),
            status_info: e.status_code.map(|code| wit::CodeInformation { code }),
            job_duration: e.job_duration,
            job_conclusion: e.job_conclusion.map(conclusion_to_wit),
        }),
    }
}

fn event_from_wit(event: wit::Event) -> model::Event {
    match event {
        wit::Event::RunnerInstalled(e) => model::Event::RunnerInstalled(model::RunnerInstalled {
            timestamp: e.timestamp,
            flavor: e.flavor,
            duration: e.duration,
        }),
        wit::Event::RunnerStart(e) => model::Event::RunnerStart(model::RunnerStart {
            timestamp: e.timestamp,
            flavor: e.flavor,
            workflow: e.workflow,
            repo: e.repo,
            github_event: e.github_event,
            idle: e.idle,
            queue_duration: e.queue_duration,
        }),
        wit::Event::RunnerStop(e) => model::Event::RunnerStop(model::RunnerStop {
            timestamp: e.timestamp,
            flavor: e.flavor,
            workflow: e.workflow,
            repo: e.repo,
            github_event: e.github_event,
            status: status_from_wit(e.status),
            status_code: e.status_info.map(|info| info.code),
            job_duration: e.job_duration,
            job_conclusion: e.job_conclusion.map(conclusion_from_wit),
        }),
    }
}
