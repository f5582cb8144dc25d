"""Command line: FramePack image-to-video on a ComfyUI server with the hosted FramePack APIs' parameters.

    python -m framepack_client run --image start.png --prompt "the girl dances" --num-frames 180
    python -m framepack_client submit ... ; python -m framepack_client status ID ; ... result ID --wait 600
    python -m framepack_client batch jobs.jsonl

Every command prints the hosted APIs' result object as JSON on stdout (batch: one line per job, then a summary);
progress and hints go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .errors import ComfyError
from .hosted import ALIASES, SPECS, HostedParams, ValidationError, parse_cli_value
from .job_states import COMPLETED, FAILED, WAVESPEED_STATUS
from .jobs import DEFAULT_JOBS_DIR, Job, JobError, JobStore, check, fetch_outputs, follow, now_iso, queue_job
from .progress import ProgressDisplay
from .server_api import ComfyClient, EventStream, check_server_url
from .terminal import printable
from .uploads import CLIENT_URL_POLICY, UNTRUSTED_URL_POLICY
from .workflow import model_id

DEFAULT_SERVER = "http://127.0.0.1:8188"
DEFAULT_OUTPUT_DIR = "framepack_outputs"
DEFAULT_TIMEOUT = 4 * 3600.0
EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_UNFINISHED = 0, 1, 2, 3
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
                       help="another API-format workflow to fill (ComfyUI 'Export (API)'); it needs LoadImage "
                            "titled 'Start image', CLIPTextEncode titled 'Positive prompt' and 'Negative prompt', "
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


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m framepack_client", description=MAIN_DESCRIPTION,
                                     epilog=MAIN_EPILOG, formatter_class=fmt)
    subs = parser.add_subparsers(dest="command", metavar="{run,submit,status,result,batch}")
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
    return parser


# -- helpers -----------------------------------------------------------------------------------------------------

class BadServer(ValueError):
    """--server (or $FRAMEPACK_SERVER) is not an address the client accepts; nothing was sent or stored."""


def _server(args: argparse.Namespace, job: Job | None = None) -> str:
    if args.server:
        given, where = args.server, "--server"
    elif job is not None:
        return job.server
    else:
        given, where = os.environ.get("FRAMEPACK_SERVER", DEFAULT_SERVER), "$FRAMEPACK_SERVER"
    try:
        return check_server_url(given)
    except ValueError as err:
        raise BadServer(f"{where}: {err}") from None


def _refuse_bad_server(args: argparse.Namespace) -> int | None:
    """EXIT_INVALID after saying why, when the server address is refused (checked before anything else)."""
    try:
        if getattr(args, "server", None) or args.command in ("run", "submit", "batch"):
            _server(args)
    except BadServer as err:
        _print(failed_result(str(err)))
        print(f"error: {printable(err)}", file=sys.stderr)
        return EXIT_INVALID
    return None


def _print(result: dict, compact: bool = False) -> None:
    print(json.dumps(result, separators=(",", ":")) if compact else json.dumps(result, indent=2), flush=True)


def _note(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(printable(text), file=sys.stderr, flush=True)


def failed_result(error: str, *, model: str = "framepack/i2v", job_id: str | None = None) -> dict:
    """The result object for a request that never became a job (invalid parameters, unreachable server)."""
    return {"id": job_id, "model": model, "status": WAVESPEED_STATUS[FAILED], "outputs": [], "seed": None,
            "error": error, "created_at": now_iso(), "timings": {"inference": None}, "urls": {"get": ""},
            "prompt_id": None, "server": None}


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


def _exit_code(status: str) -> int:
    return {COMPLETED: EXIT_OK, FAILED: EXIT_FAILED}.get(status, EXIT_UNFINISHED)


def _output_dir(args: argparse.Namespace, job: Job | None = None) -> str:
    if args.output_dir:
        return args.output_dir
    if job is not None and job.output_dir:
        return job.output_dir
    return DEFAULT_OUTPUT_DIR


# -- one job -----------------------------------------------------------------------------------------------------

def execute(args: argparse.Namespace, store: JobStore, params: HostedParams, *, wait: bool, f1: bool,
            model_file: str | None, label: str = "") -> tuple[dict, int]:
    """Queue one job and, when ``wait``, follow it to the end and download its video. Returns (result, exit)."""
    server = _server(args)
    streams: list[EventStream] = []

    def open_stream(job: Job) -> None:
        if not wait:
            return
        try:
            streams.append(ComfyClient(job.server, client_id=job.client_id).open_events(connect_timeout=10))
        except (ComfyError, OSError):
            pass  # follow() polls the server anyway

    def close_streams() -> None:
        for stream in streams:
            stream.close()  # idempotent

    output_dir = _output_dir(args)
    job: Job | None = None
    try:
        policy = UNTRUSTED_URL_POLICY if args.untrusted_input else CLIENT_URL_POLICY
        job = queue_job(ComfyClient(server), store, params, f1=f1, workflow=args.workflow, model_file=model_file,
                        output_dir=str(Path(output_dir).expanduser().resolve()), before_queue=open_stream,
                        url_policy=policy)
        if job.status == FAILED or not wait:
            return job.result(), EXIT_FAILED if job.status == FAILED else EXIT_OK
        display = ProgressDisplay(job.prompt_id, job.prompt, enabled=not args.quiet, label=label)
        try:
            follow(job, store, timeout=args.timeout, on_message=display, events=streams[0] if streams else None)
        finally:
            display.close()
            close_streams()  # before downloading: the job's events are over
        if job.status == COMPLETED:
            fetch_outputs(ComfyClient(job.server), job, store, output_dir)
        result = job.result()
        if not job.finished:
            result["error"] = (f"not finished after {args.timeout:g} s; it keeps running on the server: "
                               f"python -m framepack_client result {job.id} --wait SECONDS")
        return result, _exit_code(job.status)
    except JobError as err:  # the server stopped answering (or answered nonsense) while we waited
        if job is None:
            return failed_result(str(err), model=model_id(params, f1)), EXIT_FAILED
        result = job.result()  # its status stays what we last knew: it may still be running
        result["error"] = (f"{err}; the job may still be running: python -m framepack_client result {job.id} "
                           "--wait SECONDS")
        return result, EXIT_FAILED
    finally:
        close_streams()


def cmd_run(args: argparse.Namespace, wait: bool) -> int:
    store = JobStore(args.jobs_dir)
    try:
        params = params_from_args(args)
    except ValidationError as err:
        _print(failed_result(str(err)))
        print(f"error: {printable(err, keep_newlines=True)}", file=sys.stderr)
        return EXIT_INVALID
    try:
        result, code = execute(args, store, params, wait=wait, f1=args.f1, model_file=args.model)
    except KeyboardInterrupt:
        print("\nstopped waiting; the job keeps running on the server (python -m framepack_client status/result "
              "<id> to follow it, or cancel it in ComfyUI)", file=sys.stderr)
        return 130
    _print(result)
    if code == EXIT_FAILED:
        print(f"error: {printable(result['error'], keep_newlines=True)}", file=sys.stderr)
    return code


def _load_job(args: argparse.Namespace, store: JobStore) -> Job | None:
    try:
        return store.load(args.id)
    except JobError as err:
        _print(failed_result(str(err), job_id=args.id))
        print(f"error: {printable(err, keep_newlines=True)}", file=sys.stderr)
        return None


def _stored_job(args: argparse.Namespace) -> tuple[JobStore, Job | None]:
    """The job named on the command line (None after printing why not), pointed at --server when given."""
    store = JobStore(args.jobs_dir)
    job = _load_job(args, store)
    if job is not None and args.server:
        job.server = _server(args)
    return store, job


def _job_error(job: Job, err: JobError) -> int:
    result = job.result()
    result["error"] = str(err)
    _print(result)
    print(f"error: {printable(err, keep_newlines=True)}", file=sys.stderr)
    return EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    store, job = _stored_job(args)
    if job is None:
        return EXIT_INVALID
    try:
        check(ComfyClient(job.server, client_id=job.client_id), job)
    except JobError as err:
        return _job_error(job, err)
    store.save(job)
    _print(job.result())
    return EXIT_FAILED if job.status == FAILED else EXIT_OK


def cmd_result(args: argparse.Namespace) -> int:
    store, job = _stored_job(args)
    if job is None:
        return EXIT_INVALID
    display = ProgressDisplay(job.prompt_id, job.prompt, enabled=not args.quiet and args.wait > 0)
    try:
        if args.wait > 0:
            follow(job, store, timeout=args.wait, on_message=display)
        else:
            check(ComfyClient(job.server, client_id=job.client_id), job)
        store.save(job)
        if job.status == COMPLETED and (not job.outputs or not all(Path(p).is_file() for p in job.outputs)
                                        or args.output_dir):
            fetch_outputs(ComfyClient(job.server), job, store, _output_dir(args, job))
    except JobError as err:
        return _job_error(job, err)
    except KeyboardInterrupt:
        return 130
    finally:
        display.close()
    _print(job.result())
    return _exit_code(job.status)


def cmd_batch(args: argparse.Namespace) -> int:
    store = JobStore(args.jobs_dir)
    path = Path(args.file).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        print(f"error: cannot read {path}: {err.strerror}", file=sys.stderr)
        return EXIT_INVALID
    jobs = [(n, line) for n, line in enumerate(lines, start=1) if line.strip() and not line.lstrip().startswith("#")]
    started = time.monotonic()
    counts = {"completed": 0, "failed": 0, "unfinished": 0}  # the summary's keys
    ended = {WAVESPEED_STATUS[COMPLETED]: "completed", WAVESPEED_STATUS[FAILED]: "failed"}  # by a result's status
    for index, (line_no, line) in enumerate(jobs, start=1):
        label = f"[{index}/{len(jobs)}]"
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValidationError([f"expected a JSON object, got {type(data).__name__}"])
            f1 = data.pop("f1", args.f1)
            model_file = data.pop("model", args.model)
            if not isinstance(f1, bool):
                raise ValidationError([f"f1 must be true or false, got {f1!r}"])
            if model_file is not None and not isinstance(model_file, str):
                raise ValidationError([f"model must be a file name, got {model_file!r}"])
            params = HostedParams.from_mapping(data, base_dir=path.parent, local_files=not args.untrusted_input)
        except (ValueError, ValidationError) as err:
            message = str(err) if isinstance(err, ValidationError) else f"not valid JSON: {err}"
            result, code = failed_result(f"{path.name} line {line_no}: {message}"), EXIT_INVALID
        else:
            _note(args, f"{label} {path.name} line {line_no}")
            try:
                result, code = execute(args, store, params, wait=True, f1=f1, model_file=model_file, label=label)
            except KeyboardInterrupt:
                print("\nbatch stopped; the current job keeps running on the server", file=sys.stderr)
                return 130
            if result["status"] == WAVESPEED_STATUS[FAILED]:
                result["error"] = f"{path.name} line {line_no}: {result['error']}"
        result["line"] = line_no
        _print(result, compact=True)
        counts[ended.get(result["status"], "unfinished")] += 1
    summary = {"total": len(jobs), **counts, "seconds": round(time.monotonic() - started, 3)}
    _print({"summary": summary}, compact=True)
    if counts["failed"]:
        return EXIT_FAILED
    return EXIT_UNFINISHED if counts["unfinished"] else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:  # the local service is its own package (framepack_service); it loads only here
        from framepack_service.cli import main as serve_main
        return serve_main(argv[1:])
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return EXIT_INVALID
    if argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "run")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    refused = _refuse_bad_server(args)
    if refused is not None:
        return refused
    if args.command in ("run", "submit"):
        return cmd_run(args, wait=args.command == "run")
    if args.command == "status":
        return cmd_status(args)
    if args.command == "result":
        return cmd_result(args)
    return cmd_batch(args)


if __name__ == "__main__":
    sys.exit(main())
