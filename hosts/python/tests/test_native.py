"""The Python binding of the Rust host library (``runner_metrics_host.native``, the extension
``_native``): what a caller lends it (a sink of its own, job metrics, reports) and gets back when
a callback fails. The conformance cases run through it in test_conformance.py.

Skipped (and so refused under CI=true) when the extension is not built: scripts/test-hosts.sh
builds it (cargo build -p runner-metrics-python) and puts it beside the package's sources."""

import pytest

native = pytest.importorskip(
    "runner_metrics_host.native", reason="the extension _native is not built (scripts/test-hosts.sh builds it)"
)
from runner_metrics_host import CollectError  # noqa: E402


class Sink:
    """A sink of the caller's: lines arrive in batches."""

    def __init__(self, fail=False):
        self.batches, self.fail = [], fail

    def append(self, lines):
        if self.fail:
            raise OSError("the disk is full")
        self.batches.append(list(lines))


def fixture_f(root, name):
    storage = root / name
    storage.mkdir()
    (storage / "runner-installation-start.timestamp").write_text("1.0")
    (storage / "runner-installed.timestamp").write_text("2.0")
    (storage / "pre-job-metrics.json").write_text(
        '{"timestamp": 3.0, "workflow": "workflow1", "workflow_run_id": "workflow_run_id1", '
        '"repository": "org1/repository1", "event": "push"}'
    )
    (storage / "post-job-metrics.json").write_text('{"timestamp": 3.0, "status": "normal", "status_info": null}')


def test_a_sink_of_the_callers_gets_the_lines_in_batches_and_reports_arrive(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for i in range(5):
        fixture_f(root, f"r-{i}")
    sink, seen = Sink(), []
    summary = native.collect(root, "small", metrics_log=sink, batch_size=2, on_report=seen.append)
    assert [len(b) for b in sink.batches] == [6, 6, 3], "three lines a runner, two runners a batch"
    assert summary.extracted == 5 and summary.lines_written == 15
    assert sorted(r.name for r in seen) == [f"r-{i}" for i in range(5)]
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == [], "all deleted"


def test_a_sink_that_fails_stops_the_run_and_deletes_nothing(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    fixture_f(root, "r-1")
    with pytest.raises(OSError, match="the disk is full"):
        native.collect(root, "small", metrics_log=Sink(fail=True))
    assert (root / "r-1" / "pre-job-metrics.json").exists(), "nothing is deleted before its lines are durable"


def test_an_exception_from_job_metrics_is_raised_after_the_run(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    fixture_f(root, "r-1")

    def broken(metrics):
        raise KeyError(metrics.runner_name)

    with pytest.raises(KeyError, match="r-1"):
        native.collect(root, "small", job_metrics=broken, metrics_log=tmp_path / "log")


def test_a_root_that_is_not_there_is_a_collect_error_naming_it(tmp_path):
    with pytest.raises(CollectError, match="missing"):
        native.collect(tmp_path / "missing", "small", metrics_log=tmp_path / "log")


def test_ingest_of_loose_files_logs_the_runner_once(tmp_path):
    files = {
        "runner-installed.timestamp": b"2.0",
        "pre-job-metrics.json": b'{"timestamp": 3.0, "workflow": "w", "workflow_run_id": "1", '
        b'"repository": "o/r", "event": "push"}',
        "post-job-metrics.json": None,
    }
    log = tmp_path / "log"
    summary = native.ingest("r-pulled", files, tmp_path / "pulled", "small", installation_start=1.0, metrics_log=log)
    assert (summary.extracted, summary.lines_written) == (1, 2), summary
    assert [line.split('"event": ')[1].split('"')[1] for line in log.read_text().splitlines()] == [
        "runner_installed",
        "runner_start",
    ]
    with pytest.raises(ValueError, match="not a pulled metrics file"):
        native.ingest("r-x", {"other": b""}, tmp_path / "pulled", "small", metrics_log=log)


def test_the_packages_collect_runs_the_binding_unless_handed_a_plugin(tmp_path, monkeypatch, plugin):
    import runner_metrics_host
    from runner_metrics_host import Summary

    assert runner_metrics_host.NATIVE
    calls = []
    dry = lambda kwargs: kwargs.get("dry_run") or kwargs.get("keep")  # noqa: E731
    monkeypatch.setattr(native, "collect", lambda *args, **kwargs: calls.append(dry(kwargs)) or Summary())
    root = tmp_path / "root"
    root.mkdir()
    fixture_f(root, "r-1")
    runner_metrics_host.collect(root, "small", metrics_log=tmp_path / "log", keep=True)
    assert calls == [True], "the binding, asked for a dry run"
    summary = runner_metrics_host.collect(root, "small", metrics_log=tmp_path / "log", plugin=plugin)
    assert calls == [True] and summary.extracted == 1, "handed a Plugin: the pure WebAssembly host"
