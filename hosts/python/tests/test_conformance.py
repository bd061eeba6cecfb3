"""The shared conformance cases (tests/conformance/cases.json) through both Python hosts: the
binding of the Rust host (what ``collect`` runs) and the pure WebAssembly host (``collect``
handed a Plugin): outcomes, reasons, what is left on disk, and the metrics log byte for byte."""

import pytest

import conformance
import runner_metrics_host
from runner_metrics_host import GithubJobMetrics, collect

CASES = conformance.load_cases()
HOSTS = ["native", "wasm"]


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_conformance_case(case, host, tmp_path, plugin):
    if host == "native" and not runner_metrics_host.NATIVE:
        pytest.skip("the extension _native is not built (scripts/test-hosts.sh builds it)")
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
        plugin=plugin if host == "wasm" else None,
    )
    # The lock file the Rust host leaves (empty, `<root>/.lock`) is its own.
    (root / ".lock").unlink(missing_ok=True)
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
