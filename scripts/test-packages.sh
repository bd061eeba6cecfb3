#!/usr/bin/env bash
# Builds the packages (scripts/package.sh -> dist/), then installs and uses
# each one as a user would: in a fresh temporary directory, with a clean
# environment (`env -i`, HOME in the temp directory, PATH=/usr/bin:/bin) in
# which no Rust toolchain is reachable.
#
#   python: venv, `pip install dist/runner_metrics_host-*.whl` (wasmtime from
#           PyPI), then `from runner_metrics_host import collect` with no
#           component path collects a one-runner storage root;
#   node:   `npm install dist/runner-metrics-node-host-*.tgz` (preview2-shim
#           from npm), then `import { collect } from 'runner-metrics-node-host'`
#           does the same;
#   debian: dist/runner-metrics_*.deb (scripts/package-deb.sh) installed by
#           dpkg into a throwaway root (its own dpkg database), its
#           /usr/bin/runner-metrics does the same, then it is removed
#           (the logrotate conffile stays) and purged (nothing stays).
#
# Both must write exactly the three event lines the Rust host writes for that
# root and delete the storage. Writes only inside the temp directory (and
# dist/, target/ through package.sh). Needs what package.sh needs, plus
# python3 (with venv) and node/npm in /usr/bin or /bin (or PACKAGES_TEST_PATH).
#
# Environment: SKIP_BUILD=1 uses the packages already in dist/;
# RUNNER_METRICS_BIN: the release binary for the .deb (else cargo builds it);
# SKIP_DEB=1 (or no dpkg-deb) leaves the Debian package out;
# PACKAGES_TEST_PATH (default /usr/bin:/bin) is the clean PATH; KEEP_TMP=1.
# Prints "packages: N passed, N failed, N skipped"; exits non-zero if anything
# failed (under CI=true a skip is a failure).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

passed=0
failed=0
check() { # name, exit code
    if [ "$2" -eq 0 ]; then
        echo "ok: $1"
        passed=$((passed + 1))
    else
        echo "FAILED: $1"
        failed=$((failed + 1))
    fi
}
skipped=0
# A check that cannot run here is counted apart; under CI=true it fails.
skip() {
    if [ "${CI:-}" = true ]; then check "(CI must run it) $1" 1; else echo "skip: $1"; skipped=$((skipped + 1)); fi
}
finish() {
    echo
    echo "packages: ${passed} passed, ${failed} failed, ${skipped} skipped"
    [ "$failed" -eq 0 ]
    exit
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/runner-metrics-packages.XXXXXX")
if [ "${KEEP_TMP:-0}" = 1 ]; then
    echo "keeping $tmp"
else
    trap 'rm -rf "$tmp"' EXIT
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    step "build the packages (scripts/package.sh)"
    rc=0
    ./scripts/package.sh || rc=$?
    check "scripts/package.sh builds dist/" "$rc"
    [ "$rc" -eq 0 ] || finish
fi

version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
wheels=("$repo"/dist/runner_metrics_host-"$version"-cp311-abi3-*.whl)
wheel=${wheels[0]}
tarball="$repo/dist/runner-metrics-node-host-$version.tgz"

# The clean environment: nothing inherited but the CA certificates and proxy
# settings needed to reach PyPI and npm.
clean=(env -i "PATH=${PACKAGES_TEST_PATH:-/usr/bin:/bin}" "HOME=$tmp/home" "LANG=C.UTF-8" "TMPDIR=$tmp"
    npm_config_update_notifier=false)
for var in SSL_CERT_FILE SSL_CERT_DIR NODE_EXTRA_CA_CERTS PIP_CERT REQUESTS_CA_BUNDLE \
    http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    if [ -n "${!var:-}" ]; then clean+=("$var=${!var}"); fi
done
mkdir -p "$tmp/home"

step "no Rust toolchain in the clean environment"
rc=0
if found=$("${clean[@]}" sh -c 'command -v cargo || command -v rustc || command -v rustup'); then
    echo "found $found on the clean PATH"
    rc=1
fi
check "cargo, rustc and rustup are not on the clean PATH" "$rc"
[ "$rc" -eq 0 ] || finish

# What the Rust host writes for the root below (runner-a, flavor small, no
# job metrics), byte for byte.
cat >"$tmp/expected.log" <<'EOF'
{"timestamp": 1700000060.0, "event": "runner_installed", "flavor": "small", "duration": 59.5}
{"timestamp": 1700000100.0, "event": "runner_start", "flavor": "small", "workflow": "ci", "repo": "owner/repo", "github_event": "push", "idle": 40.0}
{"timestamp": 1700000400.0, "event": "runner_stop", "flavor": "small", "workflow": "ci", "repo": "owner/repo", "github_event": "push", "status": "normal", "job_duration": 300.0}
EOF

# ---------------------------------------------------------------- Python
step "Python: venv + pip install $(basename "$wheel") in $tmp/python"
mkdir -p "$tmp/python"
rc=0
[ -f "$wheel" ] || { echo "no $wheel"; rc=1; }
if [ "$rc" -eq 0 ]; then
    (cd "$tmp/python" &&
        "${clean[@]}" python3 -m venv venv &&
        "${clean[@]}" venv/bin/python -m pip install --quiet --disable-pip-version-check "$wheel") || rc=$?
fi
check "python: the wheel installs into a fresh venv (with wasmtime from PyPI)" "$rc"

if [ "$rc" -eq 0 ]; then
    step "Python: collect a one-runner root with the installed package"
    cat >"$tmp/python/use.py" <<'EOF'
import importlib.metadata, os, pathlib, sys

here = pathlib.Path.cwd()
root = here / "root"
runner = root / "runner-a"
runner.mkdir(parents=True)
(runner / "runner-installation-start.timestamp").write_text("1700000000.5")
(runner / "runner-installed.timestamp").write_text("1700000060")
(runner / "pre-job-metrics.json").write_text('{"workflow": "ci", "repository": "owner/repo", "event": "push", "timestamp": 1700000100, "workflow_run_id": "123456"}')
(runner / "post-job-metrics.json").write_text('{"timestamp": 1700000400, "status": "normal"}')

from runner_metrics_host import NATIVE, collect, wasm_host
import runner_metrics_host

package = pathlib.Path(runner_metrics_host.__file__).parent
assert "site-packages" in package.parts, package
assert all((package / f).is_file() for f in ("runner_metrics.wasm", "runner_metrics_keeper.wasm", "py.typed"))
assert "RUNNER_METRICS_COMPONENT" not in os.environ and "RUNNER_METRICS_KEEPER_COMPONENT" not in os.environ
assert importlib.metadata.version("runner-metrics-host") == sys.argv[1], importlib.metadata.version("runner-metrics-host")

log = here / "metrics.log"
summary = wasm_host.collect(str(root), "small", metrics_log=str(log))  # the bundled components
counts = summary.counts()
assert counts["extracted"] == 1 and counts["lines_written"] == 3, counts
got = log.read_text()
want = pathlib.Path(sys.argv[2]).read_text()
assert got == want, f"metrics log differs:\n{got}"
assert not runner.exists(), "runner-a was not deleted"
print(f"python: {counts}")

# The same root through the binding of the Rust host, shipped in the wheel:
# what the package's collect runs.
from runner_metrics_host import native

assert NATIVE and pathlib.Path(native._native.__file__).parent == package, native._native.__file__
runner.mkdir(parents=True)
(runner / "runner-installation-start.timestamp").write_text("1700000000.5")
(runner / "runner-installed.timestamp").write_text("1700000060")
(runner / "pre-job-metrics.json").write_text('{"workflow": "ci", "repository": "owner/repo", "event": "push", "timestamp": 1700000100, "workflow_run_id": "123456"}')
(runner / "post-job-metrics.json").write_text('{"timestamp": 1700000400, "status": "normal"}')
native_log = here / "native.log"
summary = collect(str(root), "small", metrics_log=str(native_log))
assert summary.counts() == counts, summary.counts()
assert native_log.read_text() == want, f"native metrics log differs:\n{native_log.read_text()}"
assert not runner.exists(), "runner-a was not deleted by the binding"
print(f"python (native): {summary.counts()}")
EOF
    rc=0
    (cd "$tmp/python" && "${clean[@]}" venv/bin/python use.py "$version" "$tmp/expected.log") || rc=$?
    check "python: 'from runner_metrics_host import collect' collects with the Rust host binding, the pure host with the bundled components, the same bytes" "$rc"
fi

# ---------------------------------------------------------------- Node
step "Node: npm install $(basename "$tarball") in $tmp/node"
mkdir -p "$tmp/node"
rc=0
[ -f "$tarball" ] || { echo "no $tarball"; rc=1; }
if [ "$rc" -eq 0 ]; then
    (cd "$tmp/node" &&
        printf '{"name": "uses-runner-metrics", "private": true, "type": "module"}\n' >package.json &&
        "${clean[@]}" npm install --no-audit --no-fund --loglevel=error "$tarball") || rc=$?
fi
check "node: the tarball installs into a fresh project (with preview2-shim from npm)" "$rc"

if [ "$rc" -eq 0 ]; then
    step "Node: collect a one-runner root with the installed package"
    cat >"$tmp/node/use.mjs" <<'EOF'
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [version, expected] = process.argv.slice(2);
const root = join(process.cwd(), 'root');
const runner = join(root, 'runner-a');
mkdirSync(runner, { recursive: true });
writeFileSync(join(runner, 'runner-installation-start.timestamp'), '1700000000.5');
writeFileSync(join(runner, 'runner-installed.timestamp'), '1700000060');
writeFileSync(join(runner, 'pre-job-metrics.json'), '{"workflow": "ci", "repository": "owner/repo", "event": "push", "timestamp": 1700000100, "workflow_run_id": "123456"}');
writeFileSync(join(runner, 'post-job-metrics.json'), '{"timestamp": 1700000400, "status": "normal"}');

const { collect } = await import('runner-metrics-node-host');
const pkg = JSON.parse(readFileSync(join('node_modules', 'runner-metrics-node-host', 'package.json'), 'utf8'));
assert.equal(pkg.version, version);
assert.ok(existsSync(join('node_modules', 'runner-metrics-node-host', 'generated', 'runner_metrics.js')));
assert.ok(existsSync(join('node_modules', 'runner-metrics-node-host', 'generated-keeper', 'runner_metrics_keeper.js')));

// The package's collect is the binding of the Rust host (the addon shipped
// in the tarball); handed a Plugin, the bundled plugin and keeper.
const { NATIVE, Plugin } = await import('runner-metrics-node-host');
assert.equal(NATIVE, true, 'the addon runner-metrics.node loads');
for (const [what, options] of [['native', {}], ['wasm', { plugin: await Plugin.load() }]]) {
  mkdirSync(runner, { recursive: true });
  writeFileSync(join(runner, 'runner-installation-start.timestamp'), '1700000000.5');
  writeFileSync(join(runner, 'runner-installed.timestamp'), '1700000060');
  writeFileSync(join(runner, 'pre-job-metrics.json'), '{"workflow": "ci", "repository": "owner/repo", "event": "push", "timestamp": 1700000100, "workflow_run_id": "123456"}');
  writeFileSync(join(runner, 'post-job-metrics.json'), '{"timestamp": 1700000400, "status": "normal"}');
  const log = join(process.cwd(), `${what}.log`);
  const summary = await collect(root, 'small', { metricsLog: log, ...options });
  assert.equal(summary.extracted, 1);
  assert.equal(readFileSync(log, 'utf8'), readFileSync(expected, 'utf8'));
  assert.ok(!existsSync(runner), 'runner-a was not deleted');
  console.log(`node (${what}): extracted ${summary.extracted}, quarantined ${summary.quarantined}, failed ${summary.failed}`);
}
EOF
    rc=0
    (cd "$tmp/node" && "${clean[@]}" node use.mjs "$version" "$tmp/expected.log") || rc=$?
    check "node: \"import { collect } from 'runner-metrics-node-host'\" collects with the Rust host binding, and with the bundled plugin and keeper" "$rc"
fi

# ---------------------------------------------------------------- Debian
deb=$(ls "$repo"/dist/runner-metrics_"$version"_*.deb 2>/dev/null | head -1)
if [ "${SKIP_DEB:-0}" != 1 ] && command -v dpkg >/dev/null; then
    step "Debian: dpkg -i $(basename "${deb:-runner-metrics_$version.deb}") into a throwaway root"
    rc=0
    [ -n "$deb" ] || { echo "no dist/runner-metrics_${version}_*.deb"; rc=1; }
    droot="$tmp/deb-root"
    if [ "$rc" -eq 0 ]; then
        # An empty dpkg database of its own: nothing is installed on this system.
        mkdir -p "$droot/var/lib/dpkg/updates" "$droot/var/lib/dpkg/info" && : >"$droot/var/lib/dpkg/status" &&
            dpkg --root="$droot" --force-depends --force-not-root --force-script-chrootless -i "$deb" &&
            dpkg --root="$droot" -s runner-metrics | grep -qx "Status: install ok installed" || rc=1
        for f in usr/bin/runner-metrics lib/systemd/system/runner-metrics.service lib/systemd/system/runner-metrics.timer \
            etc/logrotate.d/runner-metrics usr/share/man/man1/runner-metrics.1.gz \
            usr/share/bash-completion/completions/runner-metrics usr/share/doc/runner-metrics/copyright \
            usr/share/doc/runner-metrics/examples/grafana/runner-metrics.json \
            usr/share/doc/runner-metrics/examples/prometheus/runner-metrics.rules.yml; do
            [ -e "$droot/$f" ] || { echo "the package did not install /$f"; rc=1; }
        done
        grep -q '^ExecStart=/usr/bin/runner-metrics collect' "$droot/lib/systemd/system/runner-metrics.service" ||
            { echo "the packaged service does not run /usr/bin/runner-metrics"; rc=1; }
        diff <(sed 's|/usr/local/bin/|/usr/bin/|' "$repo/contrib/systemd/runner-metrics.service") \
            "$droot/lib/systemd/system/runner-metrics.service" || { echo "the packaged service differs from contrib/"; rc=1; }
        dpkg-deb --field "$deb" Depends | grep -q 'libc6' || { echo "no Depends on libc6"; rc=1; }
    fi
    check "debian: dpkg installs the package: binary, units, logrotate conffile, man page, completions, dashboards, alert rules" "$rc"
    # The test-only escape attempts (feature escape-test) are not in it.
    rc=0
    if grep -q RUNNER_METRICS_ESCAPE_TEST "$droot/usr/bin/runner-metrics"; then rc=1; fi
    check "debian: the packaged binary has no test-only escape code (feature escape-test)" "$rc"

    if [ "$rc" -eq 0 ]; then
        step "Debian: the installed runner-metrics collects a one-runner root"
        rc=0
        work="$tmp/deb-use"
        runner="$work/root/runner-a"
        mkdir -p "$runner"
        printf '1700000000.5' >"$runner/runner-installation-start.timestamp"
        printf '1700000060' >"$runner/runner-installed.timestamp"
        printf '%s' '{"workflow": "ci", "repository": "owner/repo", "event": "push", "timestamp": 1700000100, "workflow_run_id": "123456"}' >"$runner/pre-job-metrics.json"
        printf '%s' '{"timestamp": 1700000400, "status": "normal"}' >"$runner/post-job-metrics.json"
        "${clean[@]}" "$droot/usr/bin/runner-metrics" --version | grep -qx "runner-metrics $version" || { echo "--version is not $version"; rc=1; }
        "${clean[@]}" "$droot/usr/bin/runner-metrics" --cache-dir "$work/cache" collect --storage "$work/root" \
            --flavor small --metrics-log "$work/metrics.log" || rc=1
        cmp "$work/metrics.log" "$tmp/expected.log" || { echo "metrics log differs:"; cat "$work/metrics.log"; rc=1; }
        [ ! -e "$runner" ] || { echo "runner-a was not deleted"; rc=1; }
        check "debian: /usr/bin/runner-metrics from the package collects with its embedded components" "$rc"

        step "Debian: remove keeps the logrotate conffile, purge removes it"
        rc=0
        dpkg --root="$droot" --force-not-root --force-script-chrootless -r runner-metrics || rc=1
        [ ! -e "$droot/usr/bin/runner-metrics" ] && [ -e "$droot/etc/logrotate.d/runner-metrics" ] || rc=1
        dpkg --root="$droot" --force-not-root --force-script-chrootless -P runner-metrics || rc=1
        [ ! -e "$droot/etc/logrotate.d/runner-metrics" ] || rc=1
        check "debian: dpkg -r keeps /etc/logrotate.d/runner-metrics, dpkg -P removes it" "$rc"
    fi
else
    skip "debian: the .deb is not built or installed here (SKIP_DEB=1, or no dpkg)"
fi

finish
