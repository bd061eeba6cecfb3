"""The component under the plain `wasmtime` CLI (48.0.8, the version of the
host's wasmtime crate): `wasmtime run` of its `wasi:cli/run` export on the
shared conformance cases, and `wasmtime run --invoke` of its exported
functions.

Needs `wasmtime` on PATH (or `$WASMTIME`) and the command component (world
`command`: the CLI lends no host interface, so it cannot load the plugin) at
`$RUNNER_METRICS_COMMAND_COMPONENT`, else
`<repo>/target/hosts/runner_metrics_command.wasm`
(`runner-metrics component --kind command --output ...`);
scripts/test-hosts.sh provides both. Run with pytest (stdlib otherwise).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import conformance  # noqa: E402

WASMTIME_VERSION = "48.0.8"
CASES = conformance.load_cases()


@pytest.fixture(scope="session")
def wasmtime():
    exe = os.environ.get("WASMTIME") or shutil.which("wasmtime")
    if not exe:
        pytest.fail(f"no wasmtime CLI: `cargo install wasmtime-cli --version {WASMTIME_VERSION} --locked`")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.split()[:2] == ["wasmtime", WASMTIME_VERSION], version
    return exe


@pytest.fixture(scope="session")
def component():
    default = REPO / "target" / "hosts" / "runner_metrics_command.wasm"
    path = Path(os.environ.get("RUNNER_METRICS_COMMAND_COMPONENT") or default)
    if not path.is_file():
        pytest.fail(f"no component at {path}: `./target/debug/runner-metrics component --kind command --output {path}`")
    return path


def run(wasmtime, component, root, *args, wasmtime_args=(), check_rc=True):
    """`wasmtime run [--dir ROOT::/storage] COMPONENT ARGS...`"""
    cmd = [wasmtime, "run", *wasmtime_args]
    if root is not None:
        cmd += ["--dir", f"{root}::/storage"]
    cmd += [str(component), *args]
    done = subprocess.run(cmd, capture_output=True, timeout=120)
    if check_rc and done.returncode != 0:
        raise AssertionError(f"{cmd} exited {done.returncode}\nstdout: {done.stdout!r}\nstderr: {done.stderr.decode()}")
    return done


def collect_args(case):
    args = ["collect", "--flavor", case["flavor"], "--json"]
    selection = case["selection"]
    for name in selection.get("exclude", []):
        args += ["--exclude", name]
    for name in selection.get("include") or []:
        args += ["--include", name]
    if selection.get("min_age") is not None:
        args += ["--min-age", str(selection["min_age"])]
    for name, job in case["jobs"].items():
        spec = f"{name}={job['queue_duration']}"
        if job.get("conclusion"):
            spec += f":{job['conclusion']}"
        args += ["--job", spec]
    return args


def parse_stderr(stderr):
    reports, summary = [], None
    for line in stderr.decode().splitlines():
        value = json.loads(line)
        if "summary" in value:
            summary = value["summary"]
        else:
            reports.append(
                conformance.Report(
                    name=value["name"],
                    outcome=value["outcome"],
                    reason=value["reason"],
                    file=value["file"],
                    events=value["events"],
                    detail=value["detail"],
                )
            )
    return reports, summary


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_conformance_case(case, tmp_path, wasmtime, component):
    root = conformance.build_case(case, tmp_path)
    before = conformance.snapshot(tmp_path)
    done = run(wasmtime, component, root, *collect_args(case))
    reports, summary = parse_stderr(done.stderr)
    problems = conformance.check_run(case, tmp_path, before, conformance.Run(reports, done.stdout))
    assert not problems, "\n".join(problems)
    assert summary is not None and summary["failed"] == 0
    assert sum(summary[k] for k in ("extracted", "no_data", "quarantined", "skipped", "failed")) == len(case["expect"])
    assert summary["lines_written"] == done.stdout.count(b"\n")


def test_text_summary_and_notable_reports_on_stderr(tmp_path, wasmtime, component):
    root = conformance.build_case(conformance.case_by_name("corrupt-storages"), tmp_path)
    done = run(wasmtime, component, root, "collect", "--flavor", "small")
    err = done.stderr.decode()
    assert "quarantined: runner-bom-post: invalid-utf8: post-job-metrics.json" in err
    assert "quarantined: 20" in err and "failed: 0" in err
    assert done.stdout == b""


@pytest.mark.parametrize("flag", ["--dry-run", "--keep"])  # `--keep`: the old name
def test_a_dry_run_changes_nothing(tmp_path, wasmtime, component, flag):
    root = conformance.build_case(conformance.case_by_name("corrupt-storages"), tmp_path)
    before = conformance.snapshot(tmp_path)
    done = run(wasmtime, component, root, "collect", "--flavor", "small", flag, "--json")
    assert conformance.snapshot(tmp_path) == before
    reports, summary = parse_stderr(done.stderr)
    assert summary["quarantined"] == len(reports) and all("would be quarantined" in r.detail for r in reports)


def test_usage_errors_exit_1_and_print_usage(tmp_path, wasmtime, component):
    for args in (
        ["collect"],
        ["collect", "--flavor"],
        ["frobnicate"],
        ["collect", "--flavor", "x", "--min-age", "-1"],
        ["collect", "--flavor", "x", "--job", "r=abc"],
        ["collect", "--flavor", "x", "--bogus"],
    ):
        done = run(wasmtime, component, tmp_path, *args, check_rc=False)
        assert done.returncode == 1, (args, done)
        assert b"usage: wasmtime run" in done.stderr, args
    assert b"usage: wasmtime run" in run(wasmtime, component, tmp_path, "--help").stdout


def test_without_a_storage_root_nothing_happens(tmp_path, wasmtime, component):
    done = run(wasmtime, component, None, "collect", "--flavor", "small", check_rc=False)
    assert done.returncode == 1
    assert b"--dir /path/to/runner-fs::/storage" in done.stderr


def test_a_trap_stops_the_run_and_loses_nothing(tmp_path, wasmtime, component):
    case = conformance.case_by_name("valid-without-job-metrics")
    root = conformance.build_case(case, tmp_path)
    before = conformance.snapshot(tmp_path)
    done = run(
        wasmtime, component, root, "collect", "--flavor", "small", wasmtime_args=["-W", "fuel=20000"], check_rc=False
    )
    assert done.returncode != 0
    assert b"fuel" in done.stderr
    assert conformance.snapshot(tmp_path) == before, "nothing may be deleted before its lines are out"


def test_limits_can_be_set_on_the_command_line(tmp_path, wasmtime, component):
    case = conformance.case_by_name("valid-without-job-metrics")
    root = conformance.build_case(case, tmp_path)
    done = run(
        wasmtime,
        component,
        root,
        "collect",
        "--flavor",
        "small",
        wasmtime_args=["-W", "max-memory-size=67108864", "-W", "timeout=10s", "-W", "fuel=10000000000"],
    )
    assert done.stdout.decode().splitlines() == case["expect"]["small-r-00000000000a"]["lines"]


# --- wasmtime run --invoke -------------------------------------------------


def invoke(wasmtime, component, call, root=None):
    done = run(wasmtime, component, root, wasmtime_args=["--invoke", call])
    return done.stdout.decode().strip()


def test_invoke_render_event(wasmtime, component):
    out = invoke(
        wasmtime, component, 'render-event(runner-installed({timestamp: 2.0, flavor: "small", duration: 1.0}))'
    )
    # The result is printed as a WAVE string literal.
    assert out == r'"{\"timestamp\": 2.0, \"event\": \"runner_installed\", \"flavor\": \"small\", \"duration\": 1.0}"'


def test_invoke_with_the_full_export_name(wasmtime, component):
    # INTERFACE.FUNCTION@VERSION: WAVE puts the package version last.
    out = invoke(
        wasmtime,
        component,
        'github-runner:metrics/events.render-event@0.4.0(runner-stop({timestamp: 5.0, flavor: "small", '
        'workflow: "ci", repo: "org/repo", github-event: "push", status: abnormal, '
        "status-info: some({code: 1}), job-duration: 2.0, job-conclusion: some(failure)}))",
    )
    line = json.loads(json.loads(out))
    assert line["status_info"] == {"code": 1} and line["job_conclusion"] == "failure"


def test_invoke_issue_events(wasmtime, component):
    out = invoke(
        wasmtime,
        component,
        "issue-events({installation-start-timestamp: some(1.0), installed-timestamp: 2.0, "
        'pre-job: none, post-job: none, runner-name: "r"}, "small", none)',
    )
    # WAVE prints floats in their shortest form: 2.0 is `2`.
    assert out == '[runner-installed({timestamp: 2, flavor: "small", duration: 1})]'


def test_invoke_extract_storage_dry_run(tmp_path, wasmtime, component):
    case = conformance.case_by_name("fixture-f")
    root = conformance.build_case(case, tmp_path)
    before = conformance.snapshot(tmp_path)
    out = invoke(wasmtime, component, 'extract-storage("runner-f", true)', root=root)
    assert out.startswith("extracted({installation-start-timestamp: some(1), installed-timestamp: 2, ")
    assert 'runner-name: "runner-f"' in out
    assert conformance.snapshot(tmp_path) == before
