#!/bin/sh
# runner-metrics pre-job hook: writes pre-job-metrics.json (spec 3.1).
#
# Usage: pre-job.sh   (no arguments)
#
# Run it in the runner as its ACTIONS_RUNNER_HOOK_JOB_STARTED hook (or from
# that hook). From GITHUB_WORKFLOW, GITHUB_REPOSITORY, GITHUB_EVENT_NAME,
# GITHUB_RUN_ID, GITHUB_RUN_ATTEMPT and the current time it writes, on one
# line,
#
#   {"workflow": "ci", "repository": "owner/repo", "event": "push",
#    "timestamp": 1700000000, "workflow_run_id": "123456",
#    "workflow_run_attempt": 2}
#
# to $RUNNER_METRICS_DIR/pre-job-metrics.json (default /metrics-exchange,
# the runner's view of its storage directory). "repository" is left out
# unless GITHUB_REPOSITORY looks like owner/repo (anything else would make
# the whole storage corrupt), and "workflow_run_attempt" unless
# GITHUB_RUN_ATTEMPT is a positive integer of at most 9 digits (the job
# lookup then asks for the jobs of every attempt); unset variables are
# written as "".
#
# Needs only a POSIX sh and coreutils (od, date, mktemp, chmod, ln, mv, rm).
# Exit status 0 when the file was written, else 1 (a manager that must never
# fail a job over metrics runs it as `sh pre-job.sh || true`).

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

pre_job_json() {
    printf '{"workflow": '
    json_string "${GITHUB_WORKFLOW-}"
    case ${GITHUB_REPOSITORY-} in
    ?*/?*)
        printf ', "repository": '
        json_string "$GITHUB_REPOSITORY"
        ;;
    esac
    printf ', "event": '
    json_string "${GITHUB_EVENT_NAME-}"
    printf ', "timestamp": %s, "workflow_run_id": ' "$(date +%s)"
    json_string "${GITHUB_RUN_ID-}"
    case ${GITHUB_RUN_ATTEMPT-} in
    '' | 0* | *[!0-9]* | ??????????*) ;;
    *) printf ', "workflow_run_attempt": %s' "$GITHUB_RUN_ATTEMPT" ;;
    esac
    printf '}\n'
}

write_atomically pre-job-metrics.json 0 pre_job_json
