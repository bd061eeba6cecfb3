"""The Python host's own behaviour: traps, limits, the log, the API."""

import json
import os

import pytest

import conformance
import runner_metrics_host as rmh
from runner_metrics_host import CollectError, GithubJobMetrics, Limits, Plugin, collect

VALID = conformance.case_by_name("valid-without-job-metrics")
LINES = VALID["expect"]["small-r-00000000000a"]["lines"]


def build(tmp_path, root_spec, outside=None):
    return conformance.build_case({"root": root_spec, "outside": outside or {}}, tmp_path)


def valid_storage():
    return VALID["root"]["small-r-00000000000a"]


def test_a_trap_quarantines_the_storage_with_a_fresh_instance_and_the_run_goes_on(tmp_path, plugin, monkeypatch):
    root = build(tmp_path, {"runner-victim": valid_storage(), "runner-fine": valid_storage()})
    real = rmh.Sandbox.extract_storage

    def starved(self, name, keep):
        if name != "runner-victim":
            return real(self, name, keep)
        # A real trap in the real guest: out of fuel in the middle of the call.
        func = self._func(rmh._EXTRACTION, "extract-storage")
        self._arm()
        self.store.set_fuel(10_000)
        try:
            return func(self.store, name, keep)
        except Exception as e:
            raise rmh.GuestFailure(f"guest extraction {rmh._explain(e, self.plugin.limits)}") from e

    monkeypatch.setattr(rmh.Sandbox, "extract_storage", starved)
    log = tmp_path / "metrics.log"
    summary = collect(root, "small", metrics_log=log, plugin=plugin)
    by_name = {r.name: r for r in summary.reports}
    victim = by_name["runner-victim"]
    assert (victim.outcome, victim.reason) == ("quarantined", "sandbox-trap"), victim
    assert "fuel" in victim.detail
    assert by_name["runner-fine"].outcome == "extracted"
    assert log.read_text() == "".join(line + "\n" for line in LINES)
    assert not (root / "runner-victim").exists() and not (root / "runner-fine").exists()
    [reason_file] = (root / ".quarantine").glob("runner-victim.*.reason.json")
    assert json.loads(reason_file.read_text())["reason"] == "sandbox-trap"


def test_a_deadline_stops_a_guest_call(tmp_path, component_path):
    root = build(tmp_path, {"runner-a": valid_storage()})
    before = conformance.snapshot(tmp_path)
    # A zero deadline: every call is interrupted at its first epoch check.
    slow = Plugin(component_path, Limits(timeout=0.0, fuel=None))
    with pytest.raises(CollectError) as raised:
        collect(root, "small", metrics_log=tmp_path / "log", plugin=slow)
    assert "deadline" in str(raised.value) or "interrupt" in str(raised.value)
    assert conformance.snapshot(tmp_path) == {**before, "log": ("file", b"")}


def test_the_memory_cap_is_enforced(tmp_path, component_path):
    root = build(tmp_path, {"runner-a": valid_storage()})
    tiny = Plugin(component_path, Limits(memory_bytes=64 * 1024))
    with pytest.raises(CollectError):
        collect(root, "small", metrics_log=tmp_path / "log", plugin=tiny)
    assert (root / "runner-a").is_dir()


def test_a_sink_that_fails_keeps_the_storages_and_stops_the_run(tmp_path, plugin):
    root = build(tmp_path, {"runner-a": valid_storage(), "runner-b": valid_storage()})

    class Broken:
        def append(self, lines):
            raise OSError("disk full")

    with pytest.raises(CollectError) as raised:
        collect(root, "small", metrics_log=Broken(), plugin=plugin)
    assert "disk full" in str(raised.value)
    summary = raised.value.summary
    assert summary.failed == 2 and summary.extracted == 0
    assert (root / "runner-a").is_dir() and (root / "runner-b").is_dir()


def test_lines_are_durable_before_the_storage_is_deleted(tmp_path, plugin):
    root = build(tmp_path, {"runner-a": valid_storage()})
    seen = []

    class Checking:
        def append(self, lines):
            # When the lines are handed over, the storage must still be there.
            seen.append(((root / "runner-a").is_dir(), list(lines)))

    summary = collect(root, "small", metrics_log=Checking(), plugin=plugin)
    assert seen == [(True, LINES)]
    assert summary.extracted == 1 and not (root / "runner-a").exists()


def test_the_log_is_appended_and_a_cut_last_line_terminated(tmp_path, plugin):
    root = build(tmp_path, {"runner-a": valid_storage()})
    log = tmp_path / "metrics.log"
    log.write_bytes(b'{"old": 1}\n{"cut')
    collect(root, "small", metrics_log=log, plugin=plugin)
    assert log.read_bytes() == b'{"old": 1}\n{"cut\n' + "".join(line + "\n" for line in LINES).encode()


def test_metrics_log_defaults_to_the_environment_variable(tmp_path, plugin, monkeypatch):
    root = build(tmp_path, {"runner-a": valid_storage()})
    log = tmp_path / "from-env.log"
    monkeypatch.setenv("METRICS_LOG_PATH", str(log))
    collect(root, "small", plugin=plugin)
    assert log.read_text().splitlines() == LINES


def test_an_unusable_log_is_an_error_before_anything_is_touched(tmp_path, plugin):
    root = build(tmp_path, {"runner-a": valid_storage()})
    with pytest.raises(CollectError, match=f"metrics log {tmp_path}"):
        collect(root, "small", metrics_log=tmp_path, plugin=plugin)  # a directory
    assert (root / "runner-a").is_dir()


def test_keep_changes_nothing_on_disk(tmp_path, plugin):
    case = conformance.case_by_name("corrupt-storages")
    root = conformance.build_case(case, tmp_path)
    (root / "runner-good").mkdir()
    (root / "runner-good" / "runner-installed.timestamp").write_text("5")
    (root / "runner-empty").mkdir()
    before = conformance.snapshot(tmp_path)
    summary = collect(root, "small", metrics_log=tmp_path / "log", plugin=plugin, keep=True)
    after = conformance.snapshot(tmp_path)
    after.pop("log")
    assert after == before
    assert summary.quarantined == len(case["expect"])
    assert all("would be quarantined" in r.detail for r in summary.reports if r.outcome == "quarantined")
    assert {r.name: r.outcome for r in summary.reports}["runner-empty"] == "no-data"
    assert {r.name: r.detail for r in summary.reports}["runner-good"] == "kept (dry run)"


@pytest.mark.parametrize("conclusion,rendered", [
    ("timed_out", "timed_out"), ("timed-out", "timed_out"), ("action_required", "action_required"),
    ("SUCCESS", "success"), ("something-new", None), (None, None),
])
def test_job_conclusions_in_github_spelling(tmp_path, plugin, conclusion, rendered):
    root = build(tmp_path, {"runner-a": valid_storage()})
    log = tmp_path / "metrics.log"
    got = []

    def jobs(metrics):
        got.append(metrics)
        return GithubJobMetrics(12.5, conclusion)

    collect(root, "small", job_metrics=jobs, metrics_log=log, plugin=plugin)
    [metrics] = got
    assert metrics.runner_name == "runner-a"
    assert metrics.pre_job.repository == "canonical/example" and metrics.pre_job.workflow_run_id == "123456"
    assert metrics.post_job.status == "abnormal" and metrics.post_job.status_code == 1
    start, stop = (json.loads(line) for line in log.read_text().splitlines()[1:])
    assert start["queue_duration"] == 12.5
    assert stop.get("job_conclusion") == rendered


def test_job_metrics_may_be_a_tuple_or_a_dict(tmp_path, plugin):
    root = build(tmp_path, {"runner-a": valid_storage(), "runner-b": valid_storage()})
    log = tmp_path / "metrics.log"
    answers = {"runner-a": (1.0, "success"), "runner-b": {"queue_duration": 2, "conclusion": "failure"}}
    collect(root, "small", job_metrics=lambda m: answers[m.runner_name], metrics_log=log, plugin=plugin)
    queues = sorted(json.loads(l)["queue_duration"] for l in log.read_text().splitlines() if "runner_start" in l)
    assert queues == [1.0, 2.0]


def test_reports_are_streamed(tmp_path, plugin):
    root = build(tmp_path, {"runner-a": valid_storage(), "stray": {"text": "x"}})
    streamed = []
    summary = collect(root, "small", metrics_log=tmp_path / "log", plugin=plugin, on_report=streamed.append)
    assert streamed == summary.reports and len(streamed) == 2
    assert summary.counts() == {"extracted": 1, "no_data": 0, "quarantined": 0, "skipped": 1, "failed": 0,
                                "lines_written": 3}


def test_the_sandbox_sees_only_the_storage_root(tmp_path, plugin):
    # A runner that symlinks its way out gets quarantined; the target is untouched.
    outside = {"secret": {"text": "keep"}}
    root = build(tmp_path, {"runner-a": {"dir": {"runner-installed.timestamp": {"symlink": "../../outside/secret"}}}}, outside)
    summary = collect(root, "small", metrics_log=tmp_path / "log", plugin=plugin)
    assert [(r.outcome, r.reason) for r in summary.reports] == [("quarantined", "not-regular-file")]
    assert (tmp_path / "outside" / "secret").read_text() == "keep"


def test_a_missing_component_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="runner-metrics component --output"):
        Plugin(tmp_path / "nope.wasm")


def test_a_line_with_a_key_its_event_does_not_have_is_refused_and_nothing_is_written(tmp_path, plugin, monkeypatch):
    # A lying guest renders an otherwise honest line with one more key: the
    # line must hold exactly its event (issue 9), so the storage is kept.
    root = build(tmp_path, {"runner-liar": valid_storage()})
    real = rmh.Sandbox.render_event

    def tampered(self, event):
        return real(self, event)[:-1] + ', "injected": true}'

    monkeypatch.setattr(rmh.Sandbox, "render_event", tampered)
    log = tmp_path / "metrics.log"
    summary = collect(root, "small", metrics_log=log, plugin=plugin)
    [report] = summary.reports
    assert report.outcome == "failed" and "'injected'" in report.detail, report
    assert log.read_text() == ""
    assert (root / "runner-liar").is_dir()


def test_a_line_whose_value_differs_from_its_event_is_refused(tmp_path, plugin, monkeypatch):
    root = build(tmp_path, {"runner-liar": valid_storage()})
    real = rmh.Sandbox.render_event

    def tampered(self, event):
        return real(self, event).replace('"flavor": "small"', '"flavor": "large"')

    monkeypatch.setattr(rmh.Sandbox, "render_event", tampered)
    summary = collect(root, "small", metrics_log=tmp_path / "metrics.log", plugin=plugin)
    [report] = summary.reports
    assert report.outcome == "failed" and "'flavor' differs" in report.detail, report


def test_a_missing_root_or_log_directory_is_a_collect_error_naming_the_path(tmp_path, plugin):
    # Its docs promise CollectError, not a bare FileNotFoundError (issue 13).
    missing = tmp_path / "no-such-root"
    with pytest.raises(CollectError, match=f"storage root {missing}"):
        collect(missing, "small", metrics_log=tmp_path / "log", plugin=plugin)
    root = build(tmp_path, {"runner-a": valid_storage()})
    log = tmp_path / "no-such-dir" / "metrics.log"
    with pytest.raises(CollectError, match=f"metrics log {log}"):
        collect(root, "small", metrics_log=log, plugin=plugin)
    assert (root / "runner-a").is_dir()


def test_a_fifo_as_the_metrics_log_is_refused_at_once(tmp_path, plugin):
    root = build(tmp_path, {"runner-a": valid_storage()})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CollectError, match="not a regular file"):
        collect(root, "small", metrics_log=fifo, plugin=plugin)
