#!/bin/sh
# runner-metrics installed hook: writes runner-installed.timestamp (spec 3.3).
#
# Usage: installed.sh   (no arguments)
#
# Run it in the runner just before the runner starts listening for jobs. It
# writes the current UNIX time as decimal text (e.g. `1700000060` and a
# newline) to $RUNNER_METRICS_DIR/runner-installed.timestamp (default
# /metrics-exchange), atomically. Needs only a POSIX sh and coreutils.

# --- shared by the runner-metrics hook scripts (kept identical by a test) ---
set -eu
set -f
IFS=' 	
'
LC_ALL=C
export LC_ALL

# json_string VALUE: prints VALUE as a JSON string literal. '"' and '\' get
# a backslash, control characters become \u00XX, every other byte (valid
# UTF-8 included) is copied as is.
json_string() {
    printf '"'
    for _h in $(printf '%s' "$1" | od -An -v -tx1); do
        case $_h in
        22) printf '\\"' ;;
        5c) printf '\\\\' ;;
        [01]?) printf '\\u00%s' "$_h" ;;
        7f) printf '\\u007f' ;;
        *)
            _n=$((0x$_h))
            printf "\\$((_n / 64))$((_n / 8 % 8))$((_n % 8))"
            ;;
        esac
    done
    printf '"'
}

# write_atomically FILE NOCLOBBER COMMAND...: the output of COMMAND becomes
# $dir/FILE, written to a temporary file in $dir and then renamed, so a
# reader never sees half a file. With NOCLOBBER=1 an existing $dir/FILE is
# kept as it is (ln(1) creates the name only if it is free).
write_atomically() {
    _file=$1 _noclobber=$2
    shift 2
    if [ ! -d "$dir" ]; then
        echo "runner-metrics hook: $dir: not a directory (set RUNNER_METRICS_DIR)" >&2
        return 1
    fi
    _tmp=$(mktemp "$dir/.$_file.XXXXXX") || return 1
    trap 'rm -f "$_tmp"' EXIT
    trap 'rm -f "$_tmp"; exit 1' HUP INT TERM
    if ! "$@" >"$_tmp" || ! chmod 0644 "$_tmp"; then
        echo "runner-metrics hook: $dir/$_file: cannot write" >&2
        rm -f "$_tmp"
        return 1
    fi
    if [ "$_noclobber" = 1 ]; then
        if [ -e "$dir/$_file" ] || [ -L "$dir/$_file" ] || ! ln "$_tmp" "$dir/$_file" 2>/dev/null; then
            rm -f "$_tmp"
            if [ -e "$dir/$_file" ] || [ -L "$dir/$_file" ]; then
                echo "runner-metrics hook: $dir/$_file already exists; kept" >&2
                return 0
            fi
            echo "runner-metrics hook: $dir/$_file: cannot create" >&2
            return 1
        fi
        rm -f "$_tmp"
    elif ! mv -f "$_tmp" "$dir/$_file"; then
        rm -f "$_tmp"
        return 1
    fi
}

dir=${RUNNER_METRICS_DIR:-/metrics-exchange}
# --- end of the shared part ---

installed_timestamp() {
    date +%s
}

write_atomically runner-installed.timestamp 0 installed_timestamp
