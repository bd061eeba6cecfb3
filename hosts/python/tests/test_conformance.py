"""The shared conformance cases (tests/conformance/cases.json) through the
Python host: outcomes, reasons, what is left on disk, and the metrics log
byte for byte."""

import pytest

import conformance
from runner_metrics_host import GithubJobMetrics, collect

CASES = conformance.load_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_conformance_case(case, tmp_path, plugin):
    root = conformance.build_case(case, tmp_path)
    before = conformance.snapshot(tmp_path)
    log = tmp_path / "metrics.log"
    asked = []

    def job_metrics(metrics):
        asked.append(metrics.runner_name)
        job = case["jobs"].get(metrics.runner_name)
        return None if job is None else GithubJobMetrics(job["queue_duration"], job.get("conclusion"))

    selection = case["selection"]
    summary = collect(
        root,
        case["flavor"],
        exclude=selection.get("exclude", ()),
        include=selection.get("include"),
        min_age=selection.get("min_age"),
        job_metrics=job_metrics,
        metrics_log=log,
        plugin=plugin,
    )
    reports = [
        conformance.Report(
            name=r.name, outcome=r.outcome, reason=r.reason, file=r.file, events=r.events, detail=r.detail
        )
        for r in summary.reports
    ]
    problems = conformance.check_run(
        case, tmp_path, before, conformance.Run(reports, log.read_bytes() if log.exists() else b"")
    )
    assert not problems, "\n".join(problems)
    assert summary.total == len(case["expect"])
    assert summary.failed == 0
    extracted = sorted(n for n, e in case["expect"].items() if e["outcome"] == "extracted")
    assert sorted(asked) == extracted, "job_metrics is asked once per extracted runner"
