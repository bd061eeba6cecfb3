"""The pure WebAssembly host: the runner-metrics components (WIT 0.4.0) run from Python with
the ``wasmtime`` package from PyPI. Slower and weaker than the binding of the Rust host that the
package's ``collect`` and ``ingest`` are (docs/hosts.md has the table); kept as the proof that the
plugin runs in any standard WASI host, and for a caller that hands ``collect`` a ``Plugin``.

The whole collect runs in the plugin (``collector.collect``), and so does the
recovery after a trap (``collector.recover``, in a fresh instance). The books
of the run and the re-checks of every claim the plugin makes live in a second
component, the keeper (world ``keeper``: the same code the Rust and Node hosts
run). This host only lends the plugin its imports, passes each through the
keeper before acting on it, and makes the calls the keeper asks for. Each
plugin instance sees only the storage root, as ``/storage``, under a memory
cap, with fuel and an epoch deadline re-armed at each import. Lines are
fsync-ed before their storages are deleted.

``collect`` handles the storages a root holds; ``ingest`` one runner's metrics
the manager pulled itself (a tar stream or the files one by one): the plugin
stages them as a storage of the quarantine directory and collects that one
through the same run.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import stat
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import wasmtime
import wasmtime.component as wc

from . import _lock
from ._types import (
    CollectError,
    FsError,
    GithubJobMetrics,
    GuestFailure,
    Limits,
    PostJobMetrics,
    PreJobMetrics,
    RunnerMetrics,
    StorageReport,
    Summary,
    job_answer,
)

__all__ = [
    "collect",
    "ingest",
    "Plugin",
    "Keeper",
    "Limits",
    "Summary",
    "StorageReport",
    "FsError",
    "RunnerMetrics",
    "PreJobMetrics",
    "PostJobMetrics",
    "GithubJobMetrics",
    "CollectError",
    "GuestFailure",
    "default_component_path",
    "DEFAULT_METRICS_LOG",
    "METRICS_LOG_ENV",
    "MAX_LOOSE_BYTES",  # noqa: F822 - the keeper's bounds, by the module's __getattr__
    "MAX_STREAM_BYTES",  # noqa: F822
    "PULLED_FILES",
    "POLICIES",
]
DEFAULT_METRICS_LOG, METRICS_LOG_ENV = "/var/log/github-runner-metrics.log", "METRICS_LOG_PATH"
COMPONENT_ENV, KEEPER_ENV, GUEST_ROOT, _VERSION = (
    "RUNNER_METRICS_COMPONENT",
    "RUNNER_METRICS_KEEPER_COMPONENT",
    "/storage",
    "0.4.0",
)
_COLLECTOR, _HOST, _BOOKS = (f"github-runner:metrics/{i}@{_VERSION}" for i in ("collector", "host", "books"))
_CONCLUSIONS = ("action-required", "cancelled", "failure", "neutral", "skipped", "success", "timed-out")
#: What a corrupt metrics file does to its runner (WIT ``policy``): ``strict`` quarantines the
#: whole runner; ``lenient`` counts the file as missing and issues the rest.
POLICIES = ("strict", "lenient")
#: The file names ``ingest`` takes in a mapping, and their fields of WIT ``loose-files``.
PULLED_FILES = {
    "runner-installed.timestamp": "installed",
    "pre-job-metrics.json": "pre_job",
    "post-job-metrics.json": "post_job",
}
#: A runner name (core/src/names.rs): 1 to 255 bytes of [A-Za-z0-9._-], not starting with ``.``
#: (so never one of the root's own entries, ``.quarantine``, ``.deleting``, ``.lock``, ``.images``).
_RUNNER_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")


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
        raise FileNotFoundError(
            f"runner-metrics {kind} component not found at {path}; write it with "
            f"`runner-metrics component --kind {kind} --output {path}` or set ${env}"
        )
    return wc.Component.from_file(engine, str(path))


class Plugin:
    """The plugin and keeper components compiled once, and the epoch ticker of the runs using them."""

    def __init__(
        self,
        component: str | os.PathLike | None = None,
        limits: Limits = Limits(),
        keeper: str | os.PathLike | None = None,
    ):
        config = wasmtime.Config()
        config.epoch_interruption, config.consume_fuel = True, limits.fuel is not None
        self.limits, self.engine = limits, wasmtime.Engine(config)
        self.component = _load(
            self.engine, Path(component) if component is not None else default_component_path(), "plugin", COMPONENT_ENV
        )
        self.keeper = _load(
            self.engine, Path(keeper) if keeper is not None else default_keeper_path(), "keeper", KEEPER_ENV
        )
        self._lock, self._runs, self._stop = threading.Lock(), 0, threading.Event()
        self._keeper_linker = wc.Linker(self.engine)
        self._keeper_linker.add_wasip2()
        self._bounds: Any = None

    @property
    def bounds(self) -> Any:
        """The keeper's WIT ``run-bounds``: the most bytes of one pulled file (the 1024-byte limit
        plus one) and of a pulled tar stream (64 KiB plus one) that cross into the plugin, the
        message bound and the trap budget. Asked once, of a keeper instance that sees nothing."""
        if self._bounds is None:
            store = wasmtime.Store(self.engine)
            store.set_wasi(wasmtime.WasiConfig())
            store.set_epoch_deadline(2**62)
            if self.limits.fuel is not None:
                store.set_fuel(2**62)
            instance = self._keeper_linker.instantiate(store, self.keeper)
            iface = instance.get_export_index(store, _BOOKS)
            index = instance.get_export_index(store, "bounds", iface) if iface else None
            if index is None:
                raise GuestFailure(f"the keeper exports no {_BOOKS}#bounds")
            self._bounds = instance.get_func(store, index)(store)
        return self._bounds

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
        self.store.set_epoch_deadline(
            2**62 if self.keeper else max(0, math.ceil(self.limits.timeout / self.limits.tick))
        )
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

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)  # non-blocking: a FIFO in its place is refused, never waited on
        fd = os.open(
            self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY, 0o644
        )
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

    def append(self, lines: list[str]) -> None:
        view = memoryview("".join(line + "\n" for line in lines).encode("ascii"))
        while view:
            view = view[os.write(self.fd, view) :]
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
        getattr(m, "installation-start-timestamp"),
        getattr(m, "installed-timestamp"),
        pre
        and PreJobMetrics(
            pre.timestamp,
            pre.workflow,
            getattr(pre, "workflow-run-id"),
            pre.repository,
            pre.event,
            getattr(pre, "workflow-run-attempt"),
        ),
        post and PostJobMetrics(post.timestamp, post.status, info and info.code),
        getattr(m, "runner-name"),
    )


def _job(answer: Any) -> wc.Record | None:
    """``job_metrics``'s answer (``job_answer``) as WIT ``github-job-metrics``."""
    if (job := job_answer(answer)) is None:
        return None
    queue, conclusion = job
    conclusion = conclusion and conclusion.replace("_", "-")
    return _record(queue_duration=queue, conclusion=conclusion if conclusion in _CONCLUSIONS else None)


class _Run:
    """One collect as this host sees it: the caller's sink and callbacks, the
    keeper's books, and the plugin instance the imports serve."""

    def __init__(
        self,
        plugin: Plugin,
        root: Path,
        options: wc.Record,
        pulled: wc.Record | None,
        jobs: Any,
        sink: Any,
        on_report: Any,
        summary: Summary,
    ):
        self.plugin, self.root, self.jobs, self.sink, self.on_report = plugin, root, jobs, sink, on_report
        self.pulled = pulled  # the pulled runner's files: the plugin's only, never the keeper's
        self.keeper, self.summary = Keeper(plugin, root, options), summary
        self.report_error: Exception | None = None
        self.sandbox: Sandbox | None = None
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

    def job_metrics(self, metrics: Any) -> wc.Record | None:
        self.checked(self.keeper.job_metrics(metrics))
        return _job(self.jobs(_metrics(metrics))) if self.jobs is not None else None

    def append(self, batch: list[Any]) -> str | None:
        lines = self.checked(self.keeper.append(batch))  # rendered by the keeper: the plugin hands over none
        try:
            self.sink.append(lines)
        except Exception as e:  # noqa: BLE001 - the guest reports the batch failed and stops
            self.keeper.appended(f"writing events to {getattr(self.sink, 'describe', lambda: 'the sink')()}: {e}")
            return str(e)
        self.keeper.appended(None)
        return None

    def report(self, r: Any) -> None:
        r = self.checked(self.keeper.report(r))
        errors = tuple(FsError(e.operation, e.path, e.code, e.cause) for e in r.errors)
        report = StorageReport(r.name, r.outcome, r.detail, r.events, r.reason, r.file, errors)
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
                raise CollectError(call.payload.message, self.summary)
            args = (call.payload, self.pulled) if call.tag == "collect" else (call.payload,)
            try:
                self.sandbox = Sandbox(self.plugin, self.root, self.linker)
                stopped = self.sandbox.call(call.tag.replace("recover", "recovery"), _COLLECTOR, call.tag, *args)
                last = wc.Variant("returned", stopped)
            except GuestFailure as e:
                last = wc.Variant("trapped", str(e))
            finally:
                self.sandbox = None  # the imports serve this call only


_plugins: dict[tuple[str, Limits], Plugin] = {}
_plugins_lock = threading.Lock()


def _shared_plugin(component: str | os.PathLike | None, limits: Limits) -> Plugin:
    """One Plugin per component path and limits, compiled on first use."""
    key = (str(component if component is not None else default_component_path()), limits)
    with _plugins_lock:
        plugin = _plugins[key] = _plugins.get(key) or Plugin(key[0], limits)
    return plugin


def _policy(policy: Any) -> str:
    if not isinstance(policy, str) or policy not in POLICIES:
        raise ValueError(f"policy {policy!r}: not one of {', '.join(map(repr, POLICIES))}")
    return policy


def _options(
    flavor: str,
    *,
    keep: bool = False,
    batch_size: int = 64,
    policy: str = "strict",
    exclude: Any = (),
    include: Any = None,
    min_age: float | None = None,
    pulled: str | None = None,
) -> wc.Record:
    """The WIT ``collect-options`` of a run."""
    selection = _record(
        exclude=[str(n) for n in exclude],
        include=None if include is None else [str(n) for n in include],
        min_age_seconds=None if min_age is None else float(min_age),
    )
    return _record(
        selection=selection,
        emit=str(flavor),
        dry_run=keep,
        batch_size=min(max(1, batch_size), 2**32 - 1),
        purge_deleting=not keep,
        done=[],
        done_unnamed=0,
        policy=_policy(policy),
        nonblocking_opens=False,  # wasmtime-wasi's opens may block on a FIFO
        pulled=pulled,
    )


def _execute(
    root_arg: str | os.PathLike,
    options: wc.Record,
    *,
    pulled: Any = None,
    lock: bool,
    plugin: Plugin | None,
    component: str | os.PathLike | None,
    limits: Limits,
    job_metrics: Any,
    metrics_log: Any,
    on_report: Any,
    wait: float,
) -> Summary:
    """One run in ``root_arg`` (collect's and ingest's): the metrics log opened, the root's lock
    held unless ``lock`` is false, the plugin calls the keeper asks for made (``_Run``).
    ``pulled(plugin)``: the pulled runner's files (WIT ``pulled-metrics``), cut to the plugin's
    bounds."""
    if plugin is None:
        plugin = _shared_plugin(component, limits)
    files = pulled(plugin) if pulled is not None else None
    try:
        root = Path(root_arg).resolve(strict=True)
        if not root.is_dir():
            raise NotADirectoryError(0, "not a directory")
    except OSError as e:
        raise CollectError(f"storage root {root_arg}: {e.strerror or e}", Summary()) from None
    owned = metrics_log is None or isinstance(metrics_log, (str, bytes, os.PathLike))
    try:
        sink = (
            MetricsLog(metrics_log or os.environ.get(METRICS_LOG_ENV) or DEFAULT_METRICS_LOG) if owned else metrics_log
        )
    except OSError as e:
        raise CollectError(f"metrics log {e.filename or metrics_log}: {e.strerror or e}", Summary()) from None
    try:
        held = _lock.acquire(root, wait) if lock else None
    except (OSError, _lock.Busy) as e:
        if owned:
            sink.close()
        raise CollectError(
            f"storage root {root} is busy: {e}"
            if isinstance(e, _lock.Busy)
            else f"lock file {e.filename}: {e.strerror or e}",
            Summary(),
        ) from None
    summary = Summary()
    plugin._ticker(+1)
    try:
        run = _Run(plugin, root, options, files, job_metrics, sink, on_report, summary)
        run.go()
    except (GuestFailure, wasmtime.WasmtimeError, wasmtime.Trap) as e:  # the keeper failed: nothing more is done
        raise CollectError(f"the keeper failed: {e}", summary) from e
    finally:
        plugin._ticker(-1)
        if held is not None:
            _lock.release(root, held)
        if owned:
            sink.close()
    if run.report_error is not None:
        raise run.report_error
    return summary


def collect(
    storage_root: str | os.PathLike,
    flavor: str,
    exclude: Any = (),
    include: Any = None,
    min_age: float | None = None,
    job_metrics: Callable[[RunnerMetrics], Any] | None = None,
    metrics_log: Any = None,
    *,
    keep: bool = False,
    plugin: Plugin | None = None,
    component: str | os.PathLike | None = None,
    limits: Limits = Limits(),
    on_report: Callable[[StorageReport], None] | None = None,
    batch_size: int = 64,
    wait: float = 0.0,
    policy: str = "strict",
) -> Summary:
    """Extracts every selected storage under ``storage_root``, appends the events of the
    ``flavor`` runners to ``metrics_log`` durably, then deletes or quarantines the storages.

    ``exclude``: names never touched; ``include``: when given, only these; ``min_age``:
    storages modified less than this many seconds ago are skipped. ``job_metrics(metrics)``:
    GitHub's job metrics for a runner, or None. ``metrics_log``: a path (default
    ``$METRICS_LOG_PATH``, else ``/var/log/github-runner-metrics.log``) or an object whose
    ``append(lines)`` returns once they are durable. ``keep``: dry run, nothing on disk
    changes. ``policy``: ``"strict"`` (default: a corrupt metrics file quarantines its whole
    runner) or ``"lenient"`` (the file counts as missing, the rest is issued, the report says
    what was dropped); anything else is a ValueError. Unless ``keep``, the root's lock
    (``<root>/.lock``, shared with the Rust host) is held for the run, waiting at most ``wait``
    seconds for another run. Returns a Summary with one StorageReport per root entry (also
    streamed to ``on_report``); raises CollectError when the run could not start or had to
    stop. An exception from ``job_metrics`` ends the run as is; the first from ``on_report`` is
    raised once the run is over."""
    options = _options(
        flavor, keep=keep, batch_size=batch_size, policy=policy, exclude=exclude, include=include, min_age=min_age
    )
    return _execute(
        storage_root,
        options,
        lock=not keep,
        plugin=plugin,
        component=component,
        limits=limits,
        job_metrics=job_metrics,
        metrics_log=metrics_log,
        on_report=on_report,
        wait=wait,
    )


def _bounded(what: str, value: Any, limit: int) -> bytes:
    """``value``'s first ``limit`` bytes: only that much crosses (a longer file or stream is
    oversized either way, and the plugin sees it is)."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what}: expected bytes, got {type(value).__name__}")
    return bytes(memoryview(value).cast("B")[:limit])


def _check_files(files: Any) -> None:
    """``files`` is what ``ingest`` takes, or a TypeError or ValueError says why not."""
    if isinstance(files, (bytes, bytearray, memoryview)):
        return
    if not isinstance(files, Mapping):
        raise TypeError(
            f"files: expected the tar stream (bytes) or a mapping of {', '.join(PULLED_FILES)} to "
            f"bytes or None, got {type(files).__name__}"
        )
    unknown = [key for key in files if key not in PULLED_FILES]
    if unknown:
        raise ValueError(f"files: {unknown[0]!r} is not a pulled metrics file (one of {', '.join(PULLED_FILES)})")
    for name in PULLED_FILES:
        if files.get(name) is not None:
            _bounded(name, files[name], 0)


def _pulled_files(files: Any, bounds: Any) -> bytes | wc.Record:
    """WIT ``pulled-files``: ``tar(list<u8>)`` for bytes, ``loose(loose-files)`` for a mapping
    (an untagged variant in wasmtime-py: its cases' Python types differ), cut to the keeper's
    ``bounds`` (a longer file or stream is found oversized)."""
    if isinstance(files, (bytes, bytearray, memoryview)):
        return _bounded("the tar stream", files, getattr(bounds, "pulled-stream-bytes"))
    limit = getattr(bounds, "pulled-file-bytes")
    return _record(
        **{
            field: None if files.get(name) is None else _bounded(name, files[name], limit)
            for name, field in PULLED_FILES.items()
        }
    )


def ingest(
    runner_name: str,
    files: Any,
    quarantine_dir: str | os.PathLike,
    flavor: str,
    *,
    installation_start: float | None = None,
    policy: str = "strict",
    job_metrics: Callable[[RunnerMetrics], Any] | None = None,
    metrics_log: Any = None,
    plugin: Plugin | None = None,
    component: str | os.PathLike | None = None,
    limits: Limits = Limits(),
    on_report: Callable[[StorageReport], None] | None = None,
    wait: float = 0.0,
) -> Summary:
    """Collects one runner's metrics that the manager pulled itself (over SSH, say) instead of
    sharing a storage directory, like ``runner-metrics ingest``.

    ``files``: the tar stream of the runner's metrics directory (``bytes``, e.g. the output of
    ``tar -C /home/ubuntu/metrics-exchange -cf - .``; parsed in the sandbox by a bounded reader),
    or a mapping of ``runner-installed.timestamp``, ``pre-job-metrics.json`` and
    ``post-job-metrics.json`` to bytes, or None for a missing file (another key is a ValueError).
    At most ``MAX_STREAM_BYTES`` of a stream and ``MAX_LOOSE_BYTES`` of each file are passed on
    (the keeper's bounds): a longer one is found oversized. ``installation_start``: the manager's installation start
    (UNIX seconds, e.g. the VM's creation time), for the ``runner_installed`` event.

    ``quarantine_dir``: a directory of its own for pulled runners, created if missing (one level)
    and locked like a storage root (``<dir>/.lock``) for the run. The plugin stages the runner as
    the storage ``<dir>/<runner_name>`` and collects just that one, as ``collect`` would: its
    events appended to ``metrics_log``, then the staged copy deleted; a corrupt runner is kept
    under ``<dir>/.quarantine/`` with a reason file (a tar stream the plugin refuses is kept
    whole as ``pulled.tar``, under both policies). Never a dry run. ``policy``, ``job_metrics``,
    ``metrics_log``, ``plugin``, ``component``, ``limits``, ``on_report`` and ``wait``: as for
    ``collect``. Returns the Summary, with the runner's one report; raises CollectError when the
    run could not start or had to stop (a runner of that name is already in the directory, the
    log cannot be written), ValueError for an invalid argument (runner name, installation start,
    policy, a key of ``files``) before anything on disk is touched."""
    if not isinstance(runner_name, str) or not _RUNNER_NAME.fullmatch(runner_name):
        raise ValueError(
            f"runner name {runner_name!r}: not a valid runner name (1 to 255 bytes of "
            "[A-Za-z0-9._-], not starting with '.')"
        )
    if installation_start is not None:
        if (
            isinstance(installation_start, bool)
            or not isinstance(installation_start, numbers.Real)
            or not math.isfinite(float(installation_start))
            or float(installation_start) < 0
        ):
            raise ValueError(f"installation start {installation_start!r}: not a UNIX time >= 0")
        installation_start = float(installation_start)
    _check_files(files)

    def pulled(plugin: Plugin) -> wc.Record:
        return _record(installation_start=installation_start, files=_pulled_files(files, plugin.bounds))

    options = _options(flavor, policy=policy, pulled=runner_name)
    try:
        os.mkdir(quarantine_dir)  # one level: its parent must exist
    except FileExistsError:
        pass  # (a file of that name is refused as the root below)
    except OSError as e:
        raise CollectError(f"quarantine dir {quarantine_dir}: creating it: {e.strerror or e}", Summary()) from None
    return _execute(
        quarantine_dir,
        options,
        pulled=pulled,
        lock=True,
        plugin=plugin,
        component=component,
        limits=limits,
        job_metrics=job_metrics,
        metrics_log=metrics_log,
        on_report=on_report,
        wait=wait,
    )


def __getattr__(name: str) -> int:
    """``MAX_LOOSE_BYTES`` and ``MAX_STREAM_BYTES``: the keeper's bounds (of the default
    components), asked when first read rather than declared here a second time."""
    if name in ("MAX_LOOSE_BYTES", "MAX_STREAM_BYTES"):
        bounds = _shared_plugin(None, Limits()).bounds
        return getattr(bounds, "pulled-file-bytes" if name == "MAX_LOOSE_BYTES" else "pulled-stream-bytes")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
