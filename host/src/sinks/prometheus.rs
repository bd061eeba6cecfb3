//! A node_exporter textfile-collector file (`collect --prometheus-textfile`):
//! histograms of the durations the events carry and counters of what a
//! collect did, in the Prometheus text exposition format (0.0.4).
//!
//! The numbers come from what was actually written, not from a second
//! computation: [`ObservingSink`] wraps the [`EventSink`] and reads each
//! line after it has been appended durably, and [`Recorder::observe_report`]
//! counts the per-storage outcomes. So the file can never disagree with the
//! metrics log.
//!
//! Histograms and counters accumulate across runs, as Prometheus expects of
//! them: each collect reads the values of the file it wrote last time (only
//! our own metric names; anything unreadable starts from zero, which
//! Prometheus sees as a counter reset) and writes the sums, atomically (a
//! temporary file in the same directory, then a rename), so node_exporter
//! never reads half a file. The previous file is opened without following a
//! symlink and without blocking (`O_NOFOLLOW | O_NONBLOCK`), and anything but
//! a regular file there (a FIFO would hang the read forever) is an error
//! naming the path and what it is.
//!
//! Jobs are counted the way the upstream runner manager counts them
//! (`job_repository_count`, `job_event_count`, `job_conclusion_count`,
//! `job_status_count`), as four counters with one dimension each rather than
//! one counter with four labels: the repository, the GitHub event and the
//! post-job status come from files the job itself could write, so their
//! product would let a job mint series; one dimension per counter keeps the
//! series additive and each dimension is bounded on its own (repositories by
//! [`Recorder::max_repositories`], the rest by fixed lists, anything else
//! under `other`).
//!
//! Beside them, the tool's own health: lookups by result (a counter), the
//! rate limit GitHub last reported, this run's storages by outcome and its
//! duration, and when a collect last finished without an error (gauges; the
//! last success is carried over from the previous file by a run that fails).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::collect_options::LookupCounts;
use crate::log::EventSink;
use crate::summary::{OutcomeKind, StorageReport};

/// The results a lookup is counted under (`runner_metrics_lookups_total`).
pub const LOOKUP_RESULTS: [&str; 4] = ["found", "not-found", "failed", "skipped"];

/// Prefix of every metric name.
const PREFIX: &str = "runner_metrics";

/// The histograms: (name suffix, event, field, help, bucket upper bounds in
/// seconds). Buckets follow what a fleet sees: spawning takes from tens of
/// seconds (containers) to tens of minutes (VMs); idle and queue times range
/// from a second (a warm pool) to hours (a starved pool); jobs from seconds
/// to GitHub's 6-hour limit (and a day for self-hosted runners).
const HISTOGRAMS: [(&str, &str, &str, &str, &[f64]); 4] = [
    (
        "spawn_duration_seconds",
        "runner_installed",
        "duration",
        "Time from the storage's creation to the runner being installed (runner_installed.duration).",
        &[10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0],
    ),
    (
        "idle_seconds",
        "runner_start",
        "idle",
        "Time the runner waited, installed, before its job started (runner_start.idle).",
        &[1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 86400.0],
    ),
    (
        "queue_duration_seconds",
        "runner_start",
        "queue_duration",
        "Time the job waited for a runner, from GitHub (runner_start.queue_duration).",
        &[1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0],
    ),
    (
        "job_duration_seconds",
        "runner_stop",
        "job_duration",
        "Time from the job's start to its end on the runner (runner_stop.job_duration).",
        &[10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0],
    ),
];

/// The event kinds counted (spec 5).
const EVENTS: [&str; 3] = ["runner_installed", "runner_start", "runner_stop"];

/// The largest previous file read back (ours are a few KiB per flavor).
const MAX_PREVIOUS_BYTES: u64 = 4 << 20;

/// How many repositories get a series of their own by default; the others
/// are counted under [`OTHER`].
pub const DEFAULT_MAX_REPOSITORIES: usize = 100;

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

/// The per-job counters: (name suffix, label, help). One `runner_stop` line
/// (a job that ran and reported its end) adds one to each.
const JOB_COUNTERS: [(&str, &str, &str); 4] = [
    (
        "jobs_by_repository_total",
        "repository",
        "Jobs that ended (runner_stop events), by repository; past the repository limit, under \"other\".",
    ),
    (
        "jobs_by_github_event_total",
        "github_event",
        "Jobs that ended (runner_stop events), by the GitHub event that triggered them (unlisted: \"other\").",
    ),
    (
        "jobs_by_conclusion_total",
        "conclusion",
        "Jobs that ended (runner_stop events), by GitHub's job conclusion (\"unknown\" when GitHub did not say).",
    ),
    ("jobs_by_status_total", "status", "Jobs that ended (runner_stop events), by the runner's post-job status."),
];

/// Index of each job counter in [`JOB_COUNTERS`].
const BY_REPOSITORY: usize = 0;
const BY_EVENT: usize = 1;
const BY_CONCLUSION: usize = 2;
const BY_STATUS: usize = 3;

/// The label value a job is counted under in counter `dimension`, or `None`
/// if the value cannot be counted there at all. Repositories are bounded
/// later (see [`Recorder::render`]); anything not shaped `owner/repo` is
/// [`OTHER`].
fn job_label(dimension: usize, value: Option<&str>) -> Option<String> {
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

/// One histogram series: cumulative bucket counts (one per bound), sum, count.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// The values of the textfile, kept in memory during a run.
#[derive(Debug)]
pub struct Recorder {
    /// (histogram index, flavor) -> series.
    histograms: BTreeMap<(usize, String), Histogram>,
    /// outcome -> storages.
    outcomes: BTreeMap<String, u64>,
    /// (event, flavor) -> events issued.
    events: BTreeMap<(String, String), u64>,
    /// (job counter index, flavor, label value) -> jobs. Repositories are
    /// kept unbounded here (one run sees at most one per storage) and folded
    /// into [`OTHER`] past the limit when rendered.
    jobs: BTreeMap<(usize, String, String), u64>,
    /// Repositories in the order they were first seen: those of the
    /// previous file first (they keep their series), then this run's.
    repositories_loaded: Vec<String>,
    repositories_seen: Vec<String>,
    /// How many repositories get a series of their own; the rest are counted
    /// under `repository="other"`. Default [`DEFAULT_MAX_REPOSITORIES`].
    pub max_repositories: usize,
    /// result -> lookups, across runs (present once a run looked anything up).
    lookups: BTreeMap<String, u64>,
    /// outcome -> storages of this run only.
    run_outcomes: BTreeMap<String, u64>,
    /// How this run ended, once [`Recorder::record_run`] said so.
    run: Option<RunHealth>,
    /// The last success read back from the previous file.
    last_success: Option<f64>,
}

/// How one run went, for the health gauges.
#[derive(Debug, Clone, Copy)]
struct RunHealth {
    duration_seconds: f64,
    succeeded: bool,
    rate_limit_remaining: Option<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::with_max_repositories(DEFAULT_MAX_REPOSITORIES)
    }
}

impl Recorder {
    /// A recorder that gives at most `max` repositories a series of their
    /// own (`0`: every job under `repository="other"`).
    pub fn with_max_repositories(max: usize) -> Self {
        Self {
            histograms: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            events: BTreeMap::new(),
            jobs: BTreeMap::new(),
            repositories_loaded: Vec::new(),
            repositories_seen: Vec::new(),
            max_repositories: max,
            lookups: BTreeMap::new(),
            run_outcomes: BTreeMap::new(),
            run: None,
            last_success: None,
        }
    }

    /// Counts one job under `label` of counter `dimension`.
    fn add_job(&mut self, dimension: usize, flavor: &str, label: String, count: u64, loaded: bool) {
        if dimension == BY_REPOSITORY && label != OTHER {
            let order = if loaded { &mut self.repositories_loaded } else { &mut self.repositories_seen };
            if !order.contains(&label) {
                order.push(label.clone());
            }
        }
        *self.jobs.entry((dimension, flavor.to_owned(), label)).or_default() += count;
    }

    /// The repositories that get a series of their own: the previous file's
    /// first, then this run's in the order seen, up to the limit.
    fn kept_repositories(&self) -> Vec<&str> {
        let mut kept: Vec<&str> = Vec::new();
        for repository in self.repositories_loaded.iter().chain(&self.repositories_seen) {
            if kept.len() >= self.max_repositories {
                break;
            }
            if !kept.contains(&repository.as_str()) {
                kept.push(repository);
            }
        }
        kept
    }

    /// Counts one storage's outcome.
    pub fn observe_report(&mut self, report: &StorageReport) {
        *self.outcomes.entry(report.outcome.as_str().to_owned()).or_default() += 1;
        *self.run_outcomes.entry(report.outcome.as_str().to_owned()).or_default() += 1;
    }

    /// How the run went: its duration, whether it finished without an
    /// error, and its lookups (`None`: the run looked nothing up).
    pub fn record_run(&mut self, duration: std::time::Duration, succeeded: bool, lookups: Option<LookupCounts>) {
        if let Some(counts) = lookups {
            let by_result = [counts.found, counts.not_found, counts.failed, counts.skipped];
            for (result, count) in LOOKUP_RESULTS.iter().zip(by_result) {
                *self.lookups.entry((*result).to_owned()).or_default() += count;
            }
        }
        let rate_limit_remaining = lookups.and_then(|c| c.rate_limit_remaining);
        self.run = Some(RunHealth { duration_seconds: duration.as_secs_f64(), succeeded, rate_limit_remaining });
    }

    /// Counts one event line (as written to the log) and its durations.
    /// Lines that are not events (`extract` output) are ignored.
    pub fn observe_line(&mut self, line: &str) {
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line) else { return };
        let (Some(kind), Some(flavor)) =
            (event.get("event").and_then(Value::as_str), event.get("flavor").and_then(Value::as_str))
        else {
            return;
        };
        if !EVENTS.contains(&kind) {
            return;
        }
        *self.events.entry((kind.to_owned(), flavor.to_owned())).or_default() += 1;
        if kind == "runner_stop" {
            let text = |key: &str| event.get(key).and_then(Value::as_str);
            let values = [text("repo"), text("github_event"), text("job_conclusion"), text("status")];
            for (dimension, value) in values.into_iter().enumerate() {
                if let Some(label) = job_label(dimension, value) {
                    self.add_job(dimension, flavor, label, 1, false);
                }
            }
        }
        for (index, (_, on, field, _, bounds)) in HISTOGRAMS.iter().enumerate() {
            let Some(value) = (kind == *on).then(|| event.get(*field).and_then(Value::as_f64)).flatten() else {
                continue;
            };
            if !value.is_finite() {
                continue;
            }
            let series = self
                .histograms
                .entry((index, flavor.to_owned()))
                .or_insert_with(|| Histogram { buckets: vec![0; bounds.len()], ..Histogram::default() });
            for (bucket, bound) in series.buckets.iter_mut().zip(bounds.iter()) {
                if value <= *bound {
                    *bucket += 1;
                }
            }
            series.sum += value;
            series.count += 1;
        }
    }

    /// Adds the values of a file this module wrote before (see the module
    /// doc). Lines that are not ours, or do not parse, are ignored.
    pub fn load(&mut self, text: &str) {
        for line in text.lines() {
            let Some((name, labels, value)) = parse_sample(line) else { continue };
            if !(0.0..=1e18).contains(&value) {
                continue;
            }
            let label = |key: &str| labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
            if name == format!("{PREFIX}_storages_total") {
                if let Some(outcome) = label("outcome").filter(|o| OutcomeKind::ALL.iter().any(|k| k.as_str() == *o)) {
                    *self.outcomes.entry(outcome.to_owned()).or_default() += value as u64;
                }
                continue;
            }
            if name == format!("{PREFIX}_lookups_total") {
                if let Some(result) = label("result").filter(|r| LOOKUP_RESULTS.contains(r)) {
                    *self.lookups.entry(result.to_owned()).or_default() += value as u64;
                }
                continue;
            }
            if name == format!("{PREFIX}_last_success_timestamp_seconds") {
                self.last_success = Some(value);
                continue;
            }
            if name == format!("{PREFIX}_events_total") {
                if let (Some(event), Some(flavor)) = (label("event").filter(|e| EVENTS.contains(e)), label("flavor")) {
                    *self.events.entry((event.to_owned(), flavor.to_owned())).or_default() += value as u64;
                }
                continue;
            }
            if let Some(dimension) = JOB_COUNTERS.iter().position(|(suffix, ..)| name == format!("{PREFIX}_{suffix}")) {
                let (_, key, _) = JOB_COUNTERS[dimension];
                // `other` read back stays `other` (it is not a repository).
                let value_label = match label(key) {
                    Some(OTHER) if dimension == BY_REPOSITORY => Some(OTHER.to_owned()),
                    found => job_label(dimension, found),
                };
                if let (Some(value_label), Some(flavor)) = (value_label, label("flavor")) {
                    self.add_job(dimension, flavor, value_label, value as u64, true);
                }
                continue;
            }
            for (index, (suffix, _, _, _, bounds)) in HISTOGRAMS.iter().enumerate() {
                let Some(part) =
                    name.strip_prefix(PREFIX).and_then(|n| n.strip_prefix('_')).and_then(|n| n.strip_prefix(suffix))
                else {
                    continue;
                };
                let Some(flavor) = label("flavor") else { continue };
                let series = self
                    .histograms
                    .entry((index, flavor.to_owned()))
                    .or_insert_with(|| Histogram { buckets: vec![0; bounds.len()], ..Histogram::default() });
                match part {
                    "_bucket" => {
                        let le = label("le").unwrap_or("");
                        if let Some(i) = bounds.iter().position(|b| format_bound(*b) == le) {
                            if let Some(bucket) = series.buckets.get_mut(i) {
                                *bucket += value as u64;
                            }
                        }
                    }
                    "_sum" => series.sum += value,
                    "_count" => series.count += value as u64,
                    _ => {}
                }
            }
        }
    }

    /// The file's content: HELP and TYPE for each metric, then its samples.
    pub fn render(&self, now_unix: f64) -> String {
        let mut out = String::new();
        for (index, (suffix, _, _, help, bounds)) in HISTOGRAMS.iter().enumerate() {
            let name = format!("{PREFIX}_{suffix}");
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for ((i, flavor), series) in self.histograms.range((index, String::new())..) {
                if *i != index {
                    break;
                }
                let flavor = escape_label(flavor);
                for (bound, count) in bounds.iter().zip(&series.buckets) {
                    let _ =
                        writeln!(out, "{name}_bucket{{flavor=\"{flavor}\",le=\"{}\"}} {count}", format_bound(*bound));
                }
                let _ = writeln!(out, "{name}_bucket{{flavor=\"{flavor}\",le=\"+Inf\"}} {}", series.count);
                let _ = writeln!(out, "{name}_sum{{flavor=\"{flavor}\"}} {}", format_value(series.sum));
                let _ = writeln!(out, "{name}_count{{flavor=\"{flavor}\"}} {}", series.count);
            }
        }
        let help = "Runner storages handled by collect, by outcome.";
        write_by_outcome(&mut out, "storages_total", "counter", help, &self.outcomes);
        let name = format!("{PREFIX}_events_total");
        let _ = writeln!(
            out,
            "# HELP {name} Events written to the metrics log, by event and flavor.\n# TYPE {name} counter"
        );
        for ((event, flavor), count) in &self.events {
            let _ = writeln!(out, "{name}{{event=\"{event}\",flavor=\"{}\"}} {count}", escape_label(flavor));
        }
        let kept = self.kept_repositories();
        for (dimension, (suffix, key, help)) in JOB_COUNTERS.iter().enumerate() {
            let name = format!("{PREFIX}_{suffix}");
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let mut series: BTreeMap<(&str, &str), u64> = BTreeMap::new();
            for ((_, flavor, value), count) in self.jobs.iter().filter(|((d, ..), _)| *d == dimension) {
                let value = if dimension == BY_REPOSITORY && !kept.contains(&value.as_str()) { OTHER } else { value };
                *series.entry((flavor, value)).or_default() += count;
            }
            for ((flavor, value), count) in series {
                let _ = writeln!(
                    out,
                    "{name}{{flavor=\"{}\",{key}=\"{}\"}} {count}",
                    escape_label(flavor),
                    escape_label(value)
                );
            }
        }
        let name = format!("{PREFIX}_last_collect_timestamp_seconds");
        let _ = writeln!(out, "# HELP {name} When the last collect wrote this file (UNIX time).\n# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {}", format_value(now_unix));
        self.render_health(&mut out, now_unix);
        out
    }

    /// The tool's own health series (see the module doc).
    fn render_health(&self, out: &mut String, now_unix: f64) {
        if !self.lookups.is_empty() {
            let name = format!("{PREFIX}_lookups_total");
            let _ = writeln!(out, "# HELP {name} GitHub job lookups, by result.\n# TYPE {name} counter");
            for result in LOOKUP_RESULTS {
                let _ =
                    writeln!(out, "{name}{{result=\"{result}\"}} {}", self.lookups.get(result).copied().unwrap_or(0));
            }
        }
        let Some(run) = self.run else { return };
        if let Some(remaining) = run.rate_limit_remaining {
            let name = format!("{PREFIX}_github_rate_limit_remaining");
            let _ = writeln!(
                out,
                "# HELP {name} X-RateLimit-Remaining of GitHub's last answer in the last collect.\n# TYPE {name} gauge"
            );
            let _ = writeln!(out, "{name} {remaining}");
        }
        let help = "Storages handled by the last collect, by outcome.";
        write_by_outcome(out, "last_run_storages", "gauge", help, &self.run_outcomes);
        let name = format!("{PREFIX}_last_run_duration_seconds");
        let _ = writeln!(out, "# HELP {name} How long the last collect took.\n# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {}", format_value(run.duration_seconds));
        let last_success = if run.succeeded { Some(now_unix) } else { self.last_success };
        if let Some(at) = last_success {
            let name = format!("{PREFIX}_last_success_timestamp_seconds");
            let _ = writeln!(
                out,
                "# HELP {name} When a collect last finished without an error (UNIX time).\n# TYPE {name} gauge"
            );
            let _ = writeln!(out, "{name} {}", format_value(at));
        }
    }

    /// Adds the values already in `path` (if it exists), then replaces it
    /// atomically with the sums. Errors name the path; anything but a
    /// regular file at `path` is refused (see [`read_previous`]).
    pub fn write(&mut self, path: &Path) -> anyhow::Result<()> {
        if let Some(text) = read_previous(path)? {
            self.load(&text);
        }
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        write_atomically(path, self.render(now).as_bytes())
            .with_context(|| format!("writing the Prometheus textfile {}", path.display()))
    }
}

/// What a directory entry is, in words, for error messages.
fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_file() {
        "regular file"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_symlink() {
        "symbolic link"
    } else if file_type.is_fifo() {
        "FIFO (named pipe)"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// The directory a textfile is written in (its temporary file too).
pub fn textfile_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Checks, before a run, that `path` can be a textfile: its directory
/// exists, and whatever is at `path` already is a regular file (not a
/// symlink, FIFO, directory, device or socket). Nothing is read or created.
pub fn check_textfile(path: &Path) -> anyhow::Result<()> {
    let dir = textfile_dir(path);
    anyhow::ensure!(dir.is_dir(), "Prometheus textfile {}: {} is not a directory", path.display(), dir.display());
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => Ok(()),
        Ok(meta) => Err(not_a_regular_file(path, meta.file_type())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("Prometheus textfile {}", path.display())),
    }
}

fn not_a_regular_file(path: &Path, file_type: std::fs::FileType) -> anyhow::Error {
    anyhow::anyhow!(
        "Prometheus textfile {}: is a {}, not a regular file; refusing to read or replace it",
        path.display(),
        kind_of(file_type)
    )
}

/// The text of the file this module wrote last time, if any. The file is
/// opened with `O_NONBLOCK` (a FIFO would otherwise block the open or the
/// read forever), `O_NOFOLLOW` (a symlink is not followed out of the
/// directory) and `O_CLOEXEC`, then checked with `fstat` on the descriptor
/// itself: anything but a regular file is an error naming the path and what
/// it is. A file that is not UTF-8 is not ours: it counts as absent (the
/// counters restart, which Prometheus handles as a reset).
pub fn read_previous(path: &Path) -> anyhow::Result<Option<String>> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            // ELOOP (a symlink under O_NOFOLLOW), ENXIO (a socket): say what is there.
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if !meta.file_type().is_file() {
                    return Err(not_a_regular_file(path, meta.file_type()));
                }
            }
            return Err(e).with_context(|| format!("reading the Prometheus textfile {}", path.display()));
        }
    };
    let meta = file.metadata().with_context(|| format!("reading the Prometheus textfile {}", path.display()))?;
    if !meta.file_type().is_file() {
        return Err(not_a_regular_file(path, meta.file_type()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PREVIOUS_BYTES)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading the Prometheus textfile {}", path.display()))?;
    Ok(String::from_utf8(bytes).ok())
}

/// Writes `content` to a temporary file beside `path` (node_exporter ignores
/// names not ending in `.prom`), syncs it, and renames it over `path`.
pub fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    let dir = textfile_dir(path);
    let mut temp = tempfile::Builder::new().prefix(".runner-metrics.").suffix(".tmp").tempfile_in(dir)?;
    temp.write_all(content)?;
    std::fs::set_permissions(temp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// An [`EventSink`] that passes lines on and, once they are written, shows
/// them to a [`Recorder`].
pub struct ObservingSink<'a> {
    pub inner: &'a mut dyn EventSink,
    pub recorder: &'a RefCell<Recorder>,
}

impl EventSink for ObservingSink<'_> {
    fn append(&mut self, lines: &[String]) -> io::Result<()> {
        self.inner.append(lines)?;
        let mut recorder = self.recorder.borrow_mut();
        for line in lines {
            recorder.observe_line(line);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// A bucket bound as Prometheus clients write it (`30`, `0.5`).
/// A metric with one sample per outcome (every outcome, 0 when none).
fn write_by_outcome(out: &mut String, suffix: &str, kind: &str, help: &str, counts: &BTreeMap<String, u64>) {
    let name = format!("{PREFIX}_{suffix}");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for outcome in OutcomeKind::ALL {
        let count = counts.get(outcome.as_str()).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}{{outcome=\"{}\"}} {count}", outcome.as_str());
    }
}

fn format_bound(bound: f64) -> String {
    format_value(bound)
}

/// A sample value: integers without a fraction, others as Rust prints them
/// (shortest round-trip form), which Prometheus parses.
fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// A label value escaped per the exposition format: `\`, `"`, newline.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One sample line: metric name, labels in file order, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// `name{k="v",...} value` (or `name value`); comments and anything else
/// give `None`.
pub fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line.get(..name_end)?.to_owned();
    let mut rest = line.get(name_end..)?;
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let end: Option<usize>;
        loop {
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                if c == '}' && key.is_empty() {
                    break;
                }
                key.push(c);
            }
            if key.is_empty() {
                // `{}` or a trailing comma: the label set ended.
                end = inner.find('}').map(|i| i + 1);
                break;
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, '"') => break,
                    (_, c) => value.push(c),
                }
            }
            labels.push((key.trim().to_owned(), value));
            match chars.next()? {
                (_, ',') => continue,
                (i, '}') => {
                    end = Some(i + 1);
                    break;
                }
                _ => return None,
            }
        }
        rest = inner.get(end?..)?;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTALLED: &str = r#"{"timestamp": 2.0, "event": "runner_installed", "flavor": "small", "duration": 45.0}"#;
    const START: &str = r#"{"timestamp": 3.0, "event": "runner_start", "flavor": "sm\"all", "workflow": "ci", "repo": "o/r", "github_event": "push", "idle": 0.5, "queue_duration": 7.0}"#;

    #[test]
    fn renders_cumulative_buckets_and_reads_them_back() {
        let mut recorder = Recorder::default();
        recorder.observe_line(INSTALLED);
        recorder.observe_line(START);
        recorder.observe_line("not json");
        let text = recorder.render(0.0);
        assert!(
            text.contains("runner_metrics_spawn_duration_seconds_bucket{flavor=\"small\",le=\"30\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("runner_metrics_spawn_duration_seconds_bucket{flavor=\"small\",le=\"60\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("runner_metrics_idle_seconds_bucket{flavor=\"sm\\\"all\",le=\"1\"} 1\n"), "{text}");
        assert!(text.contains("runner_metrics_queue_duration_seconds_sum{flavor=\"sm\\\"all\"} 7\n"), "{text}");
        assert!(
            text.contains("runner_metrics_events_total{event=\"runner_start\",flavor=\"sm\\\"all\"} 1\n"),
            "{text}"
        );

        let mut again = Recorder::default();
        again.load(&text);
        assert_eq!(again.render(0.0), text, "a file read back renders the same");
        again.load(&text);
        assert!(again.render(0.0).contains("runner_metrics_idle_seconds_count{flavor=\"sm\\\"all\"} 2\n"));
    }

    fn stop(repo: &str, event: &str, status: &str, conclusion: Option<&str>) -> String {
        let conclusion = conclusion.map(|c| format!(r#", "job_conclusion": "{c}""#)).unwrap_or_default();
        format!(
            r#"{{"timestamp": 5.0, "event": "runner_stop", "flavor": "small", "workflow": "ci", "repo": "{repo}", "github_event": "{event}", "status": "{status}", "job_duration": 2.0{conclusion}}}"#
        )
    }

    fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        text.lines().filter_map(parse_sample).find_map(|(n, l, v)| {
            let wanted: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            (n == name && l == wanted).then_some(v)
        })
    }

    #[test]
    fn health_series_count_lookups_across_runs_and_keep_the_last_success_through_a_failure() {
        use std::time::Duration;
        let lookups = |found, rate_limit_remaining| LookupCounts {
            found,
            not_found: 1,
            failed: 2,
            skipped: 0,
            rate_limit_remaining,
        };
        let found = |text: &str| sample(text, "runner_metrics_lookups_total", &[("result", "found")]);
        let success = |text: &str| sample(text, "runner_metrics_last_success_timestamp_seconds", &[]);
        let extracted = |text: &str| sample(text, "runner_metrics_last_run_storages", &[("outcome", "extracted")]);
        let mut first = Recorder::default();
        first.observe_report(&StorageReport::new("r-1", OutcomeKind::Extracted, "deleted", 3));
        first.record_run(Duration::from_millis(1500), true, Some(lookups(2, Some(4999))));
        let text = first.render(100.0);
        assert_eq!(found(&text), Some(2.0), "{text}");
        assert_eq!(sample(&text, "runner_metrics_lookups_total", &[("result", "failed")]), Some(2.0));
        assert_eq!(sample(&text, "runner_metrics_github_rate_limit_remaining", &[]), Some(4999.0));
        assert_eq!(sample(&text, "runner_metrics_last_run_duration_seconds", &[]), Some(1.5));
        assert_eq!((success(&text), extracted(&text)), (Some(100.0), Some(1.0)));
        // A failed run: the lookups add up, the last success stays, this run's storages are its own.
        let mut second = Recorder::default();
        second.load(&text);
        second.record_run(Duration::from_secs(2), false, Some(lookups(1, None)));
        let text = second.render(200.0);
        assert_eq!((found(&text), success(&text), extracted(&text)), (Some(3.0), Some(100.0), Some(0.0)), "{text}");
        assert_eq!(sample(&text, "runner_metrics_github_rate_limit_remaining", &[]), None, "no answer, no gauge");
        // A run without lookups keeps the counter and succeeds.
        let mut third = Recorder::default();
        third.load(&text);
        third.record_run(Duration::from_secs(1), true, None);
        let text = third.render(300.0);
        assert_eq!((found(&text), success(&text)), (Some(3.0), Some(300.0)), "{text}");
        assert!(text.contains("# TYPE runner_metrics_lookups_total counter\n"), "{text}");
    }

    #[test]
    fn counts_jobs_by_repository_event_conclusion_and_status() {
        let mut recorder = Recorder::default();
        recorder.observe_line(&stop("o/a", "push", "normal", Some("success")));
        recorder.observe_line(&stop("o/a", "pull_request", "abnormal", None));
        recorder.observe_line(&stop("o/b", "made-up-event", "normal", Some("failure")));
        recorder.observe_line(START); // runner_start: not a finished job
        let text = recorder.render(0.0);
        let get = |suffix: &str, key: &str, value: &str| {
            sample(&text, &format!("runner_metrics_{suffix}"), &[("flavor", "small"), (key, value)])
        };
        assert_eq!(get("jobs_by_repository_total", "repository", "o/a"), Some(2.0), "{text}");
        assert_eq!(get("jobs_by_repository_total", "repository", "o/b"), Some(1.0), "{text}");
        assert_eq!(get("jobs_by_repository_total", "repository", "o/r"), None, "{text}");
        assert_eq!(get("jobs_by_github_event_total", "github_event", "push"), Some(1.0), "{text}");
        assert_eq!(get("jobs_by_github_event_total", "github_event", "other"), Some(1.0), "{text}");
        assert_eq!(get("jobs_by_github_event_total", "github_event", "made-up-event"), None, "{text}");
        assert_eq!(get("jobs_by_conclusion_total", "conclusion", "unknown"), Some(1.0), "{text}");
        assert_eq!(get("jobs_by_conclusion_total", "conclusion", "failure"), Some(1.0), "{text}");
        assert_eq!(get("jobs_by_status_total", "status", "normal"), Some(2.0), "{text}");
        assert_eq!(get("jobs_by_status_total", "status", "abnormal"), Some(1.0), "{text}");

        let mut again = Recorder::default();
        again.load(&text);
        assert_eq!(again.render(0.0), text, "a file read back renders the same");
    }

    #[test]
    fn repositories_past_the_limit_are_counted_as_other_and_keep_their_series_across_runs() {
        let mut first = Recorder::with_max_repositories(2);
        for repo in ["o/a", "o/b", "o/c", "o/a", "o/d"] {
            first.observe_line(&stop(repo, "push", "normal", None));
        }
        let text = first.render(0.0);
        let repos = |text: &str| -> Vec<(String, f64)> {
            text.lines()
                .filter_map(parse_sample)
                .filter(|(n, ..)| n == "runner_metrics_jobs_by_repository_total")
                .map(|(_, l, v)| (l[1].1.clone(), v))
                .collect()
        };
        assert_eq!(repos(&text), vec![("o/a".into(), 2.0), ("o/b".into(), 1.0), ("other".into(), 2.0)], "{text}");

        // The next run sees a new repository first: the old ones keep their series.
        let mut second = Recorder::with_max_repositories(2);
        second.observe_line(&stop("o/z", "push", "normal", None));
        second.observe_line(&stop("o/b", "push", "normal", None));
        second.load(&text);
        let text = second.render(0.0);
        assert_eq!(repos(&text), vec![("o/a".into(), 2.0), ("o/b".into(), 2.0), ("other".into(), 3.0)], "{text}");

        let mut none = Recorder::with_max_repositories(0);
        none.observe_line(&stop("o/a", "push", "normal", None));
        assert_eq!(repos(&none.render(0.0)), vec![("other".into(), 1.0)]);
    }

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.prom");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_previous(&fifo).unwrap_err().to_string();
        assert!(err.contains(&fifo.display().to_string()) && err.contains("FIFO"), "{err}");
        assert!(check_textfile(&fifo).unwrap_err().to_string().contains("FIFO"));

        let target = dir.path().join("target.prom");
        std::fs::write(&target, "runner_metrics_storages_total{outcome=\"extracted\"} 1\n").unwrap();
        let link = dir.path().join("link.prom");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = read_previous(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");

        let sub = dir.path().join("dir.prom");
        std::fs::create_dir(&sub).unwrap();
        assert!(read_previous(&sub).unwrap_err().to_string().contains("directory"));

        assert!(read_previous(&target).unwrap().unwrap().contains("extracted"));
        assert!(read_previous(&dir.path().join("absent.prom")).unwrap().is_none());
        check_textfile(&target).unwrap();
        check_textfile(&dir.path().join("absent.prom")).unwrap();
        assert!(check_textfile(&dir.path().join("missing").join("x.prom")).is_err());
    }

    #[test]
    fn parses_samples() {
        assert_eq!(parse_sample("a 1"), Some(("a".into(), vec![], 1.0)));
        assert_eq!(
            parse_sample(r#"a_bucket{flavor="x\\y\"z\n",le="+Inf"} 3"#),
            Some(("a_bucket".into(), vec![("flavor".into(), "x\\y\"z\n".into()), ("le".into(), "+Inf".into())], 3.0))
        );
        assert_eq!(parse_sample("# HELP a b"), None);
        assert_eq!(parse_sample(r#"a{b="c} 1"#), None);
    }
}
