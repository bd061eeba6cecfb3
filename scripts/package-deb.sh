#!/usr/bin/env bash
# Builds the Debian package of the `runner-metrics` command into dist/:
#
#   dist/runner-metrics_<version>_<arch>.deb
#     /usr/bin/runner-metrics                        the release binary (components embedded), debug info stripped
#     /lib/systemd/system/runner-metrics.{service,timer}   contrib/systemd, ExecStart=/usr/bin/runner-metrics; not enabled
#     /etc/logrotate.d/runner-metrics                contrib/logrotate (a conffile)
#     /usr/share/bash-completion/completions/runner-metrics, zsh and fish completions
#     /usr/share/man/man1/runner-metrics.1.gz        generated from the clap definitions
#     /usr/share/doc/runner-metrics/{copyright,README.md.gz,deployment.md.gz,prometheus.md.gz}
#     /usr/share/doc/runner-metrics/examples/         contrib/grafana dashboards, contrib/prometheus alert rules and their tests
#
# With dpkg-deb itself (Debian's own tool, always there on Debian and Ubuntu):
# the package is one binary and a few files, so debhelper or cargo-deb would
# add a build dependency and no safety. <version> is the workspace version.
#
# Environment: RUNNER_METRICS_BIN (use this release binary, skip cargo).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "no version in Cargo.toml [workspace.package]" >&2; exit 1; }
for tool in dpkg-deb dpkg objcopy gzip; do
    command -v "$tool" >/dev/null || { echo "package-deb.sh needs $tool (Debian: apt-get install dpkg-dev binutils)" >&2; exit 1; }
done
arch=$(dpkg --print-architecture)

bin=${RUNNER_METRICS_BIN:-}
if [ -z "$bin" ]; then
    step "release binary: cargo build --release -p runner-metrics"
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    rustup target add wasm32-wasip2 >/dev/null
    cargo build --release --locked -p runner-metrics
    bin=target/release/runner-metrics
fi
[ -x "$bin" ] || { echo "no executable at $bin" >&2; exit 1; }

dist=dist
stage="$dist/.build/deb/runner-metrics_${version}_$arch"
rm -rf "$stage" "$dist"/runner-metrics_*.deb
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/logrotate.d" \
    "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
    "$stage/usr/share/fish/vendor_completions.d" "$stage/usr/share/man/man1" "$stage/usr/share/doc/runner-metrics"

step "files of runner-metrics $version ($arch)"
objcopy --strip-debug "$bin" "$stage/usr/bin/runner-metrics"
chmod 0755 "$stage/usr/bin/runner-metrics"
for unit in runner-metrics.service runner-metrics.timer; do
    sed 's|/usr/local/bin/runner-metrics|/usr/bin/runner-metrics|g' "contrib/systemd/$unit" >"$stage/lib/systemd/system/$unit"
done
if grep -q /usr/local/bin "$stage/lib/systemd/system/runner-metrics.service"; then
    echo "the packaged unit still names /usr/local/bin" >&2
    exit 1
fi
cp contrib/logrotate/runner-metrics "$stage/etc/logrotate.d/runner-metrics"
"$stage/usr/bin/runner-metrics" completions bash >"$stage/usr/share/bash-completion/completions/runner-metrics"
"$stage/usr/bin/runner-metrics" completions zsh >"$stage/usr/share/zsh/vendor-completions/_runner-metrics"
"$stage/usr/bin/runner-metrics" completions fish >"$stage/usr/share/fish/vendor_completions.d/runner-metrics.fish"
"$stage/usr/bin/runner-metrics" man | gzip -9n >"$stage/usr/share/man/man1/runner-metrics.1.gz"
gzip -9nc README.md >"$stage/usr/share/doc/runner-metrics/README.md.gz"
gzip -9nc docs/deployment.md >"$stage/usr/share/doc/runner-metrics/deployment.md.gz"
gzip -9nc docs/prometheus.md >"$stage/usr/share/doc/runner-metrics/prometheus.md.gz"
mkdir -p "$stage/usr/share/doc/runner-metrics/examples/grafana" "$stage/usr/share/doc/runner-metrics/examples/prometheus"
cp contrib/grafana/*.json "$stage/usr/share/doc/runner-metrics/examples/grafana/"
cp contrib/prometheus/*.yml "$stage/usr/share/doc/runner-metrics/examples/prometheus/"
cat >"$stage/usr/share/doc/runner-metrics/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: runner-metrics

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f ! -path "$stage/usr/bin/*" -exec chmod 0644 {} +

installed_kib=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: runner-metrics
Version: $version
Architecture: $arch
Maintainer: runner-metrics developers <runner-metrics@example.invalid>
Installed-Size: $installed_kib
Depends: libc6 (>= 2.34), libgcc-s1
Suggests: prometheus-node-exporter, logrotate
Section: admin
Priority: optional
Homepage: https://example.invalid/runner-metrics
Description: sandboxed metrics of GitHub self-hosted runners
 runner-metrics reads the metrics files GitHub self-hosted runners leave in
 their storage directories, parses them inside a WebAssembly sandbox
 (wasmtime), appends runner lifecycle events (installed, job started, job
 stopped) durably to a JSON-lines log, quarantines corrupt storages and
 deletes finished ones. A hardened systemd service and timer are included
 but not enabled: set the storage root, flavor and user with a drop-in
 (systemctl edit runner-metrics.service), then
 systemctl enable --now runner-metrics.timer.
EOF
printf '/etc/logrotate.d/runner-metrics\n' >"$stage/DEBIAN/conffiles"

deb="$dist/runner-metrics_${version}_$arch.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
dpkg-deb --info "$deb" >/dev/null
echo "wrote $deb"
