"""One rank of a worker group, run as `python -m framepack_core.parallel.worker --fd N` by workers.py: it joins
the group's torch.distributed run, loads its own copy of the model onto its GPU (streaming the blocks that do not
fit, as a single-GPU run does) and runs jobs until told to stop. Messages, over the socket inherited as fd N
(wire.py):

    parent -> rank: ("start", rank, GroupSpec, init_method)  ("job", job, GenerationRequest, reserve_bytes)
                    ("interrupt",)  ("stop",)
    rank -> parent: ("ready", rank)   after the model is loaded and the process group formed
                    ("step", job, section, sections, step, steps, newest_x0_frame)   rank 0 only, every step
                    ("done", job, GenerationResult | None)   rank 0 sends the result, the others None
                    ("interrupted", job)   every rank, when an interrupt stopped the job
                    ("error", job, kind, message)   the rank cannot go on; the parent stops the whole group
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import traceback
from multiprocessing.connection import Connection

import torch
import torch.distributed as dist

from ..errors import Interrupted
from ..generate import generate_video
from ..offload import DEFAULT_RESERVE_BYTES, BlockStreamer, free_device_bytes, module_bytes
from .mesh import ParallelMesh
from .wire import receive, send

log = logging.getLogger("FramePack")
# how long a collective may wait for the other ranks; a dead rank is noticed by the parent long before this
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


def join_group(rank: int, world: int, device: torch.device, init_method: str) -> None:
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world,
                            timeout=COLLECTIVE_TIMEOUT, **kwargs)


def loading_waves(world: int, weight_bytes: int, available_ram: int | None) -> int:
    """How many ranks load at once. Each rank reads its copy into host memory before it reaches its GPU; on a host
    that cannot hold every rank's copy at once they load in turns, as many at a time as fit (at least one)."""
    if available_ram is None or weight_bytes <= 0:
        return world
    return max(1, min(world, int(available_ram // (1.25 * weight_bytes))))


def available_host_ram() -> int | None:
    """Bytes of host memory available now (Linux: MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def load_in_turns(spec, rank: int, device: torch.device):
    """This rank's model, loaded in the rank's turn (loading_waves, decided by rank 0 for all: host memory changes
    while others load); every rank passes the same barriers."""
    box = [loading_waves(spec.world, spec.model.stored_bytes() or 0, available_host_ram()) if rank == 0 else None]
    dist.broadcast_object_list(box, src=0, device=device)
    at_once = box[0]
    model = None
    for wave in range(-(-spec.world // at_once)):
        if rank // at_once == wave:
            model = spec.model.load(device)
            fit_on_device(model, device)
        dist.barrier()
    return model


def fit_on_device(model, device: torch.device) -> bool:
    """Moves the whole model onto a CUDA device when it fits there with the default activation reserve, which
    frees its host copy; otherwise it stays in host memory for Placement to stream. Returns whether it moved."""
    if device.type != "cuda" or module_bytes(model) + DEFAULT_RESERVE_BYTES > free_device_bytes(device):
        return False
    model.to(device)
    model.resident_on = device
    return True


class Placement:
    """The model on this rank's GPU: moved there whole when it fits (fit_on_device), else blocks that fit stay
    resident and the rest stream; a job that needs a larger activation reserve than the current placement left
    re-places a streamed model."""

    def __init__(self, model, device: torch.device):
        self.model, self.device = model, device
        self.streamer: BlockStreamer | None = None
        self.reserve = 0

    def ensure(self, reserve_bytes: int) -> None:
        if self.device.type != "cuda" or getattr(self.model, "resident_on", None) == self.device:
            return
        if self.streamer is not None and reserve_bytes <= self.reserve:
            return
        if self.streamer is not None:
            self.streamer.release()
        self.streamer = BlockStreamer(self.model, self.device, reserve_bytes=reserve_bytes)
        self.reserve = reserve_bytes


class InterruptInbox:
    """The interrupt check of a running job: an ("interrupt",) waiting on the socket (read without blocking)."""

    def __init__(self, conn: Connection):
        self.conn, self.requested = conn, False

    def __call__(self) -> bool:
        while not self.requested and self.conn.poll():
            self.requested = receive(self.conn)[0] == "interrupt"
        return self.requested


def serve(conn: Connection) -> None:
    _, rank, spec, init_method = receive(conn)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // spec.world))
    device = torch.device(spec.devices[rank])
    join_group(rank, spec.world, device, init_method)
    model = load_in_turns(spec, rank, device)
    mesh = ParallelMesh(model.config.num_attention_heads, spec.cfg_parallel, device)
    placement = Placement(model, device)
    send(conn, ("ready", rank))
    while True:
        message = receive(conn)
        if message[0] == "stop":
            return
        if message[0] != "job":
            continue  # an interrupt that arrived after its job ended
        _, job, request, reserve_bytes = message
        placement.ensure(reserve_bytes)
        on_step = None
        if rank == 0:
            def on_step(section, sections, step, steps, x0, job=job):
                send(conn, ("step", job, section, sections, step, steps, x0[:, :, -1:].float().cpu()))
        try:
            result = generate_video(model, request, device=device, on_step=on_step, interrupt=InterruptInbox(conn),
                                    parallel=mesh)
        except Interrupted:
            send(conn, ("interrupted", job))
            continue
        send(conn, ("done", job, result if rank == 0 else None))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="the inherited socket to the parent")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[framepack rank %(process)d] %(message)s")
    conn = Connection(args.fd)
    try:
        serve(conn)
    except (EOFError, KeyboardInterrupt):
        return 0  # the parent went away or is shutting down
    except BaseException as err:  # noqa: BLE001 - every failure goes to the parent, which stops the group
        log.error("FramePack parallel rank failed:\n%s", traceback.format_exc())
        try:
            send(conn, ("error", None, type(err).__name__, str(err)))
        except Exception:  # noqa: BLE001 - the parent is gone; nothing left to tell
            pass
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
