//! Where the job metrics the guest asks for come from: a source the run
//! hands the engine (GitHub, a closure, or none).

use crate::bindings::{GithubJobMetrics, RunnerMetrics};

/// Finds GitHub job metrics for a runner (spec 5); `None` when unknown.
pub trait JobMetricsSource {
    fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Option<GithubJobMetrics>;

    /// How this run's lookups went, for the health series of the textfile;
    /// `None` for a source that looks nothing up over the network.
    fn lookups(&self) -> Option<LookupCounts> {
        None
    }

    /// Whether every answer is `None`, whatever is asked: then the fast
    /// build of the plugin is told not to ask (`looks-up-job-metrics`), and
    /// when the WASI build asks anyway, nothing the host does waits on the
    /// keeper's verdict on the lookup, which is held like `begin-storage`
    /// ([`crate::keeper`]).
    fn answers_nothing(&self) -> bool {
        false
    }
}

/// The lookups of one run, by result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupCounts {
    /// The runner's job was found.
    pub found: u64,
    /// GitHub answered, and the run has no job on this runner.
    pub not_found: u64,
    /// No answer that could be used (an error, a timeout, an unreadable
    /// answer, a run id or repository that cannot be asked about).
    pub failed: u64,
    /// Not asked: the lookups had stopped (a rejected token, the budget or
    /// the rate limit spent).
    pub skipped: u64,
    /// `X-RateLimit-Remaining` of GitHub's last answer, when it sent one.
    pub rate_limit_remaining: Option<u64>,
}

/// No job metrics for anyone.
pub struct NoJobMetrics;

impl JobMetricsSource for NoJobMetrics {
    fn job_metrics(&mut self, _: &RunnerMetrics) -> Option<GithubJobMetrics> {
        None
    }

    fn answers_nothing(&self) -> bool {
        true
    }
}

impl<F: FnMut(&RunnerMetrics) -> Option<GithubJobMetrics>> JobMetricsSource for F {
    fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Option<GithubJobMetrics> {
        self(metrics)
    }
}
