"""Collect GitHub self-hosted runner metrics from Python.

``collect`` handles the storages a root holds; ``ingest`` one runner's metrics the manager
pulled itself (a tar stream or the files one by one). Both run the runner-metrics Rust host
library, bound with PyO3 (the extension ``_native``, ``runner_metrics_host.native``): what
``runner-metrics collect`` runs, with the confined filesystem, the handle cap, FIFO
protection, the root's lock and bounded storages, the untrusted files parsed in the sandboxed
plugin, with the GIL released.

Handed a ``Plugin`` (``plugin=``), or where the extension is not built (a source checkout put
on the path), they run the pure WebAssembly host instead (``runner_metrics_host.wasm_host``:
the same components under the ``wasmtime`` package from PyPI; slower, and weaker, see
docs/hosts.md). ``NATIVE`` says which one a call without ``plugin`` gets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from . import _lock, wasm_host
from ._types import (
    CollectError,
    GithubJobMetrics,
    GuestFailure,
    Limits,
    PostJobMetrics,
    PreJobMetrics,
    RunnerMetrics,
    StorageReport,
    Summary,
)
from .wasm_host import (
    DEFAULT_METRICS_LOG,
    MAX_LOOSE_BYTES,
    MAX_STREAM_BYTES,
    METRICS_LOG_ENV,
    POLICIES,
    PULLED_FILES,
    Keeper,
    Plugin,
    default_component_path,
)

try:
    from . import native as _native_host
except ImportError:  # the extension is not built: a source checkout on the path
    _native_host = None

#: Whether ``collect`` and ``ingest`` run the Rust host library (else the pure WebAssembly host).
NATIVE = _native_host is not None

__all__ = [
    "collect",
    "ingest",
    "NATIVE",
    "Plugin",
    "Keeper",
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
    "MAX_LOOSE_BYTES",
    "MAX_STREAM_BYTES",
    "PULLED_FILES",
    "POLICIES",
]

_ = _lock  # the root's lock, shared with the Rust host (``runner_metrics_host._lock``)


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
    dry_run: bool = False,
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
    GitHub's job metrics for a runner (a GithubJobMetrics, a ``(queue_duration, conclusion)``
    tuple or a dict), or None. ``metrics_log``: a path (default ``$METRICS_LOG_PATH``, else
    ``/var/log/github-runner-metrics.log``) or an object whose ``append(lines)`` returns once
    they are durable. ``dry_run`` (or its old name ``keep``): nothing on disk changes.
    ``policy``: ``"strict"`` (default: a corrupt metrics file quarantines its whole runner) or
    ``"lenient"`` (the file counts as missing, the rest is issued, the report says what was
    dropped). Unless a dry run, the root's lock (``<root>/.lock``) is held for the run, waiting
    at most ``wait`` seconds for another run. ``component``: a plugin component to load instead
    of the one built in; ``limits``: memory per instance and the deadline per storage.
    Returns a Summary with one StorageReport per root entry (also handed to ``on_report``);
    raises CollectError when the run could not start or had to stop, with the reports so far."""
    if plugin is not None or _native_host is None:
        return wasm_host.collect(
            storage_root,
            flavor,
            exclude,
            include,
            min_age,
            job_metrics,
            metrics_log,
            keep=keep or dry_run,
            plugin=plugin,
            component=component,
            limits=limits,
            on_report=on_report,
            batch_size=batch_size,
            wait=wait,
            policy=policy,
        )
    return _native_host.collect(
        storage_root,
        flavor,
        exclude,
        include,
        min_age,
        job_metrics,
        metrics_log,
        dry_run=keep or dry_run,
        component=component,
        limits=limits,
        on_report=on_report,
        batch_size=batch_size,
        wait=wait,
        policy=policy,
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
    ``tar -C /home/ubuntu/metrics-exchange -cf - .``; parsed in the sandbox by a bounded
    reader), or a mapping of ``runner-installed.timestamp``, ``pre-job-metrics.json`` and
    ``post-job-metrics.json`` to bytes, or None for a missing file (another key is a
    ValueError). ``installation_start``: the manager's installation start (UNIX seconds, e.g.
    the VM's creation time), for the ``runner_installed`` event. ``quarantine_dir``: a
    directory of its own for pulled runners, created if missing (one level) and locked like a
    storage root for the run; the runner is staged there as a storage and collected as
    ``collect`` would (a corrupt one kept under ``.quarantine/``). The other arguments: as for
    ``collect``. Returns the Summary with the runner's one report; raises CollectError when the
    run could not start or had to stop, ValueError for an invalid argument."""
    if plugin is not None or _native_host is None:
        return wasm_host.ingest(
            runner_name,
            files,
            quarantine_dir,
            flavor,
            installation_start=installation_start,
            policy=policy,
            job_metrics=job_metrics,
            metrics_log=metrics_log,
            plugin=plugin,
            component=component,
            limits=limits,
            on_report=on_report,
            wait=wait,
        )
    return _native_host.ingest(
        runner_name,
        files,
        quarantine_dir,
        flavor,
        installation_start=installation_start,
        policy=policy,
        job_metrics=job_metrics,
        metrics_log=metrics_log,
        component=component,
        limits=limits,
        on_report=on_report,
        wait=wait,
    )
