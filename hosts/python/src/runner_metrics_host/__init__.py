"""Run the runner-metrics WebAssembly component from Python.

A runner manager written in Python (for example Canonical's
github-runner-operator) calls :func:`collect` where it used to call the
reference implementation's ``extract`` + ``issue_events``::

    from runner_metrics_host import collect, GithubJobMetrics

    def job_metrics(metrics):                       # optional
        job = github.find_job(metrics.pre_job.repository, metrics.pre_job.workflow_run_id,
                              metrics.runner_name) if metrics.pre_job else None
        return GithubJobMetrics(job.queue_seconds, job.conclusion) if job else None

    summary = collect("/home/ubuntu/runner-fs", "small", exclude=busy_runners,
                      job_metrics=job_metrics, metrics_log="/var/log/github-runner-metrics.log")

The component (``runner-metrics component --output runner_metrics.wasm``) is
loaded with the PyPI ``wasmtime`` package. Each instance sees only the storage
root, preopened as ``/storage``: no environment, no arguments, no stdio, no
network. Every guest call runs under a memory cap, a fuel budget and an
epoch deadline; a trap while handling a storage drops that instance and a
fresh one quarantines the storage with reason ``sandbox-trap``. Events are
appended to the metrics log and ``fsync``-ed before the storages they came
from are deleted. Same semantics as the Rust host (``host/src/collect.rs``).
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import wasmtime
import wasmtime.component as wc

__all__ = [
    "collect",
    "Plugin",
    "Limits",
    "Summary",
    "StorageReport",
    "RunnerMetrics",
    "PreJobMetrics",
    "PostJobMetrics",
    "GithubJobMetrics",
    "CollectError",
    "GuestFailure",
    "default_component_path",
    "DEFAULT_METRICS_LOG",
    "METRICS_LOG_ENV",
]

#: Where the reference implementation writes its events.
DEFAULT_METRICS_LOG = "/var/log/github-runner-metrics.log"
#: Overrides the default metrics log, as in the reference implementation.
METRICS_LOG_ENV = "METRICS_LOG_PATH"
#: Where the storage root appears inside the sandbox.
GUEST_ROOT = "/storage"
#: Names the component file when no path is given.
COMPONENT_ENV = "RUNNER_METRICS_COMPONENT"

_PKG = "github-runner:metrics"
_VERSION = "0.1.0"
_EXTRACTION = f"{_PKG}/extraction@{_VERSION}"
_EVENTS = f"{_PKG}/events@{_VERSION}"

_MAX_MESSAGE = 4096
_MAX_LINE = 16 * 1024
_MAX_FIELD = 1024
_SCAN_BATCH = 256
#: how much of a runner name starts a quarantine location (host/src/check.rs)
_ENTRY_NAME_PREFIX = 200


# ---------------------------------------------------------------------------
# Public data types
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PreJobMetrics:
    timestamp: float
    workflow: str
    workflow_run_id: str
    repository: Optional[str]
    event: str


@dataclass(frozen=True)
class PostJobMetrics:
    timestamp: float
    #: ``normal``, ``abnormal``, ``repo-policy-check-failure`` or ``external-contributor-check-failure``
    status: str
    #: the exit code or HTTP status (``status_info.code``), when known
    status_code: Optional[int]


@dataclass(frozen=True)
class RunnerMetrics:
    """What one runner's storage held (spec section 4)."""
    installation_start_timestamp: Optional[float]
    installed_timestamp: float
    pre_job: Optional[PreJobMetrics]
    post_job: Optional[PostJobMetrics]
    runner_name: str


#: GitHub's spellings (``timed_out``) and the WIT ones (``timed-out``) are both accepted.
_CONCLUSIONS = ("action-required", "cancelled", "failure", "neutral", "skipped", "success", "timed-out")


@dataclass(frozen=True)
class GithubJobMetrics:
    """What the manager learned about the job from the GitHub API (spec 5)."""
    #: ``started_at - created_at`` in seconds
    queue_duration: float
    #: ``success``, ``failure``, ``cancelled``, ``timed_out``, ... or None when unknown
    conclusion: Optional[str] = None


@dataclass(frozen=True)
class StorageReport:
    """What happened to one root entry."""
    name: str
    #: ``extracted``, ``no-data``, ``quarantined``, ``skipped`` or ``failed``
    outcome: str
    #: why, and what was done (deleted, moved where, kept)
    detail: str
    #: lines written for this storage
    events: int = 0
    #: the quarantine reason or the skip reason (kebab-case), when there is one
    reason: Optional[str] = None
    #: the file to blame for a quarantine, when one is
    file: Optional[str] = None


@dataclass
class Summary:
    """Counts for a whole run."""
    extracted: int = 0
    no_data: int = 0
    quarantined: int = 0
    skipped: int = 0
    failed: int = 0
    lines_written: int = 0
    #: every report, in the order the storages were handled
    reports: List[StorageReport] = field(default_factory=list)

    def add(self, report: StorageReport) -> None:
        attr = report.outcome.replace("-", "_")
        setattr(self, attr, getattr(self, attr) + 1)
        self.lines_written += report.events
        self.reports.append(report)

    @property
    def total(self) -> int:
        return self.extracted + self.no_data + self.quarantined + self.skipped + self.failed

    def counts(self) -> Dict[str, int]:
        return {"extracted": self.extracted, "no_data": self.no_data, "quarantined": self.quarantined,
                "skipped": self.skipped, "failed": self.failed, "lines_written": self.lines_written}


class CollectError(RuntimeError):
    """The run could not start or had to stop (the root cannot be listed, the
    log cannot be written). Storages not yet handled are untouched; the
    reports so far are in ``summary``."""

    def __init__(self, message: str, summary: Summary):
        super().__init__(message)
        self.summary = summary


class GuestFailure(RuntimeError):
    """A guest call that did not return: a trap (panic, deadline, fuel,
    memory) or a host-side failure."""


@dataclass(frozen=True)
class Limits:
    """What one sandbox may use. Per guest call unless said otherwise."""
    #: linear memory cap, bytes (per instance)
    memory_bytes: int = 64 * 1024 * 1024
    #: wall-clock deadline per call, seconds (epoch interruption)
    timeout: float = 10.0
    #: fuel (roughly, wasm instructions) per call; None: unlimited
    fuel: Optional[int] = 10_000_000_000
    #: epoch tick, seconds
    tick: float = 0.01


# ---------------------------------------------------------------------------
# Plugin: engine + compiled component, shared by runs
# ---------------------------------------------------------------------------

def default_component_path() -> Path:
    """``$RUNNER_METRICS_COMPONENT``, else ``runner_metrics.wasm`` next to this module."""
    env = os.environ.get(COMPONENT_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "runner_metrics.wasm"


class Plugin:
    """The component compiled once; cheap sandboxes are made from it."""

    def __init__(self, component: Union[str, os.PathLike, None] = None, limits: Limits = Limits()):
        self.limits = limits
        config = wasmtime.Config()
        config.epoch_interruption = True
        config.consume_fuel = limits.fuel is not None
        self.engine = wasmtime.Engine(config)
        path = Path(component) if component is not None else default_component_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"runner-metrics component not found at {path}; write it with "
                f"`runner-metrics component --output {path}` or set ${COMPONENT_ENV}")
        self.component = wc.Component.from_file(self.engine, str(path))
        self.linker = wc.Linker(self.engine)
        # WASI p2 only; nothing else is importable.
        self.linker.add_wasip2()
        self._ticker_users = 0
        self._ticker_lock = threading.Lock()
        self._ticker_stop: Optional[threading.Event] = None

    def sandbox(self, storage_root: Path) -> "Sandbox":
        return Sandbox(self, storage_root)

    # Epoch ticker: advances the engine's epoch while a run is going.
    def _start_ticker(self) -> None:
        with self._ticker_lock:
            self._ticker_users += 1
            if self._ticker_users > 1:
                return
            stop = threading.Event()
            self._ticker_stop = stop
            engine, tick = self.engine, self.limits.tick

            def tick_loop() -> None:
                while not stop.wait(tick):
                    engine.increment_epoch()

            threading.Thread(target=tick_loop, name="runner-metrics-epoch", daemon=True).start()

    def _stop_ticker(self) -> None:
        with self._ticker_lock:
            self._ticker_users -= 1
            if self._ticker_users == 0 and self._ticker_stop is not None:
                self._ticker_stop.set()
                self._ticker_stop = None


class Sandbox:
    """One instance in its own store: sees only the storage root."""

    def __init__(self, plugin: Plugin, storage_root: Path):
        self.plugin = plugin
        limits = plugin.limits
        store = wasmtime.Store(plugin.engine)
        wasi = wasmtime.WasiConfig()
        # No argv, no environment, no stdin/stdout/stderr, no network: only
        # the storage root, as /storage.
        wasi.preopen_dir(str(storage_root), GUEST_ROOT)
        store.set_wasi(wasi)
        store.set_limits(memory_size=limits.memory_bytes, instances=16, tables=64, memories=4)
        self.store = store
        self._arm()
        try:
            self.instance = plugin.linker.instantiate(store, plugin.component)
        except wasmtime.WasmtimeError as e:
            raise GuestFailure(f"instantiating the runner-metrics component: {e}") from e
        self._funcs: Dict[Tuple[str, str], Any] = {}

    def _arm(self) -> None:
        limits = self.plugin.limits
        # At least one tick for any positive timeout; 0 interrupts at once.
        ticks = max(0, math.ceil(limits.timeout / limits.tick))
        self.store.set_epoch_deadline(ticks)
        if limits.fuel is not None:
            self.store.set_fuel(limits.fuel)

    def _func(self, interface: str, name: str) -> Any:
        key = (interface, name)
        if key not in self._funcs:
            iface = self.instance.get_export_index(self.store, interface)
            index = self.instance.get_export_index(self.store, name, iface) if iface else None
            func = self.instance.get_func(self.store, index) if index else None
            if func is None:
                raise GuestFailure(f"the component exports no {interface}#{name}")
            self._funcs[key] = func
        return self._funcs[key]

    def call(self, what: str, interface: str, name: str, *args: Any) -> Any:
        func = self._func(interface, name)
        self._arm()
        try:
            return func(self.store, *args)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
            raise GuestFailure(f"guest {what} {_explain(e, self.plugin.limits)}") from e

    # The exports, one by one.
    def start_scan(self, selection: Any) -> Any:
        return self.call("scan", _EXTRACTION, "[constructor]scan", selection)

    def next_batch(self, scan: Any, max_entries: int) -> Any:
        return self.call("scan", _EXTRACTION, "[method]scan.next-batch", scan, max_entries)

    def extract_storage(self, name: str, keep: bool) -> Any:
        return self.call("extraction", _EXTRACTION, "extract-storage", name, keep)

    def delete_storage(self, name: str) -> Any:
        return self.call("deletion", _EXTRACTION, "delete-storage", name)

    def quarantine_storage(self, name: str, reason: str, detail: str) -> Any:
        return self.call("quarantine", _EXTRACTION, "quarantine-storage", name, reason, detail)

    def purge_deleting(self) -> Any:
        return self.call("purge", _EXTRACTION, "purge-deleting")

    def list_quarantine(self) -> Any:
        return self.call("quarantine listing", _EXTRACTION, "list-quarantine")

    def issue_events(self, metrics: Any, flavor: str, job: Any) -> Any:
        return self.call("events", _EVENTS, "issue-events", metrics, flavor, job)

    def render_event(self, event: Any) -> str:
        return self.call("rendering", _EVENTS, "render-event", event)


def _explain(error: Exception, limits: Limits) -> str:
    text = str(error)
    if "interrupt" in text:
        return f"exceeded its {limits.timeout}s deadline"
    if "fuel" in text:
        return f"ran out of fuel ({limits.fuel} units)"
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"trapped: {first}"


# ---------------------------------------------------------------------------
# Conversions between WIT values and Python
# ---------------------------------------------------------------------------

def _record(**fields: Any) -> wc.Record:
    record = wc.Record()
    for key, value in fields.items():
        setattr(record, key.replace("_", "-"), value)
    return record


def _get(record: Any, key: str) -> Any:
    return getattr(record, key)


def _metrics_from_wit(m: Any) -> RunnerMetrics:
    pre = _get(m, "pre-job")
    post = _get(m, "post-job")
    return RunnerMetrics(
        installation_start_timestamp=_get(m, "installation-start-timestamp"),
        installed_timestamp=_get(m, "installed-timestamp"),
        pre_job=None if pre is None else PreJobMetrics(
            timestamp=pre.timestamp, workflow=pre.workflow, workflow_run_id=_get(pre, "workflow-run-id"),
            repository=pre.repository, event=pre.event),
        post_job=None if post is None else PostJobMetrics(
            timestamp=post.timestamp, status=post.status,
            status_code=None if _get(post, "status-info") is None else _get(post, "status-info").code),
        runner_name=_get(m, "runner-name"),
    )


def _job_to_wit(job: Any) -> Optional[wc.Record]:
    if job is None:
        return None
    if isinstance(job, tuple):
        job = GithubJobMetrics(*job)
    if isinstance(job, dict):
        job = GithubJobMetrics(job["queue_duration"], job.get("conclusion"))
    queue = float(job.queue_duration)
    if queue != queue or queue in (float("inf"), float("-inf")):
        raise ValueError(f"queue duration {queue} is not finite")
    conclusion = job.conclusion
    if conclusion is not None:
        conclusion = str(getattr(conclusion, "value", conclusion)).lower().replace("_", "-")
        if conclusion not in _CONCLUSIONS:
            conclusion = None  # an unknown conclusion is left out, as spec 5 says
    return _record(queue_duration=queue, conclusion=conclusion)


# ---------------------------------------------------------------------------
# Re-validation of what the guest returns (as host/src/check.rs)
# ---------------------------------------------------------------------------

def _valid_name(name: str) -> bool:
    return (0 < len(name.encode()) <= 255 and not name.startswith(".")
            and all(c.isascii() and (c.isalnum() or c in "._-") for c in name))


def _bounded(message: str) -> str:
    if len(message) <= _MAX_MESSAGE:
        return message
    return f"{message[:_MAX_MESSAGE]}... ({len(message) - _MAX_MESSAGE} characters cut)"


def _time(what: str, value: Any) -> None:
    if not isinstance(value, float) or value != value or value < 0 or value == float("inf"):
        raise ValueError(f"{what} is {value!r}, not a finite number >= 0")


def _check_metrics(root: Path, name: str, m: RunnerMetrics) -> None:
    if m.runner_name != name:
        raise ValueError(f"guest answered for {_bounded(m.runner_name)!r} when asked about {name!r}")
    if not (root / name).is_dir() or (root / name).is_symlink():
        raise ValueError(f"guest extracted {name!r}, which is not a directory of the storage root")
    if m.installation_start_timestamp is not None:
        _time("installation start timestamp", m.installation_start_timestamp)
    _time("installed timestamp", m.installed_timestamp)
    if m.pre_job is not None:
        _time("pre-job timestamp", m.pre_job.timestamp)
        for key in ("workflow", "workflow_run_id", "event"):
            if len(getattr(m.pre_job, key).encode()) > _MAX_FIELD:
                raise ValueError(f"{key} is longer than a metrics file can hold")
        repo = m.pre_job.repository
        # Some '/' with at least one character on each side (spec 3.1), as
        # the reference's `.+/.+`: "//r" is fine.
        if repo is not None and ("/" not in repo[1:-1] or len(repo.encode()) > _MAX_FIELD):
            raise ValueError(f"repository {_bounded(repo)!r} is not owner/repo")
    if m.post_job is not None:
        _time("post-job timestamp", m.post_job.timestamp)


_EVENT_KINDS = {"runner-installed": "runner_installed", "runner-start": "runner_start", "runner-stop": "runner_stop"}


def _check_events(events: List[Any]) -> None:
    if len(events) > 3:
        raise ValueError(f"guest issued {len(events)} events for one runner; at most 3 exist")
    for event in events:
        if event.tag not in _EVENT_KINDS:
            raise ValueError(f"guest issued an unknown event {event.tag!r}")
        payload = event.payload
        _time(f"{event.tag} timestamp", payload.timestamp)
        for key in ("duration", "idle", "queue-duration", "job-duration"):
            if hasattr(payload, key) and getattr(payload, key) is not None:
                _time(f"{event.tag} {key}", getattr(payload, key))


def _expected_fields(event: Any) -> Dict[str, Any]:
    """What a line rendered from ``event`` must hold, key by key (spec 5)."""
    p = event.payload
    fields: Dict[str, Any] = {"event": _EVENT_KINDS[event.tag], "timestamp": p.timestamp, "flavor": p.flavor}
    if event.tag == "runner-installed":
        fields["duration"] = p.duration
        return fields
    fields.update(workflow=p.workflow, repo=p.repo, github_event=_get(p, "github-event"))
    if event.tag == "runner-start":
        fields["idle"] = p.idle
        if _get(p, "queue-duration") is not None:
            fields["queue_duration"] = _get(p, "queue-duration")
        return fields
    fields.update(status=p.status, job_duration=_get(p, "job-duration"))
    if _get(p, "status-info") is not None:
        fields["status_info"] = {"code": _get(p, "status-info").code}
    if _get(p, "job-conclusion") is not None:
        fields["job_conclusion"] = str(_get(p, "job-conclusion")).replace("-", "_")
    return fields


def _check_line(line: Any, event: Any, flavor: str) -> None:
    """The line holds exactly the keys and values of ``event``, of ``flavor``."""
    kind = _EVENT_KINDS[event.tag]
    if event.payload.flavor != flavor:
        raise ValueError(f"guest issued a {kind} event of flavor {_bounded(str(event.payload.flavor))!r}, not {flavor!r}")
    if not isinstance(line, str) or len(line) > _MAX_LINE:
        raise ValueError("guest rendered an over-long line")
    if not line.isascii() or any(ord(c) < 0x20 or c == "\x7f" for c in line):
        raise ValueError("guest rendered a line with control or non-ASCII characters")
    try:
        value = json.loads(line)
    except ValueError as e:
        raise ValueError(f"guest rendered a line that is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"guest rendered a {kind} line that is not a JSON object")
    expected = _expected_fields(event)
    for key, want in expected.items():
        if key not in value:
            raise ValueError(f"guest rendered a {kind} line without {key!r}")
        if type(value[key]) is bool or value[key] != want:
            raise ValueError(f"guest rendered a {kind} line whose {key!r} differs from the event")
    extra = next((k for k in value if k not in expected), None)
    if extra is not None:
        raise ValueError(f"guest rendered a {kind} line with a key the event does not have: {_bounded(extra)!r}")


# ---------------------------------------------------------------------------
# The metrics log
# ---------------------------------------------------------------------------

class MetricsLog:
    """Append-only JSON-lines log; ``append`` returns once the lines are on disk."""

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(path)
        # Non-blocking: a FIFO in its place is refused below, never waited on.
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
        fd = os.open(self.path, flags, 0o644)
        try:
            import stat as _stat
            if not _stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(0, "not a regular file", str(self.path))
            size = os.lseek(fd, 0, os.SEEK_END)
            # A line cut by a crash is terminated, so ours start on their own line.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")
                os.fdatasync(fd)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def append(self, lines: List[str]) -> None:
        if not lines:
            return
        data = "".join(line + "\n" for line in lines).encode("ascii")
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        os.fdatasync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def describe(self) -> str:
        return str(self.path)


def _open_log(metrics_log: Any) -> Tuple[Any, bool]:
    """(sink, owned): a path opens a MetricsLog; an object with ``append``
    is used as is."""
    if metrics_log is not None and hasattr(metrics_log, "append") and not isinstance(metrics_log, (str, bytes, os.PathLike)):
        return metrics_log, False
    if metrics_log is None:
        metrics_log = os.environ.get(METRICS_LOG_ENV) or DEFAULT_METRICS_LOG
    return MetricsLog(metrics_log), True


# ---------------------------------------------------------------------------
# collect
# ---------------------------------------------------------------------------

JobMetricsSource = Callable[[RunnerMetrics], Optional[Union[GithubJobMetrics, Tuple[float, Optional[str]], Dict[str, Any]]]]

_plugins: Dict[Tuple[str, Limits], Plugin] = {}
_plugins_lock = threading.Lock()


def _shared_plugin(component: Union[str, os.PathLike, None], limits: Limits) -> Plugin:
    path = str(Path(component) if component is not None else default_component_path())
    with _plugins_lock:
        key = (path, limits)
        if key not in _plugins:
            _plugins[key] = Plugin(path, limits)
        return _plugins[key]


def collect(
    storage_root: Union[str, os.PathLike],
    flavor: str,
    exclude: Iterable[str] = (),
    include: Optional[Iterable[str]] = None,
    min_age: Optional[float] = None,
    job_metrics: Optional[JobMetricsSource] = None,
    metrics_log: Any = None,
    *,
    keep: bool = False,
    plugin: Optional[Plugin] = None,
    component: Union[str, os.PathLike, None] = None,
    limits: Limits = Limits(),
    on_report: Optional[Callable[[StorageReport], None]] = None,
    batch_size: int = 64,
) -> Summary:
    """Extracts every selected storage under ``storage_root``, appends the
    events of the ``flavor`` runners to ``metrics_log`` and deletes or
    quarantines the storages, exactly as the Rust host does.

    ``exclude``: names never touched (the reference's ``ignore_runners``).
    ``include``: when given, only these names are touched.
    ``min_age``: storages modified less than this many seconds ago are skipped.
    ``job_metrics(runner_metrics)``: GitHub job metrics for a runner, or None.
    ``metrics_log``: a path (default ``$METRICS_LOG_PATH``, else
    ``/var/log/github-runner-metrics.log``) or an object whose ``append(lines)``
    returns once the lines are durable.
    ``keep``: dry run; nothing on disk changes (lines are still written).

    Returns a :class:`Summary` with one :class:`StorageReport` per root entry
    (also streamed to ``on_report``). Raises :class:`CollectError` when the
    run could not start or had to stop; storages not yet handled are
    untouched and extracted storages whose lines were not written stay.
    """
    if plugin is None:
        plugin = _shared_plugin(component, limits)
    try:
        root = Path(storage_root).resolve(strict=True)
    except OSError as e:
        raise CollectError(f"storage root {storage_root}: {e.strerror or e}", Summary()) from None
    if not root.is_dir():
        raise CollectError(f"storage root {root}: not a directory", Summary())
    selection = _record(
        exclude=[str(n) for n in exclude],
        include=None if include is None else [str(n) for n in include],
        min_age_seconds=None if min_age is None else float(min_age),
    )
    try:
        sink, owned = _open_log(metrics_log)
    except OSError as e:
        where = getattr(e, "filename", None) or metrics_log
        raise CollectError(f"metrics log {where}: {e.strerror or e}", Summary()) from None
    run = _Run(plugin, root, flavor, keep, job_metrics, sink, on_report, max(1, batch_size))
    plugin._start_ticker()
    try:
        run.go(selection)
    finally:
        plugin._stop_ticker()
        if owned:
            sink.close()
    return run.summary


class _Run:
    def __init__(self, plugin: Plugin, root: Path, flavor: str, keep: bool, jobs: Optional[JobMetricsSource],
                 sink: Any, on_report: Optional[Callable[[StorageReport], None]], batch_size: int):
        self.plugin, self.root, self.flavor, self.keep = plugin, root, flavor, keep
        self.jobs, self.sink, self.on_report, self.batch_size = jobs, sink, on_report, batch_size
        self.worker: Optional[Sandbox] = None
        self.pending: List[Tuple[str, List[str]]] = []
        self.summary = Summary()

    def fail(self, message: str) -> CollectError:
        return CollectError(message, self.summary)

    def report(self, name: str, outcome: str, detail: str, events: int = 0,
               reason: Optional[str] = None, file: Optional[str] = None) -> None:
        report = StorageReport(name, outcome, detail, events, reason, file)
        self.summary.add(report)
        if self.on_report is not None:
            self.on_report(report)

    def get_worker(self) -> Sandbox:
        if self.worker is None:
            self.worker = self.plugin.sandbox(self.root)
        return self.worker

    def go(self, selection: Any) -> None:
        try:
            scanner = self.plugin.sandbox(self.root)
            scan = scanner.start_scan(selection)
        except GuestFailure as e:
            raise self.fail(f"starting the scan of {self.root}: {e}") from e
        if not self.keep:
            self.purge_deleting()
        while True:
            try:
                batch = scanner.next_batch(scan, _SCAN_BATCH)
            except GuestFailure as e:
                raise self.fail(f"listing the storage root {self.root}: {e}") from e
            if isinstance(batch, str):
                raise self.fail(f"listing the storage root {self.root}: {_bounded(batch)}")
            if not batch:
                break
            for entry in batch:
                name, skipped = entry.name, entry.skipped
                label = name if name is not None else "<non-UTF-8 name>"
                if skipped is not None:
                    self.report(label, "skipped", _skip_detail(skipped), reason=skipped.tag)
                elif name is None or not _valid_name(name):
                    self.report(label, "failed", f"guest offered {_bounded(label)!r} as a storage, "
                                                 "which is not a valid runner name")
                else:
                    self.candidate(name)
        self.flush()
        try:
            scan.drop(scanner.store)
        except (wasmtime.WasmtimeError, wasmtime.Trap):
            pass

    def purge_deleting(self) -> None:
        """Finishes deletions a crash cut short (storages already extracted,
        renamed into ``.deleting/``). A failure is reported and the run goes on."""
        try:
            result = self.get_worker().purge_deleting()
        except GuestFailure as trap:
            self.worker = None
            problem = str(trap)
        else:
            if not isinstance(result, str):
                return
            problem = _bounded(result)
        self.report(".deleting", "failed", f"leftover deletions kept: {problem}")

    def candidate(self, name: str) -> None:
        try:
            worker = self.get_worker()
            outcome = worker.extract_storage(name, self.keep)
        except GuestFailure as e:
            return self.after_trap(name, str(e))
        tag, payload = outcome.tag, outcome.payload
        if tag == "extracted":
            try:
                metrics = _metrics_from_wit(payload)
                _check_metrics(self.root, name, metrics)
            except (ValueError, AttributeError, TypeError) as e:
                self.worker = None  # a lying guest is not trusted with the next storage
                return self.report(name, "failed", f"kept: {e}")
            return self.extracted(name, payload, metrics)
        if tag == "no-data":
            detail = "no installed timestamp; would be deleted" if self.keep else "no installed timestamp; deleted"
            return self.report(name, "no-data", detail)
        if tag == "quarantined":
            location = payload.location
            # One entry name under .quarantine/, starting with (up to 200
            # bytes of) the runner name, within the 255-byte name limit.
            if location and (not location.startswith(name[:_ENTRY_NAME_PREFIX]) or "/" in location
                             or len(location.encode()) > 255 or location.startswith(".")):
                self.worker = None
                return self.report(name, "failed", f"kept: guest reported quarantine location {_bounded(location)!r}")
            return self.report(name, "quarantined", _quarantine_detail(payload), reason=payload.reason, file=payload.file)
        if tag == "skipped":
            return self.report(name, "skipped", _skip_detail(payload), reason=payload.tag)
        return self.report(name, "failed", f"kept: {_bounded(str(payload))}")

    def after_trap(self, name: str, detail: str) -> None:
        """The guest trapped on this storage: quarantine it with a fresh
        instance (in a dry run, report it), and go on."""
        self.worker = None
        if self.keep:
            return self.report(name, "failed", f"kept: {detail}")
        detail = _bounded(detail)
        try:
            info = self.get_worker().quarantine_storage(name, "sandbox-trap", detail)
        except GuestFailure as again:
            self.worker = None
            return self.report(name, "failed", f"kept: {detail}; quarantine trapped too: {again}")
        if isinstance(info, str):
            return self.report(name, "failed", f"kept: {detail}; quarantine failed: {_bounded(info)}")
        info_detail = f"sandbox-trap: {detail}; moved to .quarantine/{info.location}"
        self.report(name, "quarantined", info_detail, reason="sandbox-trap")

    def extracted(self, name: str, wit_metrics: Any, metrics: RunnerMetrics) -> None:
        job = self.jobs(metrics) if self.jobs is not None else None
        try:
            worker = self.get_worker()
            events = worker.issue_events(wit_metrics, self.flavor, _job_to_wit(job))
            _check_events(events)
            lines = []
            for event in events:
                line = worker.render_event(event)
                _check_line(line, event, self.flavor)
                lines.append(line)
        except GuestFailure as e:
            return self.after_trap(name, str(e))
        except (ValueError, AttributeError, TypeError) as e:
            self.worker = None
            return self.report(name, "failed", f"kept: {e}")
        self.pending.append((name, lines))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Writes the queued lines durably, then deletes their storages."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        try:
            self.sink.append([line for _, lines in pending for line in lines])
        except Exception as e:  # noqa: BLE001 - any sink failure stops the run
            for name, _ in pending:
                self.report(name, "failed", f"kept: events not written: {e}")
            raise self.fail(f"writing events to {getattr(self.sink, 'describe', lambda: 'the sink')()}: {e}") from e
        for name, lines in pending:
            if self.keep:
                self.report(name, "extracted", "kept (dry run)", len(lines))
                continue
            try:
                deleted = self.get_worker().delete_storage(name)
            except GuestFailure as trap:
                self.worker = None
                self.report(name, "failed", f"events written but storage kept: {trap}", len(lines))
                continue
            if deleted is None:
                self.report(name, "extracted", "deleted", len(lines))
            elif isinstance(deleted, str):
                self.report(name, "failed", f"events written but storage kept: {_bounded(deleted)}", len(lines))
            else:
                self.report(name, "extracted", f"could not be deleted, so moved to .quarantine/{deleted.location}: "
                                               f"{_bounded(deleted.detail)}", len(lines))


def _skip_detail(reason: Any) -> str:
    tag = reason.tag
    if tag == "too-young":
        return f"too young ({reason.payload:.0f}s old)"
    return {
        "excluded": "excluded",
        "not-included": "not included",
        "not-a-directory": "not a plain directory; left alone",
        "invalid-name": "not a valid runner name; left alone",
        "vanished": "gone before it was handled",
    }.get(tag, tag)


def _quarantine_detail(info: Any) -> str:
    place = f"moved to .quarantine/{info.location}" if info.location else "would be quarantined"
    file = f" {info.file}" if info.file else ""
    return f"{info.reason}:{file} {_bounded(info.detail)}; {place}"
