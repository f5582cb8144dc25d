"""FramePack Video Combine: decodes the sampled latents section by section with FramePack's overlap blending and
writes the MP4 while decoding (framepack_core.mp4.write_mp4); this node translates ComfyUI's types."""

from __future__ import annotations

import json
import logging
import os
import re

import folder_paths
import torch
from comfy.cli_args import args as comfy_args
from comfy_api.latest import InputImpl, io, ui

from ..framepack_core.errors import InputError
from ..framepack_core.frames import video_size
from ..framepack_core.limits import DEFAULT_CRF, MAX_CRF, MAX_RETURNED_FRAMES_BYTES
from ..framepack_core.mp4 import write_mp4
from .latent import sampled_video
from .runtime import Progress
from .types import CATEGORY

log = logging.getLogger("FramePack")


def next_counter(folder: str, name: str) -> int:
    """One more than the highest counter of the <name>_<counter>.mp4 files in ``folder``. ComfyUI's own counter
    only recognises image names (<name>_<counter>_.png), so for these names it would always answer 1."""
    pattern = re.compile(re.escape(name) + r"_(\d{1,9})\.mp4")
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 1
    found = [int(m.group(1)) for m in map(pattern.fullmatch, names) if m]
    return max(found, default=0) + 1


def output_path(prefix: str, width: int, height: int) -> tuple[str, str, str]:
    """(full path, file name, subfolder) in ComfyUI's output folder: always a new <name>_<counter>.mp4 made by
    ComfyUI's counter. A prefix that would escape the folder, or with control characters (a NUL byte cuts the path
    FFmpeg opens, so "a.mp4\\x00/z" would overwrite a.mp4), is refused."""
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in prefix):
        raise InputError(f"filename_prefix {prefix!r} holds a control character (such as a NUL byte or a line "
                         "break); use letters, digits, '-', '_' and '/' for subfolders")
    if os.path.isabs(prefix) or ".." in prefix.replace("\\", "/").split("/"):
        raise InputError(f"filename_prefix {prefix!r} must stay inside the output folder: no '..' and no absolute "
                         "path (a subfolder like 'framepack/clip' is fine)")
    output = folder_paths.get_output_directory()
    folder, name, _, subfolder, _ = folder_paths.get_save_image_path(prefix, output, width, height)
    file = f"{name}_{next_counter(folder, name):05}.mp4"
    path = os.path.join(folder, file)
    if os.path.commonpath([os.path.abspath(path), os.path.abspath(output)]) != os.path.abspath(output):
        raise InputError(f"filename_prefix {prefix!r} must stay inside the output folder")
    return path, file, subfolder


def _decode(vae, latents, width: int, height: int):
    try:
        return vae.decode(latents)
    except torch.cuda.OutOfMemoryError as err:
        # ComfyUI's VAE already retried in tiles before this escapes; still an OutOfMemoryError, so ComfyUI
        # unloads its models afterwards
        raise torch.cuda.OutOfMemoryError(
            f"decoding {width}x{height} frames ran out of GPU memory, even in tiles. Fixes: a smaller resolution, "
            f"'Unload models' before decoding, or ComfyUI's --lowvram. ({err})") from err


class FramePackVideoCombine(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FramePackVideoCombine", display_name="FramePack Video Combine", category=CATEGORY,
            description="Decodes FramePack latents section by section with FramePack's overlap blending, writes an "
                        "H.264 MP4 at 30 fps while decoding, and outputs the frames and a VIDEO. A continued video "
                        "is written as the input (its frames passed through as read) joined to the continuation, "
                        "or the new frames only (FramePack Video Conditioning's keep_input).",
            inputs=[
                io.Latent.Input("latent", tooltip="From FramePack Sampler"),
                io.Vae.Input("vae", tooltip="HunyuanVideo VAE (or TAEHV for quick drafts)"),
                io.String.Input("filename_prefix", default="FramePack"),
                io.Int.Input("crf", default=DEFAULT_CRF, min=0, max=MAX_CRF,
                             tooltip="H.264 quality: lower is better and bigger"),
                io.Boolean.Input("return_frames", default=True,
                                 tooltip="Off: the IMAGE output holds only the last frame, so very long videos are "
                                         "never held in memory as float frames (the MP4 and the video output have "
                                         "them all). On: refused above "
                                         f"{MAX_RETURNED_FRAMES_BYTES >> 30} GiB of frames"),
            ],
            outputs=[io.Image.Output(display_name="frames"), io.Video.Output(display_name="video")],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def file_metadata(cls) -> dict[str, str]:
        """What ComfyUI's SaveVideo stores in the file: every extra_pnginfo entry (the UI "workflow", from which
        dropping the MP4 on ComfyUI restores the graph) and the API "prompt", each as JSON; none with
        --disable-metadata."""
        if comfy_args.disable_metadata:
            return {}
        metadata = dict(cls.hidden.extra_pnginfo or {})
        if cls.hidden.prompt is not None:
            metadata["prompt"] = cls.hidden.prompt
        return {key: json.dumps(value) for key, value in metadata.items()}

    @classmethod
    def execute(cls, latent, vae, filename_prefix, crf, return_frames):
        samples, sampled = sampled_video(latent)  # the sampler's plan; write_mp4 checks the samples against it
        plan, source, keep_input = sampled.plan, sampled.continues, sampled.keep_input
        width, height = video_size(samples)
        path, file, subfolder = output_path(filename_prefix, width, height)
        images = write_mp4(path, plan, samples, lambda latents: _decode(vae, latents, width, height), crf=crf,
                           metadata=cls.file_metadata(), keep_frames=return_frames, on_chunk=Progress().update,
                           lead_latents=sampled.lead_latents, continues=source, keep_input=keep_input)
        frames = plan.output_frames + (source.frames if source is not None and keep_input else 0)
        log.info("FramePack: wrote %s (%d frames, %dx%d)", path, frames, width, height)
        return io.NodeOutput(images, InputImpl.VideoFromFile(path),
                             ui=ui.PreviewVideo([ui.SavedResult(file, subfolder, io.FolderType.output)]))
