#!/usr/bin/env bash
# What a bounded storage costs against a plain one (docs/benchmarks.md,
# "Bounded storages"): creating N storages with `runner-metrics storage
# create` (one process each, as a manager does), collecting them in one
# `runner-metrics collect` (with its system calls counted by strace -c), and
# the disk each takes. Needs root, loop devices and mkfs.ext4.
#
#   scripts/bench-bounded.sh [N] [BASE_DIR...]     (default: 50 /dev/shm /tmp)
#
# Every root is made under BASE_DIR by mktemp and removed at the end, its
# mounts undone first.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-50}
shift || true
bases=("$@")
[ ${#bases[@]} -gt 0 ] || bases=(/dev/shm /tmp)

if [ "$(id -u)" != 0 ]; then
    echo "bench-bounded: needs root (mount)" >&2
    exit 2
fi
cargo build --release -q -p runner-metrics
bin=$(pwd)/target/release/runner-metrics
cache=$(mktemp -d /tmp/rm-bench-cache.XXXXXX)
made=()
cleanup() {
    set +e
    for dir in "${made[@]}"; do
        findmnt -rn -o TARGET | grep -F "$dir/" | sort -r | while read -r m; do umount -l "$m"; done
        rm -rf "$dir"
    done
    rm -rf "$cache"
}
trap cleanup EXIT

now() { date +%s.%N; }
per() { awk -v t="$1" -v n="$n" 'BEGIN { printf "%.2f ms", 1000 * t / n }'; }
files() {
    printf '%s\n' 1700000100 >"$1/runner-installed.timestamp"
    printf '%s\n' '{"timestamp": 1700000200, "workflow": "w", "workflow_run_id": "1", "repository": "o/r", "event": "push"}' \
        >"$1/pre-job-metrics.json"
    printf '%s\n' '{"timestamp": 1700000300, "status": "normal"}' >"$1/post-job-metrics.json"
}

# Warm the compiled-code cache so collect times do not include compiling.
warm=$(mktemp -d /tmp/rm-bench-warm.XXXXXX)
made+=("$warm")
"$bin" --cache-dir "$cache" collect --storage "$warm" --flavor bench --metrics-log "$warm/log" 2>/dev/null

printf '%-8s %-8s %14s %14s %14s %10s\n' base kind "create/storage" "collect/storage" "syscalls/storage" "disk/storage"
for base in "${bases[@]}"; do
    for kind in plain bounded; do
        top=$(mktemp -d "$base/rm-bench.XXXXXX")
        made+=("$top")
        root=$top/root
        mkdir "$root"
        size=()
        [ "$kind" = bounded ] && size=(--size 1M)
        t0=$(now)
        for i in $(seq 1 "$n"); do
            "$bin" storage create --storage "$root" "${size[@]}" "r-$i" >/dev/null
        done
        t1=$(now)
        for i in $(seq 1 "$n"); do files "$root/r-$i"; done
        sync
        if [ "$kind" = bounded ]; then
            disk=$(du -sk "$root/.images" | awk -v n="$n" '{ printf "%d KiB", $1 / n }')
        else
            disk=$(du -sk "$root" | awk -v n="$n" '{ printf "%d KiB", $1 / n }')
        fi
        t2=$(now)
        strace -f -c -o "$top/strace" "$bin" --cache-dir "$cache" collect --storage "$root" --flavor bench \
            --metrics-log "$top/log" 2>/dev/null
        t3=$(now)
        lines=$(wc -l <"$top/log")
        [ "$lines" = $((3 * n)) ] || { echo "bench-bounded: expected $((3 * n)) lines, got $lines" >&2; exit 1; }
        calls=$(awk '$NF == "total" { print $(NF-2) }' "$top/strace")
        printf '%-8s %-8s %14s %14s %14s %10s\n' "$base" "$kind" \
            "$(per "$(echo "$t1 - $t0" | bc)")" "$(per "$(echo "$t3 - $t2" | bc)")" \
            "$(awk -v c="$calls" -v n="$n" 'BEGIN { printf "%.1f", c / n }')" "$disk"
    done
done
echo "(N = $n; collect times include strace; one process per create, as a manager runs it)"
