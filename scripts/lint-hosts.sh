#!/usr/bin/env bash
# Lints the code of the Python and Node hosts (and the project's other
# Python), so that style and simple mistakes are caught before the tests:
#
#   ruff check           hosts/python, tests/conformance/*.py, scripts/**/*.py, bench/*.py, contrib/**/*.py
#   ruff format --check  the same files (the formatter decides the layout)
#   node --check         every .js/.mjs of hosts/node: src/, scripts/, test/,
#                        test-support/, examples/ (a syntax check; the package
#                        has no TypeScript or type checker to run)
#
# ruff runs with hosts/python/pyproject.toml ([tool.ruff]) for every file,
# from the venv hosts/python/.venv (made with `python3 -m venv` if missing),
# at the version pinned in hosts/python/requirements-dev.txt. To fix what it
# reports: hosts/python/.venv/bin/ruff check --fix / ruff format, with
# --config hosts/python/pyproject.toml and the same files.
#
# Environment: PYTHON (default python3, for the venv), SKIP_PYTHON/SKIP_NODE=1.
# Prints "lint: N passed, N failed" (one per linter run) and exits non-zero
# if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
failures=()
# Runs one linter: its name, then the command.
lint() {
    local name=$1
    shift
    printf '\n==> lint: %s\n' "$name"
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures+=("$name")
    fi
}

if [ "${SKIP_PYTHON:-0}" != 1 ]; then
    venv=hosts/python/.venv
    if [ ! -x "$venv/bin/python" ]; then
        printf '==> Python venv %s\n' "$venv"
        "${PYTHON:-python3}" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r hosts/python/requirements-dev.txt
    ruff=("$venv/bin/ruff" --config hosts/python/pyproject.toml)
    # The tracked Python files outside the host (and new ones not ignored).
    mapfile -t python_files < <(git ls-files --cached --others --exclude-standard -- \
        'tests/conformance/*.py' 'scripts/*.py' 'bench/*.py' 'contrib/*.py' | sort -u)
    python_targets=(hosts/python "${python_files[@]}")
    "${ruff[0]}" --version
    lint "ruff check (${#python_files[@]} files + hosts/python)" "${ruff[@]}" check "${python_targets[@]}"
    lint "ruff format --check" "${ruff[@]}" format --check "${python_targets[@]}"
fi

if [ "${SKIP_NODE:-0}" != 1 ]; then
    node_check() {
        local file status=0
        for file in "$@"; do
            node --check "$file" || { echo "node --check: $file failed"; status=1; }
        done
        [ "$status" -eq 0 ] && echo "node --check: $# files, syntax OK"
        return "$status"
    }
    mapfile -t node_files < <(find hosts/node/src hosts/node/scripts hosts/node/test bench \
        hosts/node/test-support hosts/node/examples -maxdepth 3 -type f \( -name '*.js' -o -name '*.mjs' \) 2>/dev/null | sort)
    if [ "${#node_files[@]}" -eq 0 ]; then
        echo "lint: no .js/.mjs files found under hosts/node" >&2
        exit 2
    fi
    node --version
    lint "node --check (${#node_files[@]} files)" node_check "${node_files[@]}"
fi

printf '\nlint: %d passed, %d failed\n' "$passed" "$failed"
if [ "$failed" -ne 0 ]; then
    printf 'failed: %s\n' "${failures[@]}"
    exit 1
fi
