//! A collect run: the pipeline itself runs in the guest
//! (`runner_metrics_guest::pipeline`, exported as `collector.collect`); this
//! module lends it the run ([`RunState`], served by [`crate::imports`]) and
//! recovers from traps. A trap drops the instance; the guest's own
//! `collector.recover`, in a fresh one, finishes what the trap interrupted
//! (deletes the storages whose lines are already durable, quarantines the
//! one to blame with reason `sandbox-trap`), and the collect resumes
//! without the storages already reported.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use crate::collect_options::{empty_selection, CollectOptions, Emit, JobMetricsSource, NoJobMetrics};

use crate::bindings::Interrupted;
use crate::check;
use crate::imports::RunState;
use crate::lock::RootLock;
use crate::log::EventSink;
use crate::plugin::Plugin;
use crate::summary::{StorageReport, Summary};

/// Traps one run survives; after that the rest of the root is left for the
/// next run, so a guest that traps on everything cannot churn through it.
pub const MAX_TRAPS_PER_RUN: usize = 16;

/// Runs one collect over `root`. Every storage seen gets exactly one report;
/// `Err` only when the run could not start or had to stop (the root cannot
/// be listed, the log cannot be written, too many traps), with the reports
/// so far delivered and the rest of the storages untouched.
///
/// Unless `options.keep`, the root's lock ([`crate::lock`]) is held for the
/// whole run, waiting at most `options.lock_wait` for another run: when it
/// stays busy, the error is a [`LockError`](crate::lock::LockError) (find it
/// with `downcast_ref`) and nothing was touched.
pub fn collect(
    plugin: &Plugin,
    root: &Path,
    options: &CollectOptions,
    jobs: &mut dyn JobMetricsSource,
    sink: &mut dyn EventSink,
    on_report: &mut dyn FnMut(&StorageReport),
) -> Result<Summary> {
    let root = root.canonicalize().with_context(|| format!("storage root {}", root.display()))?;
    if options.keep {
        return run_collect(plugin, root, options, jobs, sink, on_report);
    }
    let lock = RootLock::acquire(&root, options.lock_wait)?;
    collect_holding(plugin, &lock, options, jobs, sink, on_report)
}

/// [`collect`] over the root of a lock the caller already holds (and keeps
/// holding afterwards: the CLI writes the Prometheus textfile under it).
pub fn collect_holding(
    plugin: &Plugin,
    lock: &RootLock,
    options: &CollectOptions,
    jobs: &mut dyn JobMetricsSource,
    sink: &mut dyn EventSink,
    on_report: &mut dyn FnMut(&StorageReport),
) -> Result<Summary> {
    run_collect(plugin, lock.root().to_owned(), options, jobs, sink, on_report)
}

fn run_collect(
    plugin: &Plugin,
    root: PathBuf,
    options: &CollectOptions,
    jobs: &mut dyn JobMetricsSource,
    sink: &mut dyn EventSink,
    on_report: &mut dyn FnMut(&StorageReport),
) -> Result<Summary> {
    let mut run = RunState::new(root, options, jobs, sink, on_report);
    let mut wit_options = options.to_wit();
    let (mut interrupted, mut traps) = (None::<Interrupted>, 0);
    loop {
        let mut sandbox = plugin.sandbox(&run.root)?;
        let result = match &interrupted {
            Some(x) => sandbox.recover(&mut run, x),
            None => sandbox.collect(&mut run, &wit_options),
        };
        match result {
            Ok(Ok(())) if interrupted.take().is_some() => {
                // Recovered: the collect resumes without what was reported,
                // unless the run has used up its traps.
                anyhow::ensure!(
                    traps < MAX_TRAPS_PER_RUN,
                    "stopped after {traps} sandbox traps; the storages not reported are left for the next run"
                );
                wit_options.done = run.reported.iter().cloned().collect();
                wit_options.done_unnamed = run.unnamed_reported;
                wit_options.purge_deleting = false;
            }
            Ok(Ok(())) => return Ok(run.summary),
            Ok(Err(stopped)) => {
                let own = run.append_error.take();
                return Err(anyhow::anyhow!(own.unwrap_or_else(|| check::bounded(&stopped))));
            }
            Err(failure) => {
                // A recovery is always tried, even past the budget, so that
                // storages whose lines are out get deleted; it makes progress
                // (a storage whose recovery trapped is not tried again), but
                // one that traps outside any storage is not retried.
                traps += 1;
                let x = run.interrupted(&failure, interrupted.as_ref());
                if let Some(previous) = interrupted.as_ref().filter(|_| x.blamed.is_none() && !x.lied) {
                    let was = &previous.cause;
                    anyhow::bail!("the recovery trapped outside any storage: {failure}; it was recovering from: {was}");
                }
                anyhow::ensure!(traps <= MAX_TRAPS_PER_RUN + run.batch_size, "stopped after {traps} sandbox traps");
                interrupted = Some(x);
            }
        }
    }
}
