"""Where a generation job is: one vocabulary for the client's jobs, the service's job store and what the service
reads from a ComfyUI server about a prompt (framepack_client.outcome).

The hosted APIs' own words are mappings at the edges: WaveSpeed's (created, processing, completed, failed) below,
as the client's results and the service's WaveSpeed contract print them; fal's (IN_QUEUE, IN_PROGRESS, COMPLETED)
in framepack_service/fal.py.
"""

from __future__ import annotations

QUEUED = "queued"  # waiting: in the service's queue, or in a ComfyUI server's (a client's job waits only there)
DISPATCHED = "dispatched"  # the service sent it to a server, which has not started it yet
RUNNING = "running"  # a server runs it (in the service also while its videos are downloaded)
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"  # stopped on request (the service)
LOST = "lost"  # a server's answer, never a job's state: the server knows nothing of the prompt (it was restarted)

ACTIVE = (QUEUED, DISPATCHED, RUNNING)
FINAL = (COMPLETED, FAILED, CANCELLED)

# WaveSpeed's status words: the client's result objects and the service's WaveSpeed contract.
WAVESPEED_STATUS = {QUEUED: "created", DISPATCHED: "created", RUNNING: "processing", COMPLETED: "completed",
                    FAILED: "failed", CANCELLED: "failed"}
