//! Command-line arguments and what each subcommand does.

use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};

use runner_metrics::collect::{collect, collect_holding, CollectOptions, Emit, JobMetricsSource, NoJobMetrics};
use runner_metrics::github::{read_token_file, GithubJobs, GithubOptions, DEFAULT_API_URL};
use runner_metrics::ingest::ledger::AlreadyIngested;
use runner_metrics::lock::{LockError, RootLock};
use runner_metrics::log::{EventSink, MetricsLog, StdoutSink, DEFAULT_METRICS_LOG, METRICS_LOG_ENV};
use runner_metrics::os_sandbox::{Confinement, Grants, Layers};
use runner_metrics::plugin::{default_cache_dir, Plugin, PluginOptions, Precompiled, EMBEDDED_COMPONENT};
use runner_metrics::prometheus::{ObservingSink, Recorder};
use runner_metrics::summary::{OutcomeKind, StorageReport, Summary};
use runner_metrics::{Limits, Policy, Selection};

/// The examples at the end of `runner-metrics --help` (and the man page).
const EXAMPLES: &str = "\
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
const COLLECT_EXAMPLES: &str = "\
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
    command: Command,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    #[command(after_long_help = crate::cli_ingest::EXAMPLES)]
    Ingest(crate::cli_ingest::IngestArgs),
    /// Print each extracted RunnerMetrics as one JSON line on stdout.
    ///
    /// Without --keep, storages are then treated as `collect` treats them
    /// (corrupt ones quarantined, empty and extracted ones deleted), under
    /// the storage root's lock (exit status 3 when another run holds it past
    /// --wait). With --keep nothing on disk changes.
    Extract(ExtractArgs),
    /// Inspect, restore and purge quarantined storages.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// Create, list and delete runner storages (what a runner manager does
    /// around each runner's life).
    #[command(subcommand)]
    Storage(crate::cli_lifecycle::StorageCommand),
    /// The runner-side writer scripts (pre-job, post-job, installed).
    #[command(subcommand)]
    Hooks(crate::cli_lifecycle::HooksCommand),
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
enum QuarantineCommand {
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
    More(crate::cli_lifecycle::QuarantineMore),
}

/// Which storages to look at.
#[derive(Debug, Args)]
#[command(next_help_heading = "Storages")]
struct SelectionArgs {
    /// The storage root (the directory holding one directory per runner).
    #[arg(long, value_name = "DIR")]
    storage: PathBuf,
    /// Leave this runner's storage alone (repeatable).
    #[arg(long, value_name = "NAME")]
    exclude: Vec<String>,
    /// Only look at these runners' storages (repeatable).
    #[arg(long, value_name = "NAME")]
    include: Vec<String>,
    /// Skip storages modified less than this many seconds ago (runners
    /// still being set up); the reference uses 330.
    #[arg(long, value_name = "SECONDS")]
    min_age: Option<f64>,
}

impl SelectionArgs {
    fn selection(&self) -> Result<Selection> {
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
    wait: Option<f64>,
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
struct CollectArgs {
    #[command(flatten)]
    selection: SelectionArgs,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    os_sandbox: OsSandboxArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    output: OutputArgs,
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
    policy: PolicyName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PolicyName {
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
    metrics_log: Option<PathBuf>,
    /// Print the summary as one JSON object on stderr.
    #[arg(long, help_heading = "Output")]
    json: bool,
    /// Print a line for every storage, not just quarantined and failed ones.
    #[arg(long, short, help_heading = "Output")]
    verbose: bool,
    #[command(flatten)]
    github: GithubArgs,
    /// Also write a node_exporter textfile-collector file (histograms of
    /// spawn, idle, queue and job durations by flavor; counters of outcomes
    /// and events), atomically. Values accumulate across runs.
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    prometheus_textfile: Option<PathBuf>,
    /// In the textfile, count jobs of at most this many repositories by
    /// name (those already in the file keep theirs); the rest are counted
    /// under `other`, so a job cannot make the series grow without bound.
    #[arg(long, value_name = "N", default_value_t = runner_metrics::prometheus::DEFAULT_MAX_REPOSITORIES,
          help_heading = "Output")]
    prometheus_max_repositories: usize,
}

/// Job metrics (queue duration, conclusion) from the GitHub API.
#[derive(Debug, Args)]
#[command(next_help_heading = "GitHub lookups")]
pub(crate) struct GithubArgs {
    /// Look up each runner's job on the GitHub API with the token in FILE
    /// (read and trimmed; never printed). Without it, events carry no
    /// queue_duration or job_conclusion.
    #[arg(long, value_name = "FILE")]
    github_token_file: Option<PathBuf>,
    /// The REST API base URL; for GitHub Enterprise Server
    /// `https://HOST/api/v3`.
    #[arg(long, value_name = "URL", default_value = DEFAULT_API_URL, requires = "github_token_file")]
    github_api_url: String,
    /// Connect and response timeout of one API request, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, requires = "github_token_file")]
    github_timeout: f64,
    /// The most time one run waits for GitHub rate limits to reset, in
    /// seconds; past it, lookups stop for the run.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, requires = "github_token_file")]
    github_max_wait: f64,
    /// The most time one run spends on GitHub lookups in all (requests and
    /// rate-limit waits), in seconds; once spent, the remaining runners'
    /// events are issued without job metrics. Lookups also stop after 3
    /// timeouts or connection failures in a row.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, requires = "github_token_file")]
    github_budget: f64,
}

impl GithubArgs {
    /// The job-metrics source: GitHub when a token file is given. Problems
    /// are printed on stderr (clearing a live progress line first).
    fn source(&self, live: bool) -> Result<Box<dyn JobMetricsSource>> {
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
            let line = format!("{clear}warning: {}\n", plain(warning, None));
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        })?;
        Ok(Box::new(jobs))
    }
}

#[derive(Debug, Args)]
struct ExtractArgs {
    #[command(flatten)]
    selection: SelectionArgs,
    #[command(flatten)]
    os_sandbox: OsSandboxArgs,
    /// Change nothing on disk: no quarantine, no deletion (and no lock).
    #[arg(long, help_heading = "Output")]
    keep: bool,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Keep the sample storage root and print where it is.
    #[arg(long)]
    keep_files: bool,
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
    no_os_sandbox: bool,
    /// Leave Landlock out (as on a kernel without it); seccomp stays.
    #[arg(long)]
    no_landlock: bool,
    /// Leave the seccomp filter out; Landlock stays.
    #[arg(long)]
    no_seccomp: bool,
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
    _staging: Option<std::sync::Arc<runner_metrics::confined_fs::staging::Staging>>,
}

/// Sandbox settings shared by every subcommand.
#[derive(Debug, Args)]
#[command(next_help_heading = "Sandbox")]
pub(crate) struct SandboxArgs {
    /// Memory one guest instance may use, in MiB.
    #[arg(long, global = true, value_name = "MIB", default_value_t = 64)]
    memory_limit: usize,
    /// Time the guest may spend on one storage, in seconds (restarted at
    /// every storage and every host call; also the budget of one call of the
    /// fine-grained subcommands).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 10.0)]
    timeout: f64,
    /// WASI handles (open files, directories, streams) one guest instance
    /// may hold at once.
    #[arg(long, global = true, value_name = "N", default_value_t = 256)]
    max_handles: usize,
    /// Where compiled machine code is cached.
    /// [default: $XDG_CACHE_HOME/runner-metrics or ~/.cache/runner-metrics]
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile the component on every start instead of using the cache.
    #[arg(long, global = true)]
    no_cache: bool,
}

impl SandboxArgs {
    /// Where compiled code is cached, if it is.
    fn cache_path(&self) -> Option<PathBuf> {
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

    fn plugin(&self) -> Result<Plugin> {
        open_plugin(&self.options()?)
    }
}

/// Opens the plugin, saying once when it falls back to wasmtime-wasi's
/// filesystem or the cache refused something.
fn open_plugin(options: &PluginOptions) -> Result<Plugin> {
    open_precompiled(options, Plugin::precompile(EMBEDDED_COMPONENT, options, true)?)
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
    Plugin::precompile(EMBEDDED_COMPONENT, options, false)
}

/// Opens the plugin from what [`precompile`] prepared.
pub(crate) fn open_precompiled(options: &PluginOptions, precompiled: Precompiled) -> Result<Plugin> {
    let plugin = Plugin::open_precompiled(EMBEDDED_COMPONENT, options, precompiled)?;
    if let Some(why) = plugin.filesystem_fallback() {
        eprintln!("runner-metrics: warning: {why}");
    }
    for note in plugin.cache_notes() {
        eprintln!("runner-metrics: warning: {note}");
    }
    Ok(plugin)
}

/// The whole command: `main` of `runner-metrics` (and of the test-only
/// `runner-metrics-escape-test`, `src/bin/escape_test.rs`).
pub fn main() -> ExitCode {
    quiet_library_backtraces();
    let args = <Cli as clap::Parser>::parse();
    match run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("runner-metrics: error: {}", plain(&format!("{error:#}"), None));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// With `RUST_BACKTRACE=1` set (common on developer machines), every error
/// value wasmtime-wasi creates captures a full stack trace, and the guest's
/// expected errors (a missing optional file, a free name probed) cost about
/// 8% of a run's CPU time in stack unwinding. We never print those traces
/// (`{:#}` omits them), so unless the user asked for library backtraces
/// explicitly, turn them off; panics still honour `RUST_BACKTRACE`. Called
/// first, before any thread exists, so changing the environment is sound.
fn quiet_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

/// Runs a subcommand. A root whose lock another run holds is exit status
/// [`EXIT_BUSY`], with the lock file and the holder's pid on stderr.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match run_command(cli) {
        Err(error) => match error.downcast_ref::<LockError>() {
            Some(busy @ LockError::Busy { .. }) => {
                eprintln!("runner-metrics: {busy} (--wait SECONDS waits longer)");
                Ok(ExitCode::from(EXIT_BUSY))
            }
            _ => match error.downcast_ref::<AlreadyIngested>() {
                Some(already) => {
                    eprintln!("runner-metrics: {already}");
                    Ok(ExitCode::from(EXIT_ALREADY_INGESTED))
                }
                None => Err(error),
            },
        },
        done => done,
    }
}

fn run_command(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Collect(args) => run_collect(&cli.sandbox, args),
        Command::Ingest(args) => crate::cli_ingest::run(&cli.sandbox, args),
        Command::Extract(args) => run_extract(&cli.sandbox, args),
        Command::Quarantine(QuarantineCommand::List { storage, json }) => {
            run_quarantine_list(&cli.sandbox, &storage, json)
        }
        Command::Quarantine(QuarantineCommand::More(command)) => crate::cli_lifecycle::run_quarantine(command),
        Command::Storage(command) => crate::cli_lifecycle::run_storage(command),
        Command::Hooks(command) => crate::cli_lifecycle::run_hooks(command),
        Command::Demo(args) => crate::demo::run(&cli.sandbox.plugin()?, args.keep_files),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "runner-metrics", &mut script);
            write_stdout(&script)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page).context("rendering the man page")?;
            write_stdout(&page)
        }
        Command::Component { output, kind } => {
            let bytes = match kind {
                ComponentKind::Plugin => runner_metrics::plugin::EMBEDDED_COMPONENT,
                ComponentKind::Keeper => runner_metrics::plugin::EMBEDDED_KEEPER,
                ComponentKind::Command => runner_metrics::plugin::EMBEDDED_COMMAND,
            };
            std::fs::write(&output, bytes).with_context(|| format!("writing the component to {}", output.display()))?;
            eprintln!("wrote {} ({} bytes)", output.display(), bytes.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The three components `runner-metrics component` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ComponentKind {
    /// World `plugin`: the Rust, Python and Node hosts load it.
    Plugin,
    /// World `keeper`: every host runs it beside the plugin.
    Keeper,
    /// World `command`: `wasmtime run` runs it.
    Command,
}

/// Writes generated text on stdout, saying so when that fails (a closed pipe).
fn write_stdout(bytes: &[u8]) -> Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush()).context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// The metrics log: the flag, else `$METRICS_LOG_PATH`, else the default.
fn open_sink(flag: Option<&Path>) -> Result<Box<dyn EventSink>> {
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

fn run_collect(sandbox: &SandboxArgs, args: CollectArgs) -> Result<ExitCode> {
    let selection = args.selection.selection()?;
    // Check the root before the log is created, so a typo leaves no trace.
    let storage = &args.selection.storage;
    check_root(storage)?;
    let options = CollectOptions {
        selection,
        emit: Emit::Events { flavor: args.output.flavor.clone() },
        keep: false,
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
    sandbox: &SandboxArgs,
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
    let recorder = RefCell::new(Recorder::with_max_repositories(args.prometheus_max_repositories));
    // Lines are read back for the histograms only when a textfile wants them
    // (a JSON parse per line: 7% of a collect's instructions).
    let mut observed = ObservingSink { inner: sink.as_mut(), recorder: &recorder };
    let sink: &mut dyn EventSink = if args.prometheus_textfile.is_some() { &mut observed } else { observed.inner };
    let result = run(&plugin, &lock, jobs.as_mut(), sink, &mut |r| {
        recorder.borrow_mut().observe_report(r);
        progress.report(r)
    });
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

fn run_extract(sandbox: &SandboxArgs, args: ExtractArgs) -> Result<ExitCode> {
    let os = &args.os_sandbox;
    let selection = args.selection.selection()?;
    let storage = &args.selection.storage;
    check_root(storage)?;
    let wait = args.wait.duration()?;
    let plugin_options = sandbox.options()?;
    // The root's lock unless --keep (which changes nothing), then the
    // process confined before the plugin starts.
    let lock = if args.keep { None } else { Some(RootLock::acquire(storage, wait)?) };
    let root = lock.as_ref().map_or_else(|| storage.canonicalize(), |l| Ok(l.root().to_owned()));
    let root = root.with_context(|| format!("storage root {}", storage.display()))?;
    let precompiled = precompile(&plugin_options, &[&root])?;
    let _confined = os.confine(os.grants(&root, args.keep, &plugin_options)?)?;
    let plugin = open_precompiled(&plugin_options, precompiled)?;
    let options = CollectOptions {
        selection,
        emit: Emit::Metrics,
        keep: args.keep,
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
        for kind in OutcomeKind::ALL {
            eprintln!("{:>12}: {}", kind.as_str(), summary.count(kind));
        }
        eprintln!("{:>12}: {}", "lines", summary.lines_written);
    }
    Ok(if summary.failed > 0 { ExitCode::from(EXIT_FAILED_STORAGES) } else { ExitCode::SUCCESS })
}

/// Per-storage lines on stderr (problems always, everything with
/// --verbose) and, when stderr is a terminal, a live status line: storages
/// done, rate, elapsed time. The total is unknown while the root is streamed,
/// so there is no percentage. Each update is one `write(2)` and there are at
/// most [`Progress::INTERVAL`]-spaced updates (10 per second), so a fast run
/// is not slowed down by its own progress line.
pub struct Progress {
    verbose: bool,
    /// The storage root, to print the guest's root-relative paths in full.
    root: Option<PathBuf>,
    /// Whether to draw the live line (stderr is a terminal).
    pub live: bool,
    seen: usize,
    started: Instant,
    /// When the live line was last drawn (the start until it is).
    last_draw: Instant,
    /// Whether the live line is on screen (to be cleared before other text).
    on_screen: bool,
}

impl Progress {
    /// Time between two draws of the live line; the first comes after it
    /// too, so a run that takes less prints no live line at all.
    pub const INTERVAL: Duration = Duration::from_millis(100);

    pub fn new(verbose: bool, root: &Path) -> Self {
        Self { root: Some(root.to_owned()), ..Self::with_live(verbose, std::io::stderr().is_terminal()) }
    }

    /// `live` forced, for tests.
    pub fn with_live(verbose: bool, live: bool) -> Self {
        let now = Instant::now();
        Self { verbose, root: None, live, seen: 0, started: now, last_draw: now, on_screen: false }
    }

    pub fn report(&mut self, report: &StorageReport) {
        self.seen += 1;
        let notable = matches!(report.kind, OutcomeKind::Quarantined | OutcomeKind::Failed);
        if self.verbose || notable {
            // Formatted first and written at once: stderr is unbuffered, and
            // `escape_debug` through `eprintln!` wrote one byte per syscall.
            let clear = if self.on_screen { "\r\x1b[K" } else { "" };
            let line = format!(
                "{clear}{}: {}: {}\n",
                report.kind.as_str(),
                printable(&report.name),
                plain(&report.detail, self.root.as_deref())
            );
            write_stderr(&line);
            self.on_screen = false; // drawn again at the next interval
        }
        if let Some(line) = self.due(Instant::now()) {
            write_stderr(&line);
        }
    }

    /// The live line to draw at `now`, if one is due.
    pub fn due(&mut self, now: Instant) -> Option<String> {
        if !self.live {
            return None;
        }
        if now.saturating_duration_since(self.last_draw) < Self::INTERVAL {
            return None;
        }
        self.last_draw = now;
        self.on_screen = true;
        Some(format!("\r\x1b[K{}", status_line(self.seen, now.saturating_duration_since(self.started))))
    }

    /// Clears the live line, if one was drawn.
    pub fn finish(&mut self) {
        if std::mem::take(&mut self.on_screen) {
            write_stderr("\r\x1b[K");
        }
    }
}

/// `1234 storages, 456/s, 2.7s` (the live line without its terminal codes).
pub fn status_line(done: usize, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 { done as f64 / seconds } else { 0.0 };
    let elapsed = if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        let whole = elapsed.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    };
    format!("{done} storages, {rate:.0}/s, {elapsed}")
}

/// One write on (unbuffered) stderr; errors are ignored (nowhere to say them).
fn write_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn run_quarantine_list(sandbox: &SandboxArgs, storage: &Path, json: bool) -> Result<ExitCode> {
    check_root(storage)?;
    let plugin = sandbox.plugin()?;
    let entries = runner_metrics::quarantine::list(&plugin, storage)?;
    for q in &entries {
        let reason = q.reason.as_str();
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
                plain(&q.detail, Some(storage))
            );
        }
    }
    if !json {
        eprintln!("{} quarantined storage(s) in {}", entries.len(), storage.join(".quarantine").display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks `--storage DIR` before anything else, so that a missing root, a
/// file or an inaccessible one reads the same in every subcommand: one line
/// naming the path and what is wrong with it.
pub fn check_root(root: &Path) -> Result<()> {
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => anyhow::bail!("storage root {}: not a directory", root.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("storage root {}: no such directory", root.display())
        }
        Err(e) => anyhow::bail!("storage root {}: cannot be accessed: {}", root.display(), io_reason(&e)),
    }
}

/// An I/O error as a reason, without the `(os error N)` tail.
pub fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}

/// The filesystem operations the guest names in its messages, each followed
/// by a root-relative path in Rust debug quotes (`stat "r-1/x": why`).
const GUEST_OPS: [&str; 14] = [
    "create",
    "create directory",
    "list",
    "move",
    "move out",
    "open",
    "open directory",
    "read",
    "remove",
    "remove directory",
    "rename",
    "stat",
    "sync",
    "write",
];

/// A message from the guest or the library as an operator should read it:
/// WASI's `, similar to `EACCES` in POSIX.` glosses taken off, the guest's
/// quoted root-relative paths (`open "r-1/pre-job-metrics.json"`) written as
/// full paths under `root` when it is known (unquoted relative paths when
/// not), and control characters escaped (the text can come from untrusted
/// files and names) while quotes are left as they are.
pub fn plain(message: &str, root: Option<&Path>) -> String {
    let message = without_posix_glosses(message);
    let mut out = String::with_capacity(message.len() + root.map_or(0, |r| r.as_os_str().len()));
    let mut rest = message.as_str();
    while let Some(open) = rest.find('"') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = closing_quote(after) else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let quoted = &after[..close];
        let tail = &after[close + 1..];
        if tail.starts_with(':') && follows_guest_op(&out) {
            let relative = unquote(quoted);
            match root {
                Some(root) if relative.is_empty() => out.push_str(&root.display().to_string()),
                Some(root) => out.push_str(&root.join(&relative).display().to_string()),
                None if relative.is_empty() => out.push('.'),
                None => out.push_str(&relative),
            }
        } else {
            out.push('"');
            out.push_str(quoted);
            out.push('"');
        }
        rest = tail;
    }
    out.push_str(rest);
    printable(&out)
}

/// `text` without WASI's error-code glosses (`, similar to `X` [and `Y`] in
/// POSIX`, and the full stop after one).
fn without_posix_glosses(text: &str) -> String {
    const START: &str = ", similar to `";
    const END: &str = " in POSIX";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(START) {
        let Some(len) = rest[start..].find(END) else { break };
        out.push_str(&rest[..start]);
        rest = &rest[start + len + END.len()..];
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    out.push_str(rest);
    out
}

/// The byte offset of the quote closing a debug-quoted string whose opening
/// quote precedes `text` (backslash escapes skipped).
fn closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(at),
            _ => {}
        }
    }
    None
}

/// Whether `before` ends with one of [`GUEST_OPS`] and a space, as a word.
fn follows_guest_op(before: &str) -> bool {
    let Some(before) = before.strip_suffix(' ') else { return false };
    GUEST_OPS.iter().any(|op| {
        before.strip_suffix(op).is_some_and(|head| !head.ends_with(|c: char| c.is_alphanumeric() || c == '_'))
    })
}

/// The content of a debug-quoted string with its quote and backslash
/// escapes undone; other escapes (`\u{1b}`) stay as text.
fn unquote(quoted: &str) -> String {
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(next @ ('"' | '\'' | '\\'))) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// `text` with control characters (and other characters Rust escapes in
/// debug output, such as bidirectional overrides) escaped; quotes and
/// backslashes left alone.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\'' | '\\' => out.push(c),
            _ => out.extend(c.escape_debug()),
        }
    }
    out
}

/// UNIX seconds as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, no time zone
/// database needed).
pub fn format_time(unix: f64) -> String {
    let secs = unix.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_unix_times_as_utc() {
        assert_eq!(format_time(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_700_000_000.0), "2023-11-14T22:13:20Z");
        assert_eq!(format_time(951_782_400.0), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn the_status_line_shows_done_rate_and_elapsed_time() {
        assert_eq!(status_line(0, Duration::ZERO), "0 storages, 0/s, 0.0s");
        assert_eq!(status_line(250, Duration::from_millis(2500)), "250 storages, 100/s, 2.5s");
        assert_eq!(status_line(9000, Duration::from_secs(90)), "9000 storages, 100/s, 1m30s");
    }

    #[test]
    fn the_live_line_is_drawn_at_most_ten_times_a_second_and_only_on_a_terminal() {
        let mut quiet = Progress::with_live(false, false);
        assert_eq!(quiet.due(Instant::now() + Duration::from_secs(5)), None);
        let mut live = Progress::with_live(false, true);
        let start = live.started;
        assert_eq!(live.due(start + Duration::from_millis(50)), None, "nothing before the first interval");
        let line = live.due(start + Duration::from_millis(100)).expect("due");
        assert!(line.starts_with("\r\x1b[K0 storages"), "{line:?}");
        assert_eq!(live.due(start + Duration::from_millis(150)), None);
        assert!(live.due(start + Duration::from_millis(200)).is_some());
    }

    #[test]
    fn plain_drops_wasi_glosses_and_writes_guest_paths_in_full() {
        let root = Path::new("/srv/runners");
        let guest = "kept: open \"r-1/pre-job-metrics.json\": Permission denied, similar to `EACCES` in POSIX.";
        assert_eq!(plain(guest, Some(root)), "kept: open /srv/runners/r-1/pre-job-metrics.json: Permission denied");
        assert_eq!(plain(guest, None), "kept: open r-1/pre-job-metrics.json: Permission denied");
        // Two codes in one gloss; the root itself as the empty path.
        let guest = "list \"\": Resource unavailable, or operation would block, similar to `EAGAIN` and `EWOULDBLOCK` in POSIX.; retried";
        assert_eq!(
            plain(guest, Some(root)),
            "list /srv/runners: Resource unavailable, or operation would block; retried"
        );
        // Quotes that are not paths after an operation are kept as they are.
        let detail = "invalid-value: pre-job-metrics.json \"workflow\": not a string; moved to .quarantine/r-1.5.6";
        assert_eq!(plain(detail, Some(root)), detail);
        assert_eq!(
            plain("refusing to delete \"r-1\": it is a symlink", Some(root)),
            "refusing to delete \"r-1\": it is a symlink"
        );
        assert_eq!(plain("restat \"x\": gone", Some(root)), "restat \"x\": gone", "whole words only");
        // Escaped quotes inside a quoted path; control characters stay escaped.
        assert_eq!(plain("stat \"r-1/a\\\"b\": no", Some(root)), "stat /srv/runners/r-1/a\"b: no");
        assert_eq!(plain("remove \"r-1/\\u{1b}x\": busy", Some(root)), "remove /srv/runners/r-1/\\u{1b}x: busy");
        assert_eq!(plain("raw \u{1b}[2J bell\u{7}", None), "raw \\u{1b}[2J bell\\u{7}");
        // An unterminated quote or gloss is left alone.
        assert_eq!(plain("open \"r-1: cut", Some(root)), "open \"r-1: cut");
        assert_eq!(plain("x, similar to `EIO", None), "x, similar to `EIO");
    }

    #[test]
    fn io_reasons_lose_the_os_error_number() {
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(io_reason(&e), "Permission denied");
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
