"""Run the runner-metrics WebAssembly components (WIT 0.2.0) from Python.

The whole collect runs in the plugin (``collector.collect``), and so does the
recovery after a trap (``collector.recover``, in a fresh instance). The books
of the run and the re-checks of every claim the plugin makes live in a second
component, the keeper (world ``keeper``: the same code the Rust and Node hosts
run). This host only lends the plugin its imports, passes each through the
keeper before acting on it, and makes the calls the keeper asks for. Each
plugin instance sees only the storage root, as ``/storage``, under a memory
cap, with fuel and an epoch deadline re-armed at each import. Lines are
fsync-ed before their storages are deleted.
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

from . import _lock
from ._types import (CollectError, GithubJobMetrics, GuestFailure, Limits, PostJobMetrics, PreJobMetrics,
                     RunnerMetrics, StorageReport, Summary)

__all__ = ["collect", "Plugin", "Keeper", "Limits", "Summary", "StorageReport", "RunnerMetrics", "PreJobMetrics",
           "PostJobMetrics", "GithubJobMetrics", "CollectError", "GuestFailure", "default_component_path",
           "DEFAULT_METRICS_LOG", "METRICS_LOG_ENV"]
DEFAULT_METRICS_LOG, METRICS_LOG_ENV = "/var/log/github-runner-metrics.log", "METRICS_LOG_PATH"
COMPONENT_ENV, KEEPER_ENV, GUEST_ROOT, _VERSION = ("RUNNER_METRICS_COMPONENT", "RUNNER_METRICS_KEEPER_COMPONENT",
                                                   "/storage", "0.2.0")
_COLLECTOR, _HOST, _BOOKS = (f"github-runner:metrics/{i}@{_VERSION}" for i in ("collector", "host", "books"))
_CONCLUSIONS = ("action-required", "cancelled", "failure", "neutral", "skipped", "success", "timed-out")


def _bundled(env: str, name: str) -> Path:
    return Path(os.environ.get(env) or Path(__file__).resolve().parent / name)


def default_component_path() -> Path:
    """``$RUNNER_METRICS_COMPONENT``, else ``runner_metrics.wasm`` next to this module."""
    return _bundled(COMPONENT_ENV, "runner_metrics.wasm")


def default_keeper_path() -> Path:
    """``$RUNNER_METRICS_KEEPER_COMPONENT``, else ``runner_metrics_keeper.wasm`` next to this module."""
    return _bundled(KEEPER_ENV, "runner_metrics_keeper.wasm")


def _load(engine: wasmtime.Engine, path: Path, kind: str, env: str) -> wc.Component:
    if not path.is_file():
        raise FileNotFoundError(f"runner-metrics {kind} component not found at {path}; write it with "
                                f"`runner-metrics component --kind {kind} --output {path}` or set ${env}")
    return wc.Component.from_file(engine, str(path))


class Plugin:
    """The plugin and keeper components compiled once, and the epoch ticker of the runs using them."""

    def __init__(self, component: Union[str, os.PathLike, None] = None, limits: Limits = Limits(),
                 keeper: Union[str, os.PathLike, None] = None):
        config = wasmtime.Config()
        config.epoch_interruption, config.consume_fuel = True, limits.fuel is not None
        self.limits, self.engine = limits, wasmtime.Engine(config)
        self.component = _load(self.engine, Path(component) if component is not None else default_component_path(),
                               "plugin", COMPONENT_ENV)
        self.keeper = _load(self.engine, Path(keeper) if keeper is not None else default_keeper_path(),
                            "keeper", KEEPER_ENV)
        self._lock, self._runs, self._stop = threading.Lock(), 0, threading.Event()
        self._keeper_linker = wc.Linker(self.engine)
        self._keeper_linker.add_wasip2()

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
    """One instance in its own store that sees only the storage root: the plugin's
    (read-write, capped, under deadline and fuel) or the keeper's (read-only)."""

    def __init__(self, plugin: Plugin, root: Path, linker: wc.Linker, keeper: bool = False):
        self.limits, self.keeper, self.store = plugin.limits, keeper, wasmtime.Store(plugin.engine)
        wasi = wasmtime.WasiConfig()
        wasi.preopen_dir(str(root), GUEST_ROOT, not keeper)  # no arguments, environment, stdio or network
        self.store.set_wasi(wasi)
        # The keeper can take twice what the plugin can hand over (host/src/keeper.rs).
        memory = self.limits.memory_bytes * 2 + (32 << 20) if keeper else self.limits.memory_bytes
        self.store.set_limits(memory_size=memory, instances=16, tables=64, memories=4)
        self.arm()
        try:
            self.instance = linker.instantiate(self.store, plugin.keeper if keeper else plugin.component)
        except wasmtime.WasmtimeError as e:
            raise GuestFailure(f"instantiating the runner-metrics {'keeper' if keeper else 'plugin'}: {e}") from e

    def arm(self) -> None:
        """The plugin's time and fuel start again (a zero timeout interrupts at once); the
        keeper, our own code bounded by what it is handed, is not timed."""
        self.store.set_epoch_deadline(2**62 if self.keeper else max(0, math.ceil(self.limits.timeout / self.limits.tick)))
        if self.limits.fuel is not None:
            self.store.set_fuel(2**62 if self.keeper else self.limits.fuel)

    def func(self, interface: str, name: str) -> Any:
        iface = self.instance.get_export_index(self.store, interface)
        index = self.instance.get_export_index(self.store, name, iface) if iface else None
        if index is None:
            raise GuestFailure(f"the component exports no {interface}#{name}")
        return self.instance.get_func(self.store, index)

    def call(self, what: str, interface: str, name: str, *args: Any) -> Any:
        """Calls an export of the plugin: a trap raises GuestFailure."""
        func = self.func(interface, name)
        self.arm()
        try:
            return func(self.store, *args)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
            cause = "trapped: " + ([ln.strip() for ln in str(e).splitlines() if ln.strip()] or ["?"])[-1]
            if "interrupt" in cause:
                cause = f"exceeded its {self.limits.timeout}s deadline"
            elif "all fuel consumed" in cause:
                cause = f"ran out of fuel ({self.limits.fuel} units)"
            raise GuestFailure(f"guest {what} {cause.replace('wasm trap: ', '')}") from e


class Keeper:
    """The run's books (one keeper instance per run): every method is a call of
    ``books.run``; a claim that does not hold comes back as ``str`` (the lie)."""

    def __init__(self, plugin: Plugin, root: Path, options: wc.Record):
        self.sandbox = Sandbox(plugin, root, plugin._keeper_linker, keeper=True)
        self.run = self.sandbox.func(_BOOKS, "[constructor]run")(self.sandbox.store, options)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        func = self.sandbox.func(_BOOKS, f"[method]run.{method.replace('_', '-')}")
        return lambda *args: func(self.sandbox.store, self.run, *args)


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
    """One collect as this host sees it: the caller's sink and callbacks, the
    keeper's books, and the plugin instance the imports serve."""

    def __init__(self, plugin: Plugin, root: Path, options: wc.Record, jobs: Any, sink: Any, on_report: Any,
                 summary: Summary):
        self.plugin, self.root, self.jobs, self.sink, self.on_report = plugin, root, jobs, sink, on_report
        self.keeper, self.summary = Keeper(plugin, root, options), summary
        self.report_error: Optional[Exception] = None
        self.sandbox: Optional[Sandbox] = None
        self.linker = wc.Linker(plugin.engine)
        self.linker.add_wasip2()  # `types` has nothing to provide: left undefined
        with self.linker.root() as linker_root, linker_root.add_instance(_HOST) as host:
            for name in ("begin-storage", "end-storage", "job-metrics", "append", "report"):
                host.add_func(name, self._lend(getattr(self, name.replace("-", "_"))))

    def _lend(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def imported(_store: Any, *args: Any) -> Any:
            if self.sandbox is None:
                raise wasmtime.WasmtimeError("host import called outside collect")
            result = method(*args)
            self.sandbox.arm()  # the guest's time on its storage starts again
            return result
        return imported

    @staticmethod
    def checked(verdict: Any) -> Any:
        """The keeper's verdict: a ``str`` is a lie it booked, which stops the plugin."""
        if isinstance(verdict, str):
            raise wasmtime.WasmtimeError(f"guest lied: {verdict}")
        return verdict

    def begin_storage(self, name: str) -> None:
        self.checked(self.keeper.begin_storage(name))

    def end_storage(self) -> None:
        self.keeper.end_storage()

    def job_metrics(self, metrics: Any) -> Optional[wc.Record]:
        self.checked(self.keeper.job_metrics(metrics))
        return _job(self.jobs(_metrics(metrics))) if self.jobs is not None else None

    def append(self, batch: List[Any]) -> Optional[str]:
        self.checked(self.keeper.append(batch))
        try:
            self.sink.append([line for storage in batch for line in storage.lines])
        except Exception as e:  # noqa: BLE001 - the guest reports the batch failed and stops
            self.keeper.appended(f"writing events to {getattr(self.sink, 'describe', lambda: 'the sink')()}: {e}")
            return str(e)
        self.keeper.appended(None)
        return None

    def report(self, r: Any) -> None:
        r = self.checked(self.keeper.report(r))
        report = StorageReport(r.name, r.outcome, r.detail, r.events, r.reason, r.file)
        self.summary.add(report)
        try:
            if self.on_report is not None:
                self.on_report(report)
        except Exception as e:  # noqa: BLE001 - raised after the run: a batch is never cut short
            self.report_error = self.report_error or e

    def go(self) -> None:
        """Makes the plugin calls the keeper asks for, each in a fresh instance."""
        last = None
        while True:
            call = self.keeper.next(last)
            if call.tag == "done":
                return
            if call.tag == "stop":
                raise CollectError(call.payload, self.summary)
            try:
                self.sandbox = Sandbox(self.plugin, self.root, self.linker)
                stopped = self.sandbox.call(call.tag.replace("recover", "recovery"), _COLLECTOR, call.tag, call.payload)
                last = wc.Variant("returned", stopped)
            except GuestFailure as e:
                last = wc.Variant("trapped", str(e))
            finally:
                self.sandbox = None  # the imports serve this call only


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
    selection = _record(exclude=[str(n) for n in exclude], include=None if include is None else [str(n) for n in include],
                        min_age_seconds=None if min_age is None else float(min_age))
    options = _record(selection=selection, emit=str(flavor), keep=keep, batch_size=min(max(1, batch_size), 2**32 - 1),
                      purge_deleting=not keep, done=[], done_unnamed=0)
    try:
        lock = None if keep else _lock.acquire(root, wait)
    except (OSError, _lock.Busy) as e:
        if owned:
            sink.close()
        raise CollectError(f"storage root {root} is busy: {e}" if isinstance(e, _lock.Busy)
                           else f"lock file {e.filename}: {e.strerror or e}", Summary()) from None
    summary = Summary()
    plugin._ticker(+1)
    try:
        run = _Run(plugin, root, options, job_metrics, sink, on_report, summary)
        run.go()
    except (GuestFailure, wasmtime.WasmtimeError, wasmtime.Trap) as e:  # the keeper failed: nothing more is done
        raise CollectError(f"the keeper failed: {e}", summary) from e
    finally:
        plugin._ticker(-1)
        if lock is not None:
            _lock.release(root, lock)
        if owned:
            sink.close()
    if run.report_error is not None:
        raise run.report_error
    return summary
