"""framepack_core/mp4.py on its own (no server): the same frames give byte-identical H.264 packets whatever the heap
holds, and the file is tagged BT.709 limited range.

Each encode runs in a fresh interpreter with a different MALLOC_PERTURB_ (glibc fills new allocations with that
byte), which makes any read of memory the encoder never wrote show up as different packets. That is how libx264's
AVX-512 kernels were caught: in a long-running ComfyUI server the heap is never clean, so the same seed gave a
different MP4 on most runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

_ENCODE = """
import hashlib, json, sys
import av, numpy as np, torch
repo, frames_path, out = sys.argv[1:4]
sys.path.insert(0, repo)
from framepack_core.mp4 import Mp4Writer
frames = torch.from_numpy(np.load(frames_path))
writer = Mp4Writer(out, frames.shape[2], frames.shape[1])
for start in range(0, len(frames), 13):  # in chunks, as the video node hands them over
    writer.write(frames[start:start + 13])
writer.close()
with av.open(out) as container:
    stream = container.streams.video[0]
    packets = hashlib.sha256(b"".join(bytes(p) for p in container.demux(stream))).hexdigest()
with av.open(out) as container:
    context = container.streams.video[0].codec_context
    count = sum(1 for _ in container.decode(video=0))
    print(json.dumps({"packets": packets, "frames": count, "colorspace": int(context.colorspace),
                      "color_range": int(context.color_range), "primaries": int(context.color_primaries)}))
"""


def _moving_scene(frames: int, height: int, width: int) -> np.ndarray:
    """Smooth gradients, a moving disc and mild noise: content on which the encoder makes real decisions."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    video = np.empty((frames, height, width, 3), np.float32)
    for i in range(frames):
        video[i, ..., 0] = 0.5 + 0.25 * np.sin(xx / 40 + i / 10)
        video[i, ..., 1] = 0.5 + 0.25 * np.cos(yy / 30 - i / 15)
        video[i, ..., 2] = ((xx + yy + 3 * i) % 256) / 512 + 0.25
        disc = (xx - width / 4 - 4 * i) ** 2 + (yy - height / 2 - height / 6 * np.sin(i / 8)) ** 2 < (height / 8) ** 2
        video[i][disc] = (0.95, 0.1, 0.1)
    video += np.random.default_rng(0).normal(0, 0.012, video.shape).astype(np.float32)
    return video.clip(0, 1)


def test_same_frames_give_identical_packets_whatever_the_heap_holds(tmp_path):
    frames_path = tmp_path / "frames.npy"
    np.save(frames_path, _moving_scene(61, 480, 848))  # 848x480: one of the widths where AVX-512 x264 drifted
    results = []
    for perturb in ("0", "85", "170"):
        out = tmp_path / f"video_{perturb}.mp4"
        proc = subprocess.run([sys.executable, "-c", _ENCODE, str(REPO), str(frames_path), str(out)],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "MALLOC_PERTURB_": perturb})
        assert proc.returncode == 0, proc.stderr[-3000:]
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert [r["frames"] for r in results] == [61, 61, 61]
    assert len({r["packets"] for r in results}) == 1, results
    assert (results[0]["colorspace"], results[0]["color_range"], results[0]["primaries"]) == (1, 1, 1)  # BT.709, tv


def test_prompt_and_workflow_tags_are_read_back_from_the_file(tmp_path):
    """Keys other than the MP4's standard tags ("prompt", "workflow": what ComfyUI reads when the file is dropped
    on its canvas) survive, as ComfyUI's own SaveVideo writes them, and the same frames and tags give the same
    bytes."""
    import av
    import torch

    from framepack_core.mp4 import Mp4Writer

    workflow = {"last_node_id": 3, "nodes": [{"id": 1, "type": "FramePackSampler", "widgets_values": ["é ✓"]}]}
    tags = {"prompt": json.dumps({"1": {"class_type": "FramePackSampler", "inputs": {}}}),
            "workflow": json.dumps(workflow)}
    frames = torch.from_numpy(_moving_scene(5, 64, 96))
    files = []
    for name in ("a.mp4", "b.mp4"):
        writer = Mp4Writer(str(tmp_path / name), 96, 64, metadata=tags)
        writer.write(frames)
        writer.close()
        files.append((tmp_path / name).read_bytes())
    with av.open(str(tmp_path / "a.mp4")) as container:
        read = dict(container.metadata)
        assert sum(1 for _ in container.decode(video=0)) == 5
    assert json.loads(read["workflow"]) == workflow
    assert read["prompt"] == tags["prompt"]
    assert files[0] == files[1]
