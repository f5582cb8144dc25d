"""A video to continue is probed before anything is sent (framepack_client.video_probe): a file cut short, a single
frame and an audio-only file are refused with the user's own name for it, exit 2 and nothing queued; the same probe
runs on a video given by URL or data: URI once it is fetched, before the upload."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

from framepack_client import cli
from framepack_client.hosted import HostedParams, ValidationError
from framepack_client.job_states import FAILED
from framepack_client.jobs import JobStore, queue_job
from framepack_client.server_api import ComfyClient
from framepack_dev.videos import moving_frames, write_video
from tests.client.test_extend_t2v import StubComfy, stub  # noqa: F401 - the stub server fixture

CUT = "if it was cut short (a download or a copy that stopped), get it again"


def audio_only(path: Path) -> Path:
    """An MP4 (M4A) holding one AAC stream and no video."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    good = write_video(folder / "good.mp4", moving_frames(12, 32, 32), 32, 32, lossless=False)
    data = good.read_bytes()
    (folder / "cut.mp4").write_bytes(data[:len(data) // 2])  # the index (moov) comes last: it is gone
    return {"good": good, "cut": folder / "cut.mp4", "audio": audio_only(folder / "voice.m4a"),
            "one": write_video(folder / "one frame.mp4", moving_frames(1, 32, 32), 32, 32, lossless=False),
            "short": write_video(folder / "short.mp4", moving_frames(4, 32, 32), 32, 32, lossless=False)}


EXPECTED = {
    "cut": f"is not a readable video (Invalid data found when processing input): {CUT}",
    "audio": "has no video stream (it holds audio): give a video file to continue",
    "one": "has 1 frame; a video to continue needs at least 5 (to start from one picture, give it as --image)",
    "short": "has 4 frames; a video to continue needs at least 5",
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_a_bad_local_video_is_refused_by_name_before_anything_is_sent(videos, kind, tmp_path, capsys):
    path = videos[kind]
    with pytest.raises(ValidationError) as err:
        HostedParams.from_mapping({"video": str(path), "prompt": "p"})
    assert len(err.value.problems) == 1 and \
        err.value.problems[0].startswith(f"video file {str(path)!r} {EXPECTED[kind]}"), err.value.problems
    # the command line: exit 2, no job stored, nothing sent (the server address is not even listening)
    code = cli.main(["run", "--video", str(path), "--prompt", "p", "--server", "http://127.0.0.1:9",
                     "--jobs-dir", str(tmp_path / "jobs")])
    out = json.loads(capsys.readouterr().out)
    assert code == cli.EXIT_INVALID and str(path) in out["error"] and EXPECTED[kind] in out["error"]
    assert "framepack_client_" not in out["error"]  # the user's name, never the uploaded copy's
    assert not (tmp_path / "jobs").exists()


def test_a_damaged_video_whose_index_comes_first_is_refused(tmp_path):
    """With the index first (faststart), a cut file still opens: its last packets are short or missing."""
    path = tmp_path / "fast.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for frame in moving_frames(20, 32, 32):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * 0.8)])
    with pytest.raises(ValidationError) as err:
        HostedParams.from_mapping({"video": str(path), "prompt": "p"})
    assert re.match(f"{re.escape(f'video file {str(path)!r}')} is (damaged|cut short).*{re.escape(CUT)}",
                    err.value.problems[0]), err.value.problems


def test_a_good_video_passes(videos):
    assert HostedParams.from_mapping({"video": str(videos["good"]), "prompt": "p"}).video == str(videos["good"])


def test_a_video_in_a_data_uri_is_probed_before_the_upload(stub, videos, tmp_path):  # noqa: F811
    for kind in ("cut", "audio", "one"):
        uri = "data:video/mp4;base64," + base64.b64encode(videos[kind].read_bytes()).decode()
        job = queue_job(ComfyClient(stub), JobStore(tmp_path / "jobs"), HostedParams.from_mapping(
            {"video": uri, "prompt": "p"}))
        assert job.status == FAILED and job.error.startswith("video the data: URI ") \
            and EXPECTED[kind] in job.error, job.error
    assert StubComfy.uploads == [] and StubComfy.prompts == []
