//! A collect run: the pipeline itself runs in the guest
//! (`runner_metrics_core::pipeline`, exported as `collector.collect`); this
//! module lends it the run ([`RunState`], served by [`crate::imports`]) and
//! makes the plugin calls the run's keeper ([`crate::keeper`]) asks for. A
//! trap drops the instance; the guest's own `collector.recover`, in a fresh
//! one, finishes what the trap interrupted (deletes the storages whose
//! lines are already durable, quarantines the one to blame with reason
//! `sandbox-trap`), and the collect resumes without the storages already
//! reported. The keeper decides all of that, the same way in every host.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use crate::collect_options::{empty_selection, CollectOptions, Emit, JobMetricsSource, NoJobMetrics};

pub use runner_metrics_keeper::books::MAX_TRAPS_PER_RUN;
/// The most of a plugin's words (a report's detail, a failure) any report
/// keeps; longer ones are cut, saying how much.
pub use runner_metrics_keeper::check::MAX_MESSAGE_BYTES;

use crate::bindings::PulledMetrics;
use crate::imports::RunState;
use crate::keeper::{Ended, NextCall};
use crate::lock::RootLock;
use crate::log::EventSink;
use crate::plugin::Plugin;
use crate::summary::{OutcomeKind, StorageReport, Summary};

/// Runs one collect over `root`. Every storage seen gets exactly one report;
/// `Err` only when the run could not start or had to stop (the root cannot
/// be listed, the log cannot be written, too many traps), with the reports
/// so far delivered and the rest of the storages untouched.
///
/// Unless `options.dry_run`, the root's lock ([`crate::lock`]) is held for the
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
    if options.dry_run {
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

/// How many calls crossed each boundary in a run: printed on stderr as one
/// JSON object when `RUNNER_METRICS_COUNT_CALLS=1` (the bench divides them
/// by the storages). Filesystem calls are counted on the confined layer
/// only (0 on the wasmtime-wasi fallback).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CallCounts {
    /// `collector.collect` and `collector.recover` calls of the plugin.
    pub plugin_calls: u64,
    /// The plugin's calls of the `host` imports.
    pub host_imports: u64,
    /// The plugin's `wasi:filesystem` calls.
    pub plugin_fs_calls: u64,
    /// Calls of the keeper (`books.run` methods).
    pub keeper_calls: u64,
    /// The keeper's `wasi:filesystem` calls.
    pub keeper_fs_calls: u64,
}

/// Bounded storages (spec 8) whose mount is gone (a reboot, a crash) are
/// mounted again before the plugin sees the root. One that cannot be (or,
/// in a dry run, would have to be) is reported failed and kept here, and
/// handed to the plugin as already reported: its directory is empty while
/// its image is not mounted, and must not be taken for a storage without
/// data. So is every bounded storage when the plugin is not on the
/// confined filesystem (`confined`): only its hook moves a mount point, and
/// a storage whose lines were appended but that cannot be deleted would be
/// extracted again by every run; and so, there, is every storage that is a
/// mount we did not make.
fn reattach_bounded(
    root: &Path,
    options: &CollectOptions,
    confined: bool,
) -> Result<(crate::bindings::CollectOptions, Vec<StorageReport>)> {
    use crate::storage::bounded::{self, Reattached};
    let mut wit = options.to_wit();
    let (reattached, failed) = bounded::reattach_all(root, options.dry_run)?;
    let mut unmounted: Vec<(String, String)> = failed.into_iter().map(|(name, e)| (name, e.to_string())).collect();
    // Why no bounded storage can be moved out by this run, if none can.
    let stuck = if reattached.is_empty() || options.dry_run {
        None
    } else if !confined {
        Some("a bounded storage is moved only on the confined filesystem, and this kernel lacks openat2(2)".to_owned())
    } else {
        bounded::cannot_move_mounts(root)
    };
    for (name, what) in reattached {
        let why = match (what, &stuck) {
            (Reattached::WouldRemount, _) => "its image is not mounted (a dry run mounts nothing)",
            (Reattached::Mounted | Reattached::Remounted, Some(why)) => why.as_str(),
            _ => continue,
        };
        unmounted.push((name.clone(), format!("{}: {why}", root.join(&name).display())));
    }
    let selection = &wit.selection;
    let selected = |name: &str| {
        !selection.exclude.iter().any(|n| n == name)
            && selection.include.as_ref().is_none_or(|i| i.iter().any(|n| n == name))
    };
    let mut reports: Vec<StorageReport> = unmounted
        .into_iter()
        .filter(|(name, _)| selected(name) && root.join(name).is_dir())
        .map(|(name, detail)| {
            StorageReport::new(name, OutcomeKind::Failed, format!("bounded storage: {detail}; kept"), 0)
        })
        .collect();
    // The fallback filesystem enters any mount: a storage that is a mount
    // we did not make is reported here and never handed to the plugin (the
    // confined filesystem refuses to enter one, and the report says so).
    if !confined {
        let foreign = crate::storage::foreign_mounts(root)?;
        reports.extend(foreign.into_iter().filter(|name| selected(name)).map(|name| {
            StorageReport::new(name, OutcomeKind::Failed, format!("{}; kept", crate::storage::FOREIGN_MOUNT), 0)
        }));
    }
    wit.done.extend(reports.iter().map(|r| r.name.clone()));
    Ok((wit, reports))
}

/// Why a run (or a quarantine listing) stopped: the guest's words, the
/// filesystem errors they name (typed, relative to the root), and the root,
/// so an embedder can write those paths in full
/// ([`runner_metrics_core::model::FsError::with_full_paths`]) without
/// parsing the message. It displays the message.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub failure: runner_metrics_core::model::Failure,
    pub root: PathBuf,
}

impl Stopped {
    pub(crate) fn new(failure: runner_metrics_core::model::Failure, root: &Path) -> Self {
        Self { failure, root: root.to_owned() }
    }
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.failure.message)
    }
}

impl std::error::Error for Stopped {}

/// A collect of one pulled runner ([`crate::ingest`]): the same run, with
/// the runner handed to the guest to stage.
pub(crate) fn run_pulled(
    plugin: &Plugin,
    root: PathBuf,
    pulled: crate::ingest::PulledRunner,
    options: &CollectOptions,
    jobs: &mut dyn JobMetricsSource,
    sink: &mut dyn EventSink,
    on_report: &mut dyn FnMut(&StorageReport),
) -> Result<Summary> {
    let mut wit_options = options.to_wit();
    wit_options.pulled = Some(pulled.runner_name);
    let files = PulledMetrics { installation_start: pulled.installation_start, files: pulled.files };
    run_with(plugin, root, wit_options, Some(files), Vec::new(), jobs, sink, on_report)
}

fn run_collect(
    plugin: &Plugin,
    root: PathBuf,
    options: &CollectOptions,
    jobs: &mut dyn JobMetricsSource,
    sink: &mut dyn EventSink,
    on_report: &mut dyn FnMut(&StorageReport),
) -> Result<Summary> {
    let (wit_options, unmounted) = reattach_bounded(&root, options, plugin.is_confined())?;
    run_with(plugin, root, wit_options, None, unmounted, jobs, sink, on_report)
}

/// The run itself: the plugin calls the keeper asks for, each on a fresh
/// instance, until it says the run is done or must stop. `pulled`: the
/// files of the pulled runner `wit_options.pulled` names, which only the
/// plugin is handed. `unmounted`: the reports the host made itself,
/// delivered first.
#[allow(clippy::too_many_arguments)]
fn run_with(
    plugin: &Plugin,
    root: PathBuf,
    wit_options: crate::bindings::CollectOptions,
    pulled: Option<PulledMetrics>,
    unmounted: Vec<StorageReport>,
    jobs: &mut dyn JobMetricsSource,
    sink: &mut dyn EventSink,
    on_report: &mut dyn FnMut(&StorageReport),
) -> Result<Summary> {
    // The confined layer opens everything O_NONBLOCK; wasmtime-wasi's may block.
    let wit_options = crate::bindings::CollectOptions { nonblocking_opens: plugin.is_confined(), ..wit_options };
    let keeper = plugin.keeper(&root, &wit_options)?;
    let mut run = RunState::new(root, keeper, jobs, sink, on_report);
    for report in &unmounted {
        run.summary.add(report);
        (run.on_report)(report);
    }
    let mut counts = CallCounts::default();
    let counting = std::env::var_os("RUNNER_METRICS_COUNT_CALLS").is_some_and(|v| v == "1");
    let said = |counts: &mut CallCounts, run: &RunState<'_>| {
        if counting {
            (counts.keeper_calls, counts.keeper_fs_calls) = run.keeper.counts();
            eprintln!("{{\"calls\": {}}}", serde_json::to_string(counts).unwrap_or_default());
        }
    };
    let mut last = None;
    loop {
        let mut instance;
        let result = match run.keeper.next(last.as_ref())? {
            NextCall::Done => {
                said(&mut counts, &run);
                return Ok(run.summary);
            }
            NextCall::Stop(why) => {
                said(&mut counts, &run);
                return Err(Stopped::new(why.to_model(), &run.root).into());
            }
            NextCall::Collect(options) => {
                instance = plugin.instance(&run.root)?;
                instance.collect(&mut run, &options, pulled.as_ref())
            }
            NextCall::Recover(x) => {
                instance = plugin.instance(&run.root)?;
                instance.recover(&mut run, &x)
            }
        };
        let (imports, fs_calls) = instance.counts();
        counts.plugin_calls += 1;
        counts.host_imports += imports;
        counts.plugin_fs_calls += fs_calls;
        if let Some(e) = run.keeper_error.take() {
            return Err(e);
        }
        last = Some(match result {
            Ok(stopped) => Ended::Returned(stopped.err()),
            Err(failure) => Ended::Trapped(failure.detail),
        });
    }
}
