"""``collect`` and ``ingest`` over the Rust host library (the extension module ``_native``,
built by maturin from ``hosts/python/native``): the very code ``runner-metrics collect`` runs,
with the confined filesystem, the root's lock, the caps, the keeper and bounded storages, and
the GIL released while it runs. Python is called back only for what the caller lends: job
metrics (per storage), a sink of its own (per batch of lines) and ``on_report`` (in batches).

The arguments and results are those of the package's ``collect`` and ``ingest`` (the pure
WebAssembly host), so a caller switches by importing from here; ``dry_run`` is ``keep``'s new
name (both are accepted). What the pure host lends and this one does not: a ``Plugin`` object
and fuel (the Rust host has a wall-clock deadline per storage and a memory cap; see docs/hosts.md).
An exception from ``job_metrics`` stops the asking, not the run: the runners left are logged
without job metrics (nothing is lost or logged twice), then the exception is raised; one from a
sink stops the run before anything of that batch is deleted; one from ``on_report`` is raised
once the run is over.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from . import _native
from ._types import (
    CollectError,
    FsError,
    Limits,
    PostJobMetrics,
    PreJobMetrics,
    RunnerMetrics,
    StorageReport,
    Summary,
    job_answer,
)

__all__ = ["collect", "ingest", "DEFAULT_METRICS_LOG", "METRICS_LOG_ENV", "PULLED_FILES"]

DEFAULT_METRICS_LOG, METRICS_LOG_ENV = "/var/log/github-runner-metrics.log", "METRICS_LOG_PATH"
#: The file names ``ingest`` takes in a mapping, in the order the extension takes them.
PULLED_FILES = ("runner-installed.timestamp", "pre-job-metrics.json", "post-job-metrics.json")


def _metrics(t: tuple) -> RunnerMetrics:
    start, installed, pre, post, name = t
    return RunnerMetrics(start, installed, pre and PreJobMetrics(*pre), post and PostJobMetrics(*post), name)


def _engine(component: Any, cache_dir: Any, limits: Limits) -> dict[str, Any]:
    """The binding's arguments that choose the plugin and bound its instances."""
    return {
        "component": None if component is None else os.fspath(component),
        "cache_dir": None if cache_dir is None else os.fspath(cache_dir),
        "memory_bytes": limits.memory_bytes,
        "timeout": limits.timeout,
    }


def _lent(job_metrics: Any, metrics_log: Any, on_report: Any) -> dict[str, Any]:
    """The callbacks and the sink, as the extension takes them."""
    owned = metrics_log is None or isinstance(metrics_log, (str, bytes, os.PathLike))
    log = os.fsdecode(metrics_log or os.environ.get(METRICS_LOG_ENV) or DEFAULT_METRICS_LOG) if owned else None

    def report(t: tuple) -> None:
        on_report(_report(t))

    return {
        "metrics_log": log,
        "sink": None if owned else metrics_log,
        "job_metrics": None if job_metrics is None else (lambda t: job_answer(job_metrics(_metrics(t)))),
        "on_report": None if on_report is None else report,
    }


def _report(t: tuple) -> StorageReport:
    """A report as the extension hands it over: its fields, then its errors as tuples."""
    *fields, errors = t
    return StorageReport(*fields, tuple(FsError(*e) for e in errors))


def _summary(result: tuple[list[tuple], str | None]) -> Summary:
    reports, error = result
    summary = Summary()
    for t in reports:
        summary.add(_report(t))
    if error is not None:
        raise CollectError(error, summary)
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
    dry_run: bool = False,
    keep: bool = False,
    component: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    limits: Limits = Limits(),
    on_report: Callable[[StorageReport], None] | None = None,
    batch_size: int = 64,
    wait: float = 0.0,
    policy: str = "strict",
) -> Summary:
    """As the package's ``collect``; see the module's documentation for what differs."""
    result = _native.collect(
        os.fspath(storage_root),
        flavor,
        exclude=list(exclude),
        include=None if include is None else list(include),
        min_age=min_age,
        dry_run=dry_run or keep,
        batch_size=batch_size,
        wait=wait,
        policy=policy,
        **_engine(component, cache_dir, limits),
        **_lent(job_metrics, metrics_log, on_report),
    )
    return _summary(result)


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
    component: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    limits: Limits = Limits(),
    on_report: Callable[[StorageReport], None] | None = None,
    wait: float = 0.0,
    remember: float = 0.0,
) -> Summary:
    """As the package's ``ingest``; ``remember``: seconds during which the same runner
    ingested again logs nothing (the ledger of ``runner-metrics ingest --remember``)."""
    if isinstance(files, Mapping):
        unknown = [key for key in files if key not in PULLED_FILES]
        if unknown:
            raise ValueError(f"files: {unknown[0]!r} is not a pulled metrics file (one of {', '.join(PULLED_FILES)})")
        files = tuple(None if files.get(name) is None else bytes(files[name]) for name in PULLED_FILES)
    elif isinstance(files, (bytearray, memoryview)):
        files = bytes(files)
    try:
        os.mkdir(quarantine_dir)  # one level: its parent must exist
    except FileExistsError:
        pass
    except OSError as e:
        raise CollectError(f"quarantine dir {quarantine_dir}: creating it: {e.strerror or e}", Summary()) from None
    result = _native.ingest(
        runner_name,
        files,
        os.fspath(quarantine_dir),
        flavor,
        installation_start=installation_start,
        policy=policy,
        wait=wait,
        remember=remember,
        **_engine(component, cache_dir, limits),
        **_lent(job_metrics, metrics_log, on_report),
    )
    return _summary(result)
