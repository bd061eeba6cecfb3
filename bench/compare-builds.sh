#!/usr/bin/env bash
# Two builds of `runner-metrics collect` side by side on the same generated
# root, alternated round by round, plus a syscall count of each (strace -c).
#
#   DIR must hold: bench (target/release/runner-metrics-bench), old-rm and
#   new-rm (two target/release/runner-metrics builds to compare).
#   bench/compare-builds.sh DIR [N=10000] [BASE=/dev/shm/rmbench] [ROUNDS=3]
#
# BASE is deleted and recreated: give a scratch path (tmpfs or disk).
set -euo pipefail
dir=$1; n=${2:-10000}; base=${3:-/dev/shm/rmbench}; rounds=${4:-3}
cd "$dir"
for bin in old-rm new-rm; do  # warm the compiled-code cache
  rm -rf "$base"; ./bench generate --out "$base/root" --n 100 --seed 42 >/dev/null
  ./$bin collect --storage "$base/root" --flavor small --metrics-log "$base/log" >/dev/null 2>&1 || true
done
for r in $(seq "$rounds"); do
  for bin in old-rm new-rm; do
    rm -rf "$base"; mkdir -p "$base"; ./bench generate --out "$base/root" --n "$n" --seed 42 >/dev/null
    sync
    /usr/bin/time -f "$bin round $r: %e s wall, %U user, %S sys, %M KiB max RSS" ./$bin collect --storage "$base/root" --flavor small --metrics-log "$base/log" --json 2>"$base/err" >/dev/null || true
    tail -1 "$base/err"; grep -o '"lines_written":[0-9]*' "$base/err" | head -1 || true
  done
done
for bin in old-rm new-rm; do
  rm -rf "$base"; mkdir -p "$base"; ./bench generate --out "$base/root" --n "$n" --seed 42 >/dev/null
  strace -f -c -o "$base/strace.$bin" ./$bin collect --storage "$base/root" --flavor small --metrics-log "$base/log" >/dev/null 2>&1 || true
  echo "$bin syscalls: $(tail -1 "$base/strace.$bin" | awk '{print $4}') total ($(tail -1 "$base/strace.$bin" | awk '{print $4/'"$n"'}') per storage)"
done
rm -rf "$base"
