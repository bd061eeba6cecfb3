//! The textfile's names: which series a [`Naming`] writes, under which names,
//! labels and buckets, and the bounded label values a job is counted under.
//!
//! Two namings share one recorder: ours (`runner_metrics_*`, the default)
//! and the upstream runner manager's (`runner_spawn_duration_seconds`,
//! `job_repository_count`, ...), so dashboards built on upstream's names
//! show our values (spec 10). Only the names, labels, buckets and types
//! differ; the values are the same observations.

/// Prefix of every name of ours; also of the series upstream has no
/// counterpart for (outcomes, events, the tool's health), in both namings.
pub const PREFIX: &str = "runner_metrics";

/// Which names the durations and job counts are written under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Naming {
    /// `runner_metrics_*`: our buckets, job counters by flavor (`_total`).
    #[default]
    Ours,
    /// The upstream manager's names, labels and buckets
    /// (`github-runner-manager` `metrics/runner.py`), with correct values,
    /// plus `extract_metrics_duration_seconds`, observed once per collect.
    Upstream,
}

impl Naming {
    /// Every naming, for `--prometheus-names`.
    pub const ALL: [Naming; 2] = [Naming::Ours, Naming::Upstream];

    /// How the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Naming::Ours => "ours",
            Naming::Upstream => "upstream",
        }
    }

    pub(super) fn layout(self) -> &'static Layout {
        match self {
            Naming::Ours => &OURS,
            Naming::Upstream => &UPSTREAM,
        }
    }
}

impl std::str::FromStr for Naming {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Naming::ALL.into_iter().find(|n| n.as_str() == text).ok_or_else(|| {
            format!("unknown Prometheus naming {text:?} (one of: {})", Naming::ALL.map(Naming::as_str).join(", "))
        })
    }
}

/// One histogram: its name, help and bucket upper bounds (seconds; `+Inf`
/// is added when rendered).
#[derive(Debug)]
pub(super) struct HistogramNames {
    pub name: &'static str,
    pub help: &'static str,
    pub bounds: &'static [f64],
}

/// One per-job counter: its name, the label it counts by, and help.
#[derive(Debug)]
pub(super) struct JobCounterNames {
    pub name: &'static str,
    pub label: &'static str,
    pub help: &'static str,
}

/// What a naming writes for the durations and job counts.
#[derive(Debug)]
pub(super) struct Layout {
    /// In the order of [`OBSERVED`].
    pub histograms: [HistogramNames; 4],
    /// A histogram of whole collects (one observation per run), if any.
    pub run_duration: Option<HistogramNames>,
    /// Indexed by [`BY_REPOSITORY`] .. [`BY_STATUS`].
    pub job_counters: [JobCounterNames; 4],
    /// `counter` or `gauge`: upstream declares its job counts as gauges
    /// (and a counter's name must end in `_total`), so they are gauges
    /// there, that never go down because each run adds to the last file.
    pub job_counter_type: &'static str,
    /// Whether job counts carry `flavor` (upstream's do not).
    pub job_counts_by_flavor: bool,
}

/// What each histogram of [`Layout::histograms`] observes: (event, field).
pub(super) const OBSERVED: [(&str, &str); 4] = [
    ("runner_installed", "duration"),
    ("runner_start", "idle"),
    ("runner_start", "queue_duration"),
    ("runner_stop", "job_duration"),
];

/// Index of each job counter in [`Layout::job_counters`].
pub(super) const BY_REPOSITORY: usize = 0;
pub(super) const BY_EVENT: usize = 1;
pub(super) const BY_CONCLUSION: usize = 2;
pub(super) const BY_STATUS: usize = 3;

const MINUTE: f64 = 60.0;
const HOUR: f64 = 3600.0;
const DAY: f64 = 86400.0;

/// Ours. Buckets follow what a fleet sees: spawning takes from tens of
/// seconds (containers) to tens of minutes (VMs); idle and queue times range
/// from a second (a warm pool) to hours (a starved pool); jobs from seconds
/// to GitHub's 6-hour limit (and a day for self-hosted runners).
static OURS: Layout = Layout {
    histograms: [
        HistogramNames {
            name: "runner_metrics_spawn_duration_seconds",
            help: "Time from the storage's creation to the runner being installed (runner_installed.duration).",
            bounds: &[10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0],
        },
        HistogramNames {
            name: "runner_metrics_idle_seconds",
            help: "Time the runner waited, installed, before its job started (runner_start.idle).",
            bounds: &[1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 86400.0],
        },
        HistogramNames {
            name: "runner_metrics_queue_duration_seconds",
            help: "Time the job waited for a runner, from GitHub (runner_start.queue_duration).",
            bounds: &[1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0],
        },
        HistogramNames {
            name: "runner_metrics_job_duration_seconds",
            help: "Time from the job's start to its end on the runner (runner_stop.job_duration).",
            bounds: &[10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0],
        },
    ],
    run_duration: None,
    job_counters: [
        JobCounterNames {
            name: "runner_metrics_jobs_by_repository_total",
            label: "repository",
            help: "Jobs that ended (runner_stop events), by repository; past the repository limit, under \"other\".",
        },
        JobCounterNames {
            name: "runner_metrics_jobs_by_github_event_total",
            label: "github_event",
            help: "Jobs that ended (runner_stop events), by the GitHub event that triggered them (unlisted: \"other\").",
        },
        JobCounterNames {
            name: "runner_metrics_jobs_by_conclusion_total",
            label: "conclusion",
            help: "Jobs that ended (runner_stop events), by GitHub's job conclusion (\"unknown\" when GitHub did not say).",
        },
        JobCounterNames {
            name: "runner_metrics_jobs_by_status_total",
            label: "status",
            help: "Jobs that ended (runner_stop events), by the runner's post-job status.",
        },
    ],
    job_counter_type: "counter",
    job_counts_by_flavor: true,
};

/// The spawn and idle buckets upstream shares (5 s .. 10 min).
const UPSTREAM_SHORT: &[f64] =
    &[5.0, 10.0, 15.0, 30.0, MINUTE, 2.0 * MINUTE, 3.0 * MINUTE, 5.0 * MINUTE, 10.0 * MINUTE];

/// Upstream's names, help texts and buckets (`metrics/runner.py`), each
/// `+Inf` bucket left to the renderer.
static UPSTREAM: Layout = Layout {
    histograms: [
        HistogramNames {
            name: "runner_spawn_duration_seconds",
            help: "Time in seconds to initialize the VM and register the runner on GitHub.",
            bounds: UPSTREAM_SHORT,
        },
        HistogramNames {
            name: "runner_idle_duration_seconds",
            help: "Time in seconds to runner waiting idle for the job to be picked up.",
            bounds: UPSTREAM_SHORT,
        },
        HistogramNames {
            name: "runner_queue_duration_seconds",
            help: "Time taken in seconds for the job to be started.",
            bounds: &[
                5.0,
                30.0,
                MINUTE,
                5.0 * MINUTE,
                10.0 * MINUTE,
                20.0 * MINUTE,
                30.0 * MINUTE,
                HOUR,
                2.0 * HOUR,
                5.0 * HOUR,
            ],
        },
        HistogramNames {
            name: "job_duration_seconds",
            help: "Time taken in seconds for the job to be completed.",
            bounds: &[
                MINUTE,
                5.0 * MINUTE,
                10.0 * MINUTE,
                20.0 * MINUTE,
                30.0 * MINUTE,
                60.0 * MINUTE,
                2.0 * HOUR,
                4.0 * HOUR,
                6.0 * HOUR,
                3.0 * DAY,
                5.0 * DAY,
            ],
        },
    ],
    run_duration: Some(HistogramNames {
        name: "extract_metrics_duration_seconds",
        help: "Time taken in seconds for the metrics to be extracted.",
        bounds: UPSTREAM_SHORT,
    }),
    job_counters: [
        JobCounterNames {
            name: "job_repository_count",
            label: "repository",
            help: "Number of jobs run per repository.",
        },
        JobCounterNames { name: "job_event_count", label: "event", help: "Number of jobs triggered per event." },
        JobCounterNames { name: "job_conclusion_count", label: "conclusion", help: "Number of jobs per conclusion." },
        JobCounterNames { name: "job_status_count", label: "status", help: "Number of jobs per status." },
    ],
    job_counter_type: "gauge",
    job_counts_by_flavor: false,
};

/// The label value for repositories past the limit and GitHub events not in
/// [`GITHUB_EVENTS`]. Never a repository name (those are `owner/repo`).
pub const OTHER: &str = "other";

/// The `conclusion` label when GitHub did not say (no lookup, no job found,
/// or a `null` conclusion).
pub const UNKNOWN: &str = "unknown";

/// The events that trigger a GitHub Actions workflow (plus `dynamic`, the
/// event of GitHub's own dynamic workflows such as Dependabot and code
/// scanning). The event comes from the runner's pre-job file, which the job
/// can write: anything else is counted as [`OTHER`].
pub const GITHUB_EVENTS: &[&str] = &[
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "create",
    "delete",
    "deployment",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "dynamic",
    "fork",
    "gollum",
    "issue_comment",
    "issues",
    "label",
    "merge_group",
    "milestone",
    "page_build",
    "public",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_target",
    "push",
    "registry_package",
    "release",
    "repository_dispatch",
    "schedule",
    "status",
    "watch",
    "workflow_call",
    "workflow_dispatch",
    "workflow_run",
    // Classic projects (retired by GitHub, still seen on older servers).
    "project",
    "project_card",
    "project_column",
];

/// Post-job statuses (spec 3.2).
pub const STATUSES: [&str; 4] =
    ["normal", "abnormal", "repo-policy-check-failure", "external-contributor-check-failure"];

/// GitHub's job conclusions, as event lines spell them, and [`UNKNOWN`].
pub const CONCLUSIONS: [&str; 8] =
    ["action_required", "cancelled", "failure", "neutral", "skipped", "success", "timed_out", UNKNOWN];

/// The label value a job is counted under in counter `dimension`, or `None`
/// if the value cannot be counted there at all. Repositories are bounded
/// later (see `Recorder::render`); anything not shaped `owner/repo` is
/// [`OTHER`].
pub(super) fn job_label(dimension: usize, value: Option<&str>) -> Option<String> {
    let value = match dimension {
        BY_REPOSITORY => {
            let value = value?;
            let owner_repo = value.len() <= 256
                && value.split('/').count() == 2
                && value.split('/').all(|part| !part.is_empty())
                && !value.chars().any(char::is_control);
            if owner_repo {
                value
            } else {
                OTHER
            }
        }
        BY_EVENT => value.filter(|v| GITHUB_EVENTS.contains(v)).unwrap_or(OTHER),
        BY_CONCLUSION => value.filter(|v| CONCLUSIONS.contains(v)).unwrap_or(UNKNOWN),
        BY_STATUS => STATUSES.iter().copied().find(|s| Some(*s) == value)?,
        _ => return None,
    };
    Some(value.to_owned())
}
