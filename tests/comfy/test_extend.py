"""Continuing a video and text-to-video through a real ComfyUI on tiny weights: the shipped framepack_extend and
framepack_t2v workflows end to end with exact frame counts, the input's frames passed through unchanged (lossless
input, crf 0), what the model receives checked by a spy against the VAE's own encodings of the input's tail, the
same seed twice, and every bad input."""

from __future__ import annotations

import io
import uuid

import av
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from framepack_core.color import rgb_to_yuv420p
from framepack_core.config import VAE_SCALING_FACTOR
from framepack_dev.tiny_models import TINY_F1, TINY_I2V, install_tiny_models, node_of, tiny_workflow
from framepack_dev.videos import moving_frames, write_video

SIZE = 64
LONG, SHORT = "extend_long.mov", "extend_short.mov"  # 100 frames (a full 19-latent history), 13 frames


@pytest.fixture(scope="module")
def inputs(models_dir, input_dir):
    install_tiny_models(models_dir, input_dir)
    frames = {}
    for name, count, seed in ((LONG, 100, 11), (SHORT, 13, 12)):
        frames[name] = list(moving_frames(count, SIZE, SIZE, seed=seed))
        write_video(input_dir / name, frames[name], SIZE, SIZE)
    return frames


def run(comfy, graph):
    return comfy.run(graph, timeout=600)


def extend_graph(video=LONG, *, num_frames=30, keep_input=True, f1=True, seed=7, crf=0, **sampler):
    graph = tiny_workflow("framepack_extend", num_frames=num_frames, seed=seed, video=video,
                          prefix=f"tests/extend_{uuid.uuid4().hex[:8]}", **sampler)
    node_of(graph, "FramePackVideoConditioning")["inputs"]["keep_input"] = keep_input
    node_of(graph, "FramePackModelLoader")["inputs"]["model"] = TINY_F1 if f1 else TINY_I2V
    node_of(graph, "FramePackVideoCombine")["inputs"]["crf"] = crf  # lossless: the file holds what was encoded
    return graph


def video_of(comfy, result) -> list[np.ndarray]:
    """The MP4's decoded pictures in their stored yuv420p layout."""
    combine = next(nid for nid, out in result.outputs.items() if "images" in out and
                   str(out["images"][0].get("filename", "")).endswith(".mp4"))
    entry = result.outputs[combine]["images"][0]
    data = comfy.view(entry["filename"], entry["subfolder"], entry["type"])
    with av.open(io.BytesIO(data)) as container:
        assert float(container.streams.video[0].average_rate) == 30.0
        return [frame.to_ndarray() for frame in container.decode(video=0)], data


def yuv(frame: np.ndarray) -> np.ndarray:
    return rgb_to_yuv420p(torch.from_numpy(frame)).numpy()


@pytest.mark.parametrize("f1,keep_input,video", [(True, True, LONG), (True, False, LONG), (False, True, LONG),
                                                 (True, True, SHORT)])
def test_extension_has_exact_counts_and_passes_the_input_through(comfy, inputs, f1, keep_input, video):
    result = run(comfy, extend_graph(video, num_frames=30, keep_input=keep_input, f1=f1))
    assert result.ok, result.error_message
    decoded, _ = video_of(comfy, result)
    source = inputs[video]
    assert len(decoded) == (len(source) if keep_input else 0) + 30
    report = result.outputs[next(n for n, o in result.outputs.items() if "framepack" in o)]["framepack"][0]
    assert report["frames"] == 30 and report["input_frames"] == len(source)
    assert report["mode"] == ("forward" if f1 else "inverted")
    if keep_input:
        # the seam blends the input's last 4 * min(9, history) - 3 frames: 33 of the long input, all 13 of the short
        seam = 33 if video == LONG else 13
        for k in range(len(source) - seam):
            assert np.array_equal(decoded[k], yuv(source[k])), f"input frame {k} was changed"
        if video == LONG:  # the seam's first frame is still the input's own, its last one the decode's
            assert np.array_equal(decoded[len(source) - seam], yuv(source[len(source) - seam]))
            assert not np.array_equal(decoded[len(source) - 1], yuv(source[-1]))


def _spy_graph(graph, tail, tag):
    """The graph plus the spy on the model and the reference: core nodes decode the input (GetVideoComponents),
    take its last `tail` frames and its last frame (ImageFromBatch) and encode them with the same VAE (VAEEncode)."""
    graph["50"] = {"class_type": "FramePackTestModelSpy",
                   "inputs": {"model": node_of_id(graph, "FramePackModelLoader"), "file_name": f"spy_{tag}.safetensors"},
                   "_meta": {"title": "spy"}}
    node_of(graph, "FramePackSampler")["inputs"]["model"] = ["50", 0]
    video = node_of_id(graph, "FramePackLoadVideo")
    vae = node_of_id(graph, "VAELoader")
    graph["51"] = {"class_type": "GetVideoComponents", "inputs": {"video": video}, "_meta": {"title": "frames"}}
    for nid, (first, length, name) in {"52": (-tail, tail, "tail"), "54": (-1, 1, "last")}.items():
        graph[nid] = {"class_type": "ImageFromBatch", "inputs": {"image": ["51", 0], "batch_index": 4096 + first,
                                                                 "length": length}, "_meta": {"title": name}}
    return graph, vae


def node_of_id(graph, class_type):
    return [next(nid for nid, n in graph.items() if n["class_type"] == class_type), 0]


@pytest.mark.parametrize("f1", [True, False])
def test_the_model_receives_the_vae_encodings_of_the_inputs_tail(comfy, inputs, output_dir, f1):
    """F1's first section sees, in its 4x/2x/1x history slots, exactly the VAE's encodings of the input's last
    77 frames (the last 19 of 20 latents); both modes anchor on the encoding of the input's last frame."""
    tag = uuid.uuid4().hex[:8]
    graph, vae = _spy_graph(extend_graph(LONG, f1=f1), 77, tag)
    n = len(inputs[LONG])
    graph["52"]["inputs"]["batch_index"] = n - 77  # ImageFromBatch clamps, so give the exact indices
    graph["54"]["inputs"]["batch_index"] = n - 1
    for nid, name in (("53", "tail"), ("55", "last")):
        graph[nid] = {"class_type": "VAEEncode", "inputs": {"pixels": [str(int(nid) - 1), 0], "vae": vae},
                      "_meta": {"title": f"encode {name}"}}
        graph[f"{nid}s"] = {"class_type": "FramePackTestSaveTensor",
                            "inputs": {"value": [nid, 0], "file_name": f"{name}_{tag}.safetensors"},
                            "_meta": {"title": f"save {name}"}}
    result = run(comfy, graph)
    assert result.ok, result.error_message
    spy = load_file(str(output_dir / f"spy_{tag}.safetensors"))
    tail = load_file(str(output_dir / f"tail_{tag}.safetensors"))["value"] * VAE_SCALING_FACTOR
    last = load_file(str(output_dir / f"last_{tag}.safetensors"))["value"] * VAE_SCALING_FACTOR
    assert tail.shape[2] == 20 and last.shape[2] == 1
    first = {k.split(".", 1)[1]: v for k, v in spy.items() if k.startswith("call0.")}
    assert torch.equal(first["clean_latents"][:, :, :1], last)  # the anchor: the input's last frame
    if f1:
        history = torch.cat([first["clean_latents_4x"], first["clean_latents_2x"], first["clean_latents"][:, :, 1:2]],
                            dim=2)
        assert torch.equal(history, tail[:, :, -19:])
    else:  # inverted: no past slots; the first sampled section is the video's end, its context still empty
        assert not first["clean_latents_4x"].any() and not first["clean_latents_2x"].any()


def test_the_same_seed_gives_the_same_continuation(comfy, inputs):
    videos = []
    for _ in range(2):
        graph = extend_graph(LONG, num_frames=30, seed=99, crf=19)
        graph["50"] = {"class_type": "FramePackTestModelSpy",  # makes the sampler run again instead of caching
                       "inputs": {"model": node_of_id(graph, "FramePackModelLoader"), "file_name": "seed.safetensors"},
                       "_meta": {"title": "spy"}}
        node_of(graph, "FramePackSampler")["inputs"]["model"] = ["50", 0]
        result = run(comfy, graph)
        assert result.ok, result.error_message
        videos.append(np.stack(video_of(comfy, result)[0]))  # the pictures: the file's metadata names its prefix
    assert np.array_equal(videos[0], videos[1])
    other = extend_graph(LONG, num_frames=30, seed=100, crf=19)
    result = run(comfy, other)
    assert result.ok and not np.array_equal(np.stack(video_of(comfy, result)[0]), videos[0])


@pytest.mark.parametrize("model,kind,embeddings,num_frames", [(TINY_I2V, "black", "blank_image", 30),
                                                               (TINY_F1, "noise", "zero", 46)])
def test_text_to_video_has_exact_counts(comfy, inputs, model, kind, embeddings, num_frames):
    graph = tiny_workflow("framepack_t2v", num_frames=num_frames, prefix=f"tests/t2v_{uuid.uuid4().hex[:8]}")
    node_of(graph, "FramePackModelLoader")["inputs"]["model"] = model
    node_of(graph, "FramePackImageConditioning")["inputs"].update(start_kind=kind, blank_embeddings=embeddings)
    assert "start_image" not in node_of(graph, "FramePackImageConditioning")["inputs"]
    result = run(comfy, graph)
    assert result.ok, result.error_message
    decoded, _ = video_of(comfy, result)
    assert len(decoded) == num_frames
    assert decoded[0].shape == (SIZE * 3 // 2, SIZE)


# -- bad input: each a clear error, and the server keeps running -------------------------------------------------------

def _write(input_dir, name, data: bytes) -> str:
    (input_dir / name).write_bytes(data)
    return name


def _bad_inputs(input_dir):
    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(picture, format="PNG")
    write_video(input_dir / "four_frames.mov", moving_frames(4, SIZE, SIZE), SIZE, SIZE)
    write_video(input_dir / "slow.mov", moving_frames(20, SIZE, SIZE), SIZE, SIZE, fps=24)
    good = (input_dir / LONG).read_bytes()
    return {
        "four_frames.mov": r"4 frame\(s\); continuing a video needs at least 5",
        _write(input_dir, "empty.mp4", b""): "not a readable video",
        _write(input_dir, "corrupt.mp4", bytes(range(256)) * 64): "not a readable video",
        _write(input_dir, "truncated.mov", good[:len(good) // 4]): "damaged|not a readable video|no frames",
        _write(input_dir, "picture.mp4", picture.getvalue()): "picture, not a video",
        "slow.mov": "24 fps; FramePack continues 30 fps videos only",
    }


def test_bad_input_videos_are_clear_errors(comfy, comfy_server, inputs, input_dir):
    import re

    for name, expected in _bad_inputs(input_dir).items():
        result = run(comfy, extend_graph(name))
        assert result.status == "error", name
        assert re.search(expected, result.error_message), (name, result.error_message)
    assert comfy_server.is_running()
    assert run(comfy, extend_graph(SHORT)).ok  # and the next job runs


@pytest.mark.parametrize("model,mode,expected", [
    (TINY_F1, "inverted", "F1 runs in forward mode"),
    (TINY_I2V, "forward", "FramePackI2V_HY continues a video only in inverted mode"),
])
def test_unsupported_model_and_mode_combinations_are_refused(comfy, inputs, model, mode, expected):
    graph = extend_graph(SHORT, mode=mode)
    node_of(graph, "FramePackModelLoader")["inputs"]["model"] = model
    result = run(comfy, graph)
    assert result.status == "error" and expected in result.error_message, result.error_message


def test_an_input_of_another_size_is_fitted_and_said_in_the_log(comfy, comfy_server, inputs, input_dir):
    write_video(input_dir / "wide.mov", moving_frames(21, 48, 96), 96, 48)  # 2:1 into 64x64: scaled, centre-cropped
    result = run(comfy, extend_graph("wide.mov", num_frames=30, keep_input=True))
    assert result.ok, result.error_message
    decoded, _ = video_of(comfy, result)
    assert len(decoded) == 21 + 30 and decoded[0].shape == (SIZE * 3 // 2, SIZE)
    assert "is resized and centre-cropped to 64x64" in comfy_server.log_text()


def test_a_blank_start_with_a_start_image_or_neither_is_refused(comfy, inputs):
    graph = tiny_workflow("framepack_i2v")
    node_of(graph, "FramePackImageConditioning")["inputs"]["start_kind"] = "grey"
    result = run(comfy, graph)
    assert result.status == "error" and "disconnect start_image" in result.error_message
    graph = tiny_workflow("framepack_t2v")
    node_of(graph, "FramePackImageConditioning")["inputs"]["start_kind"] = "image"
    result = run(comfy, graph)
    assert result.status == "error" and "no start image" in result.error_message


# -- the client: --video / --new-only / --text-to-video through the same server ---------------------------------------

@pytest.mark.parametrize("start, frames, expected", [
    (["--video", SHORT, "--f1"], 30, 13 + 30),
    (["--video", SHORT, "--new-only"], 30, 30),
    (["--text-to-video"], 46, 46),
])
def test_the_client_continues_a_video_and_starts_from_text(comfy_server, inputs, input_dir, tmp_path, start, frames,
                                                          expected):
    import json

    from tests.comfy.test_client_e2e import cli_in_process, probe

    name = "framepack_t2v" if "--text-to-video" in start else "framepack_extend"
    workflow = tmp_path / f"tiny_{name}.json"
    workflow.write_text(json.dumps(tiny_workflow(name)))
    start = [str(input_dir / a) if a == SHORT else a for a in start]  # a local file, uploaded by the client
    f1 = "--f1" in start
    code, out, err = cli_in_process(
        "run", "--server", comfy_server.url, "--jobs-dir", str(tmp_path / "jobs"), "--output-dir", str(tmp_path),
        "--quiet", *start, "--prompt", "it goes on", "--workflow", str(workflow),
        "--model", TINY_F1 if f1 else TINY_I2V,
        "--resolution", "custom", "--width", str(SIZE), "--height", str(SIZE), "--num-frames", str(frames),
        "--steps", "4", "--seed", "3")
    assert code == 0, out + err
    result = json.loads(out)
    assert result["status"] == "completed" and result["model"] == \
        ("framepack/f1-" if f1 else "framepack/") + ("t2v" if name == "framepack_t2v" else "extend")
    (video,) = result["outputs"]
    assert probe(video) == {"frames": expected, "fps": 30.0, "width": SIZE, "height": SIZE}
