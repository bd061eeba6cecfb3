//! The WIT types of `wit/0.3.0` (`github-runner:metrics/types`), generated
//! once for both crates that speak them: the guest's components
//! (`component.rs`) and the keeper (`keeper/`) map their worlds' `types` to
//! this module, so there is one set of types, and below is the one
//! conversion between them and the plain Rust model. Types only: this
//! compiles natively too.

use crate::model;

/// wit-bindgen output for a world that only imports `types`.
pub mod generated {
    wit_bindgen::generate!({
        path: "../wit/0.3.0",
        inline: "package github-runner:shared-types; world types { import github-runner:metrics/types@0.3.0; }",
        world: "github-runner:shared-types/types",
        generate_all,
    });
}

pub use generated::github_runner::metrics::types::*;

pub fn selection_from_wit(selection: Selection) -> model::Selection {
    model::Selection {
        exclude: selection.exclude,
        include: selection.include,
        min_age_seconds: selection.min_age_seconds,
    }
}

pub fn policy_from_wit(policy: Policy) -> model::Policy {
    match policy {
        Policy::Strict => model::Policy::Strict,
        Policy::Lenient => model::Policy::Lenient,
    }
}

pub fn pulled_from_wit(p: PulledRunner) -> model::PulledRunner {
    let files = match p.files {
        PulledFiles::Loose(l) => model::PulledSource::Loose(model::PulledFiles {
            installed: l.installed,
            pre_job: l.pre_job,
            post_job: l.post_job,
        }),
        PulledFiles::Tar(stream) => model::PulledSource::Tar(stream),
    };
    model::PulledRunner { runner_name: p.runner_name, installation_start: p.installation_start, files }
}

pub fn job_from_wit(job: GithubJobMetrics) -> model::GithubJobMetrics {
    model::GithubJobMetrics { queue_duration: job.queue_duration, conclusion: job.conclusion.map(conclusion_from_wit) }
}

pub fn skip_to_wit(reason: model::SkipReason) -> SkipReason {
    match reason {
        model::SkipReason::Excluded => SkipReason::Excluded,
        model::SkipReason::NotIncluded => SkipReason::NotIncluded,
        model::SkipReason::TooYoung(age) => SkipReason::TooYoung(age),
        model::SkipReason::NotADirectory => SkipReason::NotADirectory,
        model::SkipReason::InvalidName => SkipReason::InvalidName,
        model::SkipReason::Vanished => SkipReason::Vanished,
    }
}

pub fn reason_to_wit(reason: model::QuarantineReason) -> QuarantineReason {
    use self::QuarantineReason as W;
    use model::QuarantineReason as M;
    match reason {
        M::Oversized => W::Oversized,
        M::NotRegularFile => W::NotRegularFile,
        M::InvalidUtf8 => W::InvalidUtf8,
        M::InvalidJson => W::InvalidJson,
        M::InvalidValue => W::InvalidValue,
        M::InvalidTimestamp => W::InvalidTimestamp,
        M::SandboxTrap => W::SandboxTrap,
        M::Undeletable => W::Undeletable,
        M::InvalidArchive => W::InvalidArchive,
    }
}

pub fn reason_from_wit(reason: QuarantineReason) -> model::QuarantineReason {
    use self::QuarantineReason as W;
    use model::QuarantineReason as M;
    match reason {
        W::Oversized => M::Oversized,
        W::NotRegularFile => M::NotRegularFile,
        W::InvalidUtf8 => M::InvalidUtf8,
        W::InvalidJson => M::InvalidJson,
        W::InvalidValue => M::InvalidValue,
        W::InvalidTimestamp => M::InvalidTimestamp,
        W::SandboxTrap => M::SandboxTrap,
        W::Undeletable => M::Undeletable,
        W::InvalidArchive => M::InvalidArchive,
    }
}

pub fn quarantine_to_wit(q: model::QuarantineInfo) -> QuarantineInfo {
    QuarantineInfo { reason: reason_to_wit(q.reason), file: q.file, detail: q.detail, location: q.location }
}

pub fn outcome_to_wit(outcome: model::Outcome) -> Outcome {
    match outcome {
        model::Outcome::Extracted(m) => Outcome::Extracted(metrics_to_wit(m)),
        model::Outcome::NoData => Outcome::NoData,
        model::Outcome::Quarantined(q) => Outcome::Quarantined(quarantine_to_wit(q)),
        model::Outcome::Skipped(reason) => Outcome::Skipped(skip_to_wit(reason)),
        model::Outcome::Failed(message) => Outcome::Failed(message),
    }
}

pub fn status_to_wit(status: model::PostJobStatus) -> PostJobStatus {
    use self::PostJobStatus as W;
    use model::PostJobStatus as M;
    match status {
        M::Normal => W::Normal,
        M::Abnormal => W::Abnormal,
        M::RepoPolicyCheckFailure => W::RepoPolicyCheckFailure,
        M::ExternalContributorCheckFailure => W::ExternalContributorCheckFailure,
    }
}

pub fn status_from_wit(status: PostJobStatus) -> model::PostJobStatus {
    use self::PostJobStatus as W;
    use model::PostJobStatus as M;
    match status {
        W::Normal => M::Normal,
        W::Abnormal => M::Abnormal,
        W::RepoPolicyCheckFailure => M::RepoPolicyCheckFailure,
        W::ExternalContributorCheckFailure => M::ExternalContributorCheckFailure,
    }
}

pub fn conclusion_to_wit(c: model::JobConclusion) -> JobConclusion {
    use self::JobConclusion as W;
    use model::JobConclusion as M;
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

pub fn conclusion_from_wit(c: JobConclusion) -> model::JobConclusion {
    use self::JobConclusion as W;
    use model::JobConclusion as M;
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

pub fn metrics_to_wit(m: model::RunnerMetrics) -> RunnerMetrics {
    RunnerMetrics {
        installation_start_timestamp: m.installation_start_timestamp,
        installed_timestamp: m.installed_timestamp,
        pre_job: m.pre_job.map(|p| PreJobMetrics {
            timestamp: p.timestamp,
            workflow: p.workflow,
            workflow_run_id: p.workflow_run_id,
            repository: p.repository,
            event: p.event,
        }),
        post_job: m.post_job.map(|p| PostJobMetrics {
            timestamp: p.timestamp,
            status: status_to_wit(p.status),
            status_info: p.status_code.map(|code| CodeInformation { code }),
        }),
        runner_name: m.runner_name,
    }
}

pub fn metrics_from_wit(m: RunnerMetrics) -> model::RunnerMetrics {
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

pub fn event_to_wit(event: model::Event) -> Event {
    match event {
        model::Event::RunnerInstalled(e) => {
            Event::RunnerInstalled(RunnerInstalled { timestamp: e.timestamp, flavor: e.flavor, duration: e.duration })
        }
        model::Event::RunnerStart(e) => Event::RunnerStart(RunnerStart {
            timestamp: e.timestamp,
            flavor: e.flavor,
            workflow: e.workflow,
            repo: e.repo,
            github_event: e.github_event,
            idle: e.idle,
            queue_duration: e.queue_duration,
        }),
        model::Event::RunnerStop(e) => Event::RunnerStop(RunnerStop {
            timestamp: e.timestamp,
            flavor: e.flavor,
            workflow: e.workflow,
            repo: e.repo,
            github_event: e.github_event,
            status: status_to_wit(e.status),
            status_info: e.status_code.map(|code| CodeInformation { code }),
            job_duration: e.job_duration,
            job_conclusion: e.job_conclusion.map(conclusion_to_wit),
        }),
    }
}

pub fn event_from_wit(event: Event) -> model::Event {
    match event {
        Event::RunnerInstalled(e) => model::Event::RunnerInstalled(model::RunnerInstalled {
            timestamp: e.timestamp,
            flavor: e.flavor,
            duration: e.duration,
        }),
        Event::RunnerStart(e) => model::Event::RunnerStart(model::RunnerStart {
            timestamp: e.timestamp,
            flavor: e.flavor,
            workflow: e.workflow,
            repo: e.repo,
            github_event: e.github_event,
            idle: e.idle,
            queue_duration: e.queue_duration,
        }),
        Event::RunnerStop(e) => model::Event::RunnerStop(model::RunnerStop {
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
