"""Collect a small storage root through the runner-metrics component.

    RUNNER_METRICS_COMPONENT=target/hosts/runner_metrics.wasm python3 hosts/python/examples/collect_example.py

Builds a root with two runner storages in a temporary directory, collects it
with job metrics from a callback, then prints each storage's outcome, the
summary and the lines appended to the metrics log. From a checkout it uses
the package's sources and, unless $RUNNER_METRICS_COMPONENT says otherwise,
<repo>/target/hosts/runner_metrics.wasm.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

try:
    from runner_metrics_host import GithubJobMetrics, RunnerMetrics, collect
except ImportError:  # a checkout: the sources and the component next to them
    here = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(here / "src"))
    os.environ.setdefault("RUNNER_METRICS_COMPONENT", str(here.parents[1] / "target" / "hosts" / "runner_metrics.wasm"))
    from runner_metrics_host import GithubJobMetrics, RunnerMetrics, collect


def job_metrics(metrics: RunnerMetrics):
    """What a runner manager would learn from GitHub's API; None when there was no job."""
    if metrics.pre_job is None:
        return None
    return GithubJobMetrics(queue_duration=12.5, conclusion="success")


def write_storage(root: Path, name: str, files: dict) -> None:
    (root / name).mkdir()
    for file, text in files.items():
        (root / name / file).write_text(text)


with tempfile.TemporaryDirectory() as tmp:
    root, log = Path(tmp) / "runner-fs", Path(tmp) / "metrics.log"
    root.mkdir()
    pre_job = {
        "workflow": "ci",
        "repository": "canonical/example",
        "event": "push",
        "timestamp": 1700000100,
        "workflow_run_id": "123456",
    }
    write_storage(
        root,
        "small-runner-a",
        {  # ran a job
            "runner-installation-start.timestamp": "1700000000",
            "runner-installed.timestamp": "1700000060",
            "pre-job-metrics.json": json.dumps(pre_job),
            "post-job-metrics.json": json.dumps({"timestamp": 1700000400, "status": "normal"}),
        },
    )
    write_storage(
        root,
        "small-runner-b",
        {  # came up, never got a job
            "runner-installation-start.timestamp": "1700000500",
            "runner-installed.timestamp": "1700000530",
        },
    )
    summary = collect(root, "small", job_metrics=job_metrics, metrics_log=log)
    for report in sorted(summary.reports, key=lambda r: r.name):
        print(f"{report.name}: {report.outcome}, {report.detail}, {report.events} lines")
    print(summary.counts())
    print(log.read_text(), end="")
