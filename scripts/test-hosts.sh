#!/usr/bin/env bash
# Runs the component under every host on the shared conformance fixtures
# (tests/conformance/cases.json):
#
#   0. the Rust CLI (`runner-metrics collect`), cases without job metrics
#   1. the wasmtime CLI (`wasmtime run` of wasi:cli/run, and `--invoke`)
#   2. the Python host (hosts/python, PyPI `wasmtime`), with pytest
#   3. the Node host (hosts/node, jco + preview2-shim), with `node --test`
#
# Installs what it needs from the project's own files: the wasmtime CLI (the
# wasmtime-cli crate) at the host crate's version (cached in ~/.cargo/bin), a venv from
# hosts/python/requirements.txt (PyPI), hosts/node/package-lock.json (npm).
# Needs Rust (rustup), Python >= 3.11 with venv + pip, Node >= 20 with npm.
#
# Environment: WASMTIME_CLI_VERSION (default: the host's wasmtime crate
# version), PYTHON (default python3), SKIP_CLI/SKIP_PYTHON/SKIP_NODE=1.
# Exits non-zero if anything failed (or, under CI=true, was skipped); prints
# one "host: passed/failed" line each and "hosts: N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

# Everything the test runners print is also kept here, to count the results.
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# The wasmtime CLI at the version of the wasmtime crate the Rust host uses.
pinned=$(sed -n 's/^wasmtime = { version = "=\([0-9.]*\)".*/\1/p' Cargo.toml)
want=${WASMTIME_CLI_VERSION:-${pinned:-48.0.8}}
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# The plugin (world `plugin`: Python, Node), the keeper they run beside it
# (world `keeper`), the command component (world `command`: the wasmtime
# CLI) and a deliberately hostile plugin (guest feature `hostile`) for the
# trap-recovery tests of every host.
component="$repo/target/hosts/runner_metrics.wasm"
keeper_component="$repo/target/hosts/runner_metrics_keeper.wasm"
command_component="$repo/target/hosts/runner_metrics_command.wasm"
hostile_component="$repo/target/hosts/runner_metrics_hostile.wasm"
export RUNNER_METRICS_COMPONENT="$component"
export RUNNER_METRICS_KEEPER_COMPONENT="$keeper_component"
export RUNNER_METRICS_COMMAND_COMPONENT="$command_component"
export RUNNER_METRICS_HOSTILE_COMPONENT="$hostile_component"
# The Python and Node hosts compare their ingest with the Rust CLI's.
export RUNNER_METRICS_BIN="$repo/target/release/runner-metrics"

results=()
status=0
record() { # name, exit code
    if [ "$2" -eq 0 ]; then results+=("$1: passed"); else results+=("$1: FAILED"); status=1; fi
}

step "components: cargo build --release -p runner-metrics && runner-metrics component --kind plugin|keeper|command; the hostile plugin"
rustup target add wasm32-wasip2 >/dev/null
cargo build --release -p runner-metrics
mkdir -p "$(dirname "$component")"
./target/release/runner-metrics component --kind plugin --output "$component"
./target/release/runner-metrics component --kind keeper --output "$keeper_component"
./target/release/runner-metrics component --kind command --output "$command_component"
# The same nested build as tests/tests/e2e/hostile_guest.rs (target/guest-hostile).
cargo rustc --quiet --profile component -p runner-metrics-core --features hostile \
    --target wasm32-wasip2 --lib --crate-type cdylib --target-dir "$repo/target/guest-hostile"
cp "$repo/target/guest-hostile/wasm32-wasip2/component/runner_metrics_core.wasm" "$hostile_component"

step "Python venv (hosts/python/.venv) from hosts/python/requirements.txt"
python=${PYTHON:-python3}
venv="$repo/hosts/python/.venv"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r hosts/python/requirements.txt
pytest=("$venv/bin/python" -m pytest -p no:cacheprovider -q)

step "Rust CLI on the conformance fixtures (tests/conformance/test_rust_cli.py)"
rc=0
RUNNER_METRICS_BIN="$repo/target/release/runner-metrics" "${pytest[@]}" tests/conformance/test_rust_cli.py 2>&1 | tee -a "$log" || rc=$?
record "rust-cli" "$rc"

if [ "${SKIP_CLI:-0}" != 1 ]; then
    step "wasmtime CLI $want"
    have=$(wasmtime --version 2>/dev/null | awk '{print $2}' || true)
    if [ "$have" != "$want" ]; then
        # Only what the tests use (run, components, Cranelift): 5 minutes
        # on 2 cores instead of 15. No link-time optimisation: this copy
        # runs tests, it is not shipped (and, without clap's defaults, has
        # no --help of its own).
        echo "wasmtime ${have:-not installed}; installing the wasmtime-cli crate $want (cached in ~/.cargo/bin)"
        cargo install wasmtime-cli --version "$want" --locked --no-default-features \
            --features run,cranelift,component-model,parallel-compilation \
            --config 'profile.release.lto=false' --config 'profile.release.codegen-units=16'
    fi
    wasmtime --version
    step "wasmtime CLI tests (tests/conformance/test_wasmtime_cli.py)"
    rc=0
    "${pytest[@]}" tests/conformance/test_wasmtime_cli.py 2>&1 | tee -a "$log" || rc=$?
    record "wasmtime-cli" "$rc"
fi

if [ "${SKIP_PYTHON:-0}" != 1 ]; then
    # The Python binding of the Rust host (hosts/python/native, PyO3): built
    # like maturin builds it (.cargo/config.toml keeps libpython out) and
    # put beside the package's sources, where the tests import it from.
    step "Python binding: cargo build --release -p runner-metrics-python"
    cargo build --release -p runner-metrics-python
    cp target/release/lib_native.so hosts/python/src/runner_metrics_host/_native.abi3.so
    step "Python host tests (hosts/python/tests)"
    rc=0
    (cd hosts/python && "${pytest[@]}" tests) 2>&1 | tee -a "$log" || rc=$?
    record "python" "$rc"
fi

if [ "${SKIP_NODE:-0}" != 1 ]; then
    # The Node binding of the Rust host (hosts/node/native, napi-rs): built
    # as a cdylib and put where src/native.js loads it.
    step "Node binding: cargo build --release -p runner-metrics-node"
    cargo build --release -p runner-metrics-node
    cp target/release/librunner_metrics_node.so hosts/node/runner-metrics.node
    step "Node host: npm ci, jco transpile, node --test (hosts/node)"
    rc=0
    # (errexit does not apply inside `... || rc=$?`: chain with &&)
    # One dot per test on the screen; the full TAP report (each test, each
    # failure's details) goes to a file, whose counts and failures are shown.
    node_tap=$(mktemp)
    (
        cd hosts/node &&
            npm ci --no-audit --no-fund &&
            node scripts/transpile.mjs "$component" &&
            node --test --test-reporter=dot --test-reporter-destination=stdout \
                --test-reporter=tap --test-reporter-destination="$node_tap" test/
    ) 2>&1 | tee -a "$log" || rc=$?
    grep -E '^# (pass|fail|skipped|todo) ' "$node_tap" | tee -a "$log" || true
    if [ "$rc" -ne 0 ]; then
        echo "Node failures (full report: the TAP lines below):"
        grep -E -A30 '^\s*not ok ' "$node_tap" | head -200 || true
    fi
    rm -f "$node_tap"
    record "node" "$rc"
fi

# pytest: "N passed[, N skipped][, N failed] in Xs"; node --test: "# pass N" / "# fail N".
passed=$({ grep -Eo '^(=+ )?[0-9]+ passed' "$log" || true; } | { grep -Eo '[0-9]+' || true; } | awk '{s+=$1} END {print s+0}')
failed=$({ grep -Eo '[0-9]+ failed' "$log" || true; } | { grep -Eo '[0-9]+' || true; } | awk '{s+=$1} END {print s+0}')
passed=$((passed + $(awk '/^# pass /{s+=$3} END {print s+0}' "$log")))
failed=$((failed + $(awk '/^# fail /{s+=$3} END {print s+0}' "$log")))
# pytest: "N skipped"; node --test: "# skipped N" (and "# todo N").
skipped=$({ grep -Eo '[0-9]+ skipped' "$log" || true; } | { grep -Eo '[0-9]+' || true; } | awk '{s+=$1} END {print s+0}')
skipped=$((skipped + $(awk '/^# (skipped|todo) /{s+=$3} END {print s+0}' "$log")))
if [ "$skipped" -gt 0 ] && [ "${CI:-}" = true ]; then
    echo "CI must run every host test: ${skipped} skipped"
    status=1
fi

echo
for line in "${results[@]}"; do echo "$line"; done
echo "hosts: ${passed} passed, ${failed} failed, ${skipped} skipped"
exit "$status"
