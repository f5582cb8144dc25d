"""Image conditioning (start / end image or a blank text-to-video start, keyframes) and timestamped prompts, from
ComfyUI's native VAE, CLIP vision (SigLIP) and text encoder."""

from __future__ import annotations

import dataclasses

import torch
from comfy_api.latest import io

from ..framepack_core.conditioning import ImageConditioning, Keyframe, check_same_size, parse_timestamped_prompts
from ..framepack_core.config import to_model_space
from ..framepack_core.errors import InputError
from ..framepack_core.frames import output_size, resize_and_center_crop
from ..framepack_core.limits import (BLANK_EMBEDDINGS, DEFAULT_END_STRENGTH, MAX_KEYFRAME_SECONDS, MAX_SEED,
                                     START_IMAGE, START_KINDS)
from ..framepack_core.starts import blank_image
from .size_inputs import size_choices, size_inputs
from .types import CATEGORY, FramePackConditioning, FramePackPrompts, ImageInputs, PromptSchedule, check_choices


def encode_image(pixels, vae, clip_vision) -> ImageConditioning:
    """pixels: IMAGE [1, H, W, 3] already at the video size."""
    latent = vae.encode(pixels[..., :3])
    if latent.ndim == 4:  # image VAEs give [B, C, h, w]; FramePack needs the video VAE's [B, C, T, h, w]
        raise InputError("the VAE is an image VAE; load the HunyuanVideo VAE (hunyuan_video_vae_bf16.safetensors) "
                         "with VAELoader")
    # SigLIP sees the whole frame resized to its square input, as FramePack's image processor does (no crop)
    embeds = clip_vision.encode_image(pixels[..., :3], crop=False)["last_hidden_state"]
    return ImageConditioning(to_model_space(latent[:, :, :1].float()), embeds[:1].float())


# A text-to-video start has no picture to follow: "auto" takes the 16:9 shape.
T2V_NOMINAL_SIZE = (720, 1280)  # (height, width)


class FramePackImageConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FramePackImageConditioning", display_name="FramePack Image Conditioning", category=CATEGORY,
            description="Start image (and optional end image) to FramePack conditioning. The image is scaled to "
                        "cover the output size and centre-cropped; the end image is fitted to the same size. "
                        "Text-to-video: leave start_image unconnected and choose a blank start_kind; the blank "
                        "frame is never in the output.",
            inputs=[
                io.Image.Input("start_image", optional=True,
                               tooltip="The video's first frame; leave it unconnected for text-to-video"),
                io.Vae.Input("vae", tooltip="HunyuanVideo VAE (VAELoader)"),
                io.ClipVision.Input("clip_vision", tooltip="SigLIP: sigclip_vision_patch14_384 (CLIPVisionLoader)"),
                *size_inputs("start image"),
                io.Float.Input("strength", default=DEFAULT_END_STRENGTH, min=0.0, max=1.0, step=0.01,
                               tooltip="How strongly the last frame follows the end image (0 ignores it, 1 ends "
                                       "exactly on it). Unused without an end image."),
                io.Image.Input("end_image", optional=True),
                io.Combo.Input("start_kind", options=list(START_KINDS), default=START_IMAGE, optional=True,
                               tooltip="image: start from start_image. black / white / grey / noise: text-to-video "
                                       "from a blank start of that kind (not in the output; auto aspect = 16:9)"),
                io.Int.Input("noise_seed", default=0, min=0, max=MAX_SEED, optional=True,
                             tooltip="Seed of the noise start (start_kind noise)"),
                io.Combo.Input("blank_embeddings", options=list(BLANK_EMBEDDINGS), default=BLANK_EMBEDDINGS[0],
                               optional=True,
                               tooltip="SigLIP embeddings of a blank start: the blank image's own (the kind of "
                                       "input the model was trained on), or zeros"),
            ],
            outputs=[FramePackConditioning.Output(display_name="conditioning"),
                     io.Image.Output(display_name="start_image"),
                     io.Int.Output(display_name="width"), io.Int.Output(display_name="height")],
        )

    @classmethod
    def validate_inputs(cls, aspect_ratio, resolution, start_kind=START_IMAGE, blank_embeddings=BLANK_EMBEDDINGS[0]):
        return check_choices(**size_choices(aspect_ratio, resolution), start_kind=(start_kind, START_KINDS),
                             blank_embeddings=(blank_embeddings, BLANK_EMBEDDINGS))

    @classmethod
    def execute(cls, vae, clip_vision, aspect_ratio, resolution, custom_width, custom_height, strength,
                start_image=None, end_image=None, start_kind=START_IMAGE, noise_seed=0,
                blank_embeddings=BLANK_EMBEDDINGS[0]):
        blank = start_kind != START_IMAGE
        if blank and start_image is not None:
            raise InputError(f"start_kind is {start_kind!r} (a blank text-to-video start) but a start_image is "
                             "connected: disconnect start_image, or set start_kind to image")
        if not blank and start_image is None:
            raise InputError("no start image: connect start_image (LoadImage), or for text-to-video set start_kind "
                             "to black, white, grey or noise")
        image_hw = T2V_NOMINAL_SIZE if blank else (start_image.shape[1], start_image.shape[2])
        width, height = output_size(*image_hw, aspect_ratio, resolution, custom_width, custom_height)
        if blank:
            start_px = blank_image(start_kind, height, width, noise_seed)
        else:
            start_px = resize_and_center_crop(start_image[:1, ..., :3], width, height)
        start = encode_image(start_px, vae, clip_vision)
        if blank and blank_embeddings == "zero":
            start.embeds = torch.zeros_like(start.embeds)
        inputs = ImageInputs(start, width, height, strength=strength, start_in_output=not blank)
        if end_image is not None:
            inputs.end = encode_image(resize_and_center_crop(end_image[:1, ..., :3], width, height), vae, clip_vision)
        return io.NodeOutput(inputs, start_px, width, height)


class FramePackKeyframe(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FramePackKeyframe", display_name="FramePack Keyframe", category=CATEGORY,
            description="Pins an image at a time of the video (chain several). The frame at that time is pulled "
                        "towards the image with the given strength.",
            inputs=[
                FramePackConditioning.Input("conditioning"),
                io.Image.Input("image"),
                io.Vae.Input("vae"),
                io.ClipVision.Input("clip_vision"),
                io.Float.Input("time_seconds", default=2.0, min=0.0, max=MAX_KEYFRAME_SECONDS, step=0.1),
                io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.01),
            ],
            outputs=[FramePackConditioning.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, conditioning, image, vae, clip_vision, time_seconds, strength):
        pixels = resize_and_center_crop(image[:1, ..., :3], conditioning.width, conditioning.height)
        key = Keyframe(time_seconds, encode_image(pixels, vae, clip_vision), strength)
        try:
            check_same_size(conditioning.start, key.image, "keyframe")
        except InputError as err:
            raise InputError(f"{err}. Connect the same VAE and CLIP vision model to this node as to FramePack Image "
                             "Conditioning.") from err
        return io.NodeOutput(dataclasses.replace(conditioning, keyframes=[*conditioning.keyframes, key]))


class FramePackTimestampedPrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FramePackTimestampedPrompt", display_name="FramePack Timestamped Prompts", category=CATEGORY,
            description="One prompt per time range. Start a line with [seconds] to begin a new prompt, e.g.\n"
                        "[0s] a woman smiles\n[2.5s] she waves at the camera\nSections across a change blend both.",
            inputs=[
                io.Clip.Input("clip", tooltip="DualCLIPLoader type hunyuan_video"),
                io.String.Input("text", multiline=True, default="[0s] a person looks at the camera\n[2s] the person smiles"),
            ],
            outputs=[FramePackPrompts.Output(display_name="prompts")],
        )

    @classmethod
    def execute(cls, clip, text):
        entries = []
        for start, prompt in parse_timestamped_prompts(text):
            conditioning = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
            entries.append((start, conditioning))
        return io.NodeOutput(PromptSchedule(entries))
