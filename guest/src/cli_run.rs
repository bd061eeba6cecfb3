//! `wasi:cli/run`: the component as a command, so the plain `wasmtime` CLI
//! can run a collect without the Rust host:
//!
//! ```text
//! wasmtime run --dir /home/ubuntu/runner-fs::/storage runner_metrics.wasm \
//!     collect --flavor small [--exclude NAME]... [--include NAME]... \
//!     [--min-age SECONDS] [--job NAME=QUEUE_SECONDS[:CONCLUSION]]... [--keep] [--json] [--verbose]
//! ```
//!
//! Events go to stdout as JSON lines; each storage's lines are written and
//! flushed before it is deleted (so the caller must treat stdout as the log).
//! Per-storage reports and the summary go to stderr. Exit status: 0 when
//! every storage reached an outcome, 1 when some were left failed or the run
//! could not start or finish (usage error, stdout closed, root unreadable).
//!
//! Same pipeline as the Rust host (`host/src/collect.rs`): scan with a
//! selection, decide each candidate, write its lines, then delete it.
//! Differences, because there is only one instance: a trap ends the whole
//! run (the storage concerned stays in place, nothing is deleted before its
//! lines are out), and limits are the `wasmtime` CLI's (`-W max-memory-size=`,
//! `-W timeout=`, `-W fuel=`) for the whole run rather than per call.

use std::io::Write;

use wasi::io::streams::OutputStream;

use crate::fs::WasiFs;
use crate::model::{GithubJobMetrics, JobConclusion, Outcome, QuarantineInfo, Selection, SkipReason};
use crate::{events, extract, render};

struct CliRun;

wasi::cli::command::export!(CliRun);

impl wasi::exports::cli::run::Guest for CliRun {
    fn run() -> Result<(), ()> {
        let mut err = Stderr(wasi::cli::stderr::get_stderr());
        let args = wasi::cli::environment::get_arguments();
        let options = match parse_args(args.get(1..).unwrap_or_default()) {
            Ok(Command::Help) => {
                let mut out = wasi::cli::stdout::get_stdout();
                let _ = out.write_all(USAGE.as_bytes());
                let _ = out.flush();
                return Ok(());
            }
            Ok(Command::Collect(options)) => options,
            Err(message) => {
                err.line(&format!("runner-metrics: {message}\n\n{USAGE}"));
                return Err(());
            }
        };
        let mut out = wasi::cli::stdout::get_stdout();
        match collect(&options, &mut out, &mut err) {
            Ok(summary) => {
                summary.print(&mut err, options.json);
                if summary.failed > 0 {
                    Err(())
                } else {
                    Ok(())
                }
            }
            Err((summary, message)) => {
                summary.print(&mut err, options.json);
                err.line(&format!("runner-metrics: {message}"));
                Err(())
            }
        }
    }
}

const USAGE: &str = "\
usage: wasmtime run --dir STORAGE_ROOT::/storage runner_metrics.wasm collect --flavor FLAVOR
           [--exclude NAME]... [--include NAME]... [--min-age SECONDS]
           [--job NAME=QUEUE_SECONDS[:CONCLUSION]]... [--keep] [--json] [--verbose]

Extracts every runner storage under /storage (the one directory granted with
--dir), writes the events as JSON lines on stdout and the per-storage
reports and a summary on stderr. A storage's lines are written and flushed
before it is deleted; corrupt storages are moved to /storage/.quarantine/.

  --flavor FLAVOR      the runners' flavor, written in every event (required)
  --exclude NAME       never touch this storage (repeatable)
  --include NAME       touch only these storages (repeatable)
  --min-age SECONDS    skip storages modified less than SECONDS ago
  --job NAME=Q[:C]     job metrics for runner NAME: queue duration Q seconds,
                       conclusion C (success, failure, cancelled, ...)
  --keep               dry run: change nothing on disk (no deletion, no quarantine)
  --json               reports and summary as JSON objects, one per line
  --verbose            report every storage, not only quarantined and failed ones

Exit status: 0 every storage reached an outcome, 1 some storages failed
(kept for the next run) or the run could not start or finish.
";

enum Command {
    Help,
    Collect(Options),
}

struct Options {
    flavor: String,
    selection: Selection,
    jobs: Vec<(String, GithubJobMetrics)>,
    keep: bool,
    json: bool,
    verbose: bool,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut args = args.iter();
    match args.next().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => return Ok(Command::Help),
        Some("collect") => {}
        Some(other) => return Err(format!("unknown command {other:?} (expected `collect`)")),
    }
    let mut flavor = None;
    let mut selection = Selection::default();
    let mut jobs = Vec::new();
    let (mut keep, mut json, mut verbose) = (false, false, false);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            inline.clone().or_else(|| args.next().cloned()).ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--flavor" => flavor = Some(value()?),
            "--exclude" => selection.exclude.push(value()?),
            "--include" => selection.include.get_or_insert_with(Vec::new).push(value()?),
            "--min-age" => {
                let text = value()?;
                let seconds: f64 = text.parse().map_err(|_| format!("--min-age {text:?}: not a number"))?;
                if !seconds.is_finite() || seconds < 0.0 {
                    return Err(format!("--min-age {text:?}: must be a finite number >= 0"));
                }
                selection.min_age_seconds = Some(seconds);
            }
            "--job" => jobs.push(parse_job(&value()?)?),
            "--keep" | "--json" | "--verbose" if inline.is_some() => return Err(format!("{flag} takes no value")),
            "--keep" => keep = true,
            "--json" => json = true,
            "--verbose" | "-v" => verbose = true,
            "--help" | "-h" => return Ok(Command::Help),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let flavor = flavor.ok_or("--flavor is required")?;
    Ok(Command::Collect(Options { flavor, selection, jobs, keep, json, verbose }))
}

/// `NAME=QUEUE_SECONDS[:CONCLUSION]`
fn parse_job(text: &str) -> Result<(String, GithubJobMetrics), String> {
    let bad = |why: &str| format!("--job {text:?}: {why} (expected NAME=QUEUE_SECONDS[:CONCLUSION])");
    let (name, rest) = text.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let (queue, conclusion) = match rest.split_once(':') {
        Some((queue, conclusion)) => (queue, Some(conclusion)),
        None => (rest, None),
    };
    let queue_duration: f64 = queue.parse().map_err(|_| bad("queue duration is not a number"))?;
    if !queue_duration.is_finite() {
        return Err(bad("queue duration is not finite"));
    }
    let conclusion = match conclusion {
        None => None,
        Some(c) => Some(conclusion_from_str(&c.replace('-', "_")).ok_or_else(|| bad("unknown conclusion"))?),
    };
    Ok((name.to_owned(), GithubJobMetrics { queue_duration, conclusion }))
}

fn conclusion_from_str(s: &str) -> Option<JobConclusion> {
    use JobConclusion::*;
    [ActionRequired, Cancelled, Failure, Neutral, Skipped, Success, TimedOut].into_iter().find(|c| c.as_str() == s)
}

/// stderr, best effort (a closed stderr must not change any outcome).
struct Stderr(OutputStream);

impl Stderr {
    fn line(&mut self, text: &str) {
        let _ = self.0.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = self.0.write_all(b"\n");
        }
        let _ = self.0.flush();
    }
}

#[derive(Default)]
struct Summary {
    extracted: usize,
    no_data: usize,
    quarantined: usize,
    skipped: usize,
    failed: usize,
    lines: usize,
}

impl Summary {
    fn print(&self, err: &mut Stderr, json: bool) {
        if json {
            let value = serde_json::json!({
                "summary": {
                    "extracted": self.extracted,
                    "no_data": self.no_data,
                    "quarantined": self.quarantined,
                    "skipped": self.skipped,
                    "failed": self.failed,
                    "lines_written": self.lines,
                }
            });
            err.line(&value.to_string());
            return;
        }
        let mut text = String::new();
        for (kind, count) in [
            ("extracted", self.extracted),
            ("no-data", self.no_data),
            ("quarantined", self.quarantined),
            ("skipped", self.skipped),
            ("failed", self.failed),
            ("lines", self.lines),
        ] {
            text.push_str(&format!("{kind:>12}: {count}\n"));
        }
        err.line(&text);
    }
}

/// One run: reports each storage as it reaches its outcome.
struct Run<'a> {
    options: &'a Options,
    err: &'a mut Stderr,
    summary: Summary,
}

impl Run<'_> {
    fn report(&mut self, name: &str, kind: &str, detail: &str, events: usize) {
        self.report_with(name, kind, None, None, detail, events)
    }

    /// `reason`: the quarantine or skip reason (kebab-case); `file`: the
    /// file to blame. Both only appear in `--json` reports.
    fn report_with(
        &mut self,
        name: &str,
        kind: &str,
        reason: Option<&str>,
        file: Option<&str>,
        detail: &str,
        events: usize,
    ) {
        match kind {
            "extracted" => self.summary.extracted += 1,
            "no-data" => self.summary.no_data += 1,
            "quarantined" => self.summary.quarantined += 1,
            "skipped" => self.summary.skipped += 1,
            _ => self.summary.failed += 1,
        }
        self.summary.lines += events;
        let notable = matches!(kind, "quarantined" | "failed");
        if self.options.json {
            let value = serde_json::json!({
                "name": name, "outcome": kind, "reason": reason, "file": file, "detail": detail, "events": events,
            });
            self.err.line(&value.to_string());
        } else if self.options.verbose || notable {
            self.err.line(&format!("{kind}: {}: {}", name.escape_debug(), detail.escape_debug()));
        }
    }
}

type RunError = (Summary, String);

/// The collect pipeline, as in `host/src/collect.rs`, one storage at a time.
fn collect(options: &Options, out: &mut OutputStream, err: &mut Stderr) -> Result<Summary, RunError> {
    let mut run = Run { options, err, summary: Summary::default() };
    let fs = match WasiFs::open() {
        Ok(fs) => fs,
        Err(e) => {
            return Err((run.summary, format!("{e} (grant it with `wasmtime run --dir /path/to/runner-fs::/storage`)")))
        }
    };
    let scan_fs = match WasiFs::open() {
        Ok(fs) => fs,
        Err(e) => return Err((run.summary, e.message)),
    };
    // Deletions a crash cut short (storages already extracted, renamed into
    // `.deleting/`) are finished first, as the Rust host does.
    if !options.keep {
        if let Err(e) = extract::purge_deleting(&fs) {
            run.report(".deleting", "failed", &format!("leftover deletions kept: {e}"), 0);
        }
    }
    let mut scan = match extract::Scan::new(scan_fs, options.selection.clone()) {
        Ok(scan) => scan,
        Err(e) => return Err((run.summary, format!("listing the storage root: {e}"))),
    };
    loop {
        let batch = match scan.next_batch(256) {
            Ok(batch) => batch,
            Err(e) => return Err((run.summary, format!("listing the storage root: {e}"))),
        };
        if batch.is_empty() {
            break;
        }
        for entry in batch {
            let label = entry.name.clone().unwrap_or_else(|| "<non-UTF-8 name>".to_owned());
            match (entry.name, entry.skipped) {
                (_, Some(reason)) => {
                    run.report_with(&label, "skipped", Some(skip_name(&reason)), None, &skip_detail(&reason), 0)
                }
                (Some(name), None) => {
                    if let Err(message) = candidate(&mut run, &fs, &name, out) {
                        return Err((run.summary, message));
                    }
                }
                (None, None) => run.report(&label, "failed", "nameless storage", 0),
            }
        }
    }
    Ok(run.summary)
}

/// Decides one storage; `Err` only when stdout cannot be written (the run
/// stops, the storage stays).
fn candidate(run: &mut Run<'_>, fs: &WasiFs, name: &str, out: &mut OutputStream) -> Result<(), String> {
    let keep = run.options.keep;
    match extract::extract_storage(fs, name, keep) {
        Outcome::Extracted(metrics) => {
            let job = run.options.jobs.iter().rev().find(|(n, _)| n == name).map(|(_, job)| *job);
            let events = events::issue_events(&metrics, &run.options.flavor, job.as_ref());
            let mut text = String::new();
            for event in &events {
                text.push_str(&render::render_event(event));
                text.push('\n');
            }
            // The lines are out (written and flushed) before the storage goes.
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                run.report(name, "failed", &format!("kept: events not written: {e}"), 0);
                return Err(format!("writing events to stdout: {e}"));
            }
            if keep {
                run.report(name, "extracted", "kept (dry run)", events.len());
                return Ok(());
            }
            match extract::delete_storage(fs, name) {
                Ok(None) => run.report(name, "extracted", "deleted", events.len()),
                Ok(Some(info)) => run.report(
                    name,
                    "extracted",
                    &format!("could not be deleted, so moved to .quarantine/{}: {}", info.location, info.detail),
                    events.len(),
                ),
                Err(e) => run.report(name, "failed", &format!("events written but storage kept: {e}"), events.len()),
            }
        }
        Outcome::NoData => {
            let detail =
                if keep { "no installed timestamp; would be deleted" } else { "no installed timestamp; deleted" };
            run.report(name, "no-data", detail, 0);
        }
        Outcome::Quarantined(info) => run.report_with(
            name,
            "quarantined",
            Some(info.reason.as_str()),
            info.file.as_deref(),
            &quarantine_detail(&info),
            0,
        ),
        Outcome::Skipped(reason) => {
            run.report_with(name, "skipped", Some(skip_name(&reason)), None, &skip_detail(&reason), 0)
        }
        Outcome::Failed(message) => run.report(name, "failed", &format!("kept: {message}"), 0),
    }
    Ok(())
}

fn skip_name(reason: &SkipReason) -> &'static str {
    match reason {
        SkipReason::Excluded => "excluded",
        SkipReason::NotIncluded => "not-included",
        SkipReason::TooYoung(_) => "too-young",
        SkipReason::NotADirectory => "not-a-directory",
        SkipReason::InvalidName => "invalid-name",
        SkipReason::Vanished => "vanished",
    }
}

fn skip_detail(reason: &SkipReason) -> String {
    match reason {
        SkipReason::Excluded => "excluded".to_owned(),
        SkipReason::NotIncluded => "not included".to_owned(),
        SkipReason::TooYoung(age) => format!("too young ({age:.0}s old)"),
        SkipReason::NotADirectory => "not a plain directory; left alone".to_owned(),
        SkipReason::InvalidName => "not a valid runner name; left alone".to_owned(),
        SkipReason::Vanished => "gone before it was handled".to_owned(),
    }
}

fn quarantine_detail(info: &QuarantineInfo) -> String {
    let place = if info.location.is_empty() {
        "would be quarantined".to_owned()
    } else {
        format!("moved to .quarantine/{}", info.location)
    };
    let file = info.file.as_deref().map(|f| format!(" {f}")).unwrap_or_default();
    format!("{}:{file} {}; {place}", info.reason.as_str(), info.detail)
}
