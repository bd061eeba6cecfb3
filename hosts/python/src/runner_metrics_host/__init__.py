"""Run the runner-metrics WebAssembly component (WIT 0.2.0) from Python.

The whole collect runs in the guest (``collector.collect``), and so does the
recovery after a trap (``collector.recover``, in a fresh instance); this host
lends them the imports of ``github-runner:metrics/host``, re-checks what they
are handed (``_checks``) and keeps the books of a run across instances, as the
Rust host does (host/src/collect.rs, host/src/imports.rs). Each instance sees
only the storage root, as ``/storage``, under a memory cap, with fuel and an
epoch deadline re-armed at each import. Lines are fsync-ed before their
storages are deleted.
"""

from __future__ import annotations

import math
import os
import stat
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import wasmtime
import wasmtime.component as wc

from . import _checks as check
from . import _lock
from ._checks import DELETING, UNNAMED, Lie, bounded
from ._types import (CollectError, GithubJobMetrics, GuestFailure, Limits, PostJobMetrics, PreJobMetrics,
                     RunnerMetrics, StorageReport, Summary)

__all__ = ["collect", "Plugin", "Limits", "Summary", "StorageReport", "RunnerMetrics", "PreJobMetrics",
           "PostJobMetrics", "GithubJobMetrics", "CollectError", "GuestFailure", "default_component_path",
           "DEFAULT_METRICS_LOG", "METRICS_LOG_ENV"]
DEFAULT_METRICS_LOG, METRICS_LOG_ENV = "/var/log/github-runner-metrics.log", "METRICS_LOG_PATH"
COMPONENT_ENV, GUEST_ROOT, MAX_TRAPS_PER_RUN, _VERSION = "RUNNER_METRICS_COMPONENT", "/storage", 16, "0.2.0"
_COLLECTOR, _HOST = (f"github-runner:metrics/{i}@{_VERSION}" for i in ("collector", "host"))
_CONCLUSIONS = ("action-required", "cancelled", "failure", "neutral", "skipped", "success", "timed-out")


def default_component_path() -> Path:
    """``$RUNNER_METRICS_COMPONENT``, else ``runner_metrics.wasm`` next to this module."""
    return Path(os.environ.get(COMPONENT_ENV) or Path(__file__).resolve().parent / "runner_metrics.wasm")


class Plugin:
    """The component compiled once, and the epoch ticker of the runs using it."""

    def __init__(self, component: Union[str, os.PathLike, None] = None, limits: Limits = Limits()):
        path = Path(component) if component is not None else default_component_path()
        if not path.is_file():
            raise FileNotFoundError(f"runner-metrics component not found at {path}; write it with "
                                    f"`runner-metrics component --output {path}` or set ${COMPONENT_ENV}")
        config = wasmtime.Config()
        config.epoch_interruption, config.consume_fuel = True, limits.fuel is not None
        self.limits, self.engine = limits, wasmtime.Engine(config)
        self.component = wc.Component.from_file(self.engine, str(path))
        self._lock, self._runs, self._stop = threading.Lock(), 0, threading.Event()

    def _ticker(self, delta: int) -> None:
        """A run starts (+1) or ends (-1); the epoch ticks while any run goes."""
        with self._lock:
            self._runs += delta
            if self._runs == 0:
                self._stop.set()
            elif self._runs == 1 and delta == 1:
                stop = self._stop = threading.Event()

                def tick() -> None:
                    while not stop.wait(self.limits.tick):
                        self.engine.increment_epoch()
                threading.Thread(target=tick, name="runner-metrics-epoch", daemon=True).start()


class Sandbox:
    """One instance in its own store: it sees only the storage root."""

    def __init__(self, plugin: Plugin, root: Path, linker: wc.Linker):
        self.limits, self.store, wasi = plugin.limits, wasmtime.Store(plugin.engine), wasmtime.WasiConfig()
        wasi.preopen_dir(str(root), GUEST_ROOT)  # no arguments, environment, stdio or network
        self.store.set_wasi(wasi)
        self.store.set_limits(memory_size=self.limits.memory_bytes, instances=16, tables=64, memories=4)
        self.arm()
        try:
            self.instance = linker.instantiate(self.store, plugin.component)
        except wasmtime.WasmtimeError as e:
            raise GuestFailure(f"instantiating the runner-metrics component: {e}") from e

    def arm(self) -> None:
        """The guest's time and fuel start again (a zero timeout interrupts at once)."""
        self.store.set_epoch_deadline(max(0, math.ceil(self.limits.timeout / self.limits.tick)))
        if self.limits.fuel is not None:
            self.store.set_fuel(self.limits.fuel)

    def call(self, what: str, interface: str, name: str, *args: Any) -> Any:
        """Calls an export: a trap raises GuestFailure, a lie an import caught raises that Lie."""
        iface = self.instance.get_export_index(self.store, interface)
        index = self.instance.get_export_index(self.store, name, iface) if iface else None
        if index is None:
            raise GuestFailure(f"the component exports no {interface}#{name}")
        self.arm()
        try:
            return self.instance.get_func(self.store, index)(self.store, *args)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
            cause = "trapped: " + ([ln.strip() for ln in str(e).splitlines() if ln.strip()] or ["?"])[-1]
            if "interrupt" in cause:
                cause = f"exceeded its {self.limits.timeout}s deadline"
            elif "all fuel consumed" in cause:
                cause = f"ran out of fuel ({self.limits.fuel} units)"
            raise GuestFailure(f"guest {what} {cause.replace('wasm trap: ', '')}") from e


class MetricsLog:
    """Append-only JSON-lines log; ``append`` returns once the lines are on disk."""

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(path)  # non-blocking: a FIFO in its place is refused, never waited on
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY, 0o644)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(0, "not a regular file", str(self.path))
            size = os.lseek(fd, 0, os.SEEK_END)
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a line cut by a crash is ended first
                os.write(fd, b"\n")
                os.fdatasync(fd)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def append(self, lines: List[str]) -> None:
        view = memoryview("".join(line + "\n" for line in lines).encode("ascii"))
        while view:
            view = view[os.write(self.fd, view):]
        os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)

    def describe(self) -> str:
        return str(self.path)


def _record(**fields: Any) -> wc.Record:
    record = wc.Record()
    for key, value in fields.items():
        setattr(record, key.replace("_", "-"), value)
    return record


def _metrics(m: Any) -> RunnerMetrics:
    pre, post = getattr(m, "pre-job"), getattr(m, "post-job")
    info = post and getattr(post, "status-info")
    return RunnerMetrics(
        getattr(m, "installation-start-timestamp"), getattr(m, "installed-timestamp"),
        pre and PreJobMetrics(pre.timestamp, pre.workflow, getattr(pre, "workflow-run-id"), pre.repository, pre.event),
        post and PostJobMetrics(post.timestamp, post.status, info and info.code), getattr(m, "runner-name"))


def _job(job: Any) -> Optional[wc.Record]:
    """``job_metrics``'s answer: a GithubJobMetrics, a (queue, conclusion) tuple, a dict, or None."""
    if job is None:
        return None
    job = GithubJobMetrics(*job) if isinstance(job, tuple) else job
    job = GithubJobMetrics(job["queue_duration"], job.get("conclusion")) if isinstance(job, dict) else job
    if not math.isfinite(queue := float(job.queue_duration)):
        raise ValueError(f"queue duration {queue} is not finite")
    conclusion = job.conclusion and str(getattr(job.conclusion, "value", job.conclusion)).lower().replace("_", "-")
    return _record(queue_duration=queue, conclusion=conclusion if conclusion in _CONCLUSIONS else None)


class _Run:
    """One collect as the host sees it, across every instance it needs (host/src/imports.rs RunState)."""

    def __init__(self, plugin: Plugin, root: Path, flavor: str, keep: bool, jobs: Any, sink: Any, on_report: Any,
                 batch_size: int):
        self.plugin, self.root, self.flavor, self.keep, self.jobs = plugin, root, flavor, keep, jobs
        self.sink, self.on_report, self.batch_size, self.summary = sink, on_report, batch_size, Summary()
        self.current: Optional[str] = None  # the entry the guest works on, until it is reported
        self.appended: Dict[str, int] = {}  # durable lines per storage not reported yet
        self.reported: set = set()
        self.unnamed, self.lie, self.append_error, self.report_error, self.sandbox = 0, None, None, None, None
        self.linker = wc.Linker(plugin.engine)
        self.linker.add_wasip2()  # `types` has nothing to provide: left undefined
        with self.linker.root() as linker_root, linker_root.add_instance(_HOST) as host:
            for name in ("begin-storage", "end-storage", "job-metrics", "append", "report"):
                host.add_func(name, self._lend(getattr(self, name.replace("-", "_"))))

    def _lend(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def imported(_store: Any, *args: Any) -> Any:
            if self.sandbox is None:
                raise wasmtime.WasmtimeError("host import called outside collect")
            try:
                result = method(*args)
            except Lie as lie:
                self.lie = lie
                raise
            self.sandbox.arm()  # the guest's time on its storage starts again
            return result
        return imported

    def deliver(self, report: StorageReport) -> None:
        if report.name == UNNAMED:
            self.unnamed += 1
        elif report.name != DELETING:
            self.reported.add(report.name)
        self.current = None if self.current == report.name else self.current
        self.summary.add(report)
        try:
            if self.on_report is not None:
                self.on_report(report)
        except Exception as e:  # noqa: BLE001 - raised after the run: a batch is never cut short
            self.report_error = self.report_error or e

    def begin_storage(self, name: str) -> None:
        if name != DELETING:
            try:
                check.storage_name(name)
            except Lie as lie:  # reported under that name, so the resumed collect skips it
                raise Lie(str(lie), name if len(name.encode()) <= 255 else None) from None
            if name in self.reported:
                raise Lie(f"began work on {name!r}, which it had already reported")
        self.current = name

    def end_storage(self) -> None:
        """Its lines wait for the next append: a trap from now on belongs to no storage."""
        self.current = None

    def job_metrics(self, wit_metrics: Any) -> Optional[wc.Record]:
        if self.current is None:
            raise Lie("asked for job metrics outside any storage")
        metrics = _metrics(wit_metrics)
        check.metrics(self.root, self.current, metrics)
        return _job(self.jobs(metrics)) if self.jobs is not None else None

    def append(self, batch: List[Any]) -> Optional[str]:
        if len(batch) > self.batch_size:
            raise Lie(f"appended {len(batch)} storages at once; batches hold at most {self.batch_size}")
        names = [getattr(storage, "runner-name") for storage in batch]
        for i, (name, storage) in enumerate(zip(names, batch)):
            if name in self.reported or name in self.appended or name in names[:i]:
                raise Lie(f"appended lines for {bounded(name)!r} twice")
            check.storage_lines(self.root, storage, self.flavor)
        try:
            self.sink.append([line for storage in batch for line in storage.lines])
        except Exception as e:  # noqa: BLE001 - the guest reports the batch failed and stops
            self.append_error = f"writing events to {getattr(self.sink, 'describe', lambda: 'the sink')()}: {e}"
            return str(e)
        self.appended.update((name, len(storage.lines)) for name, storage in zip(names, batch))
        return None

    def report(self, r: Any) -> None:
        name, kind, events, reason = r.name, r.outcome, r.events, r.reason
        if len(name.encode()) > 255:
            raise Lie(f"reported on a {len(name.encode())}-byte name")
        if reason is not None and reason not in check.REASONS:
            raise Lie(f"reported an unknown reason {bounded(reason)!r}")
        if name in (UNNAMED, DELETING):
            if kind != ("skipped" if name == UNNAMED else "failed") or events:
                raise Lie(f"reported {name} as {kind} with {events} lines")
        else:
            if name in self.reported:
                raise Lie(f"reported {bounded(name)!r} twice")
            if kind not in ("skipped", "failed"):  # any name the guest offered can fail: nothing on disk changes
                check.storage_name(name)
            appended = self.appended.get(name)
            if not (events == appended and kind in ("extracted", "failed") if appended is not None
                    else events == 0 and kind != "extracted"):
                what = "none were appended" if appended is None else f"{appended} lines were appended"
                raise Lie(f"reported {name!r} as {kind} with {events} lines, but {what}", name)
            if not self.keep and kind in ("extracted", "no-data", "quarantined"):
                check.gone(self.root, name, kind, r.detail)
            self.appended.pop(name, None)
        self.deliver(StorageReport(name, kind, bounded(r.detail), events, reason, r.file and bounded(r.file)))

    def go(self, selection: wc.Record) -> None:
        """Runs the guest's collect; after a trap, a fresh instance's ``recover`` finishes what it
        interrupted (and reports it), then the collect resumes without what was reported."""
        options = _record(selection=selection, emit=self.flavor, keep=self.keep, batch_size=self.batch_size,
                          purge_deleting=not self.keep, done=[], done_unnamed=0)
        interrupted: Optional[wc.Record] = None
        traps = 0
        while True:
            self.sandbox, failure = self._fresh(), None
            try:
                stopped = (self.sandbox.call("collect", _COLLECTOR, "collect", options) if interrupted is None
                           else self.sandbox.call("recover", _COLLECTOR, "recover", interrupted))
            except (GuestFailure, Lie) as e:
                failure = e
            finally:
                self.sandbox = None  # the imports serve this call only
            if failure is None and stopped is None:
                if interrupted is None:
                    return
                interrupted = None  # recovered: resume without what was reported, within the budget
                if traps >= MAX_TRAPS_PER_RUN:
                    raise CollectError(f"stopped after {traps} sandbox traps; the storages not reported are left "
                                       "for the next run", self.summary)
                options.done = sorted(self.reported)
                setattr(options, "done-unnamed", self.unnamed)
                setattr(options, "purge-deleting", False)
                continue
            if failure is None:  # collect had to stop, or recover found a trap outside any storage
                raise CollectError(self.append_error or bounded(stopped), self.summary)
            # A recovery is always tried, even past the budget, so that storages whose lines are out
            # get deleted (a storage whose recovery trapped is not tried again); one that traps
            # outside any storage is not retried.
            traps += 1
            previous, interrupted = interrupted, self.interrupted(failure, interrupted)
            if previous is not None and interrupted.blamed is None and not interrupted.lied:
                raise CollectError(f"the recovery trapped outside any storage: {interrupted.cause}; it was recovering "
                                   f"from: {previous.cause}", self.summary)
            if traps > MAX_TRAPS_PER_RUN + self.batch_size:
                raise CollectError(f"stopped after {traps} sandbox traps", self.summary)

    def _fresh(self) -> Sandbox:
        try:
            return Sandbox(self.plugin, self.root, self.linker)
        except GuestFailure as e:
            raise CollectError(str(e), self.summary) from e

    def interrupted(self, failure: Exception, previous: Optional[wc.Record]) -> wc.Record:
        """What the trap interrupted, for ``recover``. ``appended`` is not cleared: the reports
        ``recover`` sends take its storages off as they come."""
        lie, self.lie, current, self.current = self.lie, None, self.current, None
        blamed = lie.storage if lie else current
        cause = f"guest lied: {bounded(str(lie))}" if lie else bounded(str(failure))
        trapped_again = previous is not None and blamed is not None and blamed == previous.blamed
        if trapped_again:
            cause = bounded(f"{previous.cause}; trapped again: {cause}")
        return _record(appended=[_record(name=name, lines=lines) for name, lines in self.appended.items()],
                       blamed=blamed, cause=cause, lied=lie is not None, trapped_again=trapped_again, keep=self.keep)


_plugins: Dict[Tuple[str, Limits], Plugin] = {}
_plugins_lock = threading.Lock()


def collect(storage_root: Union[str, os.PathLike], flavor: str, exclude: Any = (), include: Any = None,
            min_age: Optional[float] = None, job_metrics: Optional[Callable[[RunnerMetrics], Any]] = None,
            metrics_log: Any = None, *, keep: bool = False, plugin: Optional[Plugin] = None,
            component: Union[str, os.PathLike, None] = None, limits: Limits = Limits(),
            on_report: Optional[Callable[[StorageReport], None]] = None, batch_size: int = 64,
            wait: float = 0.0) -> Summary:
    """Extracts every selected storage under ``storage_root``, appends the events of the
    ``flavor`` runners to ``metrics_log`` durably, then deletes or quarantines the storages.

    ``exclude``: names never touched; ``include``: when given, only these; ``min_age``:
    storages modified less than this many seconds ago are skipped. ``job_metrics(metrics)``:
    GitHub's job metrics for a runner, or None. ``metrics_log``: a path (default
    ``$METRICS_LOG_PATH``, else ``/var/log/github-runner-metrics.log``) or an object whose
    ``append(lines)`` returns once they are durable. ``keep``: dry run, nothing on disk
    changes. Unless ``keep``, the root's lock (``<root>/.lock``, shared with the Rust host) is
    held for the run, waiting at most ``wait`` seconds for another run. Returns a Summary with one StorageReport per root entry (also streamed to
    ``on_report``); raises CollectError when the run could not start or had to stop. An
    exception from ``job_metrics`` ends the run as is; the first from ``on_report`` is
    raised once the run is over."""
    if plugin is None:
        key = (str(component if component is not None else default_component_path()), limits)
        with _plugins_lock:
            plugin = _plugins[key] = _plugins.get(key) or Plugin(key[0], limits)
    try:
        root = Path(storage_root).resolve(strict=True)
        if not root.is_dir():
            raise NotADirectoryError(0, "not a directory")
    except OSError as e:
        raise CollectError(f"storage root {storage_root}: {e.strerror or e}", Summary()) from None
    owned = metrics_log is None or isinstance(metrics_log, (str, bytes, os.PathLike))
    try:
        sink = MetricsLog(metrics_log or os.environ.get(METRICS_LOG_ENV) or DEFAULT_METRICS_LOG) if owned else metrics_log
    except OSError as e:
        raise CollectError(f"metrics log {e.filename or metrics_log}: {e.strerror or e}", Summary()) from None
    run = _Run(plugin, root, str(flavor), keep, job_metrics, sink, on_report, min(max(1, batch_size), 2**32 - 1))
    try:
        lock = None if keep else _lock.acquire(root, wait)
    except (OSError, _lock.Busy) as e:
        if owned:
            sink.close()
        raise CollectError(f"storage root {root} is busy: {e}" if isinstance(e, _lock.Busy)
                           else f"lock file {e.filename}: {e.strerror or e}", Summary()) from None
    plugin._ticker(+1)
    try:
        run.go(_record(exclude=[str(n) for n in exclude], include=None if include is None else [str(n) for n in include],
                       min_age_seconds=None if min_age is None else float(min_age)))
    finally:
        plugin._ticker(-1)
        if lock is not None:
            _lock.release(root, lock)
        if owned:
            sink.close()
    if run.report_error is not None:
        raise run.report_error
    return run.summary
