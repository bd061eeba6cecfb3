//! Plain Rust mirrors of the WIT types (`wit/0.3.0/runner-metrics.wit`).
//!
//! The guest logic works on these so that it compiles and is tested natively;
//! `component.rs` converts them to and from the generated bindings.

/// `pre-job-metrics.json` (spec 3.1).
#[derive(Debug, Clone, PartialEq)]
pub struct PreJobMetrics {
    pub timestamp: f64,
    pub workflow: String,
    pub workflow_run_id: String,
    pub repository: Option<String>,
    pub event: String,
}

/// The four statuses a post-job file may carry (spec 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostJobStatus {
    Normal,
    Abnormal,
    RepoPolicyCheckFailure,
    ExternalContributorCheckFailure,
}

impl PostJobStatus {
    /// The exact spelling used in files and event lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Abnormal => "abnormal",
            Self::RepoPolicyCheckFailure => "repo-policy-check-failure",
            Self::ExternalContributorCheckFailure => "external-contributor-check-failure",
        }
    }

    pub fn from_str_exact(s: &str) -> Option<Self> {
        [Self::Normal, Self::Abnormal, Self::RepoPolicyCheckFailure, Self::ExternalContributorCheckFailure]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// `post-job-metrics.json` (spec 3.2).
#[derive(Debug, Clone, PartialEq)]
pub struct PostJobMetrics {
    pub timestamp: f64,
    pub status: PostJobStatus,
    /// `status_info.code`, when the file had a `status_info` object.
    pub status_code: Option<i64>,
}

/// Everything extracted from one runner's storage (spec 4).
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerMetrics {
    pub installation_start_timestamp: Option<f64>,
    pub installed_timestamp: f64,
    pub pre_job: Option<PreJobMetrics>,
    pub post_job: Option<PostJobMetrics>,
    pub runner_name: String,
}

/// GitHub's conclusion of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobConclusion {
    ActionRequired,
    Cancelled,
    Failure,
    Neutral,
    Skipped,
    Success,
    TimedOut,
}

impl JobConclusion {
    /// GitHub's spelling, used in event lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ActionRequired => "action_required",
            Self::Cancelled => "cancelled",
            Self::Failure => "failure",
            Self::Neutral => "neutral",
            Self::Skipped => "skipped",
            Self::Success => "success",
            Self::TimedOut => "timed_out",
        }
    }
}

/// Job metrics found by the manager through the GitHub API (spec 5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GithubJobMetrics {
    pub queue_duration: f64,
    pub conclusion: Option<JobConclusion>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunnerInstalled {
    pub timestamp: f64,
    pub flavor: String,
    pub duration: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunnerStart {
    pub timestamp: f64,
    pub flavor: String,
    pub workflow: String,
    pub repo: String,
    pub github_event: String,
    pub idle: f64,
    pub queue_duration: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunnerStop {
    pub timestamp: f64,
    pub flavor: String,
    pub workflow: String,
    pub repo: String,
    pub github_event: String,
    pub status: PostJobStatus,
    pub status_code: Option<i64>,
    pub job_duration: f64,
    pub job_conclusion: Option<JobConclusion>,
}

/// One lifecycle event (spec 5).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    RunnerInstalled(RunnerInstalled),
    RunnerStart(RunnerStart),
    RunnerStop(RunnerStop),
}

impl Event {
    /// The `event` key of the JSON line.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RunnerInstalled(_) => "runner_installed",
            Self::RunnerStart(_) => "runner_start",
            Self::RunnerStop(_) => "runner_stop",
        }
    }
}

/// Why a storage is quarantined (machine-readable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineReason {
    Oversized,
    NotRegularFile,
    InvalidUtf8,
    InvalidJson,
    InvalidValue,
    InvalidTimestamp,
    SandboxTrap,
    Undeletable,
    /// A pulled tar stream that is not plainly the runner's metrics files.
    InvalidArchive,
}

impl QuarantineReason {
    /// The kebab-case spelling used in reason files and summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::NotRegularFile => "not-regular-file",
            Self::InvalidUtf8 => "invalid-utf8",
            Self::InvalidJson => "invalid-json",
            Self::InvalidValue => "invalid-value",
            Self::InvalidTimestamp => "invalid-timestamp",
            Self::SandboxTrap => "sandbox-trap",
            Self::Undeletable => "undeletable",
            Self::InvalidArchive => "invalid-archive",
        }
    }

    pub fn from_str_exact(s: &str) -> Option<Self> {
        [
            Self::Oversized,
            Self::NotRegularFile,
            Self::InvalidUtf8,
            Self::InvalidJson,
            Self::InvalidValue,
            Self::InvalidTimestamp,
            Self::SandboxTrap,
            Self::Undeletable,
            Self::InvalidArchive,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == s)
    }
}

/// Why one metrics file makes its storage corrupt: what the parsers return.
#[derive(Debug, Clone, PartialEq)]
pub struct Corruption {
    pub reason: QuarantineReason,
    pub detail: String,
}

impl Corruption {
    pub fn new(reason: QuarantineReason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

/// Where and why a storage was quarantined.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineInfo {
    pub reason: QuarantineReason,
    pub file: Option<String>,
    pub detail: String,
    pub location: String,
}

/// Why a root entry was left untouched.
#[derive(Debug, Clone, PartialEq)]
pub enum SkipReason {
    Excluded,
    NotIncluded,
    TooYoung(f64),
    NotADirectory,
    InvalidName,
    /// Gone between listing and handling (spec 7).
    Vanished,
}

/// What happened to one storage (spec 4).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Extracted(RunnerMetrics),
    NoData,
    Quarantined(QuarantineInfo),
    Skipped(SkipReason),
    Failed(String),
}

/// Which storages a run looks at (spec 4).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub exclude: Vec<String>,
    pub include: Option<Vec<String>>,
    pub min_age_seconds: Option<f64>,
}

/// One root entry as the scan saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RootEntry {
    /// `None` when the name is not valid UTF-8.
    pub name: Option<String>,
    pub skipped: Option<SkipReason>,
}

/// One storage in `<root>/.quarantine/`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantinedStorage {
    pub location: String,
    pub runner_name: String,
    pub reason: QuarantineReason,
    pub file: Option<String>,
    pub detail: String,
    pub quarantined_at: f64,
}

/// What a corrupt metrics file does to its runner (spec 9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    /// The whole runner is corrupt: quarantined, no events (ours).
    #[default]
    Strict,
    /// The corrupt file counts as missing; the rest is issued and the
    /// report says what was dropped (the later reference's).
    Lenient,
}

/// The metrics files a manager read from a runner itself, as raw bytes
/// (parsed later, by the same rules as files read from a storage).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PulledFiles {
    pub installed: Option<Vec<u8>>,
    pub pre_job: Option<Vec<u8>>,
    pub post_job: Option<Vec<u8>>,
}

/// How the manager handed a runner's metrics over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PulledSource {
    /// Files it read one by one.
    Loose(PulledFiles),
    /// The output of `tar -C DIR -cf - .` on the runner.
    Tar(Vec<u8>),
}

/// Metrics pulled from a runner (spec 9): staged as the storage
/// `<root>/<runner_name>`, then collected like any storage.
#[derive(Debug, Clone, PartialEq)]
pub struct PulledRunner {
    pub runner_name: String,
    /// The manager's installation start (the VM's creation time).
    pub installation_start: Option<f64>,
    pub files: PulledSource,
}
