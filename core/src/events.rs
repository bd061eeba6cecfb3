//! The lifecycle events of one runner's metrics (spec 5).
//!
//! Pure computation: which of `runner_installed`, `runner_start` and
//! `runner_stop` a [`RunnerMetrics`] gives, with which values. Writing them is
//! the host's job, in the order returned here.

use crate::model::{
    Event, GithubJobMetrics, PostJobMetrics, PreJobMetrics, RunnerInstalled, RunnerMetrics, RunnerStart, RunnerStop,
};

/// The events of `metrics`, in the order they must be issued:
/// `runner_installed` when the installation start is known, `runner_start`
/// when the pre-job names a repository, and `runner_stop` when `runner_start`
/// is issued and a post-job exists. Takes the metrics to move their
/// strings into the events rather than copy them.
pub fn issue_events(metrics: RunnerMetrics, flavor: &str, job: Option<&GithubJobMetrics>) -> Vec<Event> {
    let mut events = Vec::with_capacity(3);
    if let Some(installed) = runner_installed(&metrics, flavor) {
        events.push(Event::RunnerInstalled(installed));
    }
    let Some(pre_job) = metrics.pre_job else {
        return events;
    };
    let Some(start) = runner_start(pre_job, metrics.installed_timestamp, flavor, job) else {
        return events;
    };
    let stop = metrics.post_job.as_ref().map(|post_job| runner_stop(&start, post_job, job));
    events.push(Event::RunnerStart(start));
    events.extend(stop.map(Event::RunnerStop));
    events
}

fn runner_installed(metrics: &RunnerMetrics, flavor: &str) -> Option<RunnerInstalled> {
    let installation_start = metrics.installation_start_timestamp?;
    Some(RunnerInstalled {
        timestamp: metrics.installed_timestamp,
        flavor: flavor.to_owned(),
        duration: non_negative(metrics.installed_timestamp - installation_start),
    })
}

/// `None` when the pre-job has no repository.
fn runner_start(
    pre_job: PreJobMetrics,
    installed_timestamp: f64,
    flavor: &str,
    job: Option<&GithubJobMetrics>,
) -> Option<RunnerStart> {
    let repo = pre_job.repository?;
    Some(RunnerStart {
        timestamp: pre_job.timestamp,
        flavor: flavor.to_owned(),
        workflow: pre_job.workflow,
        repo,
        github_event: pre_job.event,
        idle: non_negative(pre_job.timestamp - installed_timestamp),
        queue_duration: job.and_then(queue_duration),
    })
}

/// The job's queue duration clamped at 0; `None` when it is not a finite
/// number, since such a value cannot be written as JSON.
fn queue_duration(job: &GithubJobMetrics) -> Option<f64> {
    job.queue_duration.is_finite().then(|| non_negative(job.queue_duration))
}

fn runner_stop(start: &RunnerStart, post_job: &PostJobMetrics, job: Option<&GithubJobMetrics>) -> RunnerStop {
    RunnerStop {
        timestamp: post_job.timestamp,
        flavor: start.flavor.clone(),
        workflow: start.workflow.clone(),
        repo: start.repo.clone(),
        github_event: start.github_event.clone(),
        status: post_job.status,
        status_info: post_job.status_info,
        job_duration: non_negative(post_job.timestamp - start.timestamp),
        job_conclusion: job.and_then(|job| job.conclusion),
    }
}

/// `max(x, 0)`, giving `0.0` (never `-0.0`) for negative zero and NaN.
fn non_negative(x: f64) -> f64 {
    if x > 0.0 {
        x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CodeInformation, JobConclusion, PostJobStatus};

    const FLAVOR: &str = "small";

    /// Fixture F of spec 6.
    fn fixture() -> RunnerMetrics {
        RunnerMetrics {
            installation_start_timestamp: Some(1.0),
            installed_timestamp: 2.0,
            pre_job: Some(PreJobMetrics {
                timestamp: 3.0,
                workflow: "workflow1".into(),
                workflow_run_id: "workflow_run_id1".into(),
                repository: Some("org1/repository1".into()),
                event: "push".into(),
                workflow_run_attempt: None,
            }),
            post_job: Some(PostJobMetrics { timestamp: 3.0, status: PostJobStatus::Normal, status_info: None }),
            runner_name: "runner-n-0123456789ab".into(),
        }
    }

    fn fixture_job() -> GithubJobMetrics {
        GithubJobMetrics { queue_duration: 3600.0, conclusion: Some(JobConclusion::Success) }
    }

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(Event::kind).collect()
    }

    fn installed_of(events: &[Event]) -> &RunnerInstalled {
        events.iter().find_map(|e| if let Event::RunnerInstalled(i) = e { Some(i) } else { None }).unwrap()
    }

    fn start_of(events: &[Event]) -> &RunnerStart {
        events.iter().find_map(|e| if let Event::RunnerStart(s) = e { Some(s) } else { None }).unwrap()
    }

    fn stop_of(events: &[Event]) -> &RunnerStop {
        events.iter().find_map(|e| if let Event::RunnerStop(s) = e { Some(s) } else { None }).unwrap()
    }

    #[test]
    fn fixture_f_gives_the_three_expected_events() {
        let events = issue_events(fixture(), FLAVOR, Some(&fixture_job()));
        assert_eq!(
            events,
            vec![
                Event::RunnerInstalled(RunnerInstalled { timestamp: 2.0, flavor: FLAVOR.into(), duration: 1.0 }),
                Event::RunnerStart(RunnerStart {
                    timestamp: 3.0,
                    flavor: FLAVOR.into(),
                    workflow: "workflow1".into(),
                    repo: "org1/repository1".into(),
                    github_event: "push".into(),
                    idle: 1.0,
                    queue_duration: Some(3600.0),
                }),
                Event::RunnerStop(RunnerStop {
                    timestamp: 3.0,
                    flavor: FLAVOR.into(),
                    workflow: "workflow1".into(),
                    repo: "org1/repository1".into(),
                    github_event: "push".into(),
                    status: PostJobStatus::Normal,
                    status_info: None,
                    job_duration: 0.0,
                    job_conclusion: Some(JobConclusion::Success),
                }),
            ]
        );
    }

    #[test]
    fn pre_job_timestamp_zero_gives_idle_zero() {
        let mut metrics = fixture();
        metrics.pre_job.as_mut().unwrap().timestamp = 0.0;
        let events = issue_events(metrics, FLAVOR, Some(&fixture_job()));
        assert_eq!(start_of(&events).idle.to_bits(), 0.0f64.to_bits());
        assert_eq!(start_of(&events).timestamp, 0.0);
        // The post-job (3.0) is after the pre-job (0.0).
        assert_eq!(stop_of(&events).job_duration, 3.0);
    }

    #[test]
    fn post_job_timestamp_zero_gives_job_duration_zero() {
        let mut metrics = fixture();
        metrics.post_job.as_mut().unwrap().timestamp = 0.0;
        let events = issue_events(metrics, FLAVOR, Some(&fixture_job()));
        assert_eq!(stop_of(&events).job_duration.to_bits(), 0.0f64.to_bits());
        assert_eq!(stop_of(&events).timestamp, 0.0);
    }

    #[test]
    fn post_job_without_pre_job_gives_only_runner_installed() {
        let mut metrics = fixture();
        metrics.pre_job = None;
        let events = issue_events(metrics, FLAVOR, Some(&fixture_job()));
        assert_eq!(kinds(&events), ["runner_installed"]);
    }

    #[test]
    fn without_installation_start_there_is_no_runner_installed() {
        let mut metrics = fixture();
        metrics.installation_start_timestamp = None;
        let events = issue_events(metrics, FLAVOR, Some(&fixture_job()));
        assert_eq!(kinds(&events), ["runner_start", "runner_stop"]);
        assert_eq!(start_of(&events).idle, 1.0);
    }

    #[test]
    fn installed_only_gives_runner_installed() {
        let mut metrics = fixture();
        metrics.pre_job = None;
        metrics.post_job = None;
        let events = issue_events(metrics, FLAVOR, None);
        assert_eq!(kinds(&events), ["runner_installed"]);
        assert_eq!(installed_of(&events).timestamp, 2.0);
        assert_eq!(installed_of(&events).duration, 1.0);
    }

    #[test]
    fn nothing_known_gives_no_events() {
        let mut metrics = fixture();
        metrics.installation_start_timestamp = None;
        metrics.pre_job = None;
        metrics.post_job = None;
        assert!(issue_events(metrics, FLAVOR, Some(&fixture_job())).is_empty());
    }

    #[test]
    fn pre_job_without_repository_gives_no_start_and_no_stop() {
        let mut metrics = fixture();
        metrics.pre_job.as_mut().unwrap().repository = None;
        let events = issue_events(metrics, FLAVOR, Some(&fixture_job()));
        assert_eq!(kinds(&events), ["runner_installed"]);
    }

    #[test]
    fn pre_job_without_post_job_gives_no_stop() {
        let mut metrics = fixture();
        metrics.post_job = None;
        let events = issue_events(metrics, FLAVOR, Some(&fixture_job()));
        assert_eq!(kinds(&events), ["runner_installed", "runner_start"]);
    }

    #[test]
    fn unknown_job_leaves_queue_duration_and_conclusion_out() {
        let events = issue_events(fixture(), FLAVOR, None);
        assert_eq!(kinds(&events), ["runner_installed", "runner_start", "runner_stop"]);
        assert_eq!(start_of(&events).queue_duration, None);
        assert_eq!(stop_of(&events).job_conclusion, None);
    }

    #[test]
    fn job_without_conclusion_keeps_queue_duration() {
        let job = GithubJobMetrics { queue_duration: 12.5, conclusion: None };
        let events = issue_events(fixture(), FLAVOR, Some(&job));
        assert_eq!(start_of(&events).queue_duration, Some(12.5));
        assert_eq!(stop_of(&events).job_conclusion, None);
    }

    #[test]
    fn negative_queue_duration_is_clamped_to_zero() {
        let job = GithubJobMetrics { queue_duration: -5.0, conclusion: Some(JobConclusion::Cancelled) };
        let events = issue_events(fixture(), FLAVOR, Some(&job));
        assert_eq!(start_of(&events).queue_duration.map(f64::to_bits), Some(0.0f64.to_bits()));
        assert_eq!(stop_of(&events).job_conclusion, Some(JobConclusion::Cancelled));
    }

    #[test]
    fn non_finite_queue_duration_is_left_out() {
        for queue_duration in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let job = GithubJobMetrics { queue_duration, conclusion: Some(JobConclusion::Success) };
            let events = issue_events(fixture(), FLAVOR, Some(&job));
            assert_eq!(start_of(&events).queue_duration, None, "{queue_duration}");
            assert_eq!(stop_of(&events).job_conclusion, Some(JobConclusion::Success));
        }
    }

    #[test]
    fn durations_going_backwards_are_clamped_to_zero() {
        let mut metrics = fixture();
        metrics.installation_start_timestamp = Some(10.0);
        metrics.installed_timestamp = 5.0;
        metrics.pre_job.as_mut().unwrap().timestamp = 4.0;
        metrics.post_job.as_mut().unwrap().timestamp = 1.0;
        let events = issue_events(metrics, FLAVOR, Some(&fixture_job()));
        assert_eq!(installed_of(&events).duration, 0.0);
        assert_eq!(start_of(&events).idle, 0.0);
        assert_eq!(stop_of(&events).job_duration, 0.0);
        // Timestamps themselves are passed through unchanged.
        assert_eq!(installed_of(&events).timestamp, 5.0);
        assert_eq!(start_of(&events).timestamp, 4.0);
        assert_eq!(stop_of(&events).timestamp, 1.0);
    }

    #[test]
    fn stop_carries_status_and_code() {
        let mut metrics = fixture();
        metrics.post_job = Some(PostJobMetrics {
            timestamp: 65.5,
            status: PostJobStatus::RepoPolicyCheckFailure,
            status_info: Some(CodeInformation { code: 403 }),
        });
        let events = issue_events(metrics, "large", Some(&fixture_job()));
        let stop = stop_of(&events);
        assert_eq!(stop.status, PostJobStatus::RepoPolicyCheckFailure);
        assert_eq!(stop.status_info.map(|i| i.code), Some(403));
        assert_eq!(stop.job_duration, 62.5);
        assert_eq!(stop.flavor, "large");
        assert_eq!(stop.workflow, "workflow1");
        assert_eq!(stop.repo, "org1/repository1");
        assert_eq!(stop.github_event, "push");
    }

    #[test]
    fn realistic_timestamps_keep_full_precision() {
        let mut metrics = fixture();
        metrics.installation_start_timestamp = Some(1_700_000_000.123_456_7);
        metrics.installed_timestamp = 1_700_000_060.5;
        let events = issue_events(metrics, FLAVOR, None);
        assert_eq!(installed_of(&events).duration, 1_700_000_060.5 - 1_700_000_000.123_456_7);
    }

    #[test]
    fn non_negative_never_gives_negative_zero() {
        for x in [-0.0, 0.0, -1.0, f64::NAN, f64::NEG_INFINITY] {
            assert_eq!(non_negative(x).to_bits(), 0.0f64.to_bits(), "{x}");
        }
        assert_eq!(non_negative(2.5), 2.5);
    }
}
