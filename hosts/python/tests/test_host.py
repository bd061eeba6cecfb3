"""The Python host's own behaviour: traps, limits, the log, the API."""

import json
import os
import subprocess

import pytest
import wasmtime.component as wc

import conformance
from runner_metrics_host import CollectError, GithubJobMetrics, Keeper, Limits, Plugin, collect, wasm_host

VALID = conformance.case_by_name("valid-without-job-metrics")
LINES = VALID["expect"]["small-r-00000000000a"]["lines"]


def build(tmp_path, root_spec, outside=None):
    return conformance.build_case({"root": root_spec, "outside": outside or {}}, tmp_path)


def valid_storage():
    return VALID["root"]["small-r-00000000000a"]


def test_a_trap_while_deleting_never_extracts_a_storage_twice_and_the_run_goes_on(tmp_path, component_path):
    # A real trap in the real guest: 300,000 units of fuel per host call are
    # plenty to extract a storage (< 50,000) but not to delete 3,000 files
    # (~3,000,000). The trap comes after the batch's lines are durable: the
    # fresh instance deletes the rest of the batch, the trapped storage is
    # never extracted again, and the run goes on.
    spec = {f"runner-fine-{i}": valid_storage() for i in range(5)}
    spec["runner-big"] = {
        "dir": {**valid_storage()["dir"], "junk": {"dir": {f"f{i}": {"text": ""} for i in range(3000)}}}
    }
    root = build(tmp_path, spec)
    log = tmp_path / "metrics.log"
    summary = collect(root, "small", metrics_log=log, plugin=Plugin(component_path, Limits(fuel=300_000)))
    by_name = {r.name: r for r in summary.reports}
    assert sorted(by_name) == sorted(spec) and len(summary.reports) == len(spec)
    big = by_name["runner-big"]
    assert big.events == 3 and "ran out of fuel (300000 units)" in big.detail, big
    assert all(by_name[f"runner-fine-{i}"].detail == "deleted" for i in range(5)), summary.reports
    assert log.read_text() == "".join(line + "\n" for line in LINES) * len(spec), "each storage's lines once"
    assert sorted(p.name for p in root.iterdir() if p.name != ".quarantine") == [".deleting"]
    # The next run finishes the deletion and writes nothing more.
    again = collect(root, "small", metrics_log=log, plugin=Plugin(component_path))
    assert again.total == 0 and log.read_text().count("\n") == 3 * len(spec)
    assert not any((root / ".deleting").iterdir()) and not (root / "runner-big").exists()


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


@pytest.mark.parametrize(
    "conclusion,rendered",
    [
        ("timed_out", "timed_out"),
        ("timed-out", "timed_out"),
        ("action_required", "action_required"),
        ("SUCCESS", "success"),
        ("something-new", None),
        (None, None),
    ],
)
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
    queues = sorted(
        json.loads(line)["queue_duration"] for line in log.read_text().splitlines() if "runner_start" in line
    )
    assert queues == [1.0, 2.0]


def test_reports_are_streamed(tmp_path, plugin):
    root = build(tmp_path, {"runner-a": valid_storage(), "stray": {"text": "x"}})
    streamed = []
    summary = collect(root, "small", metrics_log=tmp_path / "log", plugin=plugin, on_report=streamed.append)
    assert streamed == summary.reports and len(streamed) == 2
    assert summary.counts() == {
        "extracted": 1,
        "no_data": 0,
        "quarantined": 0,
        "skipped": 1,
        "failed": 0,
        "lines_written": 3,
    }


def test_the_sandbox_sees_only_the_storage_root(tmp_path, plugin):
    # A runner that symlinks its way out gets quarantined; the target is untouched.
    outside = {"secret": {"text": "keep"}}
    root = build(
        tmp_path, {"runner-a": {"dir": {"runner-installed.timestamp": {"symlink": "../../outside/secret"}}}}, outside
    )
    summary = collect(root, "small", metrics_log=tmp_path / "log", plugin=plugin)
    assert [(r.outcome, r.reason) for r in summary.reports] == [("quarantined", "not-regular-file")]
    assert (tmp_path / "outside" / "secret").read_text() == "keep"


def test_a_missing_component_says_how_to_make_one(tmp_path, component_path):
    with pytest.raises(FileNotFoundError, match="runner-metrics component --kind plugin --output"):
        Plugin(tmp_path / "nope.wasm")
    with pytest.raises(FileNotFoundError, match="runner-metrics component --kind keeper --output"):
        Plugin(component_path, keeper=tmp_path / "nope.wasm")


def _installed(flavor):
    payload = wc.Record()
    payload.timestamp, payload.flavor, payload.duration = 2.0, flavor, 1.0
    return wc.Variant("runner-installed", payload)


GOOD = '{"timestamp": 2.0, "event": "runner_installed", "flavor": "small", "duration": 1.0}'


def _output(name, events):
    storage = wc.Record()
    setattr(storage, "runner-name", name)
    storage.source = events  # `rendered`: events(list<event>)
    return [storage]


def test_the_keeper_renders_the_lines_of_the_events_it_checked(tmp_path, plugin):
    # The keeper component's check of each appended storage and its rendering,
    # the same in every host (keeper/src/check.rs): the plugin hands over no
    # line; end to end with a lying guest in test_traps.py.
    (tmp_path / "runner-a").mkdir()
    keeper = Keeper(plugin, tmp_path, conformance_options())
    assert keeper.append(_output("runner-a", [_installed("small")])) == [GOOD]
    assert "at most 3 exist" in keeper.append(_output("runner-a", [_installed("small")] * 4))
    assert 'flavor "large", not "small"' in keeper.append(_output("runner-a", [_installed("large")]))
    assert "not a directory of the storage root" in keeper.append(_output("runner-b", [_installed("small")]))


def conformance_options(flavor="small"):
    return wasm_host._options(flavor)


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


def test_an_exception_from_the_job_metrics_callback_ends_the_run_as_is(tmp_path, plugin):
    # The caller's own failure, not the guest's: no quarantine, nothing written.
    root = build(tmp_path, {"runner-a": valid_storage()})
    before = conformance.snapshot(root)

    def broken(metrics):
        raise KeyError("no such job")

    with pytest.raises(KeyError, match="no such job"):
        collect(root, "small", job_metrics=broken, metrics_log=tmp_path / "log", plugin=plugin)
    assert conformance.snapshot(root) == before and (tmp_path / "log").read_text() == ""


def test_an_exception_from_on_report_is_raised_after_the_run(tmp_path, plugin):
    # Raised at once, it would leave the rest of a written batch on disk, to
    # be extracted again by the next run.
    root = build(tmp_path, {"runner-a": valid_storage(), "runner-b": valid_storage()})
    seen = []

    def broken(report):
        seen.append(report.name)
        raise RuntimeError("dashboard down")

    with pytest.raises(RuntimeError, match="dashboard down"):
        collect(root, "small", metrics_log=tmp_path / "log", plugin=plugin, on_report=broken)
    assert sorted(seen) == ["runner-a", "runner-b"] and [p.name for p in root.iterdir()] == [".deleting"]
    assert (tmp_path / "log").read_text() == "".join(line + "\n" for line in LINES) * 2


def test_a_second_run_on_a_locked_root_is_refused_and_touches_nothing(tmp_path, component_path):
    # The same lock as the Rust host's: <root>/.lock, flock'ed, holding the pid.
    import fcntl

    root = build(tmp_path, {"runner-a": valid_storage()})
    before = conformance.snapshot(tmp_path)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(CollectError) as raised:
            collect(root, "small", metrics_log=tmp_path / "log", component=component_path, wait=0.2)
        assert "busy" in str(raised.value) and "pid 4242" in str(raised.value), raised.value
        assert (root / "runner-a").is_dir()
    finally:
        os.close(fd)
    os.unlink(root / ".lock")
    assert {k: v for k, v in conformance.snapshot(tmp_path).items() if k != "log"} == before
    summary = collect(root, "small", metrics_log=tmp_path / "log", component=component_path)
    assert summary.extracted == 1 and not (root / ".lock").exists()


@pytest.fixture
def a_storage_with_a_tmpfs_on_it(tmp_path):
    """A root whose one storage is a tmpfs mounted by hand (as root; unmounted after)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    storage = tmp_path / "root" / "r-tmpfs"
    storage.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(storage)], check=True)
    try:
        yield storage.parent
    finally:
        subprocess.run(["umount", "-l", str(storage)], check=False)


@pytest.mark.parametrize("host", ["native", "wasm"])
def test_a_failed_storage_names_its_filesystem_errors(tmp_path, a_storage_with_a_tmpfs_on_it, plugin, host):
    # Each host fails the storage its own way: the Rust host's confined
    # filesystem never enters a mount it did not make; the pure host moves
    # it and gets EBUSY. Either way the report names the error, typed.
    from runner_metrics_host import NATIVE, FsError

    if host == "native" and not NATIVE:
        pytest.skip("the extension _native is not built (scripts/test-hosts.sh builds it)")
    seen = []
    kwargs = {} if host == "native" else {"plugin": plugin}
    summary = collect(
        a_storage_with_a_tmpfs_on_it, "small", metrics_log=tmp_path / "log", on_report=seen.append, **kwargs
    )
    assert summary.failed == 1 and seen == summary.reports, summary
    expected = {
        "native": FsError("open-directory", "r-tmpfs", "permission-denied", "Operation not permitted"),
        "wasm": FsError("move", "r-tmpfs", "other", "Device or resource busy"),
    }[host]
    assert seen[0].errors == (expected,), seen[0]
    assert f'"{expected.path}": {expected.cause}' in seen[0].detail, "the detail names the same error"
