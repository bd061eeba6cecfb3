//! `collect`, `extract` and what `collect` and `ingest` share around their
//! run (`run_locked`): the log, the lock, the walls, the plugin, the
//! progress and the textfile.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use runner_metrics::collect::{collect, collect_holding, CollectOptions, Emit, JobMetricsSource, NoJobMetrics};
use runner_metrics::lock::RootLock;
use runner_metrics::log::{EventSink, MetricsLog, StdoutSink, DEFAULT_METRICS_LOG, METRICS_LOG_ENV};
use runner_metrics::os_sandbox::Confinement;
use runner_metrics::plugin::Plugin;
use runner_metrics::prometheus::{ObservingSink, Recorder};
use runner_metrics::summary::{OutcomeKind, StorageReport, Summary};

use crate::args::*;
use crate::messages::*;
use crate::progress::*;

/// The metrics log: the flag, else `$METRICS_LOG_PATH`, else the default.
pub(crate) fn open_sink(flag: Option<&Path>) -> Result<Box<dyn EventSink>> {
    let path = match flag {
        Some(path) => path.to_owned(),
        None => std::env::var_os(METRICS_LOG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_METRICS_LOG)),
    };
    if path.as_os_str() == "-" {
        return Ok(Box::new(StdoutSink));
    }
    Ok(Box::new(MetricsLog::open(&path).context("opening the metrics log")?))
}

pub(crate) fn run_collect(sandbox: &WasmSandboxArgs, args: CollectArgs) -> Result<ExitCode> {
    let selection = args.selection.selection()?;
    // Check the root before the log is created, so a typo leaves no trace.
    let storage = &args.selection.storage;
    check_root(storage)?;
    let options = CollectOptions {
        selection,
        emit: Emit::Events { flavor: args.output.flavor.clone() },
        dry_run: false,
        batch_size: 64,
        lock_wait: args.wait.duration()?,
        policy: args.policy.policy(),
        ..CollectOptions::events(&args.output.flavor)
    };
    let run = |plugin: &Plugin,
               lock: &RootLock,
               jobs: &mut dyn JobMetricsSource,
               sink: &mut dyn EventSink,
               on_report: &mut dyn FnMut(&StorageReport)| {
        collect_holding(plugin, lock, &options, jobs, sink, on_report)
    };
    run_locked(sandbox, &args.os_sandbox, &args.output, storage, options.lock_wait, run)
}

/// What `collect` and `ingest` share around their run: the textfile
/// checked, job lookups set up, the log opened, the root locked, the
/// process confined, the plugin opened; then `run`, the progress and
/// summary, and the Prometheus textfile.
pub(crate) fn run_locked(
    sandbox: &WasmSandboxArgs,
    os: &OsSandboxArgs,
    args: &OutputArgs,
    storage: &Path,
    wait: Duration,
    run: impl FnOnce(
        &Plugin,
        &RootLock,
        &mut dyn JobMetricsSource,
        &mut dyn EventSink,
        &mut dyn FnMut(&StorageReport),
    ) -> Result<Summary>,
) -> Result<ExitCode> {
    // Before anything is touched: a FIFO, symlink or directory in place of
    // the textfile would otherwise only be refused after the run.
    if let Some(textfile) = &args.prometheus_textfile {
        runner_metrics::prometheus::check_textfile(textfile)?;
    }
    let mut progress = Progress::new(args.verbose, storage);
    let mut jobs = args.github.source(progress.live)?;
    // Opening the log only checks it (and creates it if missing): a cut
    // last line is terminated at the first append, under the lock.
    let mut sink = open_sink(args.metrics_log.as_deref())?;
    let plugin_options = sandbox.options()?;
    // Everything that can be refused has been: now the root's lock, held
    // until the textfile (which accumulates across runs) is written too.
    let lock = RootLock::acquire(storage, wait)?;
    // The token is read and the log open: the process is confined before
    // the plugin (and any thread) starts.
    let textfile_dir = args.prometheus_textfile.as_deref().map(runner_metrics::prometheus::textfile_dir);
    let grants = os.grants(lock.root(), false, &plugin_options)?.map(|mut grants| {
        grants.write_dirs.extend(textfile_dir.map(Path::to_owned));
        match &args.github.github_token_file {
            Some(_) => grants.with_github(&args.github.github_api_url),
            None => grants,
        }
    });
    let writable: Vec<&Path> = [Some(lock.root()), textfile_dir].into_iter().flatten().collect();
    let precompiled = precompile(&plugin_options, &writable)?;
    let confined = os.confine(grants)?;
    let plugin = open_precompiled(&plugin_options, precompiled)?;
    let recorder = RefCell::new(Recorder::new(args.prometheus_names, args.prometheus_max_repositories));
    // Lines are read back for the histograms only when a textfile wants them
    // (a JSON parse per line: 7% of a collect's instructions).
    let mut observed = ObservingSink { inner: sink.as_mut(), recorder: &recorder };
    let sink: &mut dyn EventSink = if args.prometheus_textfile.is_some() { &mut observed } else { observed.inner };
    let started = std::time::Instant::now();
    let result = run(&plugin, &lock, jobs.as_mut(), sink, &mut |r| {
        recorder.borrow_mut().observe_report(r);
        progress.report(r)
    });
    recorder.borrow_mut().record_run(&args.flavor, started.elapsed(), result.is_ok(), jobs.lookups());
    progress.finish();
    // Written even when the run stopped early: it counts what did happen.
    let textfile = args.prometheus_textfile.as_deref().map(|path| recorder.borrow_mut().write(path));
    drop(lock);
    let code = finish(result, args.json.then_some(&confined.confinement))?;
    if let Some(Err(e)) = textfile {
        eprintln!("runner-metrics: error: {e:#}");
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    Ok(code)
}

pub(crate) fn run_extract(sandbox: &WasmSandboxArgs, args: ExtractArgs) -> Result<ExitCode> {
    let os = &args.os_sandbox;
    let selection = args.selection.selection()?;
    let storage = &args.selection.storage;
    check_root(storage)?;
    let wait = args.wait.duration()?;
    let plugin_options = sandbox.options()?;
    // The root's lock unless --dry-run (which changes nothing), then the
    // process confined before the plugin starts.
    let lock = if args.dry_run { None } else { Some(RootLock::acquire(storage, wait)?) };
    let root = lock.as_ref().map_or_else(|| storage.canonicalize(), |l| Ok(l.root().to_owned()));
    let root = root.with_context(|| format!("storage root {}", storage.display()))?;
    let precompiled = precompile(&plugin_options, &[&root])?;
    let _confined = os.confine(os.grants(&root, args.dry_run, &plugin_options)?)?;
    let plugin = open_precompiled(&plugin_options, precompiled)?;
    let options = CollectOptions {
        selection,
        emit: Emit::Metrics,
        dry_run: args.dry_run,
        batch_size: 64,
        lock_wait: wait,
        ..CollectOptions::events("")
    };
    let mut progress = Progress::new(false, storage);
    let mut report = |r: &StorageReport| progress.report(r);
    let result = match &lock {
        Some(lock) => collect_holding(&plugin, lock, &options, &mut NoJobMetrics, &mut StdoutSink, &mut report),
        None => collect(&plugin, storage, &options, &mut NoJobMetrics, &mut StdoutSink, &mut report),
    };
    drop(lock);
    progress.finish();
    finish(result, None)
}

/// Prints the summary (as JSON, with the OS sandbox's layers, when they
/// are given) and picks the exit code.
pub(crate) fn finish(result: Result<Summary>, json: Option<&Confinement>) -> Result<ExitCode> {
    let summary = result?;
    if let Some(confinement) = json {
        let mut value = serde_json::to_value(&summary)?;
        value["os_sandbox"] = serde_json::to_value(confinement)?;
        eprintln!("{value}");
    } else {
        for &kind in OutcomeKind::ALL {
            eprintln!("{:>12}: {}", kind.as_str(), summary.count(kind));
        }
        eprintln!("{:>12}: {}", "lines", summary.lines_written);
    }
    Ok(if summary.failed > 0 { ExitCode::from(EXIT_FAILED_STORAGES) } else { ExitCode::SUCCESS })
}

pub(crate) fn run_quarantine_list(sandbox: &WasmSandboxArgs, storage: &Path, json: bool) -> Result<ExitCode> {
    check_root(storage)?;
    let plugin = sandbox.plugin()?;
    let entries = runner_metrics::quarantine::list(&plugin, storage)?;
    for q in &entries {
        let reason = q.reason.to_model().as_str();
        if json {
            let value = serde_json::json!({
                "location": q.location,
                "runner_name": q.runner_name,
                "reason": reason,
                "file": q.file,
                "detail": q.detail,
                "quarantined_at": q.quarantined_at,
            });
            println!("{value}");
        } else {
            let file = q.file.as_deref().unwrap_or("-");
            println!(
                "{}\t{}\t{}\t{}\t{}",
                printable(&q.location),
                format_time(q.quarantined_at),
                reason,
                printable(file),
                plain(&q.detail, &[], Some(storage))
            );
        }
    }
    if !json {
        eprintln!("{} quarantined storage(s) in {}", entries.len(), storage.join(".quarantine").display());
    }
    Ok(ExitCode::SUCCESS)
}
