"""The command line's arguments: the parser of every command (the hosted parameters become options from the
parameter table, framepack_client.hosted.SPECS), their help texts, and the hosted parameters a command's
arguments give (a --params file, then the flags).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .hosted import ALIASES, SPECS, HostedParams, ValidationError, parse_cli_value
from .jobs import DEFAULT_JOBS_DIR

DEFAULT_SERVER = "http://127.0.0.1:8188"
DEFAULT_OUTPUT_DIR = "framepack_outputs"
DEFAULT_TIMEOUT = 4 * 3600.0
COMMANDS = ("run", "submit", "status", "result", "batch")

MAIN_DESCRIPTION = """\
FramePack image-to-video through a ComfyUI server that has the FramePack node pack, with the parameters of the
hosted FramePack APIs (image, end_image, strength, prompt, negative_prompt, aspect_ratio, resolution, num_frames,
num_inference_steps, guidance_scale, cfg_scale, seed). Parameters are checked before anything is sent; the images
are uploaded, a shipped API workflow is filled (workflows/api: I2V, first+last frame when an end image is given,
F1 with --f1; a video to continue with --video, text-to-video with --text-to-video) and queued, and the MP4 is
downloaded.

Every command prints a JSON result on stdout:
  {"id", "model", "status": created|processing|completed|failed, "outputs": [local files], "seed": seed used,
   "error": "" or why it failed, "created_at", "timings": {"inference": ms}, "urls": {"get": history URL}}"""

MAIN_EPILOG = f"""\
commands:
  run      generate and wait (the default: "python -m framepack_client --image ..." means run)
  submit   queue a job and return at once with its id
  status   ask where a job is: created (queued), processing, completed or failed
  result   wait for a job (--wait SECONDS) and download its video
  batch    run the jobs of a JSON-lines file one after another
  serve    run the local service with the hosted APIs' contracts over ComfyUI servers (serve --help)

examples:
  python -m framepack_client run --image start.png --prompt "the girl dances gracefully" \\
      --num-frames 180 --seed 42
  python -m framepack_client run --image first.png --end-image last.png --strength 0.8 \\
      --prompt "the cat turns into a dragon"                  # first+last frame, 240 frames by default
  python -m framepack_client run --video clip.mp4 --prompt "she keeps dancing" --num-frames 150 --f1
      # continue a 30 fps video: the result is the input, then 150 new frames (--new-only: just those)
  python -m framepack_client run --text-to-video --prompt "waves roll onto a beach at dusk"
  ID=$(python -m framepack_client submit --image start.png --prompt "..." | python -c \\
      "import json,sys; print(json.load(sys.stdin)['id'])")
  python -m framepack_client status $ID
  python -m framepack_client result $ID --wait 1800 --output-dir videos/
  python -m framepack_client batch jobs.jsonl --output-dir videos/

exit status: 0 done (submit: queued), 1 the job failed or the server could not be reached,
2 invalid arguments or parameters (nothing was sent), 3 not finished yet (run --timeout, result).
Jobs are remembered in --jobs-dir (default {DEFAULT_JOBS_DIR}) so status/result work from any shell."""

RUN_EPILOG = """\
The parameters can also come from a JSON file in the hosted APIs' request format (--params body.json; keys
image/image_url, end_image/end_image_url, strength, prompt, ...); flags given as well override it.
examples:
  python -m framepack_client run --image start.png --prompt "the girl dances gracefully" --seed 42
  python -m framepack_client run --image https://example.com/a.jpg --prompt "slow push-in" \\
      --resolution 720p --aspect-ratio 9:16 --num-frames 300 --output-dir videos/
  python -m framepack_client run --image first.png --end-image last.png --strength 0.9 --prompt "..." --f1"""

def _param_table() -> str:
    rows = []
    for s in SPECS:
        default = "" if s.default in (None, "") else f" (default {s.default_text()})"
        rows.append(f"  {s.name:<20} {s.help}; {s.range_text() or 'text'}{default}"
                    if s.kind not in ("image", "str") else f"  {s.name:<20} {s.help}")
    return "\n".join(rows)


BATCH_EPILOG = f"""\
parameters:
{_param_table()}

FILE holds one JSON object per line with these parameters (hosted names; "image_url"/"end_image_url" are
accepted too; "video" continues a video instead of starting from "image"), plus optional "f1": true and
"model": "<file>" per line. Blank lines and lines starting with #
are skipped. Relative image paths are looked up from the current folder, then from the file's folder.
  {{"image": "a.png", "prompt": "the girl waves", "num_frames": 90, "seed": 1}}
  {{"image_url": "https://example.com/b.jpg", "end_image": "c.png", "prompt": "day turns to night"}}
  {{"video": "clip.mp4", "prompt": "the dance goes on", "num_frames": 90, "new_only": true}}
The jobs run in order, each to its end; a failed job is reported and the next one runs. Output: one JSON
result per line, then {{"summary": {{"total", "completed", "failed", "seconds"}}}}. Exit status 1 if any failed."""


# -- argument parsing --------------------------------------------------------------------------------------------

def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("server and files")
    group.add_argument("--server", metavar="URL", default=None,
                       help=f"ComfyUI address (default: $FRAMEPACK_SERVER or {DEFAULT_SERVER}; status/result use "
                            "the server the job was sent to unless this is given)")
    group.add_argument("--jobs-dir", metavar="DIR", default=None,
                       help=f"where jobs are remembered (default {DEFAULT_JOBS_DIR})")
    group.add_argument("--output-dir", metavar="DIR", default=None,
                       help=f"where videos are downloaded, as <id>.mp4 (default ./{DEFAULT_OUTPUT_DIR}; result "
                            "uses the folder given to submit unless this is given)")
    group.add_argument("--timeout", metavar="SECONDS", type=float, default=DEFAULT_TIMEOUT,
                       help=f"how long run/batch wait for one job before giving up waiting (default "
                            f"{DEFAULT_TIMEOUT:g}, 0 = no limit; the job keeps running on the server: fetch it later "
                            "with result)")
    group.add_argument("--quiet", "-q", action="store_true", help="no progress display on stderr")
    group.add_argument("--untrusted-input", action="store_true",
                       help="the --params or batch file comes from someone else: refuse image and video paths of this "
                            "machine in it (only http(s) URLs and data: URIs) and URLs that point into the local "
                            "network")
    return common


def _workflow_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("model and workflow")
    group.add_argument("--f1", action="store_true",
                       help="use FramePack F1 (samples forwards; workflows/api/framepack_f1.json) instead of "
                            "FramePackI2V_HY")
    group.add_argument("--model", metavar="NAME", default=None,
                       help="model file (or sharded folder) in the server's models/diffusion_models, replacing the "
                            "workflow's (FramePackI2V_HY_bf16.safetensors / FramePack_F1_I2V_HY_20250503_bf16"
                            ".safetensors)")
    group.add_argument("--workflow", metavar="PATH", default=None,
                       help="another API-format workflow to fill (ComfyUI 'Export (API)'); it needs FramePack Load "
                            "Image (or LoadImage) titled 'Start image', CLIPTextEncode titled 'Positive prompt' and 'Negative prompt', "
                            "FramePackImageConditioning, FramePackSampler and FramePackVideoCombine")
    return parent


def _param_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("generation parameters (hosted API names)")
    group.add_argument("--params", metavar="FILE.json", default=None,
                       help="a JSON object of parameters (hosted request body); the flags below override it")
    metavars = {"int": "N", "float": "X", "str": "TEXT", "image": "PATH|URL", "video": "PATH|URL",
                "bool": "true|false"}
    for s in SPECS:
        flags = ["--" + s.name.replace("_", "-")]
        if s.name == "num_inference_steps":
            flags.append("--steps")
        text = s.help
        if s.kind in ("int", "float") and s.low is not None:
            text += f"; {s.range_text()}"
        if s.kind in ("choice", "bool"):
            text += f"; {s.range_text()}"
        if s.default not in (None, ""):
            text += f" (default {s.default_text()})"
        switch = dict(nargs="?", const="true") if s.kind == "bool" else {}  # "--new-only" alone means true
        group.add_argument(*flags, dest=s.name, metavar=metavars.get(s.kind, "CHOICE"), default=None, help=text,
                           **switch)
    return parent


MODULE_PROG = "python -m framepack_client"


def invoked_as(argv0: str | None = None) -> str:
    """How the command line was called, for its help: the installed script by the name it was run as (framepack-video),
    or ``python -m framepack_client`` (argv[0] is then the package's __main__.py)."""
    name = os.path.basename(sys.argv[0] if argv0 is None else argv0)
    return MODULE_PROG if not name or name.endswith(".py") or name == "-c" else name


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    prog = prog or invoked_as()
    parser = argparse.ArgumentParser(prog=prog, description=MAIN_DESCRIPTION,
                                     epilog=MAIN_EPILOG.replace(MODULE_PROG, prog), formatter_class=fmt)
    subs = parser.add_subparsers(dest="command", metavar="{" + ",".join((*COMMANDS, "serve")) + "}")
    common, workflow, params = _common_options(), _workflow_options(), _param_options()
    subs.add_parser("run", parents=[params, workflow, common], formatter_class=fmt, epilog=RUN_EPILOG,
                    help="generate a video and wait for it (default command)",
                    description="Validate the parameters, upload the images, queue the filled workflow, show the\n"
                                "progress (section i/n, step j/k, percent) on stderr and download the MP4 to\n"
                                "--output-dir. Prints the JSON result.")
    subs.add_parser("submit", parents=[params, workflow, common], formatter_class=fmt, epilog=RUN_EPILOG,
                    help="queue a job and return at once",
                    description="Like run, but returns as soon as the server accepted the job, printing\n"
                                "{\"id\", \"status\": \"created\", ...}. Follow it with status ID / result ID.")
    status = subs.add_parser("status", parents=[common], formatter_class=fmt, help="where a job is",
                             description="Ask the server where a submitted job is (created = queued, processing,\n"
                                         "completed, failed) without downloading anything. A job the server no\n"
                                         "longer knows (it was restarted) is reported as failed.")
    status.add_argument("id", help="the job id printed by submit/run (a unique prefix of 4+ characters works)")
    result = subs.add_parser("result", parents=[common], formatter_class=fmt,
                             help="wait for a job and download its video",
                             description="Print a job's result; when it is completed, download its video(s) to\n"
                                         "--output-dir. With --wait, wait up to that many seconds for it to finish\n"
                                         "(showing progress). Exit status 3 if it has not finished.")
    result.add_argument("id", help="the job id printed by submit/run (a unique prefix of 4+ characters works)")
    result.add_argument("--wait", metavar="SECONDS", type=float, default=0.0,
                        help="wait up to this long for the job to finish (default 0: answer at once)")
    batch = subs.add_parser("batch", parents=[workflow, common], formatter_class=fmt, epilog=BATCH_EPILOG,
                            help="run the jobs of a JSON-lines file in order",
                            description="Run one job per line of FILE, in order, each to its end.")
    batch.add_argument("file", metavar="FILE.jsonl", help="one JSON object of parameters per line")
    # listed only: cli.main hands "serve" and its arguments to framepack_service before this parser runs
    subs.add_parser("serve", add_help=False,
                    help="run the local service with the hosted APIs' contracts (serve --help)")
    return parser


# -- the hosted parameters of a command ---------------------------------------------------------------------------

def params_from_args(args: argparse.Namespace) -> HostedParams:
    """Hosted parameters from --params FILE and the flags (flags win); raises ValidationError. With
    --untrusted-input the file may not name local images (the --image/--end-image flags are the user's own)."""
    data: dict[str, Any] = {}
    base_dir = None
    if args.params:
        path = Path(args.params).expanduser()
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValidationError([f"--params file {str(path)!r} does not exist"]) from None
        except ValueError as err:
            raise ValidationError([f"--params file {str(path)!r} is not valid JSON: {err}"]) from None
        if not isinstance(loaded, dict):
            raise ValidationError([f"--params file {str(path)!r} must hold a JSON object"])
        data = {ALIASES.get(k, k): v for k, v in loaded.items()}
        base_dir = path.parent
    if args.params and args.untrusted_input:
        HostedParams.from_mapping(data, local_files=False)  # the file's own values; raises on a local image
    for s in SPECS:
        text = getattr(args, s.name, None)
        if text is not None:
            data[s.name] = parse_cli_value(s.name, text) if s.kind in ("int", "float", "bool") else text
    return HostedParams.from_mapping(data, base_dir=base_dir)
