//! `runner-metrics ingest`: one runner's metrics pulled by the manager
//! (spec 9), collected through the same run as `collect`
//! (`cli::run_locked`, `runner_metrics::ingest`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use runner_metrics::collect::{CollectOptions, JobMetricsSource};
use runner_metrics::ingest::{self, LooseFiles, PulledFiles, PulledRunner};
use runner_metrics::log::EventSink;
use runner_metrics::{Plugin, RootLock, StorageReport};

use crate::args::{OsSandboxArgs, OutputArgs, PolicyArgs, WaitArgs, WasmSandboxArgs};
use crate::run::run_locked;

/// The examples at the end of `runner-metrics ingest --help`.
pub const EXAMPLES: &str = "\
Examples:
  Pull a runner's metrics directory over SSH when deleting its VM, and collect it:
    ssh runner-7 'tar -C /home/ubuntu/metrics-exchange -cf - .' \\
      | runner-metrics ingest --runner runner-7 --flavor small \\
          --quarantine-dir /var/lib/runner-metrics/pulled --installation-start 1700000000

  Files the manager already copied, with the upstream manager's lenient policy:
    runner-metrics ingest --runner runner-7 --flavor small --policy lenient \\
      --quarantine-dir /var/lib/runner-metrics/pulled \\
      --installed ./runner-installed.timestamp --pre-job ./pre-job-metrics.json \\
      --post-job ./post-job-metrics.json

  A retry after a timeout: exit status 4 says the first try got through (nothing logged twice):
    ssh runner-7 'tar -C /home/ubuntu/metrics-exchange -cf - .' \\
      | runner-metrics ingest --runner runner-7 --flavor small --quarantine-dir /var/lib/runner-metrics/pulled
    status=$?; [ \"$status\" -eq 0 ] || [ \"$status\" -eq 4 ]

  What a strict run kept, and why:
    runner-metrics quarantine list --storage /var/lib/runner-metrics/pulled";

/// How long an ingest waits for the directory's lock unless `--wait` says:
/// a manager may pull many runners at once, and each run is short.
pub(crate) const DEFAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The runner's name (1 to 255 bytes of [A-Za-z0-9._-], not starting
    /// with `.`).
    #[arg(long, value_name = "NAME", help_heading = "Runner")]
    pub(crate) runner: String,
    /// A directory of its own for pulled runners, created if missing: each
    /// is staged there while it is collected, and a corrupt one stays under
    /// DIR/.quarantine/ with a reason file, so nothing is lost.
    #[arg(long, value_name = "DIR", help_heading = "Runner")]
    pub(crate) quarantine_dir: PathBuf,
    /// When the runner's installation started, in UNIX seconds (for example
    /// the VM's creation time); gives the `runner_installed` event.
    #[arg(long, value_name = "TIMESTAMP", help_heading = "Runner", allow_negative_numbers = true)]
    pub(crate) installation_start: Option<f64>,
    /// How long DIR remembers each runner it ingested (DIR/.ingested/), so
    /// that the same runner ingested again (two at once, or a retry after a
    /// timeout) logs nothing and exits with status 4: seconds, or a number
    /// with a unit s, m, h, d or w. 0 remembers nothing.
    #[arg(long, value_name = "AGE", help_heading = "Runner", default_value = "7d",
          value_parser = runner_metrics::storage::parse_age)]
    pub(crate) remember: std::time::Duration,
    /// Read the tar stream of the runner's metrics directory from FILE
    /// (`-`: stdin, the default when no file is given one by one). At most
    /// 64 KiB are read.
    #[arg(long, value_name = "FILE|-", help_heading = "Pulled files",
          conflicts_with_all = ["installed", "pre_job", "post_job"])]
    pub(crate) tar: Option<PathBuf>,
    /// The runner's `runner-installed.timestamp`, saved by the manager
    /// (read without following a symlink, at most 1 KiB and a byte; a
    /// missing file counts as missing).
    #[arg(long, value_name = "FILE", help_heading = "Pulled files")]
    pub(crate) installed: Option<PathBuf>,
    /// The runner's `pre-job-metrics.json`, saved by the manager.
    #[arg(long, value_name = "FILE", help_heading = "Pulled files")]
    pub(crate) pre_job: Option<PathBuf>,
    /// The runner's `post-job-metrics.json`, saved by the manager.
    #[arg(long, value_name = "FILE", help_heading = "Pulled files")]
    pub(crate) post_job: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    #[command(flatten)]
    pub(crate) os_sandbox: OsSandboxArgs,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

pub fn run(sandbox: &WasmSandboxArgs, args: IngestArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        runner_metrics_core::names::is_valid_runner_name(&args.runner),
        "--runner {:?}: not a valid runner name (1 to 255 bytes of [A-Za-z0-9._-], not starting with '.')",
        crate::messages::printable(&args.runner)
    );
    if let Some(start) = args.installation_start {
        anyhow::ensure!(
            start.is_finite() && start >= 0.0,
            "--installation-start must be a UNIX time >= 0, got {start}"
        );
    }
    let wait = args.wait.duration_or(DEFAULT_WAIT)?;
    // Everything is read before the lock is taken, so a slow SSH session
    // never holds up another run.
    let files = read_pulled(&args)?;
    ingest::ensure_root(&args.quarantine_dir)?;
    crate::messages::check_root(&args.quarantine_dir)?;
    let pulled = PulledRunner { runner_name: args.runner.clone(), installation_start: args.installation_start, files };
    let options = CollectOptions {
        lock_wait: wait,
        policy: args.policy.policy(),
        remember_ingested: args.remember,
        ..CollectOptions::events(&args.output.flavor)
    };
    let run = |plugin: &Plugin,
               lock: &RootLock,
               jobs: &mut dyn JobMetricsSource,
               sink: &mut dyn EventSink,
               on_report: &mut dyn FnMut(&StorageReport)| {
        ingest::ingest_holding(plugin, lock, pulled, &options, jobs, sink, on_report)
    };
    run_locked(sandbox, &args.os_sandbox, &args.output, &args.quarantine_dir, wait, run)
}

/// The pulled files: given one by one, or the tar stream (stdin unless
/// `--tar FILE`), each read only as far as its bound.
pub(crate) fn read_pulled(args: &IngestArgs) -> Result<PulledFiles> {
    let loose = [&args.installed, &args.pre_job, &args.post_job];
    if loose.iter().any(|f| f.is_some()) {
        let read = |path: &Option<PathBuf>| path.as_deref().map(ingest::read_file).transpose().map(Option::flatten);
        return Ok(PulledFiles::Loose(LooseFiles {
            installed: read(&args.installed)?,
            pre_job: read(&args.pre_job)?,
            post_job: read(&args.post_job)?,
        }));
    }
    let stream = match args.tar.as_deref() {
        None => read_stdin()?,
        Some(path) if path == Path::new("-") => read_stdin()?,
        Some(path) => {
            let file = runner_metrics::log::open_regular_file(path, std::fs::OpenOptions::new().read(true))
                .with_context(|| format!("reading the tar stream {}", path.display()))?;
            ingest::read_stream(file).with_context(|| format!("reading the tar stream {}", path.display()))?
        }
    };
    Ok(PulledFiles::Tar(stream))
}

pub(crate) fn read_stdin() -> Result<Vec<u8>> {
    anyhow::ensure!(
        !std::io::IsTerminal::is_terminal(&std::io::stdin()),
        "no pulled files: pipe the runner's tar stream into stdin (see --help), or give --tar, --installed, \
         --pre-job or --post-job"
    );
    ingest::read_stream(std::io::stdin().lock()).context("reading the tar stream from stdin")
}
