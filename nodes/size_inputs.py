"""The output-size inputs that FramePack Image Conditioning and FramePack Video Conditioning share: aspect ratio,
resolution and the custom size, declared once (framepack_core.frames.output_size turns them into the video size)."""

from __future__ import annotations

from comfy_api.latest import io

from ..framepack_core.limits import (ASPECT_RATIOS, AUTO, DEFAULT_CUSTOM_SIZE, MAX_SIDE, MIN_SIDE, RESOLUTION_CHOICES,
                                     SIDE_STEP)


def size_inputs(picture: str, resolution_note: str = "") -> list:
    """aspect_ratio, resolution, custom_width, custom_height, in that order (saved workflows keep widget values by
    position). `picture` names what "auto" follows ("start image", "input"); `resolution_note` ends the resolution
    tooltip."""
    return [
        io.Combo.Input("aspect_ratio", options=list(ASPECT_RATIOS), default=AUTO,
                       tooltip=f"auto keeps the {picture}'s aspect ratio"),
        io.Combo.Input("resolution", options=list(RESOLUTION_CHOICES), default=RESOLUTION_CHOICES[0],
                       tooltip="480p / 720p, FramePack's 640 buckets, or custom_width x custom_height"
                               + resolution_note),
        io.Int.Input("custom_width", default=DEFAULT_CUSTOM_SIZE[0], min=MIN_SIDE, max=MAX_SIDE, step=SIDE_STEP),
        io.Int.Input("custom_height", default=DEFAULT_CUSTOM_SIZE[1], min=MIN_SIDE, max=MAX_SIDE, step=SIDE_STEP),
    ]


def size_choices(aspect_ratio: str, resolution: str) -> dict[str, tuple[object, tuple]]:
    """The size combos' values and options, for types.check_choices in a node's validate_inputs."""
    return {"aspect_ratio": (aspect_ratio, ASPECT_RATIOS), "resolution": (resolution, RESOLUTION_CHOICES)}
