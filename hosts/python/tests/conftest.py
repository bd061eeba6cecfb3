"""Shared setup: the package from src/, the conformance fixtures from
tests/conformance/, and the component file.

The component is `$RUNNER_METRICS_COMPONENT`, else
`<repo>/target/hosts/runner_metrics.wasm` (what scripts/test-hosts.sh writes
with `runner-metrics component --output ...`)."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "hosts" / "python" / "src"))
sys.path.insert(0, str(REPO / "tests" / "conformance"))


@pytest.fixture(scope="session")
def component_path() -> Path:
    path = Path(os.environ.get("RUNNER_METRICS_COMPONENT") or REPO / "target" / "hosts" / "runner_metrics.wasm")
    if not path.is_file():
        pytest.fail(f"no component at {path}: run `cargo build -p runner-metrics && "
                    f"./target/debug/runner-metrics component --output {path}` (scripts/test-hosts.sh does)")
    return path


@pytest.fixture(scope="session")
def plugin(component_path):
    from runner_metrics_host import Plugin
    return Plugin(component_path)
