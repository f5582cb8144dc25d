"""FramePack Video Conditioning: a video to continue (ComfyUI VIDEO, or IMAGE frames + fps) to the conditioning the
sampler takes. Only the input's tail is held (the frames the history needs); the rest is read again, in order,
when FramePack Video Combine writes the MP4. The rules (which frames, F1 vs FramePackI2V_HY) are in
framepack_core/starts.py."""

from __future__ import annotations

import logging
import os

from comfy_api.latest import InputImpl, io

from ..framepack_core.config import to_model_space
from ..framepack_core.errors import InputError
from ..framepack_core.frames import output_size, resize_and_center_crop
from ..framepack_core.limits import DEFAULT_END_STRENGTH, FPS, MAX_CONTEXT_LATENTS, MAX_FPS
from ..framepack_core.starts import Continuation, check_input_frames, history_from_encoding, tail_frames
from ..framepack_core.video_input import Fitted, FrameSource, FrameTensor, VideoFile
from .conditioning import encode_image
from .size_inputs import size_choices, size_inputs
from .types import CATEGORY, FramePackConditioning, ImageInputs, VideoInputs, check_choices

log = logging.getLogger("FramePack")


def frame_source(video, images, fps: float) -> FrameSource:
    """The input as a core frame source: a file-backed VIDEO is decoded from its file (never loaded whole); any
    other VIDEO or an IMAGE batch is read from memory."""
    if (video is None) == (images is None):
        raise InputError("connect the video to continue to either video (Load Video) or images (frames + fps), "
                         "not both" if video is not None else
                         "no input video: connect a VIDEO (Load Video) to video, or frames to images")
    if images is not None:
        return FrameTensor(images, fps)
    if isinstance(video, InputImpl.VideoFromFile):
        stream = video.get_stream_source()
        name = os.path.basename(stream) if isinstance(stream, str) else "the input video"
        return VideoFile(stream, name)
    components = video.get_components()
    return FrameTensor(components.images, float(components.frame_rate))


class FramePackVideoConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FramePackVideoConditioning", display_name="FramePack Video Conditioning (continue a video)",
            category=CATEGORY,
            description="A video to continue, to FramePack conditioning. F1 continues forwards from the input's "
                        "last frames (its motion is kept); FramePackI2V_HY starts from the input's last frame (its "
                        "motion is not). The input is fitted to the output size like an image (scaled to cover, "
                        "centre-cropped) and must be 30 fps (29.97 is accepted; other rates are refused: convert "
                        "first). num_frames on the sampler counts the NEW frames.",
            inputs=[
                io.Vae.Input("vae", tooltip="HunyuanVideo VAE (VAELoader)"),
                io.ClipVision.Input("clip_vision", tooltip="SigLIP: sigclip_vision_patch14_384 (CLIPVisionLoader)"),
                io.Video.Input("video", optional=True, tooltip="The video to continue (Load Video); 30 fps"),
                io.Image.Input("images", optional=True, tooltip="Or its frames as an IMAGE batch (then set fps)"),
                io.Float.Input("fps", default=float(FPS), min=1.0, max=float(MAX_FPS), step=0.001,
                               tooltip=f"Frame rate of images: must be {FPS} (29.97 is accepted); other rates are "
                                       "refused, convert the video first. A VIDEO carries its own rate."),
                io.Int.Input("context_latents", default=MAX_CONTEXT_LATENTS, min=1, max=MAX_CONTEXT_LATENTS,
                             tooltip="How much of the input F1 sees as history, in latents of 4 frames (19 = the "
                                     "full F1 context, about 2.5 s). Unused by FramePackI2V_HY"),
                io.Boolean.Input("keep_input", default=True,
                                 tooltip="On: the video is the input followed by the continuation (joined with "
                                         "FramePack's overlap blending). Off: only the new frames"),
                *size_inputs("input", "; an input of another size is fitted to it"),
                io.Float.Input("strength", default=DEFAULT_END_STRENGTH, min=0.0, max=1.0, step=0.01,
                               tooltip="How strongly the last frame follows the end image. Unused without one."),
                io.Image.Input("end_image", optional=True),
            ],
            outputs=[FramePackConditioning.Output(display_name="conditioning"),
                     io.Image.Output(display_name="last_frame"),
                     io.Int.Output(display_name="width"), io.Int.Output(display_name="height")],
        )

    @classmethod
    def validate_inputs(cls, aspect_ratio, resolution):
        return check_choices(**size_choices(aspect_ratio, resolution))

    @classmethod
    def execute(cls, vae, clip_vision, fps, context_latents, keep_input, aspect_ratio, resolution, custom_width,
                custom_height, strength, video=None, images=None, end_image=None):
        source = frame_source(video, images, fps)
        check_input_frames(source.frames)
        width, height = output_size(source.height, source.width, aspect_ratio, resolution, custom_width,
                                    custom_height)
        fitted = Fitted(source, width, height)
        if fitted.resized:
            log.info("FramePack: the input video (%dx%d) is resized and centre-cropped to %dx%d", source.width,
                     source.height, width, height)
        # divided in place: one float32 copy of the tail, not two
        pixels = fitted.read_tail(tail_frames(source.frames, context_latents)).float().div_(255)
        encoded = vae.encode(pixels)
        if encoded.ndim != 5:
            raise InputError("the VAE is an image VAE; load the HunyuanVideo VAE (hunyuan_video_vae_bf16.safetensors) "
                             "with VAELoader")
        history = to_model_space(history_from_encoding(encoded.float(), context_latents))
        last = pixels[-1:]
        inputs = ImageInputs(encode_image(last, vae, clip_vision), width, height, strength=strength,
                             start_in_output=False,
                             continuation=VideoInputs(Continuation(history, source.frames), fitted, keep_input))
        if end_image is not None:
            inputs.end = encode_image(resize_and_center_crop(end_image[:1, ..., :3], width, height), vae, clip_vision)
        log.info("FramePack: continuing a %d-frame video from its last %d frames (%d history latents)",
                 source.frames, len(pixels), history.shape[2])
        return io.NodeOutput(inputs, last, width, height)
