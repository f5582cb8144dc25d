#!/usr/bin/env bash
# test.sh - run the whole test suite in the pinned environment.
#
#   bash scripts/test.sh                      # everything under tests/
#   bash scripts/test.sh -m "not frontend"    # extra arguments go to pytest
#   bash scripts/test.sh tests/core -x        # given test paths replace the default "tests"
#
# Steps: scripts/comfy_env.sh install (venv + pinned ComfyUI, or your COMFYUI_DIR/COMFYUI_PYTHON),
# Debian chromium for the frontend tests (installed with apt-get when missing and we are root),
# then `python -m pytest` with tests/skip_guard.py, which makes any skipped test fail the run (this run has
# everything installed). The exit code is pytest's (or the failing setup step's).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
log() { echo "[test.sh $(date +%T)] $*" >&2; }

bash "$HERE/comfy_env.sh" install || { code=$?; log "environment install failed (exit $code)"; exit "$code"; }
PY="$(bash "$HERE/comfy_env.sh" python)"

CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian chromium for the frontend tests (apt-get)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
      log "WARNING: apt-get install chromium failed: the frontend tests will fail"
    fi
  else
    log "WARNING: no chromium at $CHROMIUM and not root, so it cannot be installed here."
    log "  The frontend tests (marker 'frontend') will fail: they drive the real ComfyUI frontend in"
    log "  headless chromium. Install it (sudo apt-get install chromium), set CHROMIUM_PATH to a chromium"
    log "  binary, or deselect them with: bash scripts/test.sh -m 'not frontend'"
  fi
fi

# Default to the whole suite unless the arguments already name test paths.
has_path=0
for arg in "$@"; do
  case "$arg" in
    -*) ;;
    *) if [ -e "$ROOT/${arg%%::*}" ] || [ -e "${arg%%::*}" ]; then has_path=1; fi ;;
  esac
done
targets=()
[ "$has_path" = 1 ] || targets=(tests)

cd "$ROOT" || exit 1
# tests/skip_guard.py: everything is installed here, so any skip fails the run (allowed ones: tests/allowed_skips.txt)
log "running: $PY -m pytest -p tests.skip_guard ${targets[*]:-} $*"
"$PY" -m pytest -p tests.skip_guard "${targets[@]}" "$@"
exit $?
