"""A persistent group of worker processes, one per GPU, that runs FramePack jobs together (worker.py).

The group is started once (the model loaded on every rank), reused by later jobs with the same spec, and stopped
by `stop()` (model change, unload, exit). A worker that dies (killed, out of host memory, a crashed driver) or
fails stops the whole group: the job gets a WorkerGroupError saying which rank failed and how, and the next job
starts a fresh group. Nothing waits forever: a dead worker's socket closes, which every wait watches.

Workers are fresh interpreters (`python -m framepack_core.parallel.worker`) with the pack's folder on their path,
not forks or multiprocessing spawns of the parent: inside ComfyUI a spawn would re-import ComfyUI's main module
and could not import the pack's modules by the names ComfyUI gave them. Each talks to the parent over a socket
pair it inherits; the torch.distributed rendezvous is on 127.0.0.1 only. POSIX only (NCCL is too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import weakref
from multiprocessing.connection import Connection, wait
from pathlib import Path

from ..errors import FramePackError, Interrupted
from .spec import GroupSpec
from .wire import receive, send

log = logging.getLogger("FramePack")
PACK_ROOT = Path(__file__).resolve().parents[2]  # the folder holding framepack_core
POLL_S = 0.1  # how often a waiting parent checks its interrupt
EXIT_GRACE_S = 2.0  # a worker whose socket closed has this long to report its exit status
STOP_GRACE_S = 10.0  # after "stop", workers have this long to exit before they are killed
# after an interrupt, ranks stop at their next step; one that does not answer in this time (stuck in a collective
# with a frozen rank) gets the whole group stopped
INTERRUPT_GRACE_S = 60.0
DEFAULT_START_TIMEOUT_S = 3600.0  # loading a 13B model from a slow disk on every rank


class WorkerGroupError(FramePackError):
    """A rank of a worker group died or failed; the group was stopped and the next job starts a new one."""


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exit_words(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (often the system's out-of-memory killer)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"


def _start_worker(rank: int) -> tuple[subprocess.Popen, Connection]:
    ours, theirs = socket.socketpair()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACK_ROOT), env.get("PYTHONPATH")) if p)
    try:
        process = subprocess.Popen([sys.executable, "-m", "framepack_core.parallel.worker", "--fd",
                                    str(theirs.fileno())], pass_fds=[theirs.fileno()], env=env, cwd=PACK_ROOT)
    finally:
        theirs.close()
    return process, Connection(ours.detach())


class WorkerGroup:
    def __init__(self, spec: GroupSpec, start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
                 interrupt_grace_s: float = INTERRUPT_GRACE_S):
        if os.name != "posix":
            raise WorkerGroupError("several GPUs need Linux (NCCL, and the workers' inherited sockets); this "
                                   "system is not POSIX")
        self.spec = spec
        self.interrupt_grace_s = interrupt_grace_s
        self._job = 0
        self.processes: list[subprocess.Popen] = []
        self.connections: list[Connection] = []
        # also runs at interpreter exit, so no worker outlives the process that started it
        self._finalizer = weakref.finalize(self, _stop_processes, self.processes, self.connections, STOP_GRACE_S)
        try:
            init_method = f"tcp://127.0.0.1:{_free_loopback_port()}"
            for rank in range(spec.world):
                process, conn = _start_worker(rank)
                self.processes.append(process)
                self.connections.append(conn)
                send(conn, ("start", rank, spec, init_method))
            self._collect("ready", None, deadline=time.monotonic() + start_timeout_s)
        except BaseException:
            self.stop(grace_s=0.0)
            raise
        log.info("FramePack: parallel worker group ready on %s%s", ", ".join(spec.devices),
                 " (CFG parallel)" if spec.cfg_parallel else "")

    @property
    def alive(self) -> bool:
        return bool(self.processes) and all(p.poll() is None for p in self.processes)

    def run(self, request, reserve_bytes: int = 0, on_step=None, interrupt=None):
        """Runs one GenerationRequest on every rank; returns rank 0's GenerationResult. `on_step` gets
        (section, sections, step, steps, newest x0 frame); `interrupt()` is polled while waiting."""
        if not self.alive:
            raise WorkerGroupError("the parallel worker group is stopped; start a new one")
        self._job += 1
        try:
            for conn in self.connections:
                send(conn, ("job", self._job, request, int(reserve_bytes)))
            replies = self._collect("done", self._job, on_step=on_step, interrupt=interrupt)
        except Interrupted:
            raise
        except BaseException:
            self.stop(grace_s=0.0)  # the other ranks may wait in a collective for the failed one: no grace
            raise
        return replies[0][2]

    def _collect(self, kind: str, job, deadline: float | None = None, on_step=None, interrupt=None) -> list:
        """One `kind` reply per rank, in rank order; relays step messages and the interrupt; raises
        WorkerGroupError when a rank fails or dies, Interrupted when every rank stopped on the interrupt."""
        replies: dict[int, tuple] = {}
        interrupted: set[int] = set()
        interrupted_at = None
        index = {conn: rank for rank, conn in enumerate(self.connections)}
        while len(replies) + len(interrupted) < len(self.connections):
            now = time.monotonic()
            if deadline is not None and now > deadline:
                raise WorkerGroupError("the parallel worker group did not get ready in time (loading the model on "
                                       "every GPU); it was stopped")
            if interrupted_at is None and interrupt is not None and interrupt():
                for conn in self.connections:
                    send(conn, ("interrupt",))
                interrupted_at = now
            if interrupted_at is not None and now - interrupted_at > self.interrupt_grace_s:
                silent = [r for r in range(len(self.connections)) if r not in replies and r not in interrupted]
                raise WorkerGroupError(f"parallel rank(s) {', '.join(map(str, silent))} did not stop within "
                                       f"{self.interrupt_grace_s:g} s of the interrupt; the worker group was stopped "
                                       "and the next run starts a new one")
            waiting = [c for c, r in index.items() if r not in replies and r not in interrupted]
            for ready in wait(waiting, timeout=POLL_S):
                rank = index[ready]
                try:
                    message = receive(ready)
                except (EOFError, OSError):
                    self._died(rank)
                if message[0] == "step" and on_step is not None:
                    on_step(*message[2:])
                elif message[0] == "error":
                    raise WorkerGroupError(f"parallel rank {rank} ({self.spec.devices[rank]}) failed: "
                                           f"{message[2]}: {message[3]}. The worker group was stopped; the next "
                                           "run starts a new one")
                elif message[0] == "interrupted" and message[1] == job:
                    interrupted.add(rank)
                elif message[0] == kind and (job is None or message[1] == job):
                    replies[rank] = message
        if interrupted:
            raise Interrupted("the parallel run was interrupted")
        return [replies[r] for r in range(len(self.connections))]

    def _died(self, rank: int):
        process = self.processes[rank]
        # the socket closes a moment before the exit status is known: give the process a moment to be reaped
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=EXIT_GRACE_S)
        raise WorkerGroupError(f"parallel rank {rank} ({self.spec.devices[rank]}) {exit_words(process.poll())}. "
                               "The worker group was stopped; the next run starts a new one")

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Asks every worker to exit, waits `grace_s`, then kills what is left. Safe to call twice."""
        args = self._finalizer.detach()
        if args is not None:
            _, _, (processes, connections, _), _ = args
            _stop_processes(processes, connections, grace_s)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _stop_processes(processes: list, connections: list, grace_s: float) -> None:
    for conn in connections:
        with contextlib.suppress(Exception):
            send(conn, ("stop",))
    deadline = time.monotonic() + grace_s
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=EXIT_GRACE_S)
    for conn in connections:
        with contextlib.suppress(Exception):
            conn.close()
    processes.clear()
    connections.clear()
