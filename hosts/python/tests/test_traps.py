"""Trap recovery and lies, with the deliberately hostile component
(core/src/hostile.rs: a storage named `hostile-<behaviour>-...` makes it
panic, loop, allocate without bound or lie; every other storage is handled
normally). Skipped when that build is missing (see conftest.py)."""

import json
from collections import Counter

import pytest

import conformance
from runner_metrics_host import CollectError, Limits, Plugin, collect

EVENTS = ("runner_installed", "runner_start", "runner_stop")


def storage(i):
    """A valid storage whose three lines all say `i`: in the installed timestamp
    (runner_installed) and in the workflow name (runner_start, runner_stop)."""
    pre = {"workflow": f"ci-{i}", "repository": "o/r", "event": "push", "timestamp": 1700000100, "workflow_run_id": "1"}
    return {
        "dir": {
            "runner-installation-start.timestamp": {"text": "1700000000"},
            "runner-installed.timestamp": {"text": str(1700000060 + i)},
            "pre-job-metrics.json": {"text": json.dumps(pre)},
            "post-job-metrics.json": {"text": json.dumps({"timestamp": 1700000400, "status": "normal"})},
        }
    }


def logged(log):
    """(storage number, event) for each line of the log."""
    found = []
    for line in log.read_text().splitlines() if log.exists() else []:
        e = json.loads(line)
        i = int(e["timestamp"]) - 1700000060 if e["event"] == "runner_installed" else int(e["workflow"][3:])
        found.append((i, e["event"]))
    return found


def run(tmp_path, plugin, hostile_name, **options):
    """Collects `hostile_name` beside runner-1..3, a no-data storage and a stray
    file; checks every entry is reported once and runner-1..3's lines are
    logged exactly once (in a dry run too)."""
    root_spec = {
        "runner-1": storage(1),
        hostile_name: storage(9),
        "runner-2": storage(2),
        "runner-3": storage(3),
        "runner-empty": {"dir": {}},
        "stray": {"text": "x"},
    }
    root = conformance.build_case({"root": root_spec}, tmp_path)
    before = conformance.snapshot(tmp_path)
    log = tmp_path / "metrics.log"
    summary = collect(root, "small", metrics_log=log, plugin=plugin, **options)
    by_name = {r.name: r for r in summary.reports}
    assert Counter(r.name for r in summary.reports) == Counter(list(root_spec)), summary.reports
    assert sorted(logged(log)) == [(i, e) for i in (1, 2, 3) for e in EVENTS], log.read_text()
    for i in (1, 2, 3):
        assert (by_name[f"runner-{i}"].outcome, by_name[f"runner-{i}"].events) == ("extracted", 3)
    return root, before, by_name


def subtree(snapshot, prefix):
    return {k[len(prefix) :]: v for k, v in snapshot.items() if k == prefix or k.startswith(prefix + "/")}


def assert_quarantined_as_trap(root, before, report, why):
    name = report.name
    assert (report.outcome, report.reason, report.file) == ("quarantined", "sandbox-trap", None), report
    assert why in report.detail and "moved to .quarantine/" in report.detail, report
    [reason_file] = (root / ".quarantine").glob(f"{name}.*.reason.json")
    record = json.loads(reason_file.read_text())
    assert (record["reason"], record["runner_name"]) == ("sandbox-trap", name) and why in record["detail"]
    moved = reason_file.parent / reason_file.name[: -len(".reason.json")]
    now = subtree(conformance.snapshot(root.parent), str(moved.relative_to(root.parent)))
    assert now == subtree(before, f"runner-fs/{name}"), "the quarantined storage was moved whole"
    assert not (root / name).exists() and not any((root / f"runner-{i}").exists() for i in (1, 2, 3))


@pytest.mark.parametrize("batch_size", [1, 64])
def test_a_panic_quarantines_that_storage_and_the_others_are_extracted_once(tmp_path, hostile, batch_size):
    root, before, by_name = run(tmp_path, hostile, "hostile-panic-a", batch_size=batch_size)
    assert_quarantined_as_trap(root, before, by_name["hostile-panic-a"], "guest collect trapped: ")
    assert by_name["runner-empty"].outcome == "no-data" and by_name["stray"].outcome == "skipped"


@pytest.mark.parametrize(
    "limits,why",
    [
        (Limits(timeout=0.5, fuel=None), "exceeded its 0.5s deadline"),
        (Limits(fuel=50_000_000), "ran out of fuel (50000000 units)"),
    ],
)
def test_a_loop_is_stopped_by_the_deadline_or_the_fuel_and_quarantined(tmp_path, hostile_component, limits, why):
    root, before, by_name = run(tmp_path, Plugin(hostile_component, limits), "hostile-loop-b")
    assert_quarantined_as_trap(root, before, by_name["hostile-loop-b"], why)


def test_unbounded_allocation_stops_at_the_memory_cap_and_is_quarantined(tmp_path, hostile_component):
    plugin = Plugin(hostile_component, Limits(memory_bytes=16 * 1024 * 1024))
    root, before, by_name = run(tmp_path, plugin, "hostile-alloc-c")
    assert_quarantined_as_trap(root, before, by_name["hostile-alloc-c"], "guest collect trapped: ")


def test_a_dry_run_reports_the_trapped_storage_failed_and_changes_nothing(tmp_path, hostile):
    root, before, by_name = run(tmp_path, hostile, "hostile-panic-a", keep=True)
    after = conformance.snapshot(tmp_path)
    after.pop("metrics.log")
    assert after == before
    trapped = by_name["hostile-panic-a"]
    assert trapped.outcome == "failed" and trapped.detail.startswith("kept: guest collect trapped: "), trapped
    assert {by_name[f"runner-{i}"].detail for i in (1, 2, 3)} == {"kept (dry run)"}


def test_a_trap_outside_any_storage_stops_the_run_with_an_error(tmp_path, hostile):
    # The hostile scan panics before its second batch, after the first (one
    # stray file, skipped) was reported: no storage to blame. (A dry run: it
    # does not purge `.deleting/`, a claim the guest never ends after a
    # successful purge, so the first trap would be blamed on `.deleting`.)
    root = conformance.build_case({"root": {"stray": {"text": "x"}}}, tmp_path)
    with pytest.raises(CollectError, match="outside any storage: guest collect trapped") as raised:
        collect(root, "small", exclude=["hostile-scan-panic"], metrics_log=tmp_path / "log", plugin=hostile, keep=True)
    assert [(r.name, r.outcome) for r in raised.value.summary.reports] == [("stray", "skipped")]


def test_the_run_stops_after_16_traps_and_leaves_the_rest(tmp_path, hostile):
    root = conformance.build_case({"root": {f"hostile-panic-{i:02}": storage(i) for i in range(17)}}, tmp_path)
    with pytest.raises(CollectError, match="stopped after 16 sandbox traps") as raised:
        collect(root, "small", metrics_log=tmp_path / "log", plugin=hostile)
    reports = raised.value.summary.reports
    assert len(reports) == 16 and {(r.outcome, r.reason) for r in reports} == {("quarantined", "sandbox-trap")}
    assert len([p for p in root.iterdir() if p.name.startswith("hostile-")]) == 1


@pytest.mark.parametrize(
    "name,flavor,why",
    [
        ("runner-liar", "hostile-otherflavor", 'event of flavor "injected", not "hostile-otherflavor"'),
        ("runner-liar", "hostile-moreevents", "guest issued 4 events for one runner; at most 3 exist"),
        ("hostile-othername-x", "small", 'guest answered for "someone-else" when asked about "hostile-othername-x"'),
        ("hostile-negative-x", "small", "installed timestamp is -5, not a finite number >= 0"),
        ("hostile-nan-x", "small", "installed timestamp is NaN"),
        ("hostile-huge-x", "small", "more than a metrics file can hold"),
        ("hostile-location-x", "small", 'reported quarantine location "../../etc"'),
    ],
)
def test_a_lie_keeps_the_storage_whole_and_writes_nothing_for_it(tmp_path, hostile, name, flavor, why):
    root = conformance.build_case({"root": {name: storage(7)}}, tmp_path)
    before = conformance.snapshot(root)
    log = tmp_path / "metrics.log"
    summary = collect(root, flavor, metrics_log=log, plugin=hostile)
    [report] = summary.reports
    assert report.outcome == "failed" and report.detail.startswith("kept: guest lied: ") and why in report.detail, (
        report
    )
    assert log.read_text() == "" and conformance.snapshot(root) == before


def test_a_scan_offering_a_path_out_of_the_root_is_refused_and_the_run_goes_on(tmp_path, hostile):
    root = conformance.build_case({"root": {"runner-1": storage(1)}, "outside": {"etc": {"text": "x"}}}, tmp_path)
    summary = collect(root, "small", exclude=["hostile-scan"], metrics_log=tmp_path / "log", plugin=hostile)
    by_name = {r.name: r for r in summary.reports}
    assert by_name["../../etc"].outcome == "failed" and "not a valid runner name" in by_name["../../etc"].detail
    assert by_name["runner-1"].outcome == "extracted" and len(summary.reports) == 2
