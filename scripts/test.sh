#!/usr/bin/env bash
# Runs the whole test suite: Rust unit, integration and CLI tests (which build
# and load the real WebAssembly component), then the same component under the
# wasmtime CLI, Python and Node (scripts/test-hosts.sh), then the deployment
# files in contrib/ (scripts/test-contrib.sh). Installs what it needs from the
# project's own files first (scripts/install-test-deps.sh: Prometheus,
# node_exporter, logrotate, systemd-analyze, strace from Debian, as root).
# Prints a closing "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT

step() { printf '\n==> %s\n' "$*"; }

status=0

step "toolchain (rust-toolchain.toml: Rust 1.95.0 + wasm32-wasip2)"
rustup show active-toolchain
rustup target add wasm32-wasip2 >/dev/null

step "test dependencies: prometheus, promtool, node_exporter, logrotate, systemd-analyze (scripts/install-test-deps.sh)"
# As root (CI) they are installed from Debian when missing; elsewhere the
# script prints a "skip:" line for each one missing and those tests skip.
# In CI a missing one is an error: the Prometheus test must really run there.
if [ "${CI:-}" = true ]; then
    REQUIRE=1 ./scripts/install-test-deps.sh || status=1
else
    ./scripts/install-test-deps.sh
fi
if command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v prometheus-node-exporter >/dev/null; then
    export RUNNER_METRICS_REQUIRE_PROMETHEUS=1
fi

step "cargo fmt --check (rustfmt.toml)"
cargo fmt --all --check || { echo "formatting differs: run 'cargo fmt --all'"; status=1; }

step "bounded storages (tests/tests/e2e/bounded.rs): root, loop devices and mkfs.ext4"
if [ "$(id -u)" = 0 ] && [ -e /dev/loop-control ] && command -v mkfs.ext4 >/dev/null; then
    echo "available: the bounded-storage tests run"
else
    echo "skipped: the bounded-storage tests pass without testing (they need root, /dev/loop-control and mkfs.ext4)"
fi

step "cargo test --workspace"
cargo test --workspace --no-fail-fast 2>&1 | tee -a "$log" || status=$?

step "the end-to-end suite again, on the fallback filesystem (RUNNER_METRICS_FILESYSTEM=wasi: wasmtime-wasi's)"
RUNNER_METRICS_FILESYSTEM=wasi cargo test -p runner-metrics-e2e --test e2e --no-fail-fast 2>&1 | tee -a "$log" || status=$?

step "other hosts: Rust CLI, wasmtime CLI, Python, Node on tests/conformance (scripts/test-hosts.sh)"
./scripts/test-hosts.sh 2>&1 | tee -a "$log" || status=1
hosts_passed=$(sed -n 's/^hosts: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$log" | tail -1)
hosts_failed=$(sed -n 's/^hosts: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$log" | tail -1)

step "deployment files: systemd units, system calls, logrotate (scripts/test-contrib.sh)"
./scripts/test-contrib.sh 2>&1 | tee -a "$log" || status=1
contrib_passed=$(sed -n 's/^contrib: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$log" | tail -1)
contrib_failed=$(sed -n 's/^contrib: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$log" | tail -1)

step "packages: Python wheel and npm tarball, installed and used without Rust (scripts/test-packages.sh)"
./scripts/test-packages.sh 2>&1 | tee -a "$log" || status=1
packages_passed=$(sed -n 's/^packages: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$log" | tail -1)
packages_failed=$(sed -n 's/^packages: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$log" | tail -1)

step "an attacker's script apart from the tests: the symlink swap against the real binary (scripts/attack/symlink_swap.py)"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && [ -x /usr/bin/python3 ]; then
    # Unprivileged, on copies in a directory of its own under /tmp (the
    # checkout may not be readable by nobody).
    attack_dir=$(mktemp -d /tmp/runner-metrics-attack.XXXXXX)
    cp scripts/attack/symlink_swap.py target/debug/runner-metrics "$attack_dir/"
    chmod 755 "$attack_dir" "$attack_dir/runner-metrics"
    chmod 644 "$attack_dir/symlink_swap.py"
    (cd /tmp && setpriv --reuid=65534 --regid=65534 --clear-groups -- env HOME=/tmp TMPDIR=/tmp \
        /usr/bin/python3 "$attack_dir/symlink_swap.py" "$attack_dir/runner-metrics" 4) || status=1
    rm -rf "$attack_dir"
else
    python3 scripts/attack/symlink_swap.py "$(pwd)/target/debug/runner-metrics" 4 || status=1
fi

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo
echo "rust: ${passed} passed, ${failed} failed"
echo "hosts: ${hosts_passed:-0} passed, ${hosts_failed:-0} failed"
echo "contrib: ${contrib_passed:-0} passed, ${contrib_failed:-0} failed"
echo "packages: ${packages_passed:-0} passed, ${packages_failed:-0} failed"
echo "total: $((passed + ${hosts_passed:-0} + ${contrib_passed:-0} + ${packages_passed:-0})) passed, $((failed + ${hosts_failed:-0} + ${contrib_failed:-0} + ${packages_failed:-0})) failed"
exit "$status"
