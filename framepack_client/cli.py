"""Command line: FramePack image-to-video on a ComfyUI server with the hosted FramePack APIs' parameters (the
commands; their arguments: framepack_client.cli_args).

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
from typing import Sequence

from .cli_args import COMMANDS, DEFAULT_OUTPUT_DIR, DEFAULT_SERVER, build_parser, params_from_args
from .errors import ComfyError
from .hosted import HostedParams, ValidationError
from .job_states import COMPLETED, FAILED, WAVESPEED_STATUS
from .jobs import Job, JobError, JobStore, check, fetch_outputs, follow, now_iso, queue_job
from .progress import ProgressDisplay
from .server_api import ComfyClient, EventStream, check_server_url
from .terminal import printable
from .uploads import CLIENT_URL_POLICY, UNTRUSTED_URL_POLICY
from .workflow import model_id

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_UNFINISHED = 0, 1, 2, 3


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
