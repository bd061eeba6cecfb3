//! What a metrics line (`runner-metrics extract`, rendered by the guest's
//! `render::render_metrics`) must hold for a `RunnerMetrics`, and the
//! spellings the event-line check uses: the keeper's own statement of the
//! format, against which the plugin's lines are checked (`check.rs`).

use serde_json::{json, Value};

use crate::bindings::{JobConclusion, PostJobStatus, RunnerMetrics};

pub fn status_name(status: PostJobStatus) -> &'static str {
    match status {
        PostJobStatus::Normal => "normal",
        PostJobStatus::Abnormal => "abnormal",
        PostJobStatus::RepoPolicyCheckFailure => "repo-policy-check-failure",
        PostJobStatus::ExternalContributorCheckFailure => "external-contributor-check-failure",
    }
}

/// GitHub's spelling of a job conclusion (as events carry it).
pub fn conclusion_name(conclusion: JobConclusion) -> &'static str {
    match conclusion {
        JobConclusion::ActionRequired => "action_required",
        JobConclusion::Cancelled => "cancelled",
        JobConclusion::Failure => "failure",
        JobConclusion::Neutral => "neutral",
        JobConclusion::Skipped => "skipped",
        JobConclusion::Success => "success",
        JobConclusion::TimedOut => "timed_out",
    }
}

pub fn to_value(m: &RunnerMetrics) -> Value {
    json!({
        "runner_name": m.runner_name,
        "installation_start_timestamp": m.installation_start_timestamp,
        "installed_timestamp": m.installed_timestamp,
        "pre_job": m.pre_job.as_ref().map(|p| json!({
            "timestamp": p.timestamp,
            "workflow": p.workflow,
            "workflow_run_id": p.workflow_run_id,
            "repository": p.repository,
            "event": p.event,
        })),
        "post_job": m.post_job.as_ref().map(|p| json!({
            "timestamp": p.timestamp,
            "status": status_name(p.status),
            "status_info": p.status_info.as_ref().map(|i| json!({"code": i.code})),
        })),
    })
}
