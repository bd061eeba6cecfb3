//! The arguments of every subcommand, with the examples `--help` shows,
//! and what they turn into: the plugin's options, the OS sandbox's grants,
//! the job-metrics source.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

use runner_metrics::collect::{JobMetricsSource, NoJobMetrics};
use runner_metrics::github::{read_token_file, GithubJobs, GithubOptions, DEFAULT_API_URL};
use runner_metrics::lock::RootLock;
use runner_metrics::os_sandbox::{Confinement, Grants, Layers};
use runner_metrics::plugin::{default_cache_dir, Plugin, PluginOptions, Precompiled};
use runner_metrics::prometheus::Naming;
use runner_metrics::{Limits, Policy, Selection};

use crate::messages::*;

/// The examples at the end of `runner-metrics --help` (and the man page).
pub(crate) const EXAMPLES: &str = "\
Examples:
  Try it on a built-in sample storage root (only a temporary directory is touched):
    runner-metrics demo

  Collect from the manager's storage root, leaving runners that may still be set up alone:
    runner-metrics collect --storage /var/lib/runner-metrics --flavor small --min-age 330

  A manager without a shared directory: collect a runner's metrics pulled over SSH:
    ssh runner-7 'tar -C /home/ubuntu/metrics-exchange -cf - .' \\
      | runner-metrics ingest --runner runner-7 --flavor small \\
          --quarantine-dir /var/lib/runner-metrics/pulled

  See what was quarantined and why, then put one storage back:
    runner-metrics quarantine list --storage /var/lib/runner-metrics
    runner-metrics quarantine restore --storage /var/lib/runner-metrics .quarantine/NAME.TS

  Install shell completions and the man page:
    runner-metrics completions bash > /etc/bash_completion.d/runner-metrics
    runner-metrics man > /usr/local/share/man/man1/runner-metrics.1

Exit status: 0 done, 1 storages left failed (kept for the next run), 2 error, 3 another run
holds the storage root's lock (`<DIR>/.lock`) past --wait, 4 (ingest) the runner was already
ingested: nothing logged again.";

/// The examples at the end of `runner-metrics collect --help`.
pub(crate) const COLLECT_EXAMPLES: &str = "\
Examples:
  Every few minutes (systemd timer or cron), keeping out runners set up in the last 330 s
  and the ones the manager knows are busy:
    runner-metrics collect --storage /var/lib/runner-metrics --flavor small \\
      --min-age 330 --exclude busy-runner-1 --exclude busy-runner-2

  Events on stdout instead of the metrics log, and a line for every storage:
    runner-metrics collect --storage ./runner-fs --flavor small --metrics-log - --verbose

  With job metrics from GitHub and a node_exporter textfile:
    runner-metrics collect --storage /var/lib/runner-metrics --flavor large \\
      --github-token-file /etc/runner-metrics/token \\
      --prometheus-textfile /var/lib/prometheus/node-exporter/runner-metrics.prom

  The same textfile under the upstream runner manager's names, for its dashboards:
    runner-metrics collect --storage /var/lib/runner-metrics --flavor large \\
      --prometheus-textfile /var/lib/prometheus/node-exporter/runner-metrics.prom \\
      --prometheus-names upstream

  Wait up to a minute for a run already holding the root's lock:
    runner-metrics collect --storage /var/lib/runner-metrics --flavor small --wait 60";

/// Exit code when storages were left failed (kept for the next run).
pub const EXIT_FAILED_STORAGES: u8 = 1;
/// Exit code for usage errors and runs that could not start or finish.
pub const EXIT_ERROR: u8 = 2;
/// Exit code when another run held the storage root's lock for longer than
/// `--wait` (nothing was touched).
pub const EXIT_BUSY: u8 = 3;
/// Exit code of an ingest of a runner that its directory already ingested
/// within `--remember` (nothing was staged or logged): a manager's retry
/// counts it as done.
pub const EXIT_ALREADY_INGESTED: u8 = 4;

/// Extract GitHub self-hosted runner metrics inside a WebAssembly sandbox.
///
/// Each runner leaves a storage directory `<root>/<runner-name>/` with
/// `runner-installation-start.timestamp`, `runner-installed.timestamp`,
/// `pre-job-metrics.json` and `post-job-metrics.json`. These files are
/// written by untrusted jobs, so they are parsed by a sandboxed component
/// that sees only the storage root. Every storage ends extracted (events
/// written, then deleted), deleted as no-data, quarantined under
/// `<root>/.quarantine/`, skipped, or failed and kept for the next run.
#[derive(Debug, Parser)]
#[command(name = "runner-metrics", version, max_term_width = 100, after_long_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    #[command(flatten)]
    pub(crate) sandbox: WasmSandboxArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Extract metrics, append events to the metrics log, clean up.
    ///
    /// Events are appended as JSON lines and synced to disk before the
    /// storage they came from is deleted. A one-line count per outcome is
    /// printed on stderr, with one line per quarantined or failed storage.
    /// Exit status: 0 when every storage reached an outcome (quarantine is
    /// a normal outcome), 1 when storages were left failed, 2 on errors, 3
    /// when another run held the storage root's lock (`<DIR>/.lock`) for
    /// longer than --wait (nothing touched).
    #[command(after_long_help = COLLECT_EXAMPLES)]
    Collect(CollectArgs),
    /// Collect one runner's metrics that the manager pulled itself (over
    /// SSH) instead of sharing a storage directory.
    ///
    /// The runner's files come as the tar stream of its metrics directory
    /// on stdin (or --tar FILE), or as files given one by one (--installed,
    /// --pre-job, --post-job). The stream is parsed inside the sandbox by a
    /// bounded reader that accepts only regular files with the known names.
    /// The runner is staged as a storage under --quarantine-dir and
    /// collected like one: its events are appended and synced, then the
    /// staged copy is deleted; a corrupt runner stays under
    /// DIR/.quarantine/ with its reason (`quarantine list --storage DIR`).
    /// Exit status as for `collect`: 0 done (quarantine included), 1 the
    /// runner failed and was kept, 2 error, 3 another run held DIR's lock;
    /// and 4: DIR already ingested this runner (within --remember), so
    /// nothing was logged again.
    #[command(after_long_help = crate::ingest::EXAMPLES)]
    Ingest(crate::ingest::IngestArgs),
    /// Print each extracted RunnerMetrics as one JSON line on stdout.
    ///
    /// Without --dry-run, storages are then treated as `collect` treats
    /// them (corrupt ones quarantined, empty and extracted ones deleted),
    /// under the storage root's lock (exit status 3 when another run holds
    /// it past --wait). With --dry-run nothing on disk changes.
    Extract(ExtractArgs),
    /// Inspect, restore and purge quarantined storages.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// Create, list and delete runner storages (what a runner manager does
    /// around each runner's life).
    #[command(subcommand)]
    Storage(crate::lifecycle::StorageCommand),
    /// The runner-side writer scripts (pre-job, post-job, installed).
    #[command(subcommand)]
    Hooks(crate::lifecycle::HooksCommand),
    /// Run `collect` on a built-in sample storage root in a temporary
    /// directory and print the events and the summary.
    ///
    /// The sample has complete runners, a runner without post-job metrics,
    /// one that never came up, a corrupt one, an oversized one and a
    /// symlink attack. Nothing outside the temporary directory is touched.
    Demo(DemoArgs),
    /// Write an embedded WebAssembly component to a file, to run it under
    /// other hosts.
    ///
    /// `--kind plugin` (the default) is what the Rust, Python and Node hosts
    /// load: the whole collect, calling back into the host for durable
    /// appends, job metrics and reports. `--kind keeper` is what they run
    /// beside it, one instance per run: the books of the run and the
    /// re-checks of everything the plugin claims. `--kind command` is for
    /// the plain wasmtime CLI, which lends no host interface:
    /// `wasmtime run --dir ROOT::/storage runner_metrics_command.wasm collect --flavor F`.
    Component {
        /// Where to write the `.wasm` file.
        #[arg(long, short)]
        output: PathBuf,
        /// Which component: `plugin`, `keeper` or `command`.
        #[arg(long, value_enum, default_value_t = ComponentKind::Plugin)]
        kind: ComponentKind,
    },
    /// Print a shell completion script on stdout.
    ///
    /// For bash: `runner-metrics completions bash > /etc/bash_completion.d/runner-metrics`
    /// (or ~/.local/share/bash-completion/completions/runner-metrics); for
    /// zsh, a file `_runner-metrics` in a directory of $fpath; for fish,
    /// ~/.config/fish/completions/runner-metrics.fish.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout, e.g. for
    /// /usr/local/share/man/man1/runner-metrics.1.
    Man,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QuarantineCommand {
    /// List quarantined storages with their reasons and times.
    List {
        /// The storage root (the directory holding one directory per runner).
        #[arg(long, value_name = "DIR")]
        storage: PathBuf,
        /// Print one JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    More(crate::lifecycle::QuarantineMore),
}

/// Which storages to look at.
#[derive(Debug, Args)]
#[command(next_help_heading = "Storages")]
pub(crate) struct SelectionArgs {
    /// The storage root (the directory holding one directory per runner).
    #[arg(long, value_name = "DIR")]
    pub(crate) storage: PathBuf,
    /// Leave this runner's storage alone (repeatable).
    #[arg(long, value_name = "NAME")]
    pub(crate) exclude: Vec<String>,
    /// Only look at these runners' storages (repeatable).
    #[arg(long, value_name = "NAME")]
    pub(crate) include: Vec<String>,
    /// Skip storages modified less than this many seconds ago (runners
    /// still being set up); the reference uses 330.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) min_age: Option<f64>,
}

impl SelectionArgs {
    pub(crate) fn selection(&self) -> Result<Selection> {
        if let Some(age) = self.min_age {
            anyhow::ensure!(age.is_finite() && age >= 0.0, "--min-age must be a number of seconds >= 0, got {age}");
        }
        Ok(Selection {
            exclude: self.exclude.clone(),
            include: (!self.include.is_empty()).then(|| self.include.clone()),
            min_age_seconds: self.min_age,
        })
    }
}

/// Waiting for another run on the same storage root.
#[derive(Debug, Args)]
#[command(next_help_heading = "Locking")]
pub struct WaitArgs {
    /// If another run holds the storage root's lock (`<DIR>/.lock`), wait
    /// this many seconds for it to finish before giving up with exit status
    /// 3. By default `ingest` waits 60 s (its runs are short, and a manager
    /// may start many at once); everything else gives up at once.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) wait: Option<f64>,
}

impl WaitArgs {
    /// `--wait`, or no wait at all.
    pub(crate) fn duration(&self) -> Result<Duration> {
        self.duration_or(Duration::ZERO)
    }

    /// `--wait`, or `default` when it is not given.
    pub(crate) fn duration_or(&self, default: Duration) -> Result<Duration> {
        let Some(wait) = self.wait else { return Ok(default) };
        anyhow::ensure!(
            wait.is_finite() && (0.0..=86_400.0).contains(&wait),
            "--wait must be a number of seconds in [0, 86400], got {wait}"
        );
        Ok(Duration::from_secs_f64(wait))
    }

    /// Takes the lock of `root`, waiting as asked.
    pub fn lock(&self, root: &Path) -> Result<RootLock> {
        Ok(RootLock::acquire(root, self.duration()?)?)
    }
}

#[derive(Debug, Args)]
pub(crate) struct CollectArgs {
    #[command(flatten)]
    pub(crate) selection: SelectionArgs,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    #[command(flatten)]
    pub(crate) os_sandbox: OsSandboxArgs,
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

/// What a corrupt metrics file does to its runner.
#[derive(Debug, Args)]
#[command(next_help_heading = "Storages")]
pub(crate) struct PolicyArgs {
    /// `strict`: a corrupt metrics file makes the whole runner corrupt: no
    /// events, the storage quarantined with its reason. `lenient` (the
    /// upstream manager's way with pulled metrics): the corrupt file counts
    /// as missing, the rest is issued, and the report says what was dropped.
    #[arg(long, value_enum, default_value_t = PolicyName::Strict)]
    pub(crate) policy: PolicyName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PolicyName {
    Strict,
    Lenient,
}

impl PolicyArgs {
    pub(crate) fn policy(&self) -> Policy {
        match self.policy {
            PolicyName::Strict => Policy::Strict,
            PolicyName::Lenient => Policy::Lenient,
        }
    }
}

/// Where the lines, the summary and the counters of a run go.
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// The runners' flavor, written into every event.
    #[arg(long, value_name = "NAME", help_heading = "Output")]
    pub(crate) flavor: String,
    /// Where events go: a file to append to, or `-` for stdout.
    /// [default: $METRICS_LOG_PATH, else /var/log/github-runner-metrics.log]
    #[arg(long, value_name = "PATH|-", help_heading = "Output")]
    pub(crate) metrics_log: Option<PathBuf>,
    /// Print the summary as one JSON object on stderr.
    #[arg(long, help_heading = "Output")]
    pub(crate) json: bool,
    /// Print a line for every storage, not just quarantined and failed ones.
    #[arg(long, short, help_heading = "Output")]
    pub(crate) verbose: bool,
    #[command(flatten)]
    pub(crate) github: GithubArgs,
    /// Also write a node_exporter textfile-collector file (histograms of
    /// spawn, idle, queue and job durations by flavor; counters of outcomes
    /// and events), atomically. Values accumulate across runs.
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub(crate) prometheus_textfile: Option<PathBuf>,
    /// In the textfile, count jobs of at most this many repositories by
    /// name (those already in the file keep theirs); the rest are counted
    /// under `other`, so a job cannot make the series grow without bound.
    #[arg(long, value_name = "N", default_value_t = runner_metrics::prometheus::DEFAULT_MAX_REPOSITORIES,
          help_heading = "Output")]
    pub(crate) prometheus_max_repositories: usize,
    /// The textfile's names for the durations and job counts: `ours`
    /// (`runner_metrics_*`), or `upstream`: the upstream runner manager's
    /// names, labels and buckets (`runner_queue_duration_seconds`,
    /// `job_status_count`, ...), so its dashboards show these values.
    /// The tool's own series keep their names in both.
    #[arg(long, value_name = "NAMING", default_value = "ours", help_heading = "Output",
          value_parser = PossibleValuesParser::new(Naming::ALL.map(Naming::as_str)).try_map(|s| s.parse::<Naming>()))]
    pub(crate) prometheus_names: Naming,
}

/// Job metrics (queue duration, conclusion) from the GitHub API.
#[derive(Debug, Args)]
#[command(next_help_heading = "GitHub lookups")]
pub(crate) struct GithubArgs {
    /// Look up each runner's job on the GitHub API with the token in FILE
    /// (read and trimmed; never printed). Without it, events carry no
    /// queue_duration or job_conclusion.
    #[arg(long, value_name = "FILE")]
    pub(crate) github_token_file: Option<PathBuf>,
    /// The REST API base URL; for GitHub Enterprise Server
    /// `https://HOST/api/v3`.
    #[arg(long, value_name = "URL", default_value = DEFAULT_API_URL, requires = "github_token_file")]
    pub(crate) github_api_url: String,
    /// Connect and response timeout of one API request, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, requires = "github_token_file")]
    pub(crate) github_timeout: f64,
    /// The most time one run waits for GitHub rate limits to reset, in
    /// seconds; past it, lookups stop for the run.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, requires = "github_token_file")]
    pub(crate) github_max_wait: f64,
    /// The most time one run spends on GitHub lookups in all (requests and
    /// rate-limit waits), in seconds; once spent, the remaining runners'
    /// events are issued without job metrics. Lookups also stop after 3
    /// timeouts or connection failures in a row.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, requires = "github_token_file")]
    pub(crate) github_budget: f64,
}

impl GithubArgs {
    /// The job-metrics source: GitHub when a token file is given. Problems
    /// are printed on stderr (clearing a live progress line first).
    pub(crate) fn source(&self, live: bool) -> Result<Box<dyn JobMetricsSource>> {
        let Some(token_file) = &self.github_token_file else { return Ok(Box::new(NoJobMetrics)) };
        for (flag, value) in [
            ("--github-timeout", self.github_timeout),
            ("--github-max-wait", self.github_max_wait),
            ("--github-budget", self.github_budget),
        ] {
            anyhow::ensure!(
                value.is_finite() && (0.0..=86_400.0).contains(&value),
                "{flag} must be a number of seconds in [0, 86400], got {value}"
            );
        }
        anyhow::ensure!(self.github_timeout > 0.0, "--github-timeout must be more than 0 seconds");
        anyhow::ensure!(self.github_budget > 0.0, "--github-budget must be more than 0 seconds");
        let mut options = GithubOptions::new(&self.github_api_url, read_token_file(token_file)?);
        options.timeout = Duration::from_secs_f64(self.github_timeout);
        options.max_rate_limit_wait = Duration::from_secs_f64(self.github_max_wait);
        options.budget = Duration::from_secs_f64(self.github_budget);
        let jobs = GithubJobs::new(options, move |warning: &str| {
            let clear = if live { "\r\x1b[K" } else { "" };
            let line = format!("{clear}warning: {}\n", plain(warning, &[], None));
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        })?;
        Ok(Box::new(jobs))
    }
}

#[derive(Debug, Args)]
pub(crate) struct ExtractArgs {
    #[command(flatten)]
    pub(crate) selection: SelectionArgs,
    #[command(flatten)]
    pub(crate) os_sandbox: OsSandboxArgs,
    /// A dry run: change nothing on disk, no quarantine, no deletion (and
    /// no lock). `--keep` is its old name.
    #[arg(long = "dry-run", alias = "keep", help_heading = "Output")]
    pub(crate) dry_run: bool,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Keep the sample storage root and print where it is.
    #[arg(long)]
    pub(crate) keep_files: bool,
}

/// The second wall: the process confined by the kernel
/// (`runner_metrics::os_sandbox`), for the subcommands that read or walk
/// runner files (`collect`, `extract`, `storage delete`, `quarantine
/// purge`).
#[derive(Debug, Args)]
#[command(next_help_heading = "OS sandbox")]
pub struct OsSandboxArgs {
    /// Do not confine the process with Landlock and seccomp (for
    /// debugging; the WebAssembly sandbox and the confined filesystem stay).
    #[arg(long)]
    pub(crate) no_os_sandbox: bool,
    /// Leave Landlock out (as on a kernel without it); seccomp stays.
    #[arg(long)]
    pub(crate) no_landlock: bool,
    /// Leave the seccomp filter out; Landlock stays.
    #[arg(long)]
    pub(crate) no_seccomp: bool,
}

impl OsSandboxArgs {
    /// Confines the process for a run over `grants`, before any thread
    /// starts, and says once on stderr which layers are active. Then, in
    /// the test-only escape build, tries what an escaped guest would.
    pub fn confine(&self, grants: Option<Grants>) -> Result<Confined> {
        let staging = grants.as_ref().and_then(|grants| grants.staging.clone());
        let confinement = match grants {
            Some(grants) if !self.no_os_sandbox => {
                let layers = Layers { landlock: !self.no_landlock, seccomp: !self.no_seccomp };
                runner_metrics::os_sandbox::confine(&grants, layers)?
            }
            _ => runner_metrics::os_sandbox::unconfined(),
        };
        eprintln!("runner-metrics: {confinement}");
        #[cfg(feature = "escape-test")]
        if let Some(attempts) = runner_metrics::os_sandbox::escape_test::run_from_env() {
            eprintln!("{attempts}");
        }
        Ok(Confined { confinement, _staging: staging })
    }

    /// The grants of a run that only walks `storage` (deletion, purge): the
    /// root and nothing else. Call it holding the root's lock.
    pub fn walk_grants(&self, storage: &Path) -> Result<Option<Grants>> {
        if self.no_os_sandbox {
            return Ok(None);
        }
        Ok(Some(Grants::for_walk(storage, false)?))
    }

    /// The grants of a collect or extract over `storage` (see
    /// `Grants::for_collect`). The compiled-code cache is not among them:
    /// both components are read from it (or compiled into it) before the
    /// process is confined ([`precompile`]), so a confined run can neither
    /// read its key nor write an entry that a later run would execute.
    pub(crate) fn grants(&self, storage: &Path, keep: bool, plugin: &PluginOptions) -> Result<Option<Grants>> {
        if self.no_os_sandbox {
            return Ok(None);
        }
        Ok(Some(Grants::for_collect(storage, keep, plugin.confined_fs()?)?))
    }
}

/// A confined process's layers, and what the run keeps while it works:
/// its staging directory, removed when this is dropped.
#[must_use = "the run's staging directory is removed when this is dropped"]
pub struct Confined {
    pub confinement: Confinement,
    _staging: Option<std::sync::Arc<runner_metrics::storage::staging::Staging>>,
}

/// The WebAssembly sandbox's limits and code cache, shared by every subcommand
/// (the second wall, the kernel's, is `OsSandboxArgs`).
#[derive(Debug, Args)]
#[command(next_help_heading = "WebAssembly sandbox")]
pub(crate) struct WasmSandboxArgs {
    /// Memory one guest instance may use, in MiB.
    #[arg(long, global = true, value_name = "MIB", default_value_t = 64)]
    pub(crate) memory_limit: usize,
    /// Time the guest may spend on one storage, in seconds (restarted at
    /// every storage and every host call; also the budget of one call of the
    /// fine-grained subcommands).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 10.0)]
    pub(crate) timeout: f64,
    /// WASI handles (open files, directories, streams) one guest instance
    /// may hold at once.
    #[arg(long, global = true, value_name = "N", default_value_t = 256)]
    pub(crate) max_handles: usize,
    /// Where compiled machine code is cached.
    /// [default: $XDG_CACHE_HOME/runner-metrics or ~/.cache/runner-metrics]
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Compile the component on every start instead of using the cache.
    #[arg(long, global = true)]
    pub(crate) no_cache: bool,
}

impl WasmSandboxArgs {
    /// Where compiled code is cached, if it is.
    pub(crate) fn cache_path(&self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(default_cache_dir)
        }
    }

    /// The plugin's options, checked (before anything is touched).
    pub(crate) fn options(&self) -> Result<PluginOptions> {
        anyhow::ensure!(
            self.timeout.is_finite() && self.timeout > 0.0 && self.timeout <= 86_400.0,
            "--timeout must be a number of seconds in (0, 86400], got {}",
            self.timeout
        );
        anyhow::ensure!(self.memory_limit >= 1, "--memory-limit must be at least 1 MiB");
        anyhow::ensure!(self.max_handles >= 16, "--max-handles must be at least 16 (the guest needs a few for itself)");
        let limits = Limits {
            memory_bytes: self.memory_limit.saturating_mul(1024 * 1024),
            call_timeout: Duration::from_secs_f64(self.timeout),
            max_handles: self.max_handles,
            ..Limits::default()
        };
        let options = PluginOptions { limits, cache_dir: self.cache_path(), ..Default::default() };
        options.check()?;
        Ok(options)
    }

    pub(crate) fn plugin(&self) -> Result<Plugin> {
        open_plugin(&self.options()?)
    }
}

/// Opens the plugin, saying once when it falls back to wasmtime-wasi's
/// filesystem or the cache refused something.
pub(crate) fn open_plugin(options: &PluginOptions) -> Result<Plugin> {
    open_precompiled(options, Plugin::precompile(options.component()?, options, true)?)
}

/// The plugin's and keeper's code, checked against the cache's MAC or
/// compiled into it, without starting a thread: call it before confining
/// the process, then [`open_precompiled`]. Refuses a cache directory that
/// a confined run may write (`writable`: the directories it is granted).
pub(crate) fn precompile(options: &PluginOptions, writable: &[&Path]) -> Result<Precompiled> {
    if let Some(cache) = &options.cache_dir {
        let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_owned());
        let cache = canonical(cache);
        if let Some(dir) = writable.iter().map(|d| canonical(d)).find(|d| cache.starts_with(d) || d.starts_with(&cache))
        {
            anyhow::bail!(
                "cache directory {}: overlaps {}, which a confined run may write; its compiled code would then \
                 be trusted by later runs: choose another --cache-dir",
                cache.display(),
                dir.display()
            );
        }
    }
    Plugin::precompile(options.component()?, options, false)
}

/// Opens the plugin from what [`precompile`] prepared.
pub(crate) fn open_precompiled(options: &PluginOptions, precompiled: Precompiled) -> Result<Plugin> {
    let plugin = Plugin::open_precompiled(options.component()?, options, precompiled)?;
    if let Some(why) = plugin.filesystem_fallback() {
        eprintln!("runner-metrics: warning: {why}");
    }
    for note in plugin.cache_notes() {
        eprintln!("runner-metrics: warning: {note}");
    }
    Ok(plugin)
}

/// The three components `runner-metrics component` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ComponentKind {
    /// World `plugin`: the Rust, Python and Node hosts load it.
    Plugin,
    /// World `keeper`: every host runs it beside the plugin.
    Keeper,
    /// World `command`: `wasmtime run` runs it.
    Command,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
