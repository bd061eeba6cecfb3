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
//! the names of its [`Naming`]; anything unreadable starts from zero, which
//! Prometheus sees as a counter reset) and writes the sums atomically
//! ([`textfile`]), so node_exporter never reads half a file.
//!
//! Jobs are counted the way the upstream runner manager counts them
//! (`job_repository_count`, `job_event_count`, `job_conclusion_count`,
//! `job_status_count`), as four counts with one dimension each rather than
//! one with four labels: the repository, the GitHub event and the post-job
//! status come from files the job itself could write, so their product
//! would let a job mint series. One dimension per count keeps the series
//! additive, and each is bounded on its own (repositories by
//! [`Recorder::max_repositories`], the rest by fixed lists, anything else
//! under `other`).
//!
//! Beside them, the tool's own health: lookups by result (a counter), the
//! rate limit GitHub last reported, this run's storages by outcome and its
//! duration, and when a collect last finished without an error (gauges; the
//! last success is carried over from the previous file by a run that fails).

mod exposition;
mod names;
mod textfile;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::collect_options::LookupCounts;
use crate::log::EventSink;
use crate::summary::{OutcomeKind, StorageReport};
use exposition::{escape_label, format_value};
pub use exposition::{parse_sample, Sample};
use names::{job_label, HistogramNames, Layout, BY_REPOSITORY, OBSERVED, PREFIX};
pub use names::{Naming, CONCLUSIONS, GITHUB_EVENTS, OTHER, STATUSES, UNKNOWN};
pub use textfile::{check_textfile, read_previous, textfile_dir, write_atomically};

/// The results a lookup is counted under (`runner_metrics_lookups_total`).
pub const LOOKUP_RESULTS: [&str; 4] = ["found", "not-found", "failed", "skipped"];

/// The event kinds counted (spec 5).
const EVENTS: [&str; 3] = ["runner_installed", "runner_start", "runner_stop"];

/// How many repositories get a series of their own by default; the others
/// are counted under [`OTHER`].
pub const DEFAULT_MAX_REPOSITORIES: usize = 100;

/// The histogram index of [`Layout::run_duration`] (after those of
/// [`OBSERVED`]).
const RUN_DURATION: usize = OBSERVED.len();

/// One histogram series: cumulative bucket counts (one per bound), sum, count.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(bounds) {
            if value <= *bound {
                *bucket += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }
}

/// The values of the textfile, kept in memory during a run.
#[derive(Debug)]
pub struct Recorder {
    /// The names, labels and buckets written (and read back).
    layout: &'static Layout,
    /// (histogram index, flavor) -> series.
    histograms: BTreeMap<(usize, String), Histogram>,
    /// outcome -> storages.
    outcomes: BTreeMap<String, u64>,
    /// (event, flavor) -> events issued.
    events: BTreeMap<(String, String), u64>,
    /// (job counter index, flavor, label value) -> jobs. The flavor is ""
    /// in a naming without it. Repositories are kept unbounded here (one run
    /// sees at most one per storage) and folded into [`OTHER`] past the
    /// limit when rendered.
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
        Self::new(Naming::Ours, DEFAULT_MAX_REPOSITORIES)
    }
}

impl Recorder {
    /// A recorder writing `naming`'s names that gives at most `max`
    /// repositories a series of their own (`0`: every job under
    /// `repository="other"`).
    pub fn new(naming: Naming, max_repositories: usize) -> Self {
        Self {
            layout: naming.layout(),
            histograms: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            events: BTreeMap::new(),
            jobs: BTreeMap::new(),
            repositories_loaded: Vec::new(),
            repositories_seen: Vec::new(),
            max_repositories,
            lookups: BTreeMap::new(),
            run_outcomes: BTreeMap::new(),
            run: None,
            last_success: None,
        }
    }

    /// Our names, at most `max` repositories by name.
    pub fn with_max_repositories(max: usize) -> Self {
        Self::new(Naming::Ours, max)
    }

    /// Every histogram of the layout with its index.
    fn histogram_names(&self) -> impl Iterator<Item = (usize, &'static HistogramNames)> {
        let layout = self.layout;
        layout.histograms.iter().enumerate().chain(layout.run_duration.iter().map(|h| (RUN_DURATION, h)))
    }

    /// The series of histogram `index` for `flavor`, created empty.
    fn histogram(&mut self, index: usize, bounds: &[f64], flavor: &str) -> &mut Histogram {
        self.histograms
            .entry((index, flavor.to_owned()))
            .or_insert_with(|| Histogram { buckets: vec![0; bounds.len()], ..Histogram::default() })
    }

    /// The flavor a job is counted under: none in a naming without it.
    fn job_flavor<'f>(&self, flavor: &'f str) -> &'f str {
        if self.layout.job_counts_by_flavor {
            flavor
        } else {
            ""
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
        let flavor = self.job_flavor(flavor).to_owned();
        *self.jobs.entry((dimension, flavor, label)).or_default() += count;
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
        add(&mut self.outcomes, report.outcome.as_str(), 1);
        add(&mut self.run_outcomes, report.outcome.as_str(), 1);
    }

    /// How the run of `flavor` went: its duration, whether it finished
    /// without an error, and its lookups (`None`: the run looked nothing up).
    pub fn record_run(
        &mut self,
        flavor: &str,
        duration: std::time::Duration,
        succeeded: bool,
        lookups: Option<LookupCounts>,
    ) {
        if let Some(counts) = lookups {
            let by_result = [counts.found, counts.not_found, counts.failed, counts.skipped];
            for (result, count) in LOOKUP_RESULTS.iter().zip(by_result) {
                add(&mut self.lookups, result, count);
            }
        }
        if let Some(names) = &self.layout.run_duration {
            self.histogram(RUN_DURATION, names.bounds, flavor).observe(names.bounds, duration.as_secs_f64());
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
        for (index, ((on, field), names)) in OBSERVED.iter().zip(&self.layout.histograms).enumerate() {
            let Some(value) = (kind == *on).then(|| event.get(*field).and_then(Value::as_f64)).flatten() else {
                continue;
            };
            // Durations are never negative (spec 5 clamps them) nor infinite:
            // a line that says otherwise is not observed (upstream observes both).
            if value.is_finite() && value >= 0.0 {
                self.histogram(index, names.bounds, flavor).observe(names.bounds, value);
            }
        }
    }

    /// Adds the values of a file this module wrote before (see the module
    /// doc). Lines that are not of this naming, or do not parse, are ignored.
    pub fn load(&mut self, text: &str) {
        for line in text.lines() {
            let Some((name, labels, value)) = parse_sample(line) else { continue };
            if !(0.0..=1e18).contains(&value) {
                continue;
            }
            let label = |key: &str| labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
            if name == format!("{PREFIX}_storages_total") {
                if let Some(outcome) = label("outcome").filter(|o| OutcomeKind::ALL.iter().any(|k| k.as_str() == *o)) {
                    add(&mut self.outcomes, outcome, value as u64);
                }
                continue;
            }
            if name == format!("{PREFIX}_lookups_total") {
                if let Some(result) = label("result").filter(|r| LOOKUP_RESULTS.contains(r)) {
                    add(&mut self.lookups, result, value as u64);
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
            if let Some(dimension) = self.layout.job_counters.iter().position(|c| name == c.name) {
                let key = self.layout.job_counters[dimension].label;
                // `other` read back stays `other` (it is not a repository).
                let value_label = match label(key) {
                    Some(OTHER) if dimension == BY_REPOSITORY => Some(OTHER.to_owned()),
                    found => job_label(dimension, found),
                };
                let flavor = if self.layout.job_counts_by_flavor { label("flavor") } else { Some("") };
                if let (Some(value_label), Some(flavor)) = (value_label, flavor) {
                    self.add_job(dimension, flavor, value_label, value as u64, true);
                }
                continue;
            }
            let histogram =
                self.histogram_names().find_map(|(index, names)| Some((index, names, name.strip_prefix(names.name)?)));
            let (Some((index, names, part)), Some(flavor)) = (histogram, label("flavor")) else { continue };
            let series = self.histogram(index, names.bounds, flavor);
            match part {
                "_bucket" => {
                    let le = label("le").unwrap_or("");
                    if let Some(i) = names.bounds.iter().position(|b| format_value(*b) == le) {
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

    /// The file's content: HELP and TYPE for each metric, then its samples.
    pub fn render(&self, now_unix: f64) -> String {
        let mut out = String::new();
        for (index, names) in self.histogram_names() {
            let name = names.name;
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} histogram", names.help);
            for ((i, flavor), series) in self.histograms.range((index, String::new())..) {
                if *i != index {
                    break;
                }
                let flavor = escape_label(flavor);
                for (bound, count) in names.bounds.iter().zip(&series.buckets) {
                    let _ =
                        writeln!(out, "{name}_bucket{{flavor=\"{flavor}\",le=\"{}\"}} {count}", format_value(*bound));
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
        self.render_jobs(&mut out);
        let name = format!("{PREFIX}_last_collect_timestamp_seconds");
        let _ = writeln!(out, "# HELP {name} When the last collect wrote this file (UNIX time).\n# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {}", format_value(now_unix));
        self.render_health(&mut out, now_unix);
        out
    }

    /// The four job counts, repositories past the limit under [`OTHER`].
    fn render_jobs(&self, out: &mut String) {
        let kept = self.kept_repositories();
        let kind = self.layout.job_counter_type;
        for (dimension, counter) in self.layout.job_counters.iter().enumerate() {
            let (name, key) = (counter.name, counter.label);
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {kind}", counter.help);
            let mut series: BTreeMap<(&str, &str), u64> = BTreeMap::new();
            for ((_, flavor, value), count) in self.jobs.iter().filter(|((d, ..), _)| *d == dimension) {
                let value = if dimension == BY_REPOSITORY && !kept.contains(&value.as_str()) { OTHER } else { value };
                *series.entry((flavor, value)).or_default() += count;
            }
            for ((flavor, value), count) in series {
                let flavor_label = if self.layout.job_counts_by_flavor {
                    format!("flavor=\"{}\",", escape_label(flavor))
                } else {
                    String::new()
                };
                let _ = writeln!(out, "{name}{{{flavor_label}{key}=\"{}\"}} {count}", escape_label(value));
            }
        }
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

/// A metric with one sample per outcome (every outcome, 0 when none).
/// Adds `by` to `key`'s count; the key is copied only the first time
/// (a report is counted per storage).
fn add(counts: &mut BTreeMap<String, u64>, key: &str, by: u64) {
    match counts.get_mut(key) {
        Some(count) => *count += by,
        None => {
            counts.insert(key.to_owned(), by);
        }
    }
}

fn write_by_outcome(out: &mut String, suffix: &str, kind: &str, help: &str, counts: &BTreeMap<String, u64>) {
    let name = format!("{PREFIX}_{suffix}");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for outcome in OutcomeKind::ALL {
        let count = counts.get(outcome.as_str()).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}{{outcome=\"{}\"}} {count}", outcome.as_str());
    }
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

#[cfg(test)]
mod tests;
