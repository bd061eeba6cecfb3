//! `runner_metrics_host._native`: the Rust host library bound to Python,
//! as pydantic-core binds its core. Python's `collect` and `ingest` run the
//! very code `runner-metrics collect` runs (the confined filesystem, the
//! root's lock, the caps, the keeper, bounded storages), with the GIL
//! released; Python is called back only for what the caller lends (job
//! metrics, a sink of its own, reports), and reports in batches.
//!
//! The API here is raw (tuples and plain values); the package's
//! `__init__.py` keeps the public shape (`collect`, `ingest`, `Summary`,
//! `StorageReport`, `CollectError`...).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use runner_metrics::bindings::JobConclusion;
use runner_metrics::{
    collect_options::Emit, CollectOptions, EventSink, GithubJobMetrics, JobMetricsSource, Limits, LooseFiles,
    MetricsLog, Plugin, PluginOptions, Policy, PulledFiles, PulledRunner, RunnerMetrics, StorageReport, Summary,
};

/// Reports handed to `on_report` per call: one GIL acquisition per batch.
const REPORT_BATCH: usize = 64;

/// The plugins opened so far, by what they were opened from: compiling
/// (or loading compiled code) is the slow part of a first run, so a
/// manager's later runs reuse it.
type PluginKey = (Option<PathBuf>, Option<PathBuf>, usize, u64);
static PLUGINS: Mutex<Vec<(PluginKey, Arc<Plugin>)>> = Mutex::new(Vec::new());

fn plugin(component: Option<PathBuf>, cache_dir: Option<PathBuf>, limits: Limits) -> anyhow::Result<Arc<Plugin>> {
    let key = (component.clone(), cache_dir.clone(), limits.memory_bytes, limits.call_timeout.as_millis() as u64);
    let mut plugins = PLUGINS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, plugin)) = plugins.iter().find(|(k, _)| *k == key) {
        return Ok(plugin.clone());
    }
    let options = PluginOptions { limits, cache_dir, ..PluginOptions::default() };
    let plugin = Arc::new(match &component {
        None => Plugin::open(&options)?,
        Some(path) => {
            let wasm = std::fs::read(path).map_err(|e| anyhow::anyhow!("component {}: {e}", path.display()))?;
            Plugin::from_bytes(&wasm, &options)?
        }
    });
    plugins.push((key, plugin.clone()));
    Ok(plugin)
}

/// The caller's `job_metrics(metrics)`: given a `RunnerMetrics` as a
/// tuple, returns `None` or `(queue_duration, conclusion or None)`. The
/// first exception stops asking and is raised after the run.
struct PythonJobs {
    callback: Option<Py<PyAny>>,
    error: Option<PyErr>,
}

impl JobMetricsSource for PythonJobs {
    fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Option<GithubJobMetrics> {
        let callback = self.callback.as_ref()?;
        if self.error.is_some() {
            return None;
        }
        Python::attach(|py| {
            let answer = callback.call1(py, (metrics_tuple(metrics),)).and_then(|a| job_from(a.bind(py)));
            match answer {
                Ok(job) => job,
                Err(e) => {
                    self.error = Some(e);
                    None
                }
            }
        })
    }
}

/// `(installation_start, installed, pre_job, post_job, runner_name)`, with
/// `pre_job` `(timestamp, workflow, workflow_run_id, repository, event,
/// workflow_run_attempt)`
/// and `post_job` `(timestamp, status, status_code)`, or `None`.
type PreJob = (f64, String, String, Option<String>, String, Option<u32>);
type PostJob = (f64, &'static str, Option<i64>);
fn metrics_tuple(m: &RunnerMetrics) -> (Option<f64>, f64, Option<PreJob>, Option<PostJob>, String) {
    let pre = m.pre_job.as_ref().map(|p| {
        let (workflow, run_id, repository) = (p.workflow.clone(), p.workflow_run_id.clone(), p.repository.clone());
        (p.timestamp, workflow, run_id, repository, p.event.clone(), p.workflow_run_attempt)
    });
    let post = m.post_job.as_ref().map(|p| (p.timestamp, p.status.as_str(), p.status_info.map(|i| i.code)));
    (m.installation_start_timestamp, m.installed_timestamp, pre, post, m.runner_name.clone())
}

/// The caller's answer: `None`, or `(queue_duration, conclusion)` with the
/// conclusion in GitHub's spelling or the WIT's (`timed_out`, `timed-out`).
fn job_from(answer: &Bound<'_, PyAny>) -> PyResult<Option<GithubJobMetrics>> {
    if answer.is_none() {
        return Ok(None);
    }
    let (queue_duration, conclusion): (f64, Option<String>) = answer.extract()?;
    let conclusion = match conclusion.as_deref() {
        None => None,
        Some(text) => Some(conclusion_from(text).ok_or_else(|| {
            PyValueError::new_err(format!("job metrics: {text:?} is not a conclusion of a GitHub job"))
        })?),
    };
    Ok(Some(GithubJobMetrics { queue_duration, conclusion }))
}

/// A conclusion in GitHub's spelling or the WIT's (`timed_out`, `timed-out`).
fn conclusion_from(text: &str) -> Option<JobConclusion> {
    runner_metrics::github::conclusion(&text.replace('-', "_"))
}

/// A sink of the caller's: `append(lines)` once per batch, returning once
/// they are durable. An exception is an I/O error of the run (nothing of
/// the batch is deleted), kept to be raised after it.
struct PythonSink {
    sink: Py<PyAny>,
    error: Arc<Mutex<Option<PyErr>>>,
}

impl EventSink for PythonSink {
    fn append(&mut self, lines: &[String]) -> std::io::Result<()> {
        Python::attach(|py| {
            let appended = PyList::new(py, lines).and_then(|list| self.sink.call_method1(py, "append", (list,)));
            appended.map(drop).map_err(|e| {
                let message = e.to_string();
                *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                std::io::Error::other(message)
            })
        })
    }

    fn describe(&self) -> String {
        Python::attach(|py| self.sink.bind(py).repr().map(|r| r.to_string()).unwrap_or_else(|_| "a sink".to_owned()))
    }
}

/// `(name, outcome, detail, events, reason, file, errors)`, each error
/// `(operation, path, code, cause)` (`summary::fs_error_fields`).
type ReportTuple =
    (String, &'static str, String, u32, Option<String>, Option<String>, Vec<(String, String, String, String)>);

fn report_tuple(r: &StorageReport) -> ReportTuple {
    let errors = r.errors.iter().map(runner_metrics::summary::fs_error_fields).collect();
    (r.name.clone(), r.outcome.as_str(), r.detail.clone(), r.events, r.reason.clone(), r.file.clone(), errors)
}

/// Reports kept for the result and handed to `on_report` in batches.
struct Reports {
    all: Vec<ReportTuple>,
    pending: usize,
    callback: Option<Py<PyAny>>,
    error: Option<PyErr>,
}

impl Reports {
    fn add(&mut self, report: &StorageReport) {
        self.all.push(report_tuple(report));
        self.pending += 1;
        if self.pending >= REPORT_BATCH {
            self.flush();
        }
    }

    /// Hands the pending reports to `on_report`; the first exception is
    /// kept (raised after the run) and no more are handed over.
    fn flush(&mut self) {
        let start = self.all.len() - self.pending;
        self.pending = 0;
        let (Some(callback), None) = (&self.callback, &self.error) else { return };
        let batch = &self.all[start..];
        Python::attach(|py| {
            for report in batch {
                if let Err(e) = callback.call1(py, (report.clone(),)) {
                    self.error = Some(e);
                    return;
                }
            }
        });
    }
}

/// What a run gives Python: every report, in order, and the error that
/// stopped it (`None`: it finished). The package counts the reports into
/// its `Summary`.
type RunResult = (Vec<ReportTuple>, Option<String>);

fn policy_from(text: &str) -> PyResult<Policy> {
    match text {
        "strict" => Ok(Policy::Strict),
        "lenient" => Ok(Policy::Lenient),
        other => Err(PyValueError::new_err(format!("policy {other:?}: expected \"strict\" or \"lenient\""))),
    }
}

/// What both `collect` and `ingest` lend the run, and how it ended.
struct Lent {
    jobs: PythonJobs,
    sink_error: Arc<Mutex<Option<PyErr>>>,
    sink: Box<dyn EventSink + Send>,
    reports: Reports,
}

impl Lent {
    fn new(
        job_metrics: Option<Py<PyAny>>,
        metrics_log: Option<PathBuf>,
        sink: Option<Py<PyAny>>,
        on_report: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let sink_error = Arc::new(Mutex::new(None));
        let sink: Box<dyn EventSink + Send> = match (sink, metrics_log) {
            (Some(sink), _) => Box::new(PythonSink { sink, error: sink_error.clone() }),
            (None, Some(path)) => Box::new(
                MetricsLog::open(&path)
                    .map_err(|e| PyRuntimeError::new_err(format!("metrics log {}: {e:#}", path.display())))?,
            ),
            (None, None) => return Err(PyValueError::new_err("give metrics_log or sink")),
        };
        Ok(Self {
            jobs: PythonJobs { callback: job_metrics, error: None },
            sink_error,
            sink,
            reports: Reports { all: Vec::new(), pending: 0, callback: on_report, error: None },
        })
    }

    /// The run's result, or the first exception a callback raised.
    fn finish(mut self, outcome: anyhow::Result<Summary>) -> PyResult<RunResult> {
        self.reports.flush();
        if let Some(e) = self.jobs.error.take() {
            return Err(e);
        }
        if let Some(e) = self.sink_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        if let Some(e) = self.reports.error.take() {
            return Err(e);
        }
        let error = outcome.err().map(|e| format!("{e:#}"));
        Ok((self.reports.all, error))
    }
}

/// Everything `collect` takes, as the package's `collect` passes it.
#[pyfunction]
#[pyo3(signature = (
    storage_root, flavor, *, exclude, include, min_age, dry_run, batch_size, wait, policy,
    metrics_log, sink, job_metrics, on_report, component, cache_dir, memory_bytes, timeout,
))]
#[allow(clippy::too_many_arguments)]
fn collect(
    py: Python<'_>,
    storage_root: PathBuf,
    flavor: String,
    exclude: Vec<String>,
    include: Option<Vec<String>>,
    min_age: Option<f64>,
    dry_run: bool,
    batch_size: usize,
    wait: f64,
    policy: &str,
    metrics_log: Option<PathBuf>,
    sink: Option<Py<PyAny>>,
    job_metrics: Option<Py<PyAny>>,
    on_report: Option<Py<PyAny>>,
    component: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    memory_bytes: usize,
    timeout: f64,
) -> PyResult<RunResult> {
    let options = CollectOptions {
        selection: runner_metrics::Selection { exclude, include, min_age_seconds: min_age },
        emit: Emit::Events { flavor },
        dry_run,
        batch_size,
        lock_wait: seconds("wait", wait)?,
        policy: policy_from(policy)?,
        ..CollectOptions::events("")
    };
    let limits = limits(memory_bytes, timeout)?;
    let mut lent = Lent::new(job_metrics, metrics_log, sink, on_report)?;
    let outcome = py.detach(|| {
        let plugin = plugin(component, cache_dir, limits)?;
        let Lent { jobs, sink, reports, .. } = &mut lent;
        runner_metrics::collect(&plugin, &storage_root, &options, jobs, sink.as_mut(), &mut |r| reports.add(r))
    });
    lent.finish(outcome)
}

/// The three loose files `(installed, pre_job, post_job)`, each bytes or `None`.
type LooseTuple = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

/// Everything `ingest` takes: `files` is the tar stream (bytes) or the
/// three loose files `(installed, pre_job, post_job)`, each bytes or `None`.
#[pyfunction]
#[pyo3(signature = (
    runner_name, files, quarantine_dir, flavor, *, installation_start, policy, wait, remember,
    metrics_log, sink, job_metrics, on_report, component, cache_dir, memory_bytes, timeout,
))]
#[allow(clippy::too_many_arguments)]
fn ingest(
    py: Python<'_>,
    runner_name: String,
    files: &Bound<'_, PyAny>,
    quarantine_dir: PathBuf,
    flavor: String,
    installation_start: Option<f64>,
    policy: &str,
    wait: f64,
    remember: f64,
    metrics_log: Option<PathBuf>,
    sink: Option<Py<PyAny>>,
    job_metrics: Option<Py<PyAny>>,
    on_report: Option<Py<PyAny>>,
    component: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    memory_bytes: usize,
    timeout: f64,
) -> PyResult<RunResult> {
    let files = match files.extract::<Vec<u8>>() {
        Ok(stream) if files.is_instance_of::<pyo3::types::PyBytes>() => PulledFiles::Tar(stream),
        _ => {
            let (installed, pre_job, post_job): LooseTuple = files.extract()?;
            PulledFiles::Loose(LooseFiles { installed, pre_job, post_job })
        }
    };
    let pulled = PulledRunner { runner_name, installation_start, files };
    let options = CollectOptions {
        lock_wait: seconds("wait", wait)?,
        policy: policy_from(policy)?,
        remember_ingested: seconds("remember", remember)?,
        ..CollectOptions::events(flavor)
    };
    let limits = limits(memory_bytes, timeout)?;
    let mut lent = Lent::new(job_metrics, metrics_log, sink, on_report)?;
    let outcome = py.detach(|| {
        let plugin = plugin(component, cache_dir, limits)?;
        let Lent { jobs, sink, reports, .. } = &mut lent;
        runner_metrics::ingest(&plugin, &quarantine_dir, pulled, &options, jobs, sink.as_mut(), &mut |r| reports.add(r))
    });
    lent.finish(outcome)
}

/// The Rust host's limits with the caller's memory cap and per-storage deadline.
fn limits(memory_bytes: usize, timeout: f64) -> PyResult<Limits> {
    Ok(Limits { memory_bytes, call_timeout: seconds("timeout", timeout)?, ..Limits::default() })
}

fn seconds(what: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| PyValueError::new_err(format!("{what}: {value} is not a number of seconds >= 0")))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(collect, m)?)?;
    m.add_function(wrap_pyfunction!(ingest, m)?)?;
    m.add("VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
