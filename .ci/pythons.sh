#!/usr/bin/env bash
# `make test-pythons`: the fast test suite on every CPython minor from the oldest in
# $PYTHONS to the newest this machine has, each in a venv of its own (.venv-py3.X; the
# minor of .venv runs in .venv). Interpreters come from pyenv (the newest patch of each
# minor) or from python3.X on PATH.
#
# $PYTHONS (from the Makefile: the Python classifiers of pyproject.toml) are the minors the
# package claims. On a user's machine a missing one is skipped with a note; in CI
# (CI=true) it fails the run, naming it, so CI can never silently drop a claimed minor.
# A newer minor than those claimed runs too, when the machine has it.
#
#   --skip-main   leave out .venv's minor (`make test-all` has already run it, with the
#                 slow tests and coverage)
#   --list        only say which interpreter and venv each minor would use
#   --bench       run the benchmarks (`make bench`) instead of the tests, writing
#                 benchmarks/py3.X/results.{json,md,png} (`make bench-pythons`)
#   $WORKERS      pytest-xdist processes per run (no coverage here)
#   $VENV         the main venv (default .venv)
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHONS=${PYTHONS:?PYTHONS: the minors to require, e.g. "3.11 3.12 3.13"}
WORKERS=${WORKERS:-4}
VENV=${VENV:-.venv}
skip_main=false
list=false
bench=false
for arg in "$@"; do
    case $arg in
        --skip-main) skip_main=true ;;
        --list) list=true ;;
        --bench) bench=true ;;
        *) echo "pythons.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

# minor_of PYTHON: its "3.X" if it runs and is CPython, else nothing (a pyenv shim of a
# version that is not selected is on PATH but fails)
minor_of() {
    "$1" -c 'import sys; sys.implementation.name == "cpython" and print("%d.%d" % sys.version_info[:2])' 2>/dev/null
}

# find_python 3.X: the path of an interpreter of that minor, or fail
find_python() {
    local minor=$1 version path
    if command -v pyenv >/dev/null 2>&1; then
        version=$(pyenv versions --bare --skip-aliases 2>/dev/null |
            grep -E "^${minor//./\\.}\.[0-9]+$" | sort -V | tail -n 1)
        path="$(pyenv root)/versions/$version/bin/python$minor"
        if [[ -n $version && $(minor_of "$path") == "$minor" ]]; then
            echo "$path"
            return 0
        fi
    fi
    path=$(command -v "python$minor") || return 1
    [[ $(minor_of "$path") == "$minor" ]] && echo "$path"
}

# every 3.X this machine has (pyenv versions, python3.X on PATH), oldest first
machine_minors() {
    {
        if command -v pyenv >/dev/null 2>&1; then
            pyenv versions --bare --skip-aliases 2>/dev/null | sed -nE 's/^(3\.[0-9]+)\.[0-9]+$/\1/p'
        fi
        compgen -c python3. | sed -nE 's/^python(3\.[0-9]+)$/\1/p'
    } | sort -uV
}

# make_venv DIR PYTHON: DIR with the package and its dev extra (installed again when
# pyproject.toml is newer; made afresh when DIR is missing or of another minor)
make_venv() {
    local dir=$1 python=$2
    if [[ $(minor_of "$dir/bin/python") != $(minor_of "$python") ]]; then
        rm -rf "$dir"
        "$python" -m venv "$dir" && "$dir/bin/python" -m pip install -q --upgrade pip || return 1
    elif [[ -f $dir/.installed-dev && $dir/.installed-dev -nt pyproject.toml ]]; then
        return 0
    fi
    "$dir/bin/python" -m pip install -q -e . --group dev && touch "$dir/.installed-dev"
}

oldest=$(printf '%s\n' $PYTHONS | sort -V | head -n 1)
main_minor=$(minor_of "$VENV/bin/python" || true)
minors=$({
    printf '%s\n' $PYTHONS
    machine_minors | while read -r minor; do
        # newer than the oldest claimed, and runnable
        if [[ $(printf '%s\n' "$oldest" "$minor" | sort -V | head -n 1) == "$oldest" ]] &&
            find_python "$minor" >/dev/null; then
            echo "$minor"
        fi
    done
} | sort -uV)

summary=()
failed=()
for minor in $minors; do
    claimed=false
    [[ " $PYTHONS " == *" $minor "* ]] && claimed=true
    if $skip_main && [[ $minor == "$main_minor" ]]; then
        summary+=("$minor: in $VENV, run by make test")
        continue
    fi
    if ! python=$(find_python "$minor"); then
        if $claimed && [[ ${CI:-} == true ]]; then
            echo "pythons.sh: Python $minor is claimed (PYTHONS=\"$PYTHONS\") but not installed" \
                "(neither pyenv nor python$minor on PATH); CI must run it" >&2
            failed+=("$minor: missing")
        else
            echo "pythons.sh: note: no Python $minor here (pyenv or python$minor): skipped" >&2
            summary+=("$minor: skipped, not installed")
        fi
        continue
    fi
    venv=$VENV
    [[ $minor == "$main_minor" ]] || venv=.venv-py$minor
    if $list; then
        summary+=("$minor: $python in $venv")
        continue
    fi
    if [[ $venv != "$VENV" ]]; then
        echo "== Python $minor ($python): $venv"
        if ! make_venv "$venv" "$python"; then
            failed+=("$minor: could not install into $venv")
            continue
        fi
    fi
    echo "== Python $minor: $("$venv/bin/python" -c 'import sys, redis; print(sys.version.split()[0], "redis-py", redis.__version__)')"
    start=$SECONDS
    if $bench; then
        run=(env "BENCH_OUT=benchmarks/py$minor" "$venv/bin/python" -m pytest benchmarks -q -p no:cacheprovider)
    else
        run=("$venv/bin/python" -m pytest -q -p no:cacheprovider -n "$WORKERS")
    fi
    if "${run[@]}"; then
        summary+=("$minor: passed in $((SECONDS - start)) s ($venv)")
    else
        failed+=("$minor: tests failed ($venv)")
    fi
    $claimed || echo "pythons.sh: note: Python $minor is not in PYTHONS (the classifiers of pyproject.toml)" >&2
done

echo "== test-pythons"
for line in "${summary[@]}" "${failed[@]}"; do
    echo "   $line"
done
[[ ${#failed[@]} -eq 0 ]]
