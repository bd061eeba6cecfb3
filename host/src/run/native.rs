//! The guest's pipeline compiled natively, with no sandbox (feature
//! `native-guest`, off by default): the benchmark's "no sandbox" contender.
//!
//! It runs `runner_metrics_core::pipeline::collect`, the very code the
//! component runs, over the host's filesystem, with a host that appends to
//! the same [`EventSink`]. So the difference between the two contenders is
//! what wasmtime, WASI, the component boundary and the host's re-checks
//! cost. It reads untrusted files in the host process with no memory cap
//! and no deadline: never use it outside measurements.

use std::path::Path;

use anyhow::{Context, Result};
use runner_metrics_core::fs::NativeFs;
use runner_metrics_core::model::{self as guest, GithubJobMetrics, RunnerMetrics, Selection, StorageOutput};
use runner_metrics_core::pipeline;

use crate::collect::{CollectOptions, Emit};
use crate::log::EventSink;
use crate::summary::{StorageReport, Summary};

/// What `collect` does, natively and unchecked, without job metrics.
pub fn collect_native(
    root: &Path,
    options: &CollectOptions,
    sink: &mut dyn EventSink,
    on_report: &mut dyn FnMut(&StorageReport),
) -> Result<Summary> {
    let root = root.canonicalize().with_context(|| format!("storage root {}", root.display()))?;
    let selection = &options.selection;
    let options = guest::CollectOptions {
        selection: Selection {
            exclude: selection.exclude.clone(),
            include: selection.include.clone(),
            min_age_seconds: selection.min_age_seconds,
        },
        emit: match &options.emit {
            Emit::Events { flavor } => guest::Emit::Events(flavor.clone()),
            Emit::Metrics => guest::Emit::Metrics,
        },
        dry_run: options.dry_run,
        batch_size: u32::try_from(options.batch_size).unwrap_or(u32::MAX),
        ..guest::CollectOptions::events("")
    };
    let mut host = NativeHost { sink, on_report, summary: Summary::default() };
    pipeline::collect(&NativeFs::new(&root), &options, None, &mut host)
        .map_err(|failure| crate::collect::Stopped::new(failure, &root))?;
    Ok(host.summary)
}

struct NativeHost<'a> {
    sink: &'a mut dyn EventSink,
    on_report: &'a mut dyn FnMut(&StorageReport),
    summary: Summary,
}

impl pipeline::Host for NativeHost<'_> {
    fn begin_storage(&mut self, _: &str) {}

    fn end_storage(&mut self) {}

    fn job_metrics(&mut self, _: &RunnerMetrics) -> Option<GithubJobMetrics> {
        None
    }

    fn append(&mut self, batch: Vec<StorageOutput>) -> Result<(), String> {
        let lines: Vec<String> = batch.iter().flat_map(StorageOutput::lines).collect();
        self.sink.append(&lines).map_err(|e| e.to_string())
    }

    fn report(&mut self, report: StorageReport) {
        self.summary.add(&report);
        (self.on_report)(&report);
    }
}
