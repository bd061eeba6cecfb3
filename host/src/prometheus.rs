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
//! never reads half a file.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::log::EventSink;
use crate::summary::{OutcomeKind, StorageReport};

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

/// One histogram series: cumulative bucket counts (one per bound), sum, count.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// The values of the textfile, kept in memory during a run.
#[derive(Debug, Default)]
pub struct Recorder {
    /// (histogram index, flavor) -> series.
    histograms: BTreeMap<(usize, String), Histogram>,
    /// outcome -> storages.
    outcomes: BTreeMap<String, u64>,
    /// (event, flavor) -> events issued.
    events: BTreeMap<(String, String), u64>,
}

impl Recorder {
    /// Counts one storage's outcome.
    pub fn observe_report(&mut self, report: &StorageReport) {
        *self.outcomes.entry(report.kind.as_str().to_owned()).or_default() += 1;
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
            if name == format!("{PREFIX}_events_total") {
                if let (Some(event), Some(flavor)) = (label("event").filter(|e| EVENTS.contains(e)), label("flavor")) {
                    *self.events.entry((event.to_owned(), flavor.to_owned())).or_default() += value as u64;
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
        let name = format!("{PREFIX}_storages_total");
        let _ = writeln!(out, "# HELP {name} Runner storages handled by collect, by outcome.\n# TYPE {name} counter");
        for kind in OutcomeKind::ALL {
            let count = self.outcomes.get(kind.as_str()).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}{{outcome=\"{}\"}} {count}", kind.as_str());
        }
        let name = format!("{PREFIX}_events_total");
        let _ = writeln!(
            out,
            "# HELP {name} Events written to the metrics log, by event and flavor.\n# TYPE {name} counter"
        );
        for ((event, flavor), count) in &self.events {
            let _ = writeln!(out, "{name}{{event=\"{event}\",flavor=\"{}\"}} {count}", escape_label(flavor));
        }
        let name = format!("{PREFIX}_last_collect_timestamp_seconds");
        let _ = writeln!(out, "# HELP {name} When the last collect wrote this file (UNIX time).\n# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {}", format_value(now_unix));
        out
    }

    /// Adds the values already in `path` (if it exists), then replaces it
    /// atomically with the sums. Errors name the path.
    pub fn write(&mut self, path: &Path) -> anyhow::Result<()> {
        match std::fs::File::open(path) {
            Ok(file) => {
                let mut text = String::new();
                // Not UTF-8 or too long: not ours, start from zero.
                if file.take(MAX_PREVIOUS_BYTES).read_to_string(&mut text).is_ok() {
                    self.load(&text);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading the Prometheus textfile {}", path.display())),
        }
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        write_atomically(path, self.render(now).as_bytes())
            .with_context(|| format!("writing the Prometheus textfile {}", path.display()))
    }
}

/// Writes `content` to a temporary file beside `path` (node_exporter ignores
/// names not ending in `.prom`), syncs it, and renames it over `path`.
pub fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
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
