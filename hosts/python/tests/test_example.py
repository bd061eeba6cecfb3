"""examples/collect_example.py runs, as a user would run it, and prints what it promises."""

import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
A = [
    '{"timestamp": 1700000060.0, "event": "runner_installed", "flavor": "small", "duration": 60.0}',
    '{"timestamp": 1700000100.0, "event": "runner_start", "flavor": "small", "workflow": "ci", '
    '"repo": "canonical/example", "github_event": "push", "idle": 40.0, "queue_duration": 12.5}',
    '{"timestamp": 1700000400.0, "event": "runner_stop", "flavor": "small", "workflow": "ci", '
    '"repo": "canonical/example", "github_event": "push", "status": "normal", "job_duration": 300.0, '
    '"job_conclusion": "success"}',
]
B = ['{"timestamp": 1700000530.0, "event": "runner_installed", "flavor": "small", "duration": 30.0}']


def test_the_example_runs_and_prints_the_outcomes_the_summary_and_the_log(component_path):
    # These sources, not an installed copy; the component under test.
    env = {**os.environ, "PYTHONPATH": str(PACKAGE / "src"), "RUNNER_METRICS_COMPONENT": str(component_path)}
    done = subprocess.run(
        [sys.executable, str(PACKAGE / "examples" / "collect_example.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == [
        "small-runner-a: extracted, deleted, 3 lines",
        "small-runner-b: extracted, deleted, 1 lines",
        "{'extracted': 2, 'no_data': 0, 'quarantined': 0, 'skipped': 0, 'failed': 0, 'lines_written': 4}",
    ], done.stdout
    # The storages' lines in the order they were collected (directory order).
    assert lines[3:] in (A + B, B + A), done.stdout
