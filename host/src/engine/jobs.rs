//! Where the job metrics the guest asks for come from: a source the run
//! hands the engine (GitHub, a closure, or none).

use crate::bindings::{GithubJobMetrics, RunnerMetrics};

/// Finds GitHub job metrics for a runner (spec 5); `None` when unknown.
pub trait JobMetricsSource {
    fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Option<GithubJobMetrics>;
}

/// No job metrics for anyone.
pub struct NoJobMetrics;

impl JobMetricsSource for NoJobMetrics {
    fn job_metrics(&mut self, _: &RunnerMetrics) -> Option<GithubJobMetrics> {
        None
    }
}

impl<F: FnMut(&RunnerMetrics) -> Option<GithubJobMetrics>> JobMetricsSource for F {
    fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Option<GithubJobMetrics> {
        self(metrics)
    }
}
