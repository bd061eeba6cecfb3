#!/usr/bin/env bash
# What a pulled runner costs (docs/benchmarks.md, "Pulled metrics"): N
# runners handed over one process each, as a manager does at VM deletion,
# by `ingest` from a tar stream on stdin and from files given one by one,
# side by side with `collect` of one shared storage per process (the same
# per-process cost) and with one `collect` of all N (amortised). Wall time
# per runner, and system calls per runner from `strace -f -c` over the
# same runs.
#
#   scripts/bench-ingest.sh [N] [BASE_DIR...]     (default: 50 /dev/shm /tmp)
#
# Everything is made under BASE_DIR by mktemp and removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-50}
shift || true
bases=("$@")
[ ${#bases[@]} -gt 0 ] || bases=(/dev/shm /tmp)

cargo build --release -q -p runner-metrics
bin=$(pwd)/target/release/runner-metrics
cache=$(mktemp -d /tmp/rm-bench-cache.XXXXXX)
made=("$cache")
trap 'rm -rf "${made[@]}"' EXIT

files() {
    printf '%s\n' 1700000100 >"$1/runner-installed.timestamp"
    printf '%s\n' '{"timestamp": 1700000200, "workflow": "w", "workflow_run_id": "1", "repository": "o/r", "event": "push"}' \
        >"$1/pre-job-metrics.json"
    printf '%s\n' '{"timestamp": 1700000300, "status": "normal"}' >"$1/post-job-metrics.json"
}
rm_() { "$bin" --cache-dir "$cache" "$@"; }
per() { awk -v t="$1" -v n="$n" 'BEGIN { printf "%.2f ms", 1000 * t / n }'; }
calls() { awk -v n="$n" '/ total$/ { printf "%.0f", $(NF-2) / n }' "$1"; }

# Warm the compiled-code cache: no run below compiles.
warm=$(mktemp -d /tmp/rm-bench-warm.XXXXXX)
made+=("$warm")
rm_ collect --storage "$warm" --flavor bench --metrics-log "$warm/log" 2>/dev/null

printf '%-9s %-34s %14s %18s\n' base flow "wall/runner" "syscalls/runner"
for base in "${bases[@]}"; do
    top=$(mktemp -d "$base/rm-bench.XXXXXX")
    made+=("$top")
    mkdir "$top/exchange"
    files "$top/exchange"
    tar -C "$top/exchange" -cf "$top/stream.tar" .
    log=$top/metrics.log
    # Each flow: a loop of N runs, timed, then the same loop under strace.
    flow() { # label, command run once per i (a function of $i and $dir)
        local label=$1 step=$2 dir
        for traced in 0 1; do
            dir=$top/$label.$traced
            mkdir -p "$dir"
            [ "$label" != collect-each ] || for i in $(seq "$n"); do mkdir "$dir/r$i"; files "$dir/r$i"; done
            local start end
            start=$(date +%s.%N)
            if [ "$traced" = 1 ]; then
                strace -f -c -o "$top/$label.strace" bash -c "$(declare -f rm_ files "$step"); bin=$bin cache=$cache top=$top log=$log dir=$dir; for i in \$(seq $n); do $step; done"
            else
                for i in $(seq "$n"); do "$step"; done
            fi
            end=$(date +%s.%N)
            [ "$traced" = 1 ] || wall=$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')
        done
        printf '%-9s %-34s %14s %18s\n' "$base" "$label" "$(per "$wall")" "$(calls "$top/$label.strace")"
    }
    ingest_tar() { rm_ ingest --runner "r$i" --flavor bench --quarantine-dir "$dir" --metrics-log "$log" <"$top/stream.tar" 2>/dev/null; }
    ingest_files() {
        rm_ ingest --runner "r$i" --flavor bench --quarantine-dir "$dir" --metrics-log "$log" \
            --installed "$top/exchange/runner-installed.timestamp" --pre-job "$top/exchange/pre-job-metrics.json" \
            --post-job "$top/exchange/post-job-metrics.json" 2>/dev/null
    }
    collect_each() { rm_ collect --storage "$dir" --include "r$i" --flavor bench --metrics-log "$log" 2>/dev/null; }
    flow ingest-tar ingest_tar
    flow ingest-files ingest_files
    flow collect-each collect_each
    # One collect of all N storages in one process.
    for traced in 0 1; do
        dir=$top/all.$traced
        mkdir "$dir"
        for i in $(seq "$n"); do mkdir "$dir/r$i"; files "$dir/r$i"; done
        start=$(date +%s.%N)
        if [ "$traced" = 1 ]; then
            strace -f -c -o "$top/all.strace" "$bin" --cache-dir "$cache" collect --storage "$dir" --flavor bench --metrics-log "$log" 2>/dev/null
        else
            rm_ collect --storage "$dir" --flavor bench --metrics-log "$log" 2>/dev/null
            wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
        fi
    done
    printf '%-9s %-34s %14s %18s\n' "$base" "collect-all (one process)" "$(per "$wall")" "$(calls "$top/all.strace")"
    lines=$(wc -l <"$log")
    # runner_start and runner_stop for each runner, in each of the 8 loops.
    [ "$lines" -eq $((2 * n * 8)) ] || { echo "bench-ingest: $lines lines written, expected $((2 * n * 8))" >&2; exit 1; }
done
