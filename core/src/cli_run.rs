//! `wasi:cli/run`: the component as a command, so the plain `wasmtime` CLI
//! can run a collect without the Rust host:
//!
//! ```text
//! wasmtime run --dir /home/ubuntu/runner-fs::/storage runner_metrics.wasm \
//!     collect --flavor small [--exclude NAME]... [--include NAME]... \
//!     [--min-age SECONDS] [--job NAME=QUEUE_SECONDS[:CONCLUSION]]... [--dry-run] [--json] [--verbose]
//! ```
//!
//! Events go to stdout as JSON lines; each storage's lines are written and
//! flushed before it is deleted (so the caller must treat stdout as the log).
//! Per-storage reports and the summary go to stderr. Exit status: 0 when
//! every storage reached an outcome, 1 when some were left failed or the run
//! could not start or finish (usage error, stdout closed, root unreadable).
//!
//! The pipeline is the one every host runs (`pipeline.rs`); this module only
//! parses arguments and lends it a host: stdout as the log (batches of one
//! storage, written and flushed before it is deleted), stderr for reports,
//! `--job` for job metrics. Differences, because there is only one
//! instance: a trap ends the whole run (the storage concerned stays in
//! place, nothing is deleted before its lines are out), and limits are the
//! `wasmtime` CLI's (`-W max-memory-size=`, `-W timeout=`, `-W fuel=`) for the
//! whole run rather than per storage.

use std::io::Write;

use wasi::io::streams::OutputStream;

use crate::fs::WasiFs;
use crate::model::{CollectOptions, GithubJobMetrics, JobConclusion, RunnerMetrics, Selection, StorageOutput};
use crate::pipeline;
use crate::report::{OutcomeKind, StorageReport, Summary};

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
        let (summary, result) = collect(&options, &mut out, &mut err);
        print_summary(&summary, &mut err, options.json);
        match result {
            Ok(()) if summary.failed == 0 => Ok(()),
            Ok(()) => Err(()),
            Err(message) => {
                err.line(&format!("runner-metrics: {message}"));
                Err(())
            }
        }
    }
}

const USAGE: &str = "\
usage: wasmtime run --dir STORAGE_ROOT::/storage runner_metrics.wasm collect --flavor FLAVOR
           [--exclude NAME]... [--include NAME]... [--min-age SECONDS]
           [--job NAME=QUEUE_SECONDS[:CONCLUSION]]... [--dry-run] [--json] [--verbose]

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
  --dry-run            change nothing on disk (no deletion, no quarantine); `--keep` is
                       its old name
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
    dry_run: bool,
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
    let (mut dry_run, mut json, mut verbose) = (false, false, false);
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
            "--dry-run" | "--keep" | "--json" | "--verbose" if inline.is_some() => {
                return Err(format!("{flag} takes no value"))
            }
            "--dry-run" | "--keep" => dry_run = true,
            "--json" => json = true,
            "--verbose" | "-v" => verbose = true,
            "--help" | "-h" => return Ok(Command::Help),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let flavor = flavor.ok_or("--flavor is required")?;
    Ok(Command::Collect(Options { flavor, selection, jobs, dry_run, json, verbose }))
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

fn print_summary(summary: &Summary, err: &mut Stderr, json: bool) {
    if json {
        err.line(&serde_json::json!({ "summary": summary }).to_string());
        return;
    }
    let mut text = String::new();
    for (kind, count) in [
        ("extracted", summary.extracted),
        ("no-data", summary.no_data),
        ("quarantined", summary.quarantined),
        ("skipped", summary.skipped),
        ("failed", summary.failed),
        ("lines", summary.lines_written),
    ] {
        text.push_str(&format!("{kind:>12}: {count}\n"));
    }
    err.line(&text);
}

/// The pipeline's host under the `wasmtime` CLI: stdout is the log, stderr
/// gets the reports, `--job` answers the job-metrics lookups.
struct StdioHost<'a> {
    options: &'a Options,
    out: &'a mut OutputStream,
    err: &'a mut Stderr,
    summary: Summary,
}

impl pipeline::Host for StdioHost<'_> {
    fn begin_storage(&mut self, _name: &str) {}

    fn end_storage(&mut self) {}

    fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Option<GithubJobMetrics> {
        let name = &metrics.runner_name;
        self.options.jobs.iter().rev().find(|(n, _)| n == name).map(|(_, job)| *job)
    }

    /// The lines are out (written and flushed) before any storage goes.
    fn append(&mut self, batch: Vec<StorageOutput>) -> Result<(), String> {
        let mut text = String::new();
        for line in batch.iter().flat_map(StorageOutput::lines) {
            text.push_str(&line);
            text.push('\n');
        }
        self.out.write_all(text.as_bytes()).and_then(|()| self.out.flush()).map_err(|e| format!("stdout: {e}"))
    }

    fn report(&mut self, report: StorageReport) {
        self.summary.add(&report);
        let notable = matches!(report.outcome, OutcomeKind::Quarantined | OutcomeKind::Failed);
        if self.options.json {
            self.err.line(&serde_json::to_string(&report).unwrap_or_default());
        } else if self.options.verbose || notable {
            let (kind, name, detail) =
                (report.outcome.as_str(), report.name.escape_debug(), report.detail.escape_debug());
            self.err.line(&format!("{kind}: {name}: {detail}"));
        }
    }
}

/// One run of the shared pipeline, one storage per batch.
fn collect(options: &Options, out: &mut OutputStream, err: &mut Stderr) -> (Summary, Result<(), String>) {
    let fs = match WasiFs::open() {
        Ok(fs) => fs,
        Err(e) => {
            let hint = "(grant it with `wasmtime run --dir /path/to/runner-fs::/storage`)";
            return (Summary::default(), Err(format!("{e} {hint}")));
        }
    };
    let collect_options = CollectOptions {
        selection: options.selection.clone(),
        dry_run: options.dry_run,
        batch_size: 1,
        ..CollectOptions::events(options.flavor.clone())
    };
    let mut host = StdioHost { options, out, err, summary: Summary::default() };
    let result = pipeline::collect(&fs, &collect_options, None, &mut host).map_err(|e| e.message);
    (host.summary, result)
}
