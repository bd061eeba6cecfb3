//! The runner-side writers: POSIX shell scripts that a manager templates
//! into its runners, which write the files of spec 2 into the runner's
//! storage (`runner-metrics hooks print pre-job|post-job|installed`).
//!
//! They need only `sh` and coreutils (no jq), write atomically (a temporary
//! file in the same directory, then a rename) and escape JSON strings
//! exactly. The target directory is `$RUNNER_METRICS_DIR`, default
//! [`DEFAULT_DIR`]. The sources are `host/hooks/*.sh`.

/// The environment variable naming the directory the scripts write to.
pub const DIR_ENV: &str = "RUNNER_METRICS_DIR";
/// Where the scripts write when `$RUNNER_METRICS_DIR` is unset or empty:
/// the runner's view of its storage directory in github-runner-operator.
pub const DEFAULT_DIR: &str = "/metrics-exchange";

/// `ACTIONS_RUNNER_HOOK_JOB_STARTED`: writes `pre-job-metrics.json` from
/// `GITHUB_WORKFLOW`, `GITHUB_REPOSITORY`, `GITHUB_EVENT_NAME`,
/// `GITHUB_RUN_ID`, `GITHUB_RUN_ATTEMPT` and the current time.
pub const PRE_JOB: &str = include_str!("../../hooks/pre-job.sh");
/// `post-job.sh EXIT_CODE` (or `--status STATUS CODE`): writes
/// `post-job-metrics.json` unless one exists already.
pub const POST_JOB: &str = include_str!("../../hooks/post-job.sh");
/// Writes `runner-installed.timestamp`.
pub const INSTALLED: &str = include_str!("../../hooks/installed.sh");

/// `(name, script)` for every hook, as `hooks print` names them.
pub const ALL: [(&str, &str); 3] = [("pre-job", PRE_JOB), ("post-job", POST_JOB), ("installed", INSTALLED)];

/// The script called `name`.
pub fn script(name: &str) -> Option<&'static str> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}
