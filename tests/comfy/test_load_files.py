"""FramePack Load Video and FramePack Load Image through a real ComfyUI (issue 21, items 1 and 9): a file outside the
input folder (absolute path, '..', a link leading out, ComfyUI's "[output]" annotation) is refused when the prompt
is queued, with a message that says so; core LoadVideo reads the same absolute path, which is why the shipped
continuation workflow no longer uses it; a file inside the folder loads. FramePack Load Image refuses a GIF that
declares 1 x 1 pixels and holds an 8000 x 8000 frame from its headers, and outputs an animation's first frame
only."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from PIL import Image
from safetensors.torch import load_file

from framepack_client.server_api import PromptRejected
from framepack_dev.bombs import flat_video, gif_declaring

SIZE = (48, 32)  # width, height of the test video


@pytest.fixture(scope="module")
def videos(input_dir, tmp_path_factory):
    """A video inside the input folder (in a subfolder, as the client's uploads may be) and one outside it."""
    outside = tmp_path_factory.mktemp("not_input") / "private.mp4"
    flat_video(outside, *SIZE, frames=6)
    (input_dir / "load_files").mkdir(exist_ok=True)
    inside = flat_video(input_dir / "load_files" / "clip.mp4", *SIZE, frames=7)
    link = input_dir / "load_files" / "link_out.mp4"
    if not link.is_symlink():
        os.symlink(outside, link)
    return inside, outside


def frames_graph(loader: str, file: str, tag: str) -> dict:
    """loader(file) -> core GetVideoComponents -> the frames saved as output/<tag>.safetensors."""
    return {"1": {"class_type": loader, "inputs": {"file": file}, "_meta": {"title": "Input video"}},
            "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}, "_meta": {"title": "frames"}},
            "3": {"class_type": "FramePackTestSaveTensor", "_meta": {"title": "save"},
                  "inputs": {"value": ["2", 0], "file_name": f"{tag}.safetensors"}}}


def rejection(comfy, graph: dict) -> str:
    with pytest.raises(PromptRejected) as err:
        comfy.queue_prompt(graph)
    return json.dumps(err.value.node_errors)


def saved(output_dir, tag: str):
    return load_file(str(output_dir / f"{tag}.safetensors"))["value"]


@pytest.mark.parametrize("name,words", [
    ("ABSOLUTE", "is an absolute path"),
    ("../not_input/private.mp4", "climbs out of ComfyUI's input folder"),
    ("load_files/link_out.mp4", "is a link that leads out of ComfyUI's input folder"),
    ("private.mp4 [output]", "is in another ComfyUI folder"),
])
def test_a_video_outside_the_input_folder_is_refused(comfy, videos, name, words):
    _, outside = videos
    name = str(outside) if name == "ABSOLUTE" else name
    message = rejection(comfy, frames_graph("FramePackLoadVideo", name, "never"))
    assert words in message and "FramePackLoadVideo" in message


def test_core_load_video_reads_an_absolute_path_ours_reads_the_input_folder(comfy, videos, output_dir):
    """What README says of core LoadVideo: given an absolute path by an API caller, it reads that file. Ours loads
    a file inside the input folder, by its name there."""
    inside, outside = videos
    tag = f"core_{uuid.uuid4().hex[:8]}"
    result = comfy.run(frames_graph("LoadVideo", str(outside), tag), timeout=120)
    assert result.ok, result.error_message
    assert list(saved(output_dir, tag).shape) == [6, SIZE[1], SIZE[0], 3]  # the private file's 6 frames
    tag = f"ours_{uuid.uuid4().hex[:8]}"
    result = comfy.run(frames_graph("FramePackLoadVideo", "load_files/clip.mp4", tag), timeout=120)
    assert result.ok, result.error_message
    assert list(saved(output_dir, tag).shape) == [7, SIZE[1], SIZE[0], 3]


def image_graph(loader: str, image: str, tag: str) -> dict:
    return {"1": {"class_type": loader, "inputs": {"image": image}, "_meta": {"title": "Start image"}},
            "2": {"class_type": "FramePackTestSaveTensor", "_meta": {"title": "save"},
                  "inputs": {"value": ["1", 0], "file_name": f"{tag}.safetensors"}}}


def test_an_image_outside_the_input_folder_is_refused(comfy, videos, tmp_path):
    picture = tmp_path / "private.png"
    Image.new("RGB", (8, 8)).save(picture)
    message = rejection(comfy, image_graph("FramePackLoadImage", str(picture), "never"))
    assert "is an absolute path" in message


def test_an_image_bomb_is_refused_from_its_headers(comfy, comfy_server, input_dir):
    """The 47 KB GIF that grew core LoadImage by 1.85 GB: refused before any frame is decoded, the server's
    resident memory barely moves, and the server keeps running."""
    name = f"bomb_{uuid.uuid4().hex[:8]}.gif"
    (input_dir / name).write_bytes(gif_declaring((1, 1), (8000, 8000)))
    before = _rss_mb(comfy_server.process.pid)
    result = comfy.run(image_graph("FramePackLoadImage", name, "never"), timeout=120)
    growth = _rss_mb(comfy_server.process.pid) - before
    assert not result.ok
    assert "8000x8000 pixels in its frame 1" in result.error_message and "the limit is" in result.error_message
    assert growth < 100, f"the server grew by {growth:.0f} MB refusing it"
    assert comfy_server.is_running()


def test_an_animation_gives_its_first_frame_only(comfy, input_dir, output_dir):
    name = f"two_frames_{uuid.uuid4().hex[:8]}.gif"
    frames = [Image.new("RGB", (16, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(input_dir / name, save_all=True, append_images=frames[1:], duration=40)
    tag = f"first_{uuid.uuid4().hex[:8]}"
    result = comfy.run(image_graph("FramePackLoadImage", name, tag), timeout=120)
    assert result.ok, result.error_message
    image = saved(output_dir, tag)
    assert list(image.shape) == [1, 8, 16, 3]
    assert image[0, 0, 0].tolist() == [1.0, 0.0, 0.0]  # red: the first frame


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024
