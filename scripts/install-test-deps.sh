#!/usr/bin/env bash
# Installs the Debian packages that the Prometheus and deployment tests use,
# when they are missing:
#
#   prometheus                node_exporter's scraper and promtool (tests/tests/e2e/prometheus_server.rs)
#   prometheus-node-exporter  the textfile collector we write for (same test)
#   logrotate                 `logrotate -d` on contrib/logrotate (scripts/test-contrib.sh)
#   systemd                   `systemd-analyze verify` on contrib/systemd (same script)
#   strace                    the system calls collect makes vs SystemCallFilter= (same script)
#   binutils, dpkg            objcopy and dpkg-deb for the Debian package (scripts/package-deb.sh)
#
# Only as root (CI runs as root) with apt-get; otherwise it prints one
# "skip:" line per missing tool and the tests that need it skip visibly.
# Services are never started by the install: the packages' own units would
# listen on every interface, and the tests start their own servers on
# 127.0.0.1 only. Prints what is available at the end; always exits 0 so
# that a missing package shows up as a skipped test, not a broken suite,
# unless REQUIRE=1 (then a missing tool is an error).
set -uo pipefail

# command -> package
declare -A wanted=(
    [prometheus]=prometheus
    [promtool]=prometheus
    [prometheus-node-exporter]=prometheus-node-exporter
    [logrotate]=logrotate
    [systemd-analyze]=systemd
    [strace]=strace
    [objcopy]=binutils
    [dpkg-deb]=dpkg
)

missing_packages() {
    local cmd
    for cmd in "${!wanted[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || echo "${wanted[$cmd]}"
    done | sort -u
}

mapfile -t packages < <(missing_packages)
if [ "${#packages[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing: ${packages[*]}"
        # Keep the packages' services from starting (policy-rc.d exit 101 =
        # "action forbidden"); put back whatever was there before.
        policy=/usr/sbin/policy-rc.d
        created_policy=0
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
        fi
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y -q --no-install-recommends "${packages[@]}" >/tmp/runner-metrics-apt.log 2>&1; then
            apt-get update -q >>/tmp/runner-metrics-apt.log 2>&1
            apt-get install -y -q --no-install-recommends "${packages[@]}" >>/tmp/runner-metrics-apt.log 2>&1 ||
                { echo "apt-get install failed:"; tail -20 /tmp/runner-metrics-apt.log; }
        fi
        [ "$created_policy" -eq 1 ] && rm -f "$policy"
    else
        echo "skip: not root (or no apt-get): cannot install ${packages[*]}"
    fi
fi

status=0
for cmd in prometheus promtool prometheus-node-exporter logrotate systemd-analyze strace objcopy dpkg-deb; do
    if path=$(command -v "$cmd"); then
        echo "have: $cmd ($path)"
    else
        echo "skip: $cmd is not installed; the tests that need it are skipped"
        [ "${REQUIRE:-0}" = 1 ] && status=1
    fi
done
exit "$status"
