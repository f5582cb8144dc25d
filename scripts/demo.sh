#!/usr/bin/env bash
# The main job (README command 1): install ComfyUI + this pack if needed, start ComfyUI, and make an MP4 from an
# image and a prompt through ComfyUI's HTTP API with the pack's client. Real weights when present; otherwise it
# names the missing files and runs a clearly labelled smoke run on tiny random weights. Arguments go to
# scripts/demo.py (--image, --end-image, --prompt, --num-frames, --f1, --models-dir, --output-dir, --smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do  # --help installs nothing when the environment is there already
    case "$arg" in -h|--help)
        PY="$(bash scripts/comfy_env.sh python)"
        if [ -x "$PY" ]; then exec "$PY" scripts/demo.py --help; fi ;;
    esac
done
bash scripts/comfy_env.sh install
PY="$(bash scripts/comfy_env.sh python)"
exec "$PY" scripts/demo.py "$@"
