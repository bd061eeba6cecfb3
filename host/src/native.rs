//! The guest logic compiled natively, behind the same [`GuestApi`] as the
//! sandbox (feature `native-guest`, off by default).
//!
//! This is the benchmark's "no sandbox" contender: the pipeline in
//! [`collect`](mod@crate::collect) drives it exactly as it drives a
//! [`Sandbox`](crate::sandbox::Sandbox), so the difference between the two
//! is what wasmtime, WASI and the component boundary cost. It reads the
//! untrusted files in the host process with no memory cap and no deadline,
//! so it must never be used outside measurements. A panic in the guest code
//! becomes a [`GuestFailure`], as a trap would.
//!
//! The conversions below mirror `guest/src/component.rs`: the guest works on
//! its plain model types, the pipeline on the WIT bindings types.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use anyhow::Result;
use runner_metrics_guest::fs::NativeFs;
use runner_metrics_guest::{events, extract, model, render};

use crate::bindings as wit;
use crate::guest_api::{CallResult, GuestApi, GuestFactory, GuestFailure};

/// Makes [`NativeGuest`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeGuests;

impl GuestFactory for NativeGuests {
    type Guest = NativeGuest;

    fn guest(&self, storage_root: &Path) -> Result<NativeGuest> {
        Ok(NativeGuest { fs: NativeFs::new(storage_root), scan: None })
    }
}

/// The guest modules called directly on the host's filesystem.
pub struct NativeGuest {
    fs: NativeFs,
    /// The one scan a guest runs (the pipeline starts one per scanner).
    scan: Option<Result<extract::Scan<NativeFs>, String>>,
}

/// Runs guest code, turning a panic into a failed call like a trap.
fn call<T>(what: &str, f: impl FnOnce() -> T) -> CallResult<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        GuestFailure { detail: format!("native guest {what} panicked: {message}") }
    })
}

impl GuestApi for NativeGuest {
    type Scan = ();

    fn start_scan(&mut self, selection: &wit::Selection) -> CallResult<()> {
        let selection = model::Selection {
            exclude: selection.exclude.clone(),
            include: selection.include.clone(),
            min_age_seconds: selection.min_age_seconds,
        };
        let fs = self.fs.clone();
        self.scan = Some(call("scan", || extract::Scan::new(fs, selection).map_err(|e| e.message))?);
        Ok(())
    }

    fn next_batch(&mut self, _: (), max: u32) -> CallResult<Result<Vec<wit::RootEntry>, String>> {
        let Some(scan) = self.scan.as_mut() else {
            return Err(GuestFailure { detail: "native guest: next_batch before start_scan".to_owned() });
        };
        let scan = match scan {
            Ok(scan) => scan,
            Err(e) => return Ok(Err(e.clone())),
        };
        call("scan", || {
            scan.next_batch(max as usize).map_err(|e| e.message).map(|batch| {
                batch
                    .into_iter()
                    .map(|entry| wit::RootEntry { name: entry.name, skipped: entry.skipped.map(skip_to_wit) })
                    .collect()
            })
        })
    }

    fn extract_storage(&mut self, name: &str, keep: bool) -> CallResult<wit::Outcome> {
        call("extraction", || outcome_to_wit(extract::extract_storage(&self.fs, name, keep)))
    }

    fn delete_storage(&mut self, name: &str) -> CallResult<Result<Option<wit::QuarantineInfo>, String>> {
        call("deletion", || extract::delete_storage(&self.fs, name).map(|q| q.map(quarantine_to_wit)))
    }

    fn purge_deleting(&mut self) -> CallResult<Result<u32, String>> {
        call("purge of .deleting", || extract::purge_deleting(&self.fs))
    }

    fn quarantine_storage(
        &mut self,
        name: &str,
        reason: wit::QuarantineReason,
        detail: &str,
    ) -> CallResult<Result<wit::QuarantineInfo, String>> {
        call("quarantine", || {
            extract::quarantine_storage(&self.fs, name, reason_from_wit(reason), None, detail).map(quarantine_to_wit)
        })
    }

    fn issue_events(
        &mut self,
        metrics: &wit::RunnerMetrics,
        flavor: &str,
        job: Option<wit::GithubJobMetrics>,
    ) -> CallResult<Vec<wit::Event>> {
        let job = job.map(|job| model::GithubJobMetrics {
            queue_duration: job.queue_duration,
            conclusion: job.conclusion.map(conclusion_from_wit),
        });
        let metrics = metrics_from_wit(metrics);
        call("events", || events::issue_events(&metrics, flavor, job.as_ref()).into_iter().map(event_to_wit).collect())
    }

    fn render_event(&mut self, event: &wit::Event) -> CallResult<String> {
        let event = event_from_wit(event);
        call("rendering", || render::render_event(&event))
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

/// The pipeline keeps its own copy, so this clones (the component boundary
/// copies too).
fn metrics_from_wit(m: &wit::RunnerMetrics) -> model::RunnerMetrics {
    model::RunnerMetrics {
        installation_start_timestamp: m.installation_start_timestamp,
        installed_timestamp: m.installed_timestamp,
        pre_job: m.pre_job.as_ref().map(|p| model::PreJobMetrics {
            timestamp: p.timestamp,
            workflow: p.workflow.clone(),
            workflow_run_id: p.workflow_run_id.clone(),
            repository: p.repository.clone(),
            event: p.event.clone(),
        }),
        post_job: m.post_job.as_ref().map(|p| model::PostJobMetrics {
            timestamp: p.timestamp,
            status: status_from_wit(p.status),
            status_code: p.status_info.map(|info| info.code),
        }),
        runner_name: m.runner_name.clone(),
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

fn event_from_wit(event: &wit::Event) -> model::Event {
    match event {
        wit::Event::RunnerInstalled(e) => model::Event::RunnerInstalled(model::RunnerInstalled {
            timestamp: e.timestamp,
            flavor: e.flavor.clone(),
            duration: e.duration,
        }),
        wit::Event::RunnerStart(e) => model::Event::RunnerStart(model::RunnerStart {
            timestamp: e.timestamp,
            flavor: e.flavor.clone(),
            workflow: e.workflow.clone(),
            repo: e.repo.clone(),
            github_event: e.github_event.clone(),
            idle: e.idle,
            queue_duration: e.queue_duration,
        }),
        wit::Event::RunnerStop(e) => model::Event::RunnerStop(model::RunnerStop {
            timestamp: e.timestamp,
            flavor: e.flavor.clone(),
            workflow: e.workflow.clone(),
            repo: e.repo.clone(),
            github_event: e.github_event.clone(),
            status: status_from_wit(e.status),
            status_code: e.status_info.map(|info| info.code),
            job_duration: e.job_duration,
            job_conclusion: e.job_conclusion.map(conclusion_from_wit),
        }),
    }
}
