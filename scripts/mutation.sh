#!/usr/bin/env bash
# mutation.sh - mutation testing of the core's planning/guidance/caching logic and the hosted-API parameters.
# A development tool, not part of scripts/test.sh: run it before closing work that changes these modules and put
# the score table it prints in the closing note.
#
#   bash scripts/mutation.sh            # mutate, run each mutant against the tests that reach it, print the scores
#   bash scripts/mutation.sh run 'framepack_core.planning.*'   # only the mutants whose names match (fnmatch)
#   bash scripts/mutation.sh score      # print the score table of the last run again
#   bash scripts/mutation.sh show NAME  # the diff of one mutant (names come from `mutmut results`)
#
# What is mutated and which test files judge it: [tool.mutmut] in pyproject.toml (fast tests only; the section-
# loop and server tests are too slow to run once per mutant). mutmut works in mutants/ (git-ignored) and keeps
# its results there (each run starts afresh). About 6000 mutants over 21 modules at roughly 0.7 per second on two
# free cores (2-3 hours; the 7 planning/guidance/caching/hosted modules alone: 1964 mutants, 45 minutes), so pass
# module names to run a part.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MUTMUT_VERSION=3.8.1
PY="${COMFYUI_PYTHON:-$(bash "$ROOT/scripts/comfy_env.sh" python)}"
BIN="$(dirname "$PY")"
cd "$ROOT"

if [ "$("$PY" -c 'import importlib.metadata as m; print(m.version("mutmut"))' 2>/dev/null)" != "$MUTMUT_VERSION" ]; then
    echo "mutation.sh: mutmut $MUTMUT_VERSION is not installed in $PY's environment: $BIN/pip install mutmut==$MUTMUT_VERSION" >&2
    exit 2
fi

case "${1:-run}" in
    # a fresh mutants/ each run: after tests change, mutmut 3.8.1's incremental stats can lose the test <-> function
    # map and report every mutant as "no tests"
    run) rm -rf "$ROOT/mutants"
         PATH="$BIN:$PATH" "$BIN/mutmut" run --max-children "${MUTATION_JOBS:-2}" "${@:2}" || true
         "$PY" "$ROOT/scripts/mutation_score.py" ;;
    score) "$PY" "$ROOT/scripts/mutation_score.py" ;;
    show) PATH="$BIN:$PATH" "$BIN/mutmut" show "$2" ;;
    *) echo "usage: bash scripts/mutation.sh [run|score|show NAME]" >&2; exit 2 ;;
esac
