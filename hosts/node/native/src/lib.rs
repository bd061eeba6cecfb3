//! The Rust host library bound to Node with napi-rs: `collect` runs the code
//! `runner-metrics collect` runs (the confined filesystem, the root's lock,
//! the caps, the keeper, bounded storages) on a thread of libuv's pool, so
//! the event loop stays free. The caller's callbacks may be async, so the
//! run asks for them rather than calling them: it posts a request to the
//! JavaScript side (a thread-safe function) and waits until `answer(run,
//! ...)` brings the reply. Reports go out in batches, unanswered.
//!
//! The API here is raw; `hosts/node/src/native.js` keeps the package's
//! shape (`collect(root, flavor, options)`, `CollectError`, the summary).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use runner_metrics::bindings::JobConclusion;
use runner_metrics::{
    collect_options::Emit, CollectOptions, EventSink, GithubJobMetrics, JobMetricsSource, Limits, LooseFiles,
    MetricsLog, Plugin, PluginOptions, Policy, PulledFiles, PulledRunner, RunnerMetrics, Selection, StorageReport,
};

/// Reports posted per request.
const REPORT_BATCH: usize = 64;

/// One runner's metrics, as the caller's `jobMetrics` sees them.
#[napi(object)]
#[derive(Clone)]
pub struct Metrics {
    pub runner_name: String,
    pub installation_start_timestamp: Option<f64>,
    pub installed_timestamp: f64,
    pub pre_job: Option<PreJob>,
    pub post_job: Option<PostJob>,
}

#[napi(object)]
#[derive(Clone)]
pub struct PreJob {
    pub timestamp: f64,
    pub workflow: String,
    pub workflow_run_id: String,
    pub repository: Option<String>,
    pub event: String,
    /// `GITHUB_RUN_ATTEMPT`, when the pre-job hook wrote one.
    pub workflow_run_attempt: Option<u32>,
}

#[napi(object)]
#[derive(Clone)]
pub struct PostJob {
    pub timestamp: f64,
    pub status: String,
    pub status_code: Option<i64>,
}

/// What happened to one root entry.
#[napi(object)]
#[derive(Clone)]
pub struct Report {
    pub name: String,
    pub outcome: String,
    pub reason: Option<String>,
    pub file: Option<String>,
    pub detail: String,
    pub events: u32,
    /// The filesystem errors `detail` names (a failed storage's).
    pub errors: Vec<FsError>,
}

/// A filesystem error a report names, the enums spelt as the WIT spells
/// them (`open-directory`, `permission-denied`), as the WebAssembly host
/// gets them from the keeper.
#[napi(object)]
#[derive(Clone)]
pub struct FsError {
    pub operation: String,
    /// Relative to the storage root; empty for the root itself.
    pub path: String,
    pub code: String,
    pub cause: String,
}

/// What the run asks the JavaScript side: `kind` is `jobMetrics`
/// (answer with the job or nothing), `append` (answer once the lines are
/// durable, or with the error) or `reports` (answer once handed over).
#[napi(object)]
pub struct Request {
    pub run: u32,
    pub kind: String,
    pub metrics: Option<Metrics>,
    pub lines: Option<Vec<String>>,
    pub reports: Option<Vec<Report>>,
}

/// A reply to a request.
enum Answer {
    Job(Option<GithubJobMetrics>),
    Failed(String),
    Done,
}

/// The runs waiting for an answer, by run id.
static WAITING: Mutex<Option<HashMap<u32, SyncSender<Answer>>>> = Mutex::new(None);
static NEXT_RUN: AtomicU32 = AtomicU32::new(1);

fn waiting() -> std::sync::MutexGuard<'static, Option<HashMap<u32, SyncSender<Answer>>>> {
    WAITING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The reply of the JavaScript side to run `run`'s pending request: for
/// `jobMetrics` the job (`queueDuration`, `conclusion`) or nothing; for
/// `append` nothing; `error` when the caller's callback failed.
#[napi]
pub fn answer(run: u32, queue_duration: Option<f64>, conclusion: Option<String>, error: Option<String>) -> Result<()> {
    let reply = match (error, queue_duration) {
        (Some(error), _) => Answer::Failed(error),
        (None, Some(queue_duration)) => {
            let conclusion = match conclusion.as_deref() {
                None => None,
                Some(text) => Some(conclusion_from(text).ok_or_else(|| {
                    Error::new(Status::InvalidArg, format!("{text:?} is not a conclusion of a GitHub job"))
                })?),
            };
            Answer::Job(Some(GithubJobMetrics { queue_duration, conclusion }))
        }
        (None, None) => Answer::Done,
    };
    let sender = waiting().as_ref().and_then(|w| w.get(&run).cloned());
    let sender = sender.ok_or_else(|| Error::new(Status::InvalidArg, format!("run {run} is not waiting")))?;
    sender.send(reply).map_err(|_| Error::new(Status::GenericFailure, format!("run {run} is gone")))
}

/// A conclusion in GitHub's spelling or the WIT's (`timed_out`, `timed-out`).
fn conclusion_from(text: &str) -> Option<JobConclusion> {
    runner_metrics::github::conclusion(&text.replace('-', "_"))
}

type Requests = ThreadsafeFunction<Request, (), Request, Status, false>;

/// The run's side of the conversation with JavaScript.
struct Asker {
    run: u32,
    requests: Arc<Requests>,
    answers: Receiver<Answer>,
    /// The first failure of a caller's callback: asked no more, raised after.
    failed: Option<String>,
}

impl Asker {
    /// Posts `request` and waits for its answer.
    fn ask(&mut self, kind: &str, metrics: Option<Metrics>, lines: Option<Vec<String>>) -> Answer {
        let request = Request { run: self.run, kind: kind.to_owned(), metrics, lines, reports: None };
        if self.requests.call(request, ThreadsafeFunctionCallMode::Blocking) != Status::Ok {
            return Answer::Failed("the JavaScript side is gone".to_owned());
        }
        self.answers.recv().unwrap_or_else(|_| Answer::Failed("the JavaScript side is gone".to_owned()))
    }

    /// Hands a batch of reports over and waits until they were, so that
    /// every report is delivered before the run's promise settles.
    fn post_reports(&mut self, reports: Vec<Report>) {
        let request =
            Request { run: self.run, kind: "reports".to_owned(), metrics: None, lines: None, reports: Some(reports) };
        if self.requests.call(request, ThreadsafeFunctionCallMode::Blocking) == Status::Ok {
            let _ = self.answers.recv();
        }
    }
}

/// Job metrics from the caller's `jobMetrics`, when it gave one.
struct Jobs {
    asker: Arc<Mutex<Asker>>,
    enabled: bool,
}

impl JobMetricsSource for Jobs {
    fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Option<GithubJobMetrics> {
        let mut asker = self.asker.lock().unwrap_or_else(|p| p.into_inner());
        if !self.enabled || asker.failed.is_some() {
            return None;
        }
        match asker.ask("jobMetrics", Some(metrics_of(metrics)), None) {
            Answer::Job(job) => job,
            Answer::Done => None,
            Answer::Failed(error) => {
                asker.failed = Some(error);
                None
            }
        }
    }
}

fn metrics_of(m: &RunnerMetrics) -> Metrics {
    Metrics {
        runner_name: m.runner_name.clone(),
        installation_start_timestamp: m.installation_start_timestamp,
        installed_timestamp: m.installed_timestamp,
        pre_job: m.pre_job.as_ref().map(|p| PreJob {
            timestamp: p.timestamp,
            workflow: p.workflow.clone(),
            workflow_run_id: p.workflow_run_id.clone(),
            repository: p.repository.clone(),
            event: p.event.clone(),
            workflow_run_attempt: p.workflow_run_attempt,
        }),
        post_job: m.post_job.as_ref().map(|p| PostJob {
            timestamp: p.timestamp,
            status: p.status.as_str().to_owned(),
            status_code: p.status_info.map(|i| i.code),
        }),
    }
}

/// A sink of the caller's: `append(lines)` asked per batch.
struct CallerSink {
    asker: Arc<Mutex<Asker>>,
}

impl EventSink for CallerSink {
    fn append(&mut self, lines: &[String]) -> std::io::Result<()> {
        let mut asker = self.asker.lock().unwrap_or_else(|p| p.into_inner());
        match asker.ask("append", None, Some(lines.to_vec())) {
            Answer::Failed(error) => Err(std::io::Error::other(error)),
            _ => Ok(()),
        }
    }

    fn describe(&self) -> String {
        "the caller's sink".to_owned()
    }
}

/// How `collect` is asked to run (the package's options, checked there).
#[napi(object)]
pub struct Options {
    pub exclude: Vec<String>,
    pub include: Option<Vec<String>>,
    pub min_age: Option<f64>,
    pub dry_run: bool,
    pub batch_size: u32,
    pub wait_seconds: f64,
    pub policy: String,
    /// The metrics log's path; `None`: the caller's sink (asked per batch).
    pub metrics_log: Option<String>,
    pub job_metrics: bool,
    pub on_report: bool,
    pub memory_bytes: Option<f64>,
    pub timeout_ms: Option<f64>,
}

/// How a run ended: every report, and the error that stopped it.
#[napi(object)]
pub struct Outcome {
    pub reports: Vec<Report>,
    pub error: Option<String>,
    /// The first failure of a caller's callback, raised by the package.
    pub callback_error: Option<String>,
}

pub struct CollectTask {
    root: PathBuf,
    flavor: String,
    options: Options,
    requests: Arc<Requests>,
    /// `ingest`'s pulled runner; `None`: a collect of the root.
    pulled: Option<PulledRunner>,
}

/// The plugins opened so far, by limits: compiling (or loading the
/// compiled code) is the slow part of a first run.
type Opened = Vec<((usize, u128), Arc<Plugin>)>;
static PLUGINS: Mutex<Opened> = Mutex::new(Vec::new());

fn plugin(limits: Limits) -> anyhow::Result<Arc<Plugin>> {
    let key = (limits.memory_bytes, limits.call_timeout.as_millis());
    let mut plugins = PLUGINS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, plugin)) = plugins.iter().find(|(k, _)| *k == key) {
        return Ok(plugin.clone());
    }
    let plugin = Arc::new(Plugin::open(&PluginOptions { limits, ..PluginOptions::with_default_cache() })?);
    plugins.push((key, plugin.clone()));
    Ok(plugin)
}

impl Task for CollectTask {
    type Output = Outcome;
    type JsValue = Outcome;

    fn compute(&mut self) -> Result<Outcome> {
        let run = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
        let (sender, answers) = sync_channel(1);
        waiting().get_or_insert_with(HashMap::new).insert(run, sender);
        let asker = Arc::new(Mutex::new(Asker { run, requests: self.requests.clone(), answers, failed: None }));
        let outcome = self.run(&asker);
        if let Some(w) = waiting().as_mut() {
            w.remove(&run);
        }
        Ok(outcome)
    }

    fn resolve(&mut self, _: Env, output: Outcome) -> Result<Outcome> {
        Ok(output)
    }
}

impl CollectTask {
    fn run(&mut self, asker: &Arc<Mutex<Asker>>) -> Outcome {
        let o = &self.options;
        let mut limits = Limits::default();
        if let Some(bytes) = o.memory_bytes {
            limits.memory_bytes = bytes as usize;
        }
        if let Some(ms) = o.timeout_ms {
            limits.call_timeout = Duration::from_secs_f64(ms.max(0.0) / 1000.0);
        }
        let options = CollectOptions {
            selection: Selection { exclude: o.exclude.clone(), include: o.include.clone(), min_age_seconds: o.min_age },
            emit: Emit::Events { flavor: self.flavor.clone() },
            dry_run: o.dry_run,
            batch_size: o.batch_size as usize,
            lock_wait: Duration::from_secs_f64(o.wait_seconds.max(0.0)),
            policy: if o.policy == "lenient" { Policy::Lenient } else { Policy::Strict },
            ..CollectOptions::events("")
        };
        let mut reports: Vec<Report> = Vec::new();
        let mut posted = 0;
        let on_report = o.on_report;
        let result = (|| -> anyhow::Result<()> {
            let plugin = plugin(limits)?;
            let mut sink: Box<dyn EventSink> = match &o.metrics_log {
                Some(path) => Box::new(MetricsLog::open(path.as_ref())?),
                None => Box::new(CallerSink { asker: asker.clone() }),
            };
            let mut jobs = Jobs { asker: asker.clone(), enabled: o.job_metrics };
            let mut on_report = |r: &StorageReport| {
                reports.push(report_of(r));
                if on_report && reports.len() - posted >= REPORT_BATCH {
                    let batch = reports[posted..].to_vec();
                    posted = reports.len();
                    asker.lock().unwrap_or_else(|p| p.into_inner()).post_reports(batch);
                }
            };
            let sink = sink.as_mut();
            match self.pulled.take() {
                None => runner_metrics::collect(&plugin, &self.root, &options, &mut jobs, sink, &mut on_report),
                Some(pulled) => {
                    runner_metrics::ingest(&plugin, &self.root, pulled, &options, &mut jobs, sink, &mut on_report)
                }
            }?;
            Ok(())
        })();
        let mut asker = asker.lock().unwrap_or_else(|p| p.into_inner());
        if on_report && posted < reports.len() {
            asker.post_reports(reports[posted..].to_vec());
        }
        Outcome { reports, error: result.err().map(|e| format!("{e:#}")), callback_error: asker.failed.clone() }
    }
}

fn report_of(r: &StorageReport) -> Report {
    Report {
        name: r.name.clone(),
        outcome: r.outcome.as_str().to_owned(),
        reason: r.reason.clone(),
        file: r.file.clone(),
        detail: r.detail.clone(),
        events: r.events,
        errors: r
            .errors
            .iter()
            .map(|e| {
                let (operation, path, code, cause) = runner_metrics::summary::fs_error_fields(e);
                FsError { operation, path, code, cause }
            })
            .collect(),
    }
}

/// Collects `root` on a thread of libuv's pool; `requests` receives what
/// the run asks (see [`Request`]).
#[napi(ts_return_type = "Promise<Outcome>")]
pub fn collect(root: String, flavor: String, options: Options, requests: Requests) -> AsyncTask<CollectTask> {
    AsyncTask::new(CollectTask {
        root: PathBuf::from(root),
        flavor,
        options,
        requests: Arc::new(requests),
        pulled: None,
    })
}

/// The files one by one (each `None` when missing), as the package checked them.
#[napi(object)]
pub struct Loose {
    pub installed: Option<Buffer>,
    pub pre_job: Option<Buffer>,
    pub post_job: Option<Buffer>,
}

/// Stages the runner `runner_name` pulled by the manager (`tar`: the stream
/// of its metrics directory, or `loose`: its files) as a storage of
/// `quarantine_dir` and collects it, as `collect` does.
#[napi(ts_return_type = "Promise<Outcome>")]
#[allow(clippy::too_many_arguments)]
pub fn ingest(
    runner_name: String,
    tar: Option<Buffer>,
    loose: Option<Loose>,
    installation_start: Option<f64>,
    quarantine_dir: String,
    flavor: String,
    options: Options,
    requests: Requests,
) -> Result<AsyncTask<CollectTask>> {
    let files = match (tar, loose) {
        (Some(stream), None) => PulledFiles::Tar(stream.to_vec()),
        (None, Some(l)) => PulledFiles::Loose(LooseFiles {
            installed: l.installed.map(|b| b.to_vec()),
            pre_job: l.pre_job.map(|b| b.to_vec()),
            post_job: l.post_job.map(|b| b.to_vec()),
        }),
        _ => return Err(Error::new(Status::InvalidArg, "give the tar stream or the loose files, not both")),
    };
    let pulled = PulledRunner { runner_name, installation_start, files };
    Ok(AsyncTask::new(CollectTask {
        root: PathBuf::from(quarantine_dir),
        flavor,
        options,
        requests: Arc::new(requests),
        pulled: Some(pulled),
    }))
}
