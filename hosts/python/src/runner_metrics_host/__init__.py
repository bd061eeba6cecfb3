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

import functools
from collections.abc import Callable
from typing import Any

from . import _lock, wasm_host
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
)
from .wasm_host import (
    DEFAULT_METRICS_LOG,
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
    "MAX_LOOSE_BYTES",
    "MAX_STREAM_BYTES",
    "PULLED_FILES",
    "POLICIES",
]

_ = _lock  # the root's lock, shared with the Rust host (``runner_metrics_host._lock``)


def _dispatched(wasm: Callable[..., Summary], name: str) -> Callable[..., Summary]:
    """``wasm``'s signature and documentation, run by the binding of the Rust host (``native``'s
    function ``name``, which takes the same arguments, and ``dry_run`` for ``keep``) unless
    handed a ``Plugin`` or where the extension is not built."""

    @functools.wraps(wasm)
    def run(*args: Any, plugin: Plugin | None = None, dry_run: bool = False, **kwargs: Any) -> Summary:
        if plugin is not None or _native_host is None:
            if dry_run:
                kwargs["keep"] = True
            return wasm(*args, plugin=plugin, **kwargs)
        if dry_run:
            kwargs["dry_run"] = True
        return getattr(_native_host, name)(*args, **kwargs)

    return run


#: Extracts every selected storage of a root, appends the events durably, then deletes or
#: quarantines the storages (``wasm_host.collect`` documents the arguments).
collect = _dispatched(wasm_host.collect, "collect")
#: Collects one runner's metrics the manager pulled itself (``wasm_host.ingest`` documents them).
ingest = _dispatched(wasm_host.ingest, "ingest")


def __getattr__(name: str) -> Any:
    """``MAX_LOOSE_BYTES`` and ``MAX_STREAM_BYTES``: the keeper's bounds (``wasm_host``)."""
    if name in ("MAX_LOOSE_BYTES", "MAX_STREAM_BYTES"):
        return getattr(wasm_host, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
