"""Pulled metrics (`ingest`, WIT 0.4.0 `collect-options.pulled` and `pulled-metrics`): one runner's
files handed over by the manager, as the real `tar -C DIR -cf - .` stream of
its metrics directory or one by one, staged by the plugin as a storage of the
quarantine directory and collected through the same run as `collect`.

Everything happens in `tmp_path`; the only symlink (in the hostile tar) points
inside it."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import conformance
from runner_metrics_host import MAX_LOOSE_BYTES, MAX_STREAM_BYTES, CollectError, _lock, collect, ingest

REPO = Path(__file__).resolve().parents[3]
INSTALLED = b"1700000060"
PRE = json.dumps(
    {"workflow": "ci", "repository": "o/r", "event": "push", "timestamp": 1700000100, "workflow_run_id": "1"}
).encode()
POST = json.dumps({"timestamp": 1700000400, "status": "normal"}).encode()
VALID = {"runner-installed.timestamp": INSTALLED, "pre-job-metrics.json": PRE, "post-job-metrics.json": POST}
CORRUPT = {**VALID, "pre-job-metrics.json": b'{"workflow": "ci", '}  # cut short: invalid JSON
EVENTS = ["runner_installed", "runner_start", "runner_stop"]


def tar_stream(directory):
    """What `ssh runner 'tar -C DIR -cf - .'` hands the manager, made by the real tar."""
    if shutil.which("tar") is None:
        pytest.skip("no tar command")
    return subprocess.run(["tar", "-C", str(directory), "-cf", "-", "."], check=True, capture_output=True).stdout


def metrics_dir(tmp_path, files, name="metrics-exchange"):
    directory = tmp_path / name
    directory.mkdir()
    for file, data in files.items():
        (directory / file).write_bytes(data)
    return directory


def events(log):
    return [json.loads(line)["event"] for line in log.read_text().splitlines()] if log.exists() else []


def quarantined(root, report):
    """The reason record and the directory `report`'s runner was moved to, under `<root>/.quarantine/`."""
    assert report.outcome == "quarantined" and "moved to .quarantine/" in report.detail, report
    location = report.detail.rsplit("moved to .quarantine/", 1)[1]
    record = json.loads((root / ".quarantine" / f"{location}.reason.json").read_text())
    assert (record["runner_name"], record["reason"], record["file"]) == (report.name, report.reason, report.file)
    moved = root / ".quarantine" / location
    assert moved.is_dir() and not (root / report.name).exists()
    return record, moved


def nothing_staged(root):
    """Only what a finished run leaves in a root: no storage, no lock, an empty `.deleting/`."""
    assert {p.name for p in root.iterdir()} <= {".deleting", ".quarantine"}, list(root.iterdir())
    if (root / ".deleting").exists():
        assert not any((root / ".deleting").iterdir())


def test_a_tar_stream_of_valid_files_gives_the_three_events_and_leaves_nothing_staged(tmp_path, plugin):
    stream = tar_stream(metrics_dir(tmp_path, VALID))
    root, log, seen = tmp_path / "pulled", tmp_path / "metrics.log", []
    summary = ingest(
        "runner-7",
        stream,
        root,
        "small",
        installation_start=1700000000,
        metrics_log=log,
        plugin=plugin,
        on_report=seen.append,
    )
    [report] = summary.reports
    assert (report.name, report.outcome, report.events, report.detail) == ("runner-7", "extracted", 3, "deleted")
    assert seen == [report] and summary.counts()["lines_written"] == 3
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in lines] == EVENTS
    assert lines[0]["duration"] == 60.0 and {e["flavor"] for e in lines} == {"small"}
    assert (lines[1]["workflow"], lines[2]["job_duration"]) == ("ci", 300.0)
    nothing_staged(root)
    assert not (root / ".quarantine").exists()


@pytest.fixture(scope="session")
def binary():
    path = Path(os.environ.get("RUNNER_METRICS_BIN") or REPO / "target" / "debug" / "runner-metrics")
    if not path.is_file():
        pytest.skip(f"no runner-metrics binary at {path}: set $RUNNER_METRICS_BIN (`cargo build -p runner-metrics`)")
    return path


@pytest.mark.parametrize("policy,files,lines", [("strict", VALID, 3), ("lenient", CORRUPT, 1)])
def test_the_lines_are_byte_identical_to_the_rust_cli_ingest(tmp_path, plugin, binary, policy, files, lines):
    stream = tar_stream(metrics_dir(tmp_path, files))
    cli = subprocess.run(
        [
            str(binary),
            "ingest",
            "--runner",
            "runner-7",
            "--flavor",
            "small",
            "--quarantine-dir",
            str(tmp_path / "cli"),
            "--installation-start",
            "1700000000.5",
            "--policy",
            policy,
            "--metrics-log",
            "-",
            "--cache-dir",
            str(REPO / "target" / "hosts" / "cache"),
        ],
        input=stream,
        capture_output=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr.decode()
    log = tmp_path / "python.log"
    summary = ingest(
        "runner-7",
        stream,
        tmp_path / "python",
        "small",
        installation_start=1700000000.5,
        policy=policy,
        metrics_log=log,
        plugin=plugin,
    )
    assert summary.extracted == 1 and cli.stdout.count(b"\n") == summary.lines_written == lines
    assert log.read_bytes() == cli.stdout


def test_strict_a_corrupt_pre_job_file_quarantines_the_runner_with_its_bytes(tmp_path, plugin):
    stream = tar_stream(metrics_dir(tmp_path, CORRUPT))
    root, log = tmp_path / "pulled", tmp_path / "metrics.log"
    summary = ingest("runner-7", stream, root, "small", installation_start=1700000000, metrics_log=log, plugin=plugin)
    [report] = summary.reports
    assert (report.outcome, report.reason, report.file, report.events) == (
        "quarantined",
        "invalid-json",
        "pre-job-metrics.json",
        0,
    )
    assert events(log) == [] and summary.lines_written == 0
    record, moved = quarantined(root, report)
    assert "pre-job-metrics.json" in report.detail and record["detail"] in report.detail
    assert (moved / "pre-job-metrics.json").read_bytes() == CORRUPT["pre-job-metrics.json"]
    assert (moved / "post-job-metrics.json").read_bytes() == POST
    assert (moved / "pulled.tar").read_bytes() == stream, "the stream is kept as it came"
    assert (moved / "runner-installation-start.timestamp").is_file()
    nothing_staged(root)


def test_lenient_the_corrupt_file_counts_as_missing_and_the_rest_is_issued(tmp_path, plugin):
    stream = tar_stream(metrics_dir(tmp_path, CORRUPT))
    root, log = tmp_path / "pulled", tmp_path / "metrics.log"
    summary = ingest(
        "runner-7",
        stream,
        root,
        "small",
        installation_start=1700000000,
        policy="lenient",
        metrics_log=log,
        plugin=plugin,
    )
    [report] = summary.reports
    assert (report.outcome, report.events, report.reason) == ("extracted", 1, None), report
    assert report.detail.startswith("counted as missing (lenient policy): pre-job-metrics.json (invalid-json")
    assert events(log) == ["runner_installed"]
    nothing_staged(root)
    assert not (root / ".quarantine").exists()


def test_loose_files_in_a_mapping(tmp_path, plugin):
    root, log = tmp_path / "pulled", tmp_path / "metrics.log"
    summary = ingest(
        "runner-a", dict(VALID), root, "small", installation_start=1700000000, metrics_log=log, plugin=plugin
    )
    assert [(r.outcome, r.events) for r in summary.reports] == [("extracted", 3)]
    assert events(log) == EVENTS
    # Without an installation start there is no runner_installed (spec 5).
    summary = ingest("runner-a", dict(VALID), root, "small", metrics_log=log, plugin=plugin)
    assert [(r.outcome, r.events) for r in summary.reports] == [("extracted", 2)]
    assert events(log) == EVENTS + EVENTS[1:]
    # Missing (None or absent) files count as missing; bytearray and memoryview are bytes too.
    summary = ingest(
        "runner-b",
        {
            "runner-installed.timestamp": bytearray(INSTALLED),
            "pre-job-metrics.json": None,
            "post-job-metrics.json": memoryview(POST),
        },
        root,
        "small",
        installation_start=1700000000,
        metrics_log=log,
        plugin=plugin,
    )
    assert [(r.name, r.outcome, r.events) for r in summary.reports] == [("runner-b", "extracted", 1)]
    assert events(log) == EVENTS + EVENTS[1:] + ["runner_installed"]
    summary = ingest("runner-c", {}, root, "small", metrics_log=log, plugin=plugin)
    assert [(r.outcome, r.detail) for r in summary.reports] == [("no-data", "no installed timestamp; deleted")]
    nothing_staged(root)


def test_an_oversized_loose_file_is_cut_to_the_bound_and_quarantined(tmp_path, plugin):
    big = bytes(range(256)) * 20  # 5120 bytes, each position telling where it was cut
    root, log = tmp_path / "pulled", tmp_path / "metrics.log"
    summary = ingest(
        "runner-a", {**VALID, "pre-job-metrics.json": big[:5000]}, root, "small", metrics_log=log, plugin=plugin
    )
    [report] = summary.reports
    assert (report.outcome, report.reason, report.file) == ("quarantined", "oversized", "pre-job-metrics.json")
    _, moved = quarantined(root, report)
    assert MAX_LOOSE_BYTES == 1025 and (moved / "pre-job-metrics.json").read_bytes() == big[:1025]
    assert events(log) == []


def test_an_oversized_tar_stream_is_cut_to_the_bound_and_quarantined_whole(tmp_path, plugin):
    stream = bytes(range(256)) * 300  # 76800 bytes
    root, log = tmp_path / "pulled", tmp_path / "metrics.log"
    for policy in ("strict", "lenient"):
        summary = ingest(f"runner-{policy}", stream, root, "small", policy=policy, metrics_log=log, plugin=plugin)
        [report] = summary.reports
        assert (report.outcome, report.reason, report.file) == ("quarantined", "oversized", "pulled.tar")
        _, moved = quarantined(root, report)
        assert MAX_STREAM_BYTES == 65537 and [p.name for p in moved.iterdir()] == ["pulled.tar"]
        assert (moved / "pulled.tar").read_bytes() == stream[:65537]
    assert events(log) == []


@pytest.mark.parametrize("policy", ["strict", "lenient"])
def test_a_hostile_tar_with_a_symlink_entry_is_quarantined_with_the_stream_kept(tmp_path, plugin, policy):
    # The link points inside this test's tmp dir; the runner's files are never followed anyway.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "pre.json").write_bytes(PRE)
    directory = metrics_dir(tmp_path, {"runner-installed.timestamp": INSTALLED})
    (directory / "pre-job-metrics.json").symlink_to(tmp_path / "elsewhere" / "pre.json")
    stream = tar_stream(directory)
    root, log = tmp_path / "pulled", tmp_path / "metrics.log"
    summary = ingest("runner-7", stream, root, "small", policy=policy, metrics_log=log, plugin=plugin)
    [report] = summary.reports
    assert (report.outcome, report.reason, report.file) == ("quarantined", "not-regular-file", "pulled.tar"), report
    assert "pre-job-metrics.json" in report.detail and "symlink" in report.detail
    _, moved = quarantined(root, report)
    assert [p.name for p in moved.iterdir()] == ["pulled.tar"] and (moved / "pulled.tar").read_bytes() == stream
    assert events(log) == [] and (tmp_path / "elsewhere" / "pre.json").read_bytes() == PRE


def test_a_tar_stream_that_is_not_one_is_quarantined_as_an_invalid_archive(tmp_path, plugin):
    root = tmp_path / "pulled"
    summary = ingest("runner-7", b"not a tar stream" * 64, root, "small", metrics_log=tmp_path / "log", plugin=plugin)
    [report] = summary.reports
    assert (report.outcome, report.reason, report.file) == ("quarantined", "invalid-archive", "pulled.tar"), report
    _, moved = quarantined(root, report)
    assert (moved / "pulled.tar").read_bytes() == b"not a tar stream" * 64


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(files={**VALID, "runner-installation-start.timestamp": b"1"}), "'runner-installation-start.timestamp'"),
        (dict(files={"pre-job-metrics.json": b"{}", "../etc/passwd": b""}), "'../etc/passwd'"),
        (dict(runner_name="../x"), "not a valid runner name"),
        (dict(runner_name=".quarantine"), "not a valid runner name"),
        (dict(runner_name="r" * 256), "not a valid runner name"),
        (dict(runner_name=b"runner-a"), "not a valid runner name"),
        (dict(installation_start=float("nan")), "installation start"),
        (dict(installation_start=float("inf")), "installation start"),
        (dict(installation_start=-1), "installation start"),
        (dict(installation_start="1700000000"), "installation start"),
        (dict(policy="relaxed"), "policy 'relaxed'"),
        (dict(policy=None), "policy None"),
    ],
)
def test_invalid_arguments_are_value_errors_before_anything_is_touched(tmp_path, plugin, kwargs, match):
    args = dict(
        runner_name="runner-a",
        files=dict(VALID),
        quarantine_dir=tmp_path / "pulled",
        flavor="small",
        metrics_log=tmp_path / "log",
        plugin=plugin,
    )
    with pytest.raises(ValueError, match=match):
        ingest(**{**args, **kwargs})
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_files_of_the_wrong_type_are_type_errors(tmp_path, plugin):
    for files in ("a tar stream as str", ["runner-installed.timestamp"], {"pre-job-metrics.json": "{}"}):
        with pytest.raises(TypeError):
            ingest("runner-a", files, tmp_path / "pulled", "small", metrics_log=tmp_path / "log", plugin=plugin)
    assert not (tmp_path / "pulled").exists()


def test_a_runner_already_in_the_directory_stops_the_run_and_is_left_untouched(tmp_path, plugin):
    root = tmp_path / "pulled"
    (root / "runner-7").mkdir(parents=True)
    (root / "runner-7" / "runner-installed.timestamp").write_bytes(b"1600000000")
    (root / "runner-7" / "pre-job-metrics.json").write_bytes(b"left by an earlier run")
    before = conformance.snapshot(root)
    log = tmp_path / "metrics.log"
    with pytest.raises(CollectError, match="already in the storage root") as raised:
        ingest("runner-7", tar_stream(metrics_dir(tmp_path, VALID)), root, "small", metrics_log=log, plugin=plugin)
    [report] = raised.value.summary.reports
    assert (report.name, report.outcome) == ("runner-7", "failed") and report.detail.startswith("not staged: ")
    assert conformance.snapshot(root) == before and events(log) == []
    # It is an ordinary storage of the directory: a collect there handles it.
    summary = collect(root, "small", metrics_log=log, plugin=plugin)
    assert [(r.name, r.outcome, r.reason) for r in summary.reports] == [("runner-7", "quarantined", "invalid-json")]


def test_the_quarantine_dir_is_created_one_level_and_locked_like_a_root(tmp_path, plugin):
    with pytest.raises(CollectError, match="creating it"):
        ingest(
            "runner-a",
            dict(VALID),
            tmp_path / "no-such-parent" / "pulled",
            "small",
            metrics_log=tmp_path / "log",
            plugin=plugin,
        )
    assert not (tmp_path / "no-such-parent").exists()
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(CollectError, match="not a directory"):
        ingest("runner-a", dict(VALID), tmp_path / "a-file", "small", metrics_log=tmp_path / "log", plugin=plugin)
    root = tmp_path / "pulled"
    root.mkdir()
    held = _lock.acquire(root)  # another run's lock (flock is per open file, so one process will do)
    try:
        with pytest.raises(CollectError, match=f"{root} is busy: .* pid {os.getpid()}"):
            ingest("runner-a", dict(VALID), root, "small", metrics_log=tmp_path / "log", plugin=plugin)
        assert sorted(p.name for p in root.iterdir()) == [".lock"], "nothing staged while another run held it"
    finally:
        _lock.release(root, held)
    summary = ingest("runner-a", dict(VALID), root, "small", metrics_log=tmp_path / "log", plugin=plugin, wait=5)
    assert summary.extracted == 1


def test_collect_takes_the_policy_too(tmp_path, plugin):
    def root_with_a_corrupt_runner(name):
        root = tmp_path / name
        (root / "runner-a").mkdir(parents=True)
        for file, data in CORRUPT.items():
            (root / "runner-a" / file).write_bytes(data)
        return root

    log = tmp_path / "log"
    [strict] = collect(root_with_a_corrupt_runner("strict"), "small", metrics_log=log, plugin=plugin).reports
    assert (strict.outcome, strict.reason) == ("quarantined", "invalid-json")
    [lenient] = collect(
        root_with_a_corrupt_runner("lenient"), "small", metrics_log=log, plugin=plugin, policy="lenient"
    ).reports
    assert lenient.outcome == "extracted" and lenient.detail.startswith("counted as missing (lenient policy): ")
    assert events(log) == []  # no installation start in the storage: no runner_installed either
    with pytest.raises(ValueError, match="policy 'LENIENT'"):
        collect(tmp_path, "small", metrics_log=log, plugin=plugin, policy="LENIENT")


def test_a_trap_on_a_pulled_runner_is_recovered_through_the_keeper(tmp_path, hostile):
    # core/src/hostile.rs: the plugin panics extracting a storage named `hostile-panic-...`.
    stream = tar_stream(metrics_dir(tmp_path, VALID))
    root, log, seen = tmp_path / "pulled", tmp_path / "metrics.log", []
    summary = ingest(
        "hostile-panic-1",
        stream,
        root,
        "small",
        installation_start=1700000000,
        metrics_log=log,
        plugin=hostile,
        on_report=seen.append,
    )
    # The trap was recovered through the keeper, and the runner not staged again.
    first = seen[0]
    assert (first.name, first.outcome, first.reason) == ("hostile-panic-1", "quarantined", "sandbox-trap")
    assert "guest collect trapped: " in first.detail
    _, moved = quarantined(root, first)
    assert (moved / "pulled.tar").read_bytes() == stream
    assert events(log) == []
    assert seen == summary.reports and len(summary.reports) == 1 and summary.quarantined == 1
    assert len(list((root / ".quarantine").glob("*.reason.json"))) == 1
    nothing_staged(root)
