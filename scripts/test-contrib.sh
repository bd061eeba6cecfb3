#!/usr/bin/env bash
# Checks the deployment files in contrib/ (docs/deployment.md):
#
#   systemd    `systemd-analyze verify` on the service and timer (and on a
#              broken copy, which must fail: the check can fail), the
#              hardening the service must have (and must not have:
#              MemoryDenyWriteExecute), ReadWritePaths = exactly the three
#              paths ExecStart writes, `systemd-analyze security --offline`
#              exposure at most 2.0;
#   syscalls   with strace: every system call a real `collect` (and the
#              demo) makes is in the unit's SystemCallFilter= (@system-service
#              and the four calls runner-metrics confines itself with), and
#              wasmtime does mprotect(PROT_EXEC) (why MemoryDenyWriteExecute
#              would break it);
#   logrotate  `logrotate -d` on the stanza, then a real rotation of a copy
#              pointed at a temporary directory while a writer holds the log
#              open: every line survives, in the renamed file;
#   grafana    the dashboards are what contrib/grafana/generate.py writes, and
#              well formed (their PromQL is run in tests/tests/e2e/prometheus_server.rs);
#   alerts     `promtool check rules` and `promtool test rules` on
#              contrib/prometheus/, and every broken copy of the rules (an
#              alert that never fires, always fires, or lost its `for:`)
#              fails those tests.
#
# Everything runs in one temporary directory, removed at the end. A tool that
# is missing is a visible "skip:" line (scripts/install-test-deps.sh installs
# them as root). Uses target/release/runner-metrics if it is built (RUNNER_METRICS
# overrides). Prints "contrib: N passed, N failed, N skipped"; exits 1 if any
# failed (under CI=true a skip is a failure).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAILED: $*"; failed=$((failed + 1)); }
skipped=0
# A check that cannot run here is counted apart; under CI=true it fails.
skip() {
    if [ "${CI:-}" = true ]; then fail "(CI must run it) $*"; else echo "skip: $*"; skipped=$((skipped + 1)); fi
}
check() { # description, command...
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

service=contrib/systemd/runner-metrics.service
timer=contrib/systemd/runner-metrics.timer
stanza=contrib/logrotate/runner-metrics
bin=${RUNNER_METRICS:-$repo/target/release/runner-metrics}
[ -x "$bin" ] || bin=""

# The directives of a unit, comments and continuations folded, one per line.
directives() { sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$1" | grep -v '^[[:space:]]*#' | grep '='; }
value_of() { directives "$service" | sed -n "s/^$1=//p"; }

# --- systemd ------------------------------------------------------------------
for directive in ProtectSystem=strict NoNewPrivileges=yes PrivateNetwork=yes SystemCallFilter=@system-service \
    ProtectHome=tmpfs PrivateTmp=yes RestrictAddressFamilies=AF_UNIX SystemCallArchitectures=native \
    CapabilityBoundingSet=; do
    check "service sets $directive" grep -qx "$directive" <(directives "$service")
done
check "service does not set MemoryDenyWriteExecute (wasmtime needs W^X transitions)" \
    bash -c "! grep -q '^MemoryDenyWriteExecute' <(sed '/^[[:space:]]*#/d' $service)"
# ReadWritePaths: exactly the storage root, the log's directory and the textfile's directory.
exec_start=$(value_of ExecStart)
storage=$(sed -n 's/.*--storage \([^ ]*\).*/\1/p' <<<"$exec_start")
log_dir=$(dirname "$(sed -n 's/.*--metrics-log \([^ ]*\).*/\1/p' <<<"$exec_start")")
textfile_dir=$(dirname "$(sed -n 's/.*--prometheus-textfile \([^ ]*\).*/\1/p' <<<"$exec_start")")
want=$(printf '%s\n' "$storage" "$log_dir" "$textfile_dir" | sort | tr '\n' ' ')
have=$(value_of ReadWritePaths | tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ')
check "ReadWritePaths is exactly the storage root, log and textfile directories ($want)" test "$want" = "$have"
check "the log directory is the unit's LogsDirectory" test "$log_dir" = "/var/log/$(value_of LogsDirectory)"

if command -v systemd-analyze >/dev/null; then
    units=$tmp/units
    mkdir -p "$units"
    cp "$service" "$timer" "$units/"
    # verify insists that ExecStart's program exists: point it at ours (or true).
    sed -i "s|/usr/local/bin/runner-metrics|${bin:-/bin/true}|" "$units/runner-metrics.service"
    out=$(cd "$units" && systemd-analyze verify runner-metrics.service runner-metrics.timer 2>&1)
    check "systemd-analyze verify: no error, no warning${out:+: $out}" test $? -eq 0 -a -z "$out"
    mkdir -p "$tmp/broken"
    sed 's/^ProtectSystem=strict/ProtectSystm=strict/; s/^SuccessExitStatus=.*/SuccessExitStatus=maybe/' \
        "$units/runner-metrics.service" >"$tmp/broken/runner-metrics.service"
    out=$(cd "$tmp/broken" && systemd-analyze verify runner-metrics.service 2>&1)
    check "systemd-analyze verify reports a broken copy" grep -q "ProtectSystm" <<<"$out"
    security=$(systemd-analyze security --offline=yes "$units/runner-metrics.service" 2>&1 | tail -1)
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$security")
    echo "   $security"
    check "systemd-analyze security exposure ${score:-?} <= 2.0" awk -v s="${score:-99}" 'BEGIN { exit !(s <= 2.0) }'
else
    skip "systemd-analyze is not installed: the units are not verified"
fi

# --- system calls ---------------------------------------------------------------
expand_filter() { # a systemd syscall group, recursively
    systemd-analyze syscall-filter "$1" | tail -n +2 | sed 's/^ *//; /^#/d; /^$/d' |
        while read -r name; do case $name in @*) expand_filter "$name" ;; *) echo "$name" ;; esac; done
}
if [ -z "$bin" ]; then
    skip "no runner-metrics binary (cargo build --release -p runner-metrics): system calls not checked"
elif ! command -v strace >/dev/null || ! command -v systemd-analyze >/dev/null; then
    skip "strace or systemd-analyze is not installed: system calls not checked"
else
    root=$tmp/syscalls/runner-fs
    mkdir -p "$root" "$tmp/syscalls/textfile"
    "$bin" storage create --storage "$root" r-1 >/dev/null
    printf '1700000060\n' >"$root/r-1/runner-installed.timestamp"
    touch -d '1 hour ago' "$root/r-1"
    traced=0
    strace -f -qq -o "$tmp/syscalls/collect.trace" "$bin" --cache-dir "$tmp/syscalls/cache" collect \
        --storage "$root" --flavor small --metrics-log "$tmp/syscalls/metrics.log" \
        --prometheus-textfile "$tmp/syscalls/textfile/runner-metrics.prom" >"$tmp/syscalls/collect.out" 2>&1 &&
        strace -f -qq -o "$tmp/syscalls/demo.trace" "$bin" --cache-dir "$tmp/syscalls/cache2" demo \
            >"$tmp/syscalls/demo.out" 2>&1 || traced=$?
    check "collect and demo run under strace (exit ${traced})" test "$traced" -eq 0 -a -s "$tmp/syscalls/metrics.log"
    cat "$tmp"/syscalls/*.trace | sed -n 's/^[0-9]* *\([a-z0-9_]*\)(.*/\1/p' | sort -u >"$tmp/syscalls/used"
    # Every SystemCallFilter= line of the unit: @system-service, and the
    # calls runner-metrics confines itself with.
    # A line starting with ~ denies its calls (io_uring) from what the
    # others allow.
    value_of SystemCallFilter | while read -r line; do
        case $line in "~"*) continue ;; esac
        for filter in $line; do
            case $filter in
            @*) expand_filter "$filter" ;;
            *) echo "$filter" ;;
            esac
        done
    done | sort -u >"$tmp/syscalls/allowed_all"
    value_of SystemCallFilter | sed -n 's/^~//p' | tr ' ' '\n' | sed '/^$/d' | sort -u >"$tmp/syscalls/denied"
    comm -23 "$tmp/syscalls/allowed_all" "$tmp/syscalls/denied" >"$tmp/syscalls/allowed"
    check "the unit denies io_uring (IORING_OP_SOCKET makes sockets past a socket() rule)" \
        test "$(tr '\n' ' ' <"$tmp/syscalls/denied")" = "io_uring_enter io_uring_register io_uring_setup "
    outside=$(comm -23 "$tmp/syscalls/used" "$tmp/syscalls/allowed" | tr '\n' ' ')
    echo "   $(wc -l <"$tmp/syscalls/used") distinct system calls used"
    check "every system call is in the unit's SystemCallFilter=${outside:+ (not: $outside)}" test -z "$outside"
    check "collect confines itself (Landlock and seccomp) under strace" \
        grep -q 'os sandbox: landlock enforced.*seccomp enforced' "$tmp/syscalls/collect.out"
    check "wasmtime makes memory executable after writing it (mprotect PROT_EXEC)" \
        grep -q 'mprotect(.*PROT_EXEC' "$tmp/syscalls/collect.trace"
fi

# --- logrotate ------------------------------------------------------------------
if command -v logrotate >/dev/null; then
    out=$(logrotate -d -s "$tmp/logrotate.state" "$stanza" 2>&1)
    code=$?
    check "logrotate -d accepts $stanza" test "$code" -eq 0
    check "logrotate -d reports no error" bash -c "! grep -qi 'error' <<<\"\$1\"" _ "$out"
    check "the stanza rotates the service's log" grep -q "^$(value_of ExecStart | sed -n 's/.*--metrics-log \([^ ]*\).*/\1/p') {" "$stanza"

    # A real rotation in a temporary directory, with a run in progress.
    dir=$tmp/logrotate
    mkdir -p "$dir"
    log=$dir/github-runner-metrics.log
    sed "s|^/var/log/runner-metrics/github-runner-metrics.log {|$log {|" "$stanza" >"$dir/conf"
    for i in 1 2 3; do echo "{\"line\": $i}" >>"$log"; done
    exec 3>>"$log" # a collect that opened the log before the rotation
    logrotate -f -s "$dir/state" "$dir/conf"
    echo '{"line": 4}' >&3 # ... and appends after it
    exec 3>&-
    check "rotation renamed the log (nocreate: the next run creates it)" test ! -e "$log" -a -f "$log.1"
    check "a line appended by a run in progress lands in the rotated file" test "$(wc -l <"$log.1")" -eq 4
    for i in 5 6; do echo "{\"line\": $i}" >>"$log"; done # the next run
    logrotate -f -s "$dir/state" "$dir/conf"
    all=$( (zcat "$log.2.gz" && cat "$log.1") 2>/dev/null | sed -n 's/{"line": \([0-9]*\)}/\1/p' | tr '\n' ' ')
    check "after two rotations every line is there once, in order (got: $all)" test "$all" = "1 2 3 4 5 6 "
else
    skip "logrotate is not installed: the stanza is not checked"
fi

# --- Grafana dashboards ------------------------------------------------------------
# Generated from one description; every panel's PromQL is evaluated against a
# real Prometheus in tests/tests/e2e/prometheus_server.rs.
check "contrib/grafana/*.json are what contrib/grafana/generate.py writes" python3 contrib/grafana/generate.py --check
check "each dashboard: a uid, unique panel ids, every query on the \$datasource variable" python3 - contrib/grafana/*.json <<'PY'
import json, sys
for path in sys.argv[1:]:
    board = json.load(open(path))
    assert board.get("uid") and board.get("title"), path
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), (path, ids)
    names = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "instance", "flavor", "quantile"} <= names, (path, names)
    targets = [t for p in board["panels"] for t in p.get("targets", [])]
    assert targets, path
    for t in targets:
        assert t["datasource"]["uid"] == "${datasource}" and t["expr"], (path, t)
PY

# --- Prometheus alert rules ------------------------------------------------------------
rules=contrib/prometheus/runner-metrics.rules.yml
rule_tests=contrib/prometheus/runner-metrics.rules.test.yml
if command -v promtool >/dev/null; then
    check "promtool check rules $rules" promtool check rules "$rules"
    check "promtool test rules $rule_tests" promtool test rules "$rule_tests"
    # The tests can fail: for each alert, a copy where it never fires, one
    # where it always fires, and (if it has one) one without its `for:`.
    # Every copy must fail the tests.
    mutants=$tmp/rule-mutants
    mkdir -p "$mutants"
    python3 - "$rules" "$mutants" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r"(?m)^(?=      - alert: )", text)
for i, block in enumerate(blocks):
    name = re.match(r"      - alert: (\w+)", block)
    if not name:
        continue
    # The expression: from `expr:` to the next key of the rule.
    expr = re.compile(r"(?ms)^        expr:.*?(?=^        \w+:)")
    mutants = {
        "never": expr.sub("        expr: vector(1) > 2\n", block),
        "always": expr.sub("        expr: vector(1)\n", block),
    }
    if re.search(r"(?m)^        for: ", block):
        mutants["no-for"] = re.sub(r"(?m)^        for: .*\n", "", block)
    for kind, mutant in mutants.items():
        assert mutant != block, (name.group(1), kind)
        out = "".join(blocks[:i]) + mutant + "".join(blocks[i + 1:])
        open(f"{sys.argv[2]}/{name.group(1)}.{kind}.yml", "w").write(out)
PY
    # A control copy, unchanged, must pass (so the copies' tests do load them).
    cp "$rules" "$mutants/unchanged.yml"
    count=0
    for mutant in "$mutants"/*.yml; do
        sed "s|^  - runner-metrics.rules.yml\$|  - $(basename "$mutant")|" "$rule_tests" >"$mutants/test.yml.tmp"
        mv "$mutants/test.yml.tmp" "$mutants/$(basename "$mutant" .yml).test"
        count=$((count + 1))
    done
    check "the unchanged copy of the rules passes their tests" \
        bash -c "cd '$mutants' && promtool test rules unchanged.test >/dev/null 2>&1"
    rm "$mutants/unchanged.yml" "$mutants/unchanged.test"
    count=$((count - 1))
    survivors=""
    for test_file in "$mutants"/*.test; do
        (cd "$mutants" && promtool test rules "$(basename "$test_file")" >/dev/null 2>&1) &&
            survivors="$survivors $(basename "$test_file" .test)"
    done
    check "every one of the $count broken copies of the rules fails their tests${survivors:+ (passed:$survivors)}" \
        test "$count" -ge 14 -a -z "$survivors"
else
    skip "promtool is not installed: the alert rules are not checked"
fi

echo
echo "contrib: ${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$failed" -eq 0 ]
