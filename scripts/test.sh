#!/usr/bin/env bash
# Runs the whole test suite: the docs' links and paths, formatting and
# lints (rustfmt, clippy, ruff, node --check), the Rust unit, integration and
# CLI tests (which build and load the real WebAssembly component), then the
# same component under the wasmtime CLI, Python and Node
# (scripts/test-hosts.sh), the deployment files in contrib/
# (scripts/test-contrib.sh), the packages (scripts/test-packages.sh) and an
# attacker's script. Installs what it needs from the project's own files
# first (scripts/install-test-deps.sh: Prometheus, node_exporter, logrotate,
# systemd-analyze, strace from Debian, as root).
#
# Everything is built once, with the release profile: the tests, the
# binaries the host tests and the packages use, and the Debian package.
#
# A test that cannot run here (no root, no loop devices, a missing tool)
# is counted as skipped, never as passed; under CI=true a skip is a
# failure. Prints a closing "N passed, N failed, N skipped" line.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
# Every Rust test that skips appends a line here (tests/skip).
skips=$(mktemp)
trap 'rm -f "$log" "$skips"' EXIT
export RUNNER_METRICS_SKIP_LOG="$skips"
if [ "${CI:-}" = true ]; then
    export RUNNER_METRICS_NO_SKIPS=1
fi

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS
status=0
# Checks that are not a test runner's: one pass or failure each.
checks_passed=0
checks_failed=0
check() { # description, command...
    local what=$1
    shift
    if "$@"; then
        checks_passed=$((checks_passed + 1))
    else
        echo "FAILED: $what"
        checks_failed=$((checks_failed + 1))
        status=1
    fi
}

step "toolchain (rust-toolchain.toml: Rust 1.95.0 + wasm32-wasip2)"
rustup show active-toolchain
rustup target add wasm32-wasip2 >/dev/null

step "test dependencies: prometheus, promtool, node_exporter, logrotate, systemd-analyze (scripts/install-test-deps.sh)"
# As root (CI) they are installed from Debian when missing; elsewhere the
# script prints a "skip:" line for each one missing and those tests skip.
# In CI a missing one is an error: the Prometheus test must really run there.
if [ "${CI:-}" = true ]; then
    check "test dependencies installed" env REQUIRE=1 ./scripts/install-test-deps.sh
else
    ./scripts/install-test-deps.sh
fi
if command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v prometheus-node-exporter >/dev/null; then
    export RUNNER_METRICS_REQUIRE_PROMETHEUS=1
fi

step "docs: every link and repository path in README.md and docs/ exists (scripts/check-docs.py links)"
check "docs links" python3 scripts/check-docs.py links

step "cargo fmt --check (rustfmt.toml)"
check "cargo fmt" cargo fmt --all --check

step "bounded storages (tests/tests/e2e/bounded.rs): root, loop devices and mkfs.ext4"
if [ "$(id -u)" = 0 ] && [ -e /dev/loop-control ] && command -v mkfs.ext4 >/dev/null; then
    echo "available: the bounded-storage tests run"
else
    echo "unavailable: the bounded-storage tests are counted as skipped (they need root, /dev/loop-control and mkfs.ext4)"
fi

step "cargo test --workspace --release"
cargo test --workspace --release --no-fail-fast 2>&1 | tee -a "$log" || status=1

step "clippy: cargo clippy --workspace --all-targets --release -- -D warnings"
check "clippy" cargo clippy --workspace --all-targets --release --quiet -- -D warnings

step "the filesystem's end-to-end tests again, on the fallback filesystem (RUNNER_METRICS_FILESYSTEM=wasi: wasmtime-wasi's)"
# Only the modules whose storages go through the guest's filesystem: the
# others (help, GitHub client, schema, hooks, storage lifecycle, Prometheus
# rendering) take the same path on either.
RUNNER_METRICS_FILESYSTEM=wasi cargo test --release -p runner-metrics-e2e --test e2e --no-fail-fast -- \
    threats:: outcomes:: durability:: concurrency:: crash:: hostile_guest:: events:: full_life:: ingest:: \
    cli:: os_sandbox:: 2>&1 | tee -a "$log" || status=1

step "other hosts: Rust CLI, wasmtime CLI, Python, Node on tests/conformance (scripts/test-hosts.sh)"
./scripts/test-hosts.sh 2>&1 | tee -a "$log" || status=1

step "linters of the Python and Node hosts: ruff, node --check (scripts/lint-hosts.sh)"
./scripts/lint-hosts.sh 2>&1 | tee -a "$log" || status=1

step "deployment files: systemd units, system calls, logrotate (scripts/test-contrib.sh)"
./scripts/test-contrib.sh 2>&1 | tee -a "$log" || status=1

step "packages: Python wheel, npm tarball, Debian package, installed and used without Rust (scripts/test-packages.sh)"
./scripts/test-packages.sh 2>&1 | tee -a "$log" || status=1

step "an attacker's script apart from the tests: the symlink swap against the real binary (scripts/attack/symlink_swap.py)"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && [ -x /usr/bin/python3 ]; then
    # Unprivileged, on copies in a directory of its own under /tmp (the
    # checkout may not be readable by nobody).
    attack_dir=$(mktemp -d /tmp/runner-metrics-attack.XXXXXX)
    cp scripts/attack/symlink_swap.py target/release/runner-metrics "$attack_dir/"
    chmod 755 "$attack_dir" "$attack_dir/runner-metrics"
    chmod 644 "$attack_dir/symlink_swap.py"
    attack=0
    (cd /tmp && setpriv --reuid=65534 --regid=65534 --clear-groups -- env HOME=/tmp TMPDIR=/tmp \
        /usr/bin/python3 "$attack_dir/symlink_swap.py" "$attack_dir/runner-metrics" 4) || attack=$?
    rm -rf "$attack_dir"
    check "symlink-swap attack" test "$attack" -eq 0
else
    check "symlink-swap attack" python3 scripts/attack/symlink_swap.py "$(pwd)/target/release/runner-metrics" 4
fi

# Totals: the Rust tests (libtest's "test result:" lines; a test that
# skipped ran and returned, so it is taken from the passes), and each
# script's own "NAME: N passed, N failed[, N skipped]" line.
rust_passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
rust_failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
rust_skipped=$(wc -l <"$skips")
rust_passed=$((rust_passed - rust_skipped))
if [ "$rust_skipped" -gt 0 ]; then
    echo
    echo "skipped Rust tests (or parts of tests):"
    sed 's/^/  /' "$skips"
fi
total_passed=$((rust_passed + checks_passed))
total_failed=$((rust_failed + checks_failed))
total_skipped=$rust_skipped
echo
echo "rust: ${rust_passed} passed, ${rust_failed} failed, ${rust_skipped} skipped"
echo "checks: ${checks_passed} passed, ${checks_failed} failed"
for part in hosts lint contrib packages; do
    line=$(sed -n "s/^${part}: \([0-9]* passed, [0-9]* failed.*\)$/\1/p" "$log" | tail -1)
    p=$(sed -n 's/^\([0-9]*\) passed.*/\1/p' <<<"$line")
    f=$(sed -n 's/.* \([0-9]*\) failed.*/\1/p' <<<"$line")
    s=$(sed -n 's/.* \([0-9]*\) skipped.*/\1/p' <<<"$line")
    if [ -z "$line" ]; then
        echo "${part}: no closing line (it did not finish)"
        status=1
        total_failed=$((total_failed + 1))
        continue
    fi
    echo "${part}: ${p:-0} passed, ${f:-0} failed, ${s:-0} skipped"
    total_passed=$((total_passed + ${p:-0}))
    total_failed=$((total_failed + ${f:-0}))
    total_skipped=$((total_skipped + ${s:-0}))
done
if [ "$total_skipped" -gt 0 ] && [ "${CI:-}" = true ]; then
    echo "CI must run every test: ${total_skipped} skipped"
    status=1
fi
echo "took $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s"
echo "total: ${total_passed} passed, ${total_failed} failed, ${total_skipped} skipped"
exit "$status"
