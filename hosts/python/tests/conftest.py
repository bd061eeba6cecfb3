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
# The keeper every Plugin loads beside the plugin (written by scripts/test-hosts.sh).
os.environ.setdefault("RUNNER_METRICS_KEEPER_COMPONENT", str(REPO / "target" / "hosts" / "runner_metrics_keeper.wasm"))


@pytest.fixture(scope="session")
def component_path() -> Path:
    path = Path(os.environ.get("RUNNER_METRICS_COMPONENT") or REPO / "target" / "hosts" / "runner_metrics.wasm")
    if not path.is_file():
        pytest.fail(
            f"no component at {path}: run `cargo build -p runner-metrics && "
            f"./target/debug/runner-metrics component --output {path}` (scripts/test-hosts.sh does)"
        )
    return path


@pytest.fixture(scope="session")
def plugin(component_path):
    from runner_metrics_host import Plugin

    return Plugin(component_path)


@pytest.fixture(scope="session")
def hostile_component() -> Path:
    """The deliberately hostile build (core/src/hostile.rs): `$RUNNER_METRICS_HOSTILE_COMPONENT`,
    else `<repo>/target/hosts/runner_metrics_hostile.wasm`."""
    path = Path(
        os.environ.get("RUNNER_METRICS_HOSTILE_COMPONENT") or REPO / "target" / "hosts" / "runner_metrics_hostile.wasm"
    )
    if not path.is_file():
        pytest.skip(
            f"no hostile component at {path}: the trap-recovery tests need the guest built with "
            "`--features hostile` (core/src/hostile.rs); set $RUNNER_METRICS_HOSTILE_COMPONENT"
        )
    return path


@pytest.fixture(scope="session")
def hostile(hostile_component):
    from runner_metrics_host import Plugin

    return Plugin(hostile_component)
