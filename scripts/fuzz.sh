#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 600 s each) on the
# committed seed corpus. Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz --locked
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(metrics_files strict_json render_event tar_stream confined_fs)
for target in "${targets[@]}"; do
    # confined_fs drives the host's filesystem layer: it needs the host crate
    # (a feature, so the other targets build without wasmtime), and a call
    # that blocks (a FIFO) must show as a timeout, not a stalled run.
    extra=()
    [ "$target" != confined_fs ] || extra=(--features confined-fs)
    limits=()
    [ "$target" != confined_fs ] || limits=(-timeout=10)
    # A pulled tar stream is read up to 64 KiB (and GNU tar pads to 10 KiB).
    max_len=2048
    [ "$target" != tar_stream ] || max_len=70000
    # Work on a copy so the committed seed corpus stays small and reviewed.
    work=$(mktemp -d)
    cp fuzz/corpus/"$target"/* "$work"/
    echo "==> fuzzing $target for ${seconds}s"
    cargo +nightly fuzz run ${extra[@]+"${extra[@]}"} "$target" "$work" -- -max_total_time="$seconds" -max_len="$max_len" \
        ${limits[@]+"${limits[@]}"} -print_final_stats=1 2>&1 \
        | grep -E '^(#[0-9]+ *DONE|Done|stat::|==[0-9]+==|SUMMARY|thread|panicked|artifact_prefix|Test unit)' || true
    rm -rf "$work"
done
