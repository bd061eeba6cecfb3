"""The shared conformance fixtures, for Python-based test suites (stdlib only).

`cases.json` (next to this file) describes each case declaratively; this
module builds a case's storage root on disk, snapshots it, and checks what a
host did against the case's expectations. The Python host's pytest suite and
the wasmtime CLI suite use it; the Node suite has its own port
(`hosts/node/test-support/conformance.mjs`) of the same rules.

Command line, to look at a case by hand:

    python3 tests/conformance/conformance.py list
    python3 tests/conformance/conformance.py build CASE DIR   # DIR/runner-fs, DIR/outside
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "cases.json"

OUTCOMES = ("extracted", "no-data", "quarantined", "skipped", "failed")


def load_cases() -> list[dict[str, Any]]:
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    if manifest.get("format") != 1:
        raise ValueError(f"{MANIFEST}: unsupported format {manifest.get('format')!r}")
    return manifest["cases"]


def case_by_name(name: str) -> dict[str, Any]:
    for case in load_cases():
        if case["name"] == name:
            return case
    raise KeyError(name)


# ---------------------------------------------------------------------------
# Building a case on disk
# ---------------------------------------------------------------------------


def _file_bytes(node: dict[str, Any]) -> bytes:
    if "text" in node:
        data = node["text"].encode("utf-8")
    elif "hex" in node:
        data = bytes.fromhex(node["hex"])
    elif "repeat" in node:
        data = node["repeat"].encode("utf-8") * node["count"]
    else:
        raise ValueError(f"not a file node: {node!r}")
    pad_to = node.get("pad_to")
    if pad_to is not None:
        if len(data) > pad_to:
            raise ValueError(f"content longer than pad_to {pad_to}")
        data += b" " * (pad_to - len(data))
    return data


def build_node(path: Path, node: dict[str, Any], now: float) -> None:
    """Creates one entry (and, for a directory, its children)."""
    if "dir" in node:
        path.mkdir()
        for name, child in node["dir"].items():
            build_node(path / name, child, now)
    elif "symlink" in node:
        os.symlink(node["symlink"], path)
    elif "fifo" in node:
        os.mkfifo(path)
    else:
        path.write_bytes(_file_bytes(node))
    # Last, since creating children updates a directory's mtime.
    age = node.get("age")
    if age is not None:
        os.utime(path, (now - age, now - age), follow_symlinks=False)


def build_case(case: dict[str, Any], base: Path) -> Path:
    """Builds `base/runner-fs` (the storage root) and `base/outside` (symlink
    targets a runner must never reach). Returns the root."""
    now = time.time()
    root, outside = base / "runner-fs", base / "outside"
    build_node(outside, {"dir": case.get("outside", {})}, now)
    build_node(root, {"dir": case["root"]}, now)
    return root


def snapshot(path: Path) -> dict[str, Any]:
    """Every entry under `path`: type, content or target, size. Never follows
    symlinks and never opens FIFOs."""
    found: dict[str, Any] = {}

    def walk(p: Path, rel: str) -> None:
        st = os.lstat(p)
        if stat.S_ISDIR(st.st_mode):
            found[rel] = ("dir",)
            for child in sorted(os.listdir(p)):
                walk(p / child, f"{rel}/{child}" if rel else child)
        elif stat.S_ISLNK(st.st_mode):
            found[rel] = ("symlink", os.readlink(p))
        elif stat.S_ISREG(st.st_mode):
            found[rel] = ("file", p.read_bytes())
        else:
            found[rel] = ("other", stat.S_IFMT(st.st_mode))

    walk(path, "")
    return found


# ---------------------------------------------------------------------------
# Checking what a host did
# ---------------------------------------------------------------------------


@dataclass
class Report:
    """What a host said about one root entry."""

    name: str
    outcome: str
    #: quarantine reason or skip reason (kebab-case), when the host knows it
    reason: str | None = None
    #: the file to blame, for a quarantine
    file: str | None = None
    #: lines written for this storage, when the host knows it
    events: int | None = None
    detail: str = ""


@dataclass
class Run:
    reports: list[Report]
    #: everything the host wrote to its metrics log, as bytes
    log: bytes
    problems: list[str] = field(default_factory=list)


def expected_log(case: dict[str, Any], reports: list[Report]) -> bytes:
    """The log a host must have written: each extracted storage's lines, in
    the order the host reported the storages (directory order is the
    filesystem's, so it is taken from the host)."""
    out = []
    for report in reports:
        expect = case["expect"].get(report.name)
        if expect and expect["outcome"] == "extracted" and report.outcome == "extracted":
            out.extend(line + "\n" for line in expect["lines"])
    return "".join(out).encode("ascii")


def check_run(case: dict[str, Any], base: Path, before: dict[str, Any], run: Run) -> list[str]:
    """Everything wrong with one run of `case` built under `base`; empty when
    the host conforms. `before` is `snapshot(base)` taken right after building."""
    problems: list[str] = []
    root = base / "runner-fs"
    seen: dict[str, Report] = {}
    for report in run.reports:
        if report.name in seen:
            problems.append(f"{report.name}: reported twice")
        seen[report.name] = report
    for name, expect in case["expect"].items():
        report = seen.get(name)
        want = expect["outcome"]
        if report is None:
            problems.append(f"{name}: not reported (expected {want})")
            continue
        if report.outcome != want:
            problems.append(f"{name}: outcome {report.outcome} ({report.detail}), expected {want}")
            continue
        if want in ("quarantined", "skipped") and report.reason is not None and report.reason != expect["reason"]:
            problems.append(f"{name}: reason {report.reason}, expected {expect['reason']}")
        if want == "quarantined" and report.file is not None and report.file != expect["file"]:
            problems.append(f"{name}: file {report.file}, expected {expect['file']}")
        if want == "extracted" and report.events is not None and report.events != len(expect["lines"]):
            problems.append(f"{name}: {report.events} events, expected {len(expect['lines'])}")
        problems.extend(_check_disk(name, expect, root, before))
    for name in seen:
        if name not in case["expect"]:
            problems.append(f"{name}: reported but not in the case")
    for rel in case.get("gone_after", []):
        if os.path.lexists(root / rel):
            problems.append(f"{rel}: still there after the run")
    want_log = expected_log(case, run.reports)
    if run.log != want_log:
        problems.append(
            "log differs:\n--- expected\n"
            + want_log.decode("ascii", "replace")
            + "--- got\n"
            + run.log.decode("utf-8", "replace")
        )
    # Nothing outside the root may change.
    outside_before = {k: v for k, v in before.items() if k == "outside" or k.startswith("outside/")}
    outside_after = {k: v for k, v in snapshot(base).items() if k == "outside" or k.startswith("outside/")}
    if outside_before != outside_after:
        problems.append("the directory outside the root changed")
    return problems


def _check_disk(name: str, expect: dict[str, Any], root: Path, before: dict[str, Any]) -> list[str]:
    path = root / name
    outcome = expect["outcome"]
    exists = os.path.lexists(path)
    if outcome in ("extracted", "no-data"):
        return [f"{name}: still on disk after {outcome}"] if exists else []
    if outcome in ("skipped", "failed"):
        if not exists:
            return [f"{name}: gone, but {outcome} storages stay"]
        prefix = f"runner-fs/{name}"
        was = {k: v for k, v in before.items() if k == prefix or k.startswith(prefix + "/")}
        now = {k: v for k, v in snapshot(root.parent).items() if k == prefix or k.startswith(prefix + "/")}
        return [] if was == now else [f"{name}: changed although {outcome}"]
    # quarantined: moved whole, with a reason file beside it
    problems = []
    if exists:
        problems.append(f"{name}: still in the root although quarantined")
    qdir = root / ".quarantine"
    reasons = sorted(qdir.glob(f"{name}.*.reason.json")) if qdir.is_dir() else []
    reasons = [r for r in reasons if r.name[len(name) + 1 :].split(".")[0].isdigit()]
    if len(reasons) != 1:
        return problems + [f"{name}: {len(reasons)} reason files in .quarantine, expected 1"]
    record = json.loads(reasons[0].read_text(encoding="utf-8"))
    if (
        record.get("runner_name") != name
        or record.get("reason") != expect["reason"]
        or record.get("file") != expect["file"]
    ):
        problems.append(f"{name}: reason file {record}, expected reason {expect['reason']} file {expect['file']}")
    moved = qdir / reasons[0].name[: -len(".reason.json")]
    if not moved.is_dir() or moved.is_symlink():
        problems.append(f"{name}: quarantined storage {moved.name} missing")
    else:
        prefix = f"runner-fs/{name}"
        was = {k[len(prefix) :]: v for k, v in before.items() if k == prefix or k.startswith(prefix + "/")}
        mprefix = f"runner-fs/.quarantine/{moved.name}"
        now = {
            k[len(mprefix) :]: v
            for k, v in snapshot(root.parent).items()
            if k == mprefix or k.startswith(mprefix + "/")
        }
        if was != now:
            problems.append(f"{name}: the quarantined copy differs from the storage")
    return problems


def main(argv: list[str]) -> int:
    if argv[:1] == ["list"]:
        for case in load_cases():
            print(f"{case['name']}: {case['description']}")
        return 0
    if len(argv) == 3 and argv[0] == "build":
        base = Path(argv[2])
        base.mkdir(parents=True, exist_ok=True)
        print(build_case(case_by_name(argv[1]), base))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
