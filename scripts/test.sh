#!/usr/bin/env bash
# Runs the whole test suite: Rust unit, integration and CLI tests (which build
# and load the real WebAssembly component). Installs what it needs from the
# project's own files first. Prints a closing "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT

step() { printf '\n==> %s\n' "$*"; }

step "toolchain (rust-toolchain.toml: Rust 1.95.0 + wasm32-wasip2)"
rustup show active-toolchain
rustup target add wasm32-wasip2 >/dev/null

step "cargo test --workspace"
status=0
cargo test --workspace 2>&1 | tee -a "$log" || status=$?

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo
echo "rust: ${passed} passed, ${failed} failed"
exit "$status"
