#!/bin/sh
# runner-metrics post-job writer: writes post-job-metrics.json (spec 3.2).
#
# Usage: post-job.sh EXIT_CODE
#        post-job.sh --status STATUS CODE
#
# Run it from the wrapper around the runner once the job is over, with the
# runner's exit code: 0 writes
#   {"timestamp": 1700000100, "status": "normal"}
# anything else
#   {"timestamp": 1700000100, "status": "abnormal", "status_info": {"code": 1}}
# The second form writes another status (normal, abnormal,
# repo-policy-check-failure, external-contributor-check-failure) with
# status_info {"code": CODE}; a pre-job hook whose policy check fails uses
# it, e.g. `post-job.sh --status repo-policy-check-failure 403`.
#
# An existing post-job-metrics.json is never overwritten: the one the
# pre-job hook wrote on a policy-check failure wins.
#
# The file goes to $RUNNER_METRICS_DIR (default /metrics-exchange), written
# atomically. Needs only a POSIX sh and coreutils. Exit status 0 when the
# file was written or already existed, 1 on a write error, 2 on bad usage.

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

usage() {
    echo "usage: post-job.sh EXIT_CODE | post-job.sh --status STATUS CODE" >&2
    exit 2
}

# integer TEXT: TEXT as a JSON integer (optional '-', leading zeros dropped,
# at most 9 digits), or a usage error.
integer() {
    _sign= _digits=$1
    case $_digits in -*) _sign=- _digits=${_digits#-} ;; esac
    case $_digits in '' | *[!0-9]*) usage ;; esac
    while :; do
        case $_digits in 0?*) _digits=${_digits#0} ;; *) break ;; esac
    done
    [ ${#_digits} -le 9 ] || usage
    [ "$_digits" = 0 ] && _sign=
    printf '%s%s' "$_sign" "$_digits"
}

if [ "${1-}" = --status ]; then
    [ $# -eq 3 ] || usage
    case $2 in
    normal | abnormal | repo-policy-check-failure | external-contributor-check-failure) status=$2 ;;
    *) usage ;;
    esac
    code=$(integer "$3")
    with_info=1
else
    [ $# -eq 1 ] || usage
    code=$(integer "$1")
    if [ "$code" = 0 ]; then status=normal with_info=0; else status=abnormal with_info=1; fi
fi

post_job_json() {
    printf '{"timestamp": %s, "status": "%s"' "$(date +%s)" "$status"
    if [ "$with_info" = 1 ]; then
        printf ', "status_info": {"code": %s}' "$code"
    fi
    printf '}\n'
}

write_atomically post-job-metrics.json 1 post_job_json
