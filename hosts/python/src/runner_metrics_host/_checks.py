"""Re-checks of what the guest hands the host (as host/src/check.rs): a claim
that does not hold is a Lie, which stops the guest and keeps the storage."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Dict, Optional

MAX_MESSAGE, MAX_LINE, MAX_FIELD = 4096, 16 * 1024, 1024
DELETING, UNNAMED = ".deleting", "<non-UTF-8 name>"
REASONS = {"oversized", "not-regular-file", "invalid-utf8", "invalid-json", "invalid-value", "invalid-timestamp",
           "sandbox-trap", "undeletable",  # quarantine reasons, then skip reasons
           "excluded", "not-included", "too-young", "not-a-directory", "invalid-name", "vanished"}
KINDS = {"runner-installed": "runner_installed", "runner-start": "runner_start", "runner-stop": "runner_stop"}


class Lie(Exception):
    """A claim of the guest that does not hold, about ``storage`` when one is concerned."""

    def __init__(self, what: str, storage: Optional[str] = None):
        super().__init__(what)
        self.storage = storage


def bounded(message: str) -> str:
    cut = len(message) - MAX_MESSAGE
    return message if cut <= 0 else f"{message[:MAX_MESSAGE]}... ({cut} characters cut)"


def storage_name(name: str) -> None:
    """A runner name as spec section 2 defines it (guest/src/names.rs)."""
    if not (0 < len(name) <= 255 and name[0] != "." and all(c.isascii() and (c.isalnum() or c in "._-") for c in name)):
        raise Lie(f"named {bounded(name)!r} as a storage, which is not a valid runner name")


def _directory(root: Path, name: str, what: str) -> None:
    try:
        if stat.S_ISDIR(os.lstat(root / name).st_mode):
            return
    except OSError:
        pass
    raise Lie(f"{what} {name!r}, which is not a directory of the storage root")


def _time(what: str, value: Any) -> None:
    if not isinstance(value, float) or not math.isfinite(value) or value < 0:
        raise Lie(f"{what} is {value!r}, not a finite number >= 0")


def metrics(root: Path, name: str, m: Any) -> None:
    """A RunnerMetrics the guest extracted from the storage ``name``."""
    if m.runner_name != name:
        raise Lie(f"guest answered for {bounded(m.runner_name)!r} when asked about {name!r}", name)
    try:
        _directory(root, name, "guest extracted")
        _time("installed timestamp", m.installed_timestamp)
        for what, value in (("installation start", m.installation_start_timestamp),
                            ("pre-job", m.pre_job and m.pre_job.timestamp), ("post-job", m.post_job and m.post_job.timestamp)):
            if value is not None:
                _time(f"{what} timestamp", value)
        pre = m.pre_job
        if pre is not None and any(len((getattr(pre, k) or "").encode()) > MAX_FIELD
                                   for k in ("workflow", "workflow_run_id", "event", "repository")):
            raise Lie("a pre-job field is longer than a metrics file can hold")
        if pre is not None and pre.repository is not None and "/" not in pre.repository[1:-1]:  # `.+/.+`
            raise Lie(f"repository {bounded(pre.repository)!r} is not owner/repo")
    except Lie as lie:
        raise Lie(str(lie), name) from None


def expected_fields(event: Any) -> Dict[str, Any]:
    """What a line rendered from ``event`` must hold, key by key (spec 5)."""
    fields: Dict[str, Any] = {"event": KINDS[event.tag]}
    for key, value in vars(event.payload).items():
        if value is not None:
            value = vars(value) if key == "status-info" else value.replace("-", "_") if key == "job-conclusion" else value
            fields[key.replace("-", "_")] = value
    return fields


def line(line: Any, event: Any, flavor: str) -> None:
    """The line holds exactly the keys and values of ``event``, of ``flavor``."""
    kind = KINDS[event.tag]
    if event.payload.flavor != flavor:
        raise Lie(f"guest issued a {kind} event of flavor {bounded(event.payload.flavor)!r}, not {flavor!r}")
    if not isinstance(line, str) or len(line) > MAX_LINE:
        raise Lie("guest rendered an over-long line")
    if not line.isascii() or any(ord(c) < 0x20 or c == "\x7f" for c in line):
        raise Lie("guest rendered a line with control or non-ASCII characters")
    try:
        value = json.loads(line)
    except (ValueError, RecursionError) as e:  # nesting too deep for the parser
        raise Lie(f"guest rendered a line that is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise Lie(f"guest rendered a {kind} line that is not a JSON object")
    expected = expected_fields(event)
    for key, want in expected.items():
        if key not in value:
            raise Lie(f"guest rendered a {kind} line without {key!r}")
        if type(value[key]) is bool or value[key] != want:
            raise Lie(f"guest rendered a {kind} line whose {key!r} differs from the event")
    extra = next((k for k in value if k not in expected), None)
    if extra is not None:
        raise Lie(f"guest rendered a {kind} line with a key the event does not have: {bounded(extra)!r}")


def storage_lines(root: Path, storage: Any, flavor: str) -> None:
    """One extracted storage's lines: a storage of the root, each line exactly its event."""
    name = getattr(storage, "runner-name")
    try:
        storage_name(name)
        _directory(root, name, "appended lines for")
        events = storage.source
        if not isinstance(events, list):
            raise Lie("rendered metrics when events were asked for")
        if len(events) > 3 or len(storage.lines) != len(events):
            raise Lie(f"rendered {len(storage.lines)} lines for {len(events)} events; at most 3 exist")
        for text, event in zip(storage.lines, events):
            for key in ("timestamp", "duration", "idle", "queue-duration", "job-duration"):
                if getattr(event.payload, key, None) is not None:
                    _time(f"{KINDS[event.tag]} {key}", getattr(event.payload, key))
            line(text, event, flavor)
    except Lie as lie:
        raise Lie(str(lie), name) from None


def gone(root: Path, name: str, kind: str, detail: str) -> None:
    """A storage reported deleted or quarantined has left the root; a quarantined
    one went to a plain entry of its own under ``.quarantine/``."""
    if kind == "quarantined":
        if "moved to .quarantine/" not in detail:
            raise Lie(f"reported {name!r} as quarantined without saying where to", name)
        location = detail.rpartition("moved to .quarantine/")[2]
        if "/" in location or len(location.encode()) > 255 or location[:1] == "." or not location.startswith(name[:200]):
            raise Lie(f"reported quarantine location {bounded(location)!r} for {name!r}", name)
    if os.path.lexists(root / name):
        raise Lie(f"reported {name!r} as {kind}, but it is still in the storage root", name)
