"""The Python hosts side by side, in one process and one run (issue 26): the pure WebAssembly
host (``runner_metrics_host.wasm_host.collect``, PyPI ``wasmtime``) against the binding of the
Rust host library (``runner_metrics_host.native.collect``, what ``collect`` runs), on identical
copies of one storage root in the reference implementation's mix (80% complete, 10% without post-job, 5% no data, 5%
corrupt), each after a warm-up run; the logs must be byte-identical.

    hosts/python/.venv/bin/python bench/python_hosts.py [--storages 2000] [--dir /dev/shm] [--job-metrics]

Run scripts/test-hosts.sh first: it builds the extension (left beside the package's sources) and
the components (in target/hosts/, named by RUNNER_METRICS_COMPONENT and
RUNNER_METRICS_KEEPER_COMPONENT as docs/benchmarks.md shows).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hosts" / "python" / "src"))

from runner_metrics_host import native, wasm_host  # noqa: E402

PRE = (
    b'{"workflow": "ci", "repository": "canonical/example", "event": "push", '
    b'"timestamp": 1700000100, "workflow_run_id": "123456"}'
)
POST = b'{"timestamp": 1700000400, "status": "abnormal", "status_info": {"code": 1}}'


def generate(root: Path, n: int) -> None:
    root.mkdir()
    for i in range(n):
        storage = root / f"runner-{i:06d}"
        storage.mkdir()
        kind = i % 20
        if kind == 19:  # 5% no data
            continue
        (storage / "runner-installation-start.timestamp").write_bytes(b"1700000000.5\n")
        (storage / "runner-installed.timestamp").write_bytes(b"1700000060\n")
        (storage / "pre-job-metrics.json").write_bytes(b"{not json" if kind == 18 else PRE)  # 5% corrupt
        if kind not in (16, 17):  # 10% without post-job
            (storage / "post-job-metrics.json").write_bytes(POST)


def timed(run, root: Path, log: Path, jobs) -> float:
    start = time.perf_counter()
    run(root, "small", metrics_log=log, job_metrics=jobs)
    return time.perf_counter() - start


def job(metrics):
    """A job-metrics callback that answers at once (what a cached lookup costs)."""
    return (12.5, "success")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storages", type=int, default=2000)
    parser.add_argument("--dir", default="/dev/shm", help="where the roots are made (tmpfs by default)")
    parser.add_argument("--job-metrics", action="store_true", help="lend a job_metrics callback (asked per runner)")
    args = parser.parse_args()
    contenders = {"pure WebAssembly host": wasm_host.collect, "Rust host binding": native.collect}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="runner-metrics-python-bench-") as tmp:
        tmp = Path(tmp)
        generate(tmp / "template", args.storages)
        results, logs = {}, {}
        for name, run in contenders.items():
            warm = tmp / "warm"
            shutil.copytree(tmp / "template", warm)
            jobs = job if args.job_metrics else None
            timed(run, warm, tmp / "warm.log", jobs)  # compiles or loads the code once
            shutil.rmtree(warm)
            root, log = tmp / "root", tmp / f"{len(results)}.log"
            shutil.copytree(tmp / "template", root)
            results[name] = timed(run, root, log, jobs)
            logs[name] = log.read_bytes()
            shutil.rmtree(root)
        identical = len(set(logs.values())) == 1
        lent = "a job_metrics callback" if args.job_metrics else "no callback"
        print(f"{args.storages} storages on {args.dir}, {lent}, warm, one process; logs byte-identical: {identical}")
        base = results["Rust host binding"]
        for name, seconds in results.items():
            per = seconds / args.storages * 1e6
            print(f"  {name:24} {seconds:7.3f} s  {per:7.0f} us/storage  {seconds / base:5.1f}x")
        if not identical:
            sys.exit("the logs differ")


if __name__ == "__main__":
    main()
