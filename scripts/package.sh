#!/usr/bin/env bash
# Builds the installable packages into dist/, from the repository's own files:
#
#   dist/runner_metrics_host-<version>-cp311-abi3-<platform>.whl
#                                                         Python: the binding of the Rust host (maturin,
#                                                         PyO3), the pure WebAssembly host + components
#   dist/runner-metrics-node-host-<version>.tgz           Node host + transpiled components (npm pack)
#   dist/runner_metrics.wasm                              the plugin component itself
#   dist/runner_metrics_keeper.wasm                       the keeper every host runs beside it
#   dist/runner-metrics_<version>_<arch>.deb              the command, units, logrotate, man page,
#                                                         completions (scripts/package-deb.sh)
#
# <version> is the workspace version ([workspace.package] in Cargo.toml).
# The npm package is built from a staging copy under dist/.build/; the wheel
# in place by maturin (the binding is a crate of this workspace; the
# components it copies beside the sources are removed after). The component from
# `cargo build --release -p runner-metrics` (the one profile the tests and
# the Debian package use too; the components inside are always built with
# the `component` profile).
#
# Needs Rust (rustup) unless RUNNER_METRICS_COMPONENT and
# RUNNER_METRICS_KEEPER_COMPONENT name built .wasm files,
# Rust for the wheel's extension in any case, Python >= 3.11 with venv (the
# wheel is built in a venv with maturin from PyPI,
# hosts/python/requirements-build.txt), Node >= 20 with npm (jco from
# hosts/node/package-lock.json).
#
# Environment: RUNNER_METRICS_COMPONENT, RUNNER_METRICS_KEEPER_COMPONENT
# (use these .wasm files, skip cargo),
# PYTHON (default python3), SKIP_PYTHON/SKIP_NODE/SKIP_DEB=1,
# RUNNER_METRICS_BIN (the release binary for the .deb, else cargo builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
if [ -z "$version" ]; then
    echo "no version in Cargo.toml [workspace.package]" >&2
    exit 1
fi

dist="$repo/dist"
build="$dist/.build"
rm -rf "$build"
mkdir -p "$build"
# Only this version's packages are left in dist/.
rm -f "$dist"/runner_metrics_host-*.whl "$dist"/runner-metrics-node-host-*.tgz "$dist"/runner_metrics*.wasm

# The plugin and the keeper every host runs beside it.
component="$dist/runner_metrics.wasm"
keeper="$dist/runner_metrics_keeper.wasm"
if [ -n "${RUNNER_METRICS_COMPONENT:-}" ] && [ -n "${RUNNER_METRICS_KEEPER_COMPONENT:-}" ]; then
    step "components: $RUNNER_METRICS_COMPONENT, $RUNNER_METRICS_KEEPER_COMPONENT (RUNNER_METRICS_*COMPONENT)"
    cp "$RUNNER_METRICS_COMPONENT" "$component"
    cp "$RUNNER_METRICS_KEEPER_COMPONENT" "$keeper"
else
    step "components: cargo build --release -p runner-metrics && runner-metrics component --kind plugin|keeper --output ..."
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    rustup target add wasm32-wasip2 >/dev/null
    cargo build --release -p runner-metrics
    ./target/release/runner-metrics component --kind plugin --output "$component"
    ./target/release/runner-metrics component --kind keeper --output "$keeper"
fi
export RUNNER_METRICS_KEEPER_COMPONENT="$keeper" # for the Node host's transpile
# Each is a WebAssembly binary (magic \0asm).
for wasm in "$component" "$keeper"; do
    if [ "$(head -c 4 "$wasm" | od -An -tx1 | tr -d ' \n')" != 0061736d ]; then
        echo "$wasm is not a WebAssembly binary" >&2
        exit 1
    fi
done

if [ "${SKIP_PYTHON:-0}" != 1 ]; then
    step "Python wheel $version (maturin: hosts/python, its Rust host binding, the components)"
    # Built in place (the binding's crate is a member of this workspace, so
    # it shares target/), with the components copied beside the package's
    # sources for the pure WebAssembly host and removed again after. The
    # version is the workspace's (maturin reads native/Cargo.toml).
    python=${PYTHON:-python3}
    "$python" -m venv "$build/venv"
    "$build/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r hosts/python/requirements-build.txt
    package_dir=hosts/python/src/runner_metrics_host
    find "$package_dir" -name __pycache__ -prune -exec rm -rf {} +
    cp "$component" "$package_dir/runner_metrics.wasm"
    cp "$keeper" "$package_dir/runner_metrics_keeper.wasm"
    built=0
    (cd hosts/python && "$build/venv/bin/maturin" build --release --quiet --out "$dist") || built=$?
    rm -f "$package_dir/runner_metrics.wasm" "$package_dir/runner_metrics_keeper.wasm"
    [ "$built" -eq 0 ] || { echo "maturin failed ($built)" >&2; exit 1; }
    wheels=("$dist"/runner_metrics_host-"$version"-cp311-abi3-*.whl)
    [ "${#wheels[@]}" -eq 1 ] && [ -f "${wheels[0]}" ] || { echo "maturin did not write one abi3 wheel" >&2; ls "$dist" >&2; exit 1; }
    wheel=${wheels[0]}
    # What ships: the modules, the binding, the components and the typing marker.
    "$build/venv/bin/python" - "$wheel" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
want = {"runner_metrics_host/__init__.py", "runner_metrics_host/native.py", "runner_metrics_host/_native.abi3.so",
        "runner_metrics_host/runner_metrics.wasm", "runner_metrics_host/runner_metrics_keeper.wasm",
        "runner_metrics_host/py.typed"}
missing = want - names
if missing:
    sys.exit(f"{sys.argv[1]} lacks {sorted(missing)}")
EOF
    echo "wrote $wheel"
fi

if [ "${SKIP_NODE:-0}" != 1 ]; then
    step "npm tarball $version (hosts/node + its Rust host binding + jco-transpiled plugin and keeper)"
    stage="$build/node"
    mkdir -p "$stage"
    cp hosts/node/package.json hosts/node/package-lock.json hosts/node/README.md "$stage/"
    cp -r hosts/node/src hosts/node/scripts "$stage/"
    # The binding of the Rust host (napi-rs): what `collect` runs; built for
    # this platform (linux x86_64, glibc), stripped.
    cargo build --release -p runner-metrics-node
    cp target/release/librunner_metrics_node.so "$stage/runner-metrics.node"
    strip "$stage/runner-metrics.node"
    (
        cd "$stage" &&
            npm ci --no-audit --no-fund --loglevel=error &&
            npm pkg set "version=$version" &&
            node scripts/transpile.mjs "$component" &&
            npm pack --pack-destination "$dist" --loglevel=warn >/dev/null
    )
    tarball="$dist/runner-metrics-node-host-$version.tgz"
    [ -f "$tarball" ] || { echo "npm pack did not write $tarball" >&2; ls "$dist" >&2; exit 1; }
    # What ships: the host, the transpiled plugin and keeper (the keeper from
    # $RUNNER_METRICS_KEEPER_COMPONENT), no tests or scripts.
    listing=$(tar -tzf "$tarball")
    for want in package/package.json package/src/index.js package/src/native.js package/runner-metrics.node \
        package/generated/runner_metrics.js package/generated/runner_metrics.core.wasm \
        package/generated-keeper/runner_metrics_keeper.js package/generated-keeper/runner_metrics_keeper.core.wasm; do
        grep -qx "$want" <<<"$listing" || { echo "$tarball lacks $want" >&2; exit 1; }
    done
    if grep -Eq '^package/(test|test-support|scripts|node_modules)/' <<<"$listing"; then
        echo "$tarball ships test or build files" >&2
        exit 1
    fi
    echo "wrote $tarball"
fi

# The Debian package: the binary (a release build), the systemd units and
# logrotate stanza of contrib/, the man page and completions.
if [ "${SKIP_DEB:-0}" != 1 ]; then
    if command -v dpkg-deb >/dev/null; then
        ./scripts/package-deb.sh
    else
        echo "skip: no dpkg-deb here, so no Debian package (SKIP_DEB=1 to silence this)"
    fi
fi

rm -rf "$build"
step "dist/"
ls -l "$dist"
