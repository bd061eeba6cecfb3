#!/usr/bin/env python3
"""Times builds of `runner-metrics collect` against each other, interleaved.

    scripts/bench-ab.py ROUNDS BIN [BIN...]

Each round runs every BIN once, then the bench's native contender and the
filesystem floor, in an order that rotates from round to round, each on a
fresh copy of one generated root (N storages, default 10,000, in DIR,
default /dev/shm); every BIN has a warm code cache of its own. It prints
each contender's median wall time and CPU time (wait4), and for each BIN
the ratios to native and to the floor taken round by round (median and
quartiles): a slow phase of this VM that spans a round slows all of its
contenders alike (docs/benchmarks.md). Build the bench first: `cargo build
--release -p runner-metrics-bench`.
"""

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "target" / "release" / "runner-metrics-bench"


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 4:
        return min(values), statistics.median(values), max(values)
    low, mid, high = statistics.quantiles(values, n=4)
    return low, mid, high


def main() -> int:
    if len(sys.argv) < 3 or not sys.argv[1].isdigit():
        print(__doc__.strip(), file=sys.stderr)
        return 2
    rounds, bins = int(sys.argv[1]), sys.argv[2:]
    n = int(os.environ.get("N", "10000"))
    work = Path(os.environ.get("DIR", "/dev/shm")) / f"bench-ab-{os.getpid()}"
    work.mkdir(parents=True)
    seed, root, log = work / "seed", work / "root", work / "metrics.log"
    commands = {
        f"{i + 1} {b}": [b, "collect", "--cache-dir", work / f"cache-{i}", "--storage", root]
        + ["--flavor", "small", "--metrics-log", log, "--json"]
        for i, b in enumerate(bins)
    }
    commands["native"] = [BENCH, "native-collect", "--storage", root, "--flavor", "small", "--metrics-log", log]
    commands["floor"] = [BENCH, "floor", "--storage", root]
    names = list(commands)
    try:
        subprocess.run(
            [BENCH, "generate", "--out", seed, "--n", str(n), "--seed", "42"], check=True, stdout=subprocess.DEVNULL
        )

        def run(name: str) -> tuple[float, float]:
            shutil.rmtree(root, ignore_errors=True)
            log.unlink(missing_ok=True)
            subprocess.run(["cp", "-a", seed, root], check=True)
            start = time.perf_counter()
            child = subprocess.Popen(commands[name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - start
            if status != 0:
                raise SystemExit(f"{name} failed (wait status {status:#x})")
            return wall, usage.ru_utime + usage.ru_stime

        for name in names[: len(bins)]:
            run(name)  # fills the build's code cache
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for r in range(rounds):
            for k in range(len(names)):
                name = names[(k + r) % len(names)]
                times[name].append(run(name))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"N = {n}, {work.parent}, {rounds} rounds")
    first = names[0]
    for name in names:
        wall = statistics.median(t[0] for t in times[name])
        cpu = statistics.median(t[1] for t in times[name])
        base = statistics.median(t[0] for t in times[first])
        print(
            f"{name}: wall {wall:.3f} s (min {min(t[0] for t in times[name]):.3f}), CPU {cpu:.3f} s, {wall / base:.3f}x"
        )
    for name in names[: len(bins)]:
        for other in ("native", "floor"):
            ratios = [a[0] / b[0] for a, b in zip(times[name], times[other], strict=True)]
            low, mid, high = quartiles(ratios)
            print(f"{name} / {other}, round by round: {mid:.2f}x ({low:.2f}-{high:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
