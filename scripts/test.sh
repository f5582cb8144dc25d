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
# At the end pytest lists the 25 slowest tests (--durations=25) and this script prints the run's total time.
#
# Temp files: the whole run (the install's pip build folders, pytest's tmp_path folders, the ComfyUI servers'
# base folders, chromium's profile, inductor's precompiled headers) writes into one fresh folder under the system
# temp folder, $TMPDIR or /tmp, named framepack-tests.XXXXXX. The script removes it on exit (also on failure or
# Ctrl-C) and says how many MB it held. Keep it for a look with FRAMEPACK_KEEP_TEST_TMP=1.
# torch inductor's and triton's compile caches (a few MB)
# are kept between runs in ~/.cache/framepack-comfy/compile-cache (FRAMEPACK_CACHE) instead of /tmp: a warm cache
# makes the compile tests several times faster, as /tmp/torchinductor_<user> did before.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
log() { echo "[test.sh $(date +%T)] $*" >&2; }
STARTED=$SECONDS

RUN_TMP="$(mktemp -d "${TMPDIR:-/tmp}/framepack-tests.XXXXXX")" || { log "cannot make a temp folder"; exit 1; }
remove_run_tmp() {
  local code=$? size
  trap - EXIT INT TERM HUP
  size="$(du -sm "$RUN_TMP" 2>/dev/null | cut -f1)"
  if [ "${FRAMEPACK_KEEP_TEST_TMP:-0}" = 1 ]; then
    log "kept the run's temp files: $RUN_TMP (${size:-0} MB)"
  else
    rm -rf "$RUN_TMP"
    if [ -e "$RUN_TMP" ]; then
      log "WARNING: could not remove all of $RUN_TMP"
    else
      log "removed the run's temp folder $RUN_TMP (${size:-0} MB)"
    fi
  fi
  log "total time $(( (SECONDS - STARTED) / 60 )) min $(( (SECONDS - STARTED) % 60 )) s (exit $code)"
  exit "$code"
}
trap remove_run_tmp EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
# Python's tempfile, pip, chromium and ComfyUI all honour TMPDIR. Inductor and triton would keep their caches in
# /tmp/torchinductor_<user> after the run; they go next to the pinned install instead.
COMPILE_CACHE="${FRAMEPACK_CACHE:-$HOME/.cache/framepack-comfy}/compile-cache"
export TMPDIR="$RUN_TMP" TORCHINDUCTOR_CACHE_DIR="$COMPILE_CACHE/torchinductor" TRITON_CACHE_DIR="$COMPILE_CACHE/triton"

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
# --basetemp: pytest's tmp_path folders in the run's folder (by default they pile up in /tmp/pytest-of-<user>)
pytest_args=(-p tests.skip_guard --basetemp="$RUN_TMP/pytest" --durations=25 "${targets[@]}" "$@")
log "running: $PY -m pytest ${pytest_args[*]}"
"$PY" -m pytest "${pytest_args[@]}"
exit $?
