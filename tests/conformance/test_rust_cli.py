"""The shared conformance cases under the Rust CLI (`runner-metrics collect`),
parsing its `--verbose` stderr. Only the cases without job metrics are
collected: the CLI takes job metrics from the GitHub API alone, which the
Rust suite's own tests serve locally (tests/tests/e2e/github.rs), so they
are not cases for it here (rather than skipped tests that count).

Needs `$RUNNER_METRICS_BIN`, else `<repo>/target/release/runner-metrics`."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import conformance  # noqa: E402

CASES = [case for case in conformance.load_cases() if not case["jobs"]]
REPORT = re.compile(r"^(extracted|no-data|quarantined|skipped|failed): (.*?): (.*)$")
SKIPS = {
    "excluded": "excluded",
    "not included": "not-included",
    "not a plain directory": "not-a-directory",
    "not a valid runner name": "invalid-name",
    "too young": "too-young",
    "gone before it was handled": "vanished",
}


@pytest.fixture(scope="session")
def binary():
    path = Path(os.environ.get("RUNNER_METRICS_BIN") or REPO / "target" / "release" / "runner-metrics")
    if not path.is_file():
        pytest.fail(f"no runner-metrics binary at {path}: `cargo build --release -p runner-metrics`")
    return path


def parse(stderr):
    reports = []
    for line in stderr.decode().splitlines():
        m = REPORT.match(line)
        if not m:
            continue
        kind, name, detail = m.groups()
        reason = None
        if kind == "quarantined":
            reason = detail.split(":")[0]
        elif kind == "skipped":
            reason = next((v for k, v in SKIPS.items() if detail.startswith(k)), None)
        reports.append(conformance.Report(name=name, outcome=kind, reason=reason, detail=detail))
    return reports


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_conformance_case(case, tmp_path, binary):
    root = conformance.build_case(case, tmp_path)
    before = conformance.snapshot(tmp_path)
    cmd = [
        str(binary),
        "collect",
        "--storage",
        str(root),
        "--flavor",
        case["flavor"],
        "--metrics-log",
        "-",
        "--verbose",
        "--cache-dir",
        str(REPO / "target" / "hosts" / "cache"),
    ]
    selection = case["selection"]
    for name in selection.get("exclude", []):
        cmd += ["--exclude", name]
    for name in selection.get("include") or []:
        cmd += ["--include", name]
    if selection.get("min_age") is not None:
        cmd += ["--min-age", str(selection["min_age"])]
    done = subprocess.run(cmd, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    problems = conformance.check_run(case, tmp_path, before, conformance.Run(parse(done.stderr), done.stdout))
    assert not problems, "\n".join(problems)
