//! A collect run: the pipeline itself runs in the guest
//! (`runner_metrics_guest::pipeline`, exported as `collector.collect`); this
//! module lends it the run ([`RunState`], served by [`crate::imports`]) and
//! recovers from traps. A trap while the guest handles a storage drops the
//! instance; a fresh one finishes what the trap interrupted (deletes the
//! storages whose lines are already durable, quarantines the one to blame
//! with reason `sandbox-trap`), and the collect resumes without the
//! storages already reported.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use runner_metrics_guest::model;
use runner_metrics_guest::names::DELETING_DIR;
use runner_metrics_guest::report::undeletable_detail;

pub use crate::collect_options::{empty_selection, CollectOptions, Emit, JobMetricsSource, NoJobMetrics};

use crate::bindings::{QuarantineInfo, QuarantineReason};
use crate::check;
use crate::imports::RunState;
use crate::lock::RootLock;
use crate::log::EventSink;
use crate::plugin::Plugin;
use crate::sandbox::{CallResult, GuestFailure, Sandbox};
use crate::summary::{OutcomeKind, StorageReport, Summary};

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
    for _ in 0..MAX_TRAPS_PER_RUN {
        let mut sandbox = plugin.sandbox(&run.root)?;
        let failure = match sandbox.collect(&mut run, &wit_options) {
            Ok(Ok(())) => return Ok(run.summary),
            Ok(Err(stopped)) => {
                let own = run.append_error.take();
                return Err(anyhow::anyhow!(own.unwrap_or_else(|| check::bounded(&stopped))));
            }
            Err(failure) => failure,
        };
        drop(sandbox);
        recover(plugin, &mut run, failure)?;
        wit_options.done = run.reported.iter().cloned().collect();
        wit_options.done_unnamed = run.unnamed_reported;
        wit_options.purge_deleting = false;
    }
    anyhow::bail!(
        "stopped after {MAX_TRAPS_PER_RUN} sandbox traps; the storages not reported are left for the next run"
    )
}

/// After a trap: a fresh instance finishes what the trap interrupted, so
/// every storage whose lines are durable is deleted (never extracted
/// twice) and the storage to blame is quarantined, or kept when the guest
/// lied about it. `Err` when the trap belongs to no storage: the run stops.
fn recover(plugin: &Plugin, run: &mut RunState<'_>, failure: GuestFailure) -> Result<()> {
    let lie = run.lie.take();
    let blamed = match &lie {
        Some((storage, _)) => storage.clone(),
        None => run.current.take(),
    };
    let detail = match &lie {
        Some((_, what)) => format!("kept: guest lied: {}", check::bounded(what)),
        None => check::bounded(&failure.detail),
    };
    let mut fresh = Fresh { sandbox: plugin.sandbox(&run.root)?, plugin, root: run.root.clone() };
    for (name, events) in std::mem::take(&mut run.appended) {
        let report = if run.keep {
            StorageReport::new(name, OutcomeKind::Extracted, "kept (dry run)", events)
        } else if blamed.as_deref() == Some(name.as_str()) && lie.is_none() {
            // It trapped while deleting this one: its lines are out, so it
            // must not be extracted again. Already renamed into .deleting/:
            // finish that; else quarantine it.
            let gone = matches!(std::fs::symlink_metadata(run.root.join(&name)), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
            if gone {
                let detail = match fresh.call(|s| s.purge_deleting())? {
                    Ok(Ok(_)) => "deleted".to_owned(),
                    other => format!("deleted from the root; the next run finishes .deleting/{}", why(other)),
                };
                run.deliver(StorageReport::new(name, OutcomeKind::Extracted, detail, events));
                continue;
            }
            match fresh.call(|s| s.quarantine_storage(&name, QuarantineReason::SandboxTrap, &detail))? {
                Ok(Ok(info)) => {
                    StorageReport::new(name, OutcomeKind::Extracted, undeletable_detail(&model_info(&info)), events)
                }
                other => StorageReport::new(
                    name,
                    OutcomeKind::Failed,
                    format!("events written but storage kept: {detail}{}", why(other)),
                    events,
                ),
            }
        } else {
            match fresh.call(|s| s.delete_storage(&name))? {
                Ok(Ok(None)) => StorageReport::new(name, OutcomeKind::Extracted, "deleted", events),
                Ok(Ok(Some(info))) => {
                    StorageReport::new(name, OutcomeKind::Extracted, undeletable_detail(&model_info(&info)), events)
                }
                other => StorageReport::new(
                    name,
                    OutcomeKind::Failed,
                    format!("events written but storage kept{}", why(other)),
                    events,
                ),
            }
        };
        run.deliver(report);
    }
    let Some(name) = blamed else {
        anyhow::ensure!(lie.is_some(), "the sandbox failed outside any storage: {detail}");
        return Ok(());
    };
    if run.reported.contains(&name) {
        return Ok(()); // it trapped deleting a storage handled above
    }
    let report = if name == DELETING_DIR {
        StorageReport::new(name, OutcomeKind::Failed, format!("leftover deletions kept: {detail}"), 0)
    } else if lie.is_some() || run.keep {
        let detail = if lie.is_some() { detail } else { format!("kept: {detail}") };
        StorageReport::new(name, OutcomeKind::Failed, detail, 0)
    } else {
        match fresh.call(|s| s.quarantine_storage(&name, QuarantineReason::SandboxTrap, &detail))? {
            Ok(Ok(info)) => {
                let info = model::QuarantineInfo { file: None, ..model_info(&info) };
                StorageReport::quarantined(name, &model::QuarantineInfo { detail: detail.clone(), ..info })
            }
            other => StorageReport::new(name, OutcomeKind::Failed, format!("kept: {detail}{}", why(other)), 0),
        }
    };
    run.deliver(report);
    Ok(())
}

/// The recovery's instance, replaced after any trap: a poisoned instance
/// is never called again.
struct Fresh<'p> {
    plugin: &'p Plugin,
    root: PathBuf,
    sandbox: Sandbox,
}

impl Fresh<'_> {
    fn call<T>(&mut self, f: impl FnOnce(&mut Sandbox) -> CallResult<T>) -> Result<CallResult<T>> {
        let result = f(&mut self.sandbox);
        if result.is_err() {
            self.sandbox = self.plugin.sandbox(&self.root)?;
        }
        Ok(result)
    }
}

/// Why a recovery call did not do its job, as a clause.
fn why<T>(result: Result<Result<T, String>, GuestFailure>) -> String {
    match result {
        Ok(Ok(_)) => String::new(),
        Ok(Err(e)) => format!("; {}", check::bounded(&e)),
        Err(trap) => format!("; trapped again: {trap}"),
    }
}

/// The guest's words for a quarantine, for the guest's report strings.
fn model_info(info: &QuarantineInfo) -> model::QuarantineInfo {
    model::QuarantineInfo {
        reason: model::QuarantineReason::from_str_exact(info.reason.as_str())
            .unwrap_or(model::QuarantineReason::SandboxTrap),
        file: info.file.as_deref().map(check::bounded),
        detail: check::bounded(&info.detail),
        location: check::bounded(&info.location),
    }
}
