//! The component's exports: a thin layer from the WIT bindings to the plain
//! Rust modules. Conversions only; no logic lives here.

use std::cell::RefCell;

use crate::fs::WasiFs;
use crate::{events, extract, model, render};

wit_bindgen::generate!({
    path: "../wit",
    world: "extractor",
});

use exports::github_runner::metrics::extraction::{self, GuestScan};
use exports::github_runner::metrics::types as wit;

struct Component;

export!(Component);

/// The `scan` resource: a streaming pass over the storage root.
pub struct ScanResource {
    inner: RefCell<Result<extract::Scan<WasiFs>, String>>,
    #[cfg(feature = "hostile")]
    hostile_candidate: RefCell<Option<String>>,
    /// `Some(batches served)` when the scan is to panic on its second batch.
    #[cfg(feature = "hostile")]
    hostile_panic: std::cell::Cell<Option<u32>>,
}

impl GuestScan for ScanResource {
    fn new(selection: wit::Selection) -> Self {
        #[cfg(feature = "hostile")]
        let hostile_candidate = RefCell::new(crate::hostile::scan(&selection.exclude));
        #[cfg(feature = "hostile")]
        let hostile_panic = std::cell::Cell::new(crate::hostile::scan_panics(&selection.exclude).then_some(0));
        let selection = model::Selection {
            exclude: selection.exclude,
            include: selection.include,
            min_age_seconds: selection.min_age_seconds,
        };
        let inner = WasiFs::open().and_then(|fs| extract::Scan::new(fs, selection)).map_err(|e| e.message);
        Self {
            inner: RefCell::new(inner),
            #[cfg(feature = "hostile")]
            hostile_candidate,
            #[cfg(feature = "hostile")]
            hostile_panic,
        }
    }

    fn next_batch(&self, max: u32) -> Result<Vec<wit::RootEntry>, String> {
        let mut inner = self.inner.borrow_mut();
        let scan = inner.as_mut().map_err(|e| e.clone())?;
        #[cfg(feature = "hostile")]
        if let Some(name) = self.hostile_candidate.borrow_mut().take() {
            return Ok(vec![wit::RootEntry { name: Some(name), skipped: None }]);
        }
        #[cfg(feature = "hostile")]
        if let Some(served) = self.hostile_panic.get() {
            assert!(served < 1, "hostile scan panics on its second batch");
            self.hostile_panic.set(Some(served + 1));
        }
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
            Ok(fs) => {
                #[cfg(feature = "hostile")]
                if let Some(outcome) = crate::hostile::extract(&fs, &runner_name) {
                    return outcome_to_wit(outcome);
                }
                outcome_to_wit(extract::extract_storage(&fs, &runner_name, keep))
            }
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
        let job = job_metrics.map(|job| model::GithubJobMetrics {
            queue_duration: job.queue_duration,
            conclusion: job.conclusion.map(conclusion_from_wit),
        });
        events::issue_events(&metrics_from_wit(metrics), &flavor, job.as_ref()).into_iter().map(event_to_wit).collect()
    }

    fn render_event(event: wit::Event) -> String {
        #[cfg(feature = "hostile")]
        if let wit::Event::RunnerInstalled(e) = &event {
            if let Some(line) = crate::hostile::render(&e.flavor) {
                return line;
            }
            let flavor = e.flavor.clone();
            return crate::hostile::tamper(&flavor, render::render_event(&event_from_wit(event)));
        }
        render::render_event(&event_from_wit(event))
    }
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
