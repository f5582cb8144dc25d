"""Where a generation starts: a start image (image-to-video), a blank image (text-to-video) or the end of an input
video (continuation), and what each gives the section loop besides the start latent and its SigLIP embeddings.

Continuing a video. The input's last frame is frame 0 of the new chain: it is not output again, so exactly
num_frames new frames follow it (planning: start_in_output=False).
- F1 (forward sections) keeps the input's motion: the VAE encodings of the input's last frames fill the history
  the first section sees (up to 19 latents: 16 at 4x, 2 at 2x, 1 at 1x compression), with zeros before them when
  the input is short, as the original's buffer holds zeros before its first latents. The start anchor (clean slot
  at time index 0) and the SigLIP embeddings are those of the input's LAST frame: in the original's first F1
  section the anchor and the newest history latent are the same frame, which is the relation the model saw at the
  start of every video; the input's first frame may be seconds or scenes away, and F1's anchor would pull the
  continuation back towards it.
- FramePackI2V_HY (inverted sections) has no history slots for the past: its clean context is the start latent
  and the already sampled FUTURE. So the continuation starts from the input's last frame as its start image (with
  the optional end image and strength as usual): it keeps the last frame's appearance and loses the input's
  motion (direction and speed come from the prompt alone).

The history tail. An input of N frames has its last 4m + 1 frames encoded, m = min(context, (N - 1) // 4), which
gives m + 1 latents ending on the last frame (a causal video VAE encodes a first frame alone, then groups of 4).
When that is more than `context` latents the first one, the image-like encoding of a lone frame, is dropped, so a
long input gives `context` latents of 4 frames each, as the buffer of a video the model made itself would hold;
a short input keeps all of them, its first like the original's start latent.

Text-to-video: the start is a blank image (black, white, grey or seeded noise); the blank frame is never output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import LATENT_CHANNELS
from .errors import InputError
from .limits import BLANK_KINDS, MAX_CONTEXT_LATENTS, MAX_INPUT_FRAMES, MIN_INPUT_FRAMES, Mode

GREY = 0.5


def check_input_frames(frames: int) -> None:
    if frames < MIN_INPUT_FRAMES:
        raise InputError(f"the input video has {frames} frame(s); continuing a video needs at least "
                         f"{MIN_INPUT_FRAMES} (one latent frame after the first): give a longer video")
    if frames > MAX_INPUT_FRAMES:
        raise InputError(f"the input video has {frames} frames; at most {MAX_INPUT_FRAMES} "
                         f"({MAX_INPUT_FRAMES // 30 // 60} minutes at 30 fps) can be continued: cut it first, only "
                         "its end matters for the continuation")


def tail_frames(input_frames: int, context_latents: int = MAX_CONTEXT_LATENTS) -> int:
    """How many of the input's last frames are encoded for the history (module docstring): 4m + 1."""
    check_input_frames(input_frames)
    if not 1 <= context_latents <= MAX_CONTEXT_LATENTS:
        raise InputError(f"context_latents {context_latents} is out of range; use 1 to {MAX_CONTEXT_LATENTS}")
    return 4 * min(context_latents, (input_frames - 1) // 4) + 1


def history_from_encoding(encoded: torch.Tensor, context_latents: int = MAX_CONTEXT_LATENTS) -> torch.Tensor:
    """The history latents from the encoding of the tail_frames() frames: at most context_latents, the last ones."""
    return encoded[:, :, -context_latents:]


@dataclass
class Continuation:
    """The video a generation continues.

    history: model-space latents [1, 16, K, h, w] (1 <= K <= 19) of the input's last frames in time order, the
    last one ending on the input's last frame; input_frames: N, the input's frame count."""

    history: torch.Tensor
    input_frames: int

    def __post_init__(self):
        h = self.history
        if h.ndim != 5 or h.shape[0] != 1 or h.shape[1] != LATENT_CHANNELS or \
                not 1 <= h.shape[2] <= MAX_CONTEXT_LATENTS:
            raise InputError(f"the input video's history latents must be [1, {LATENT_CHANNELS}, 1..."
                             f"{MAX_CONTEXT_LATENTS}, h, w], got {list(h.shape)}; encode the input's last frames "
                             "with the HunyuanVideo VAE")
        check_input_frames(self.input_frames)

    @property
    def latents(self) -> int:
        return self.history.shape[2]


def initial_context(mode: str, start_latent: torch.Tensor, continuation: Continuation | None,
                    context_latents: int) -> torch.Tensor:
    """The context buffer before the first section: [1, 16, context_latents, h, w].

    Inverted: zeros (its context is what comes after the window, and nothing has been sampled yet). Forward: the
    latents before the first window, with zeros before them: the start latent (the original), or a continued
    video's history."""
    zeros = torch.zeros((1, LATENT_CHANNELS, context_latents, *start_latent.shape[-2:]))
    if mode == Mode.INVERTED:
        return zeros
    past = continuation.history.float().cpu() if continuation is not None else start_latent.float().cpu()
    return torch.cat([zeros, past], dim=2)[:, :, -context_latents:]


def blank_image(kind: str, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A text-to-video start: IMAGE [1, height, width, 3] in [0, 1]; noise is uniform, from a CPU generator seeded
    with `seed`, so the same seed gives the same start on any machine."""
    if kind not in BLANK_KINDS:
        raise InputError(f"blank start {kind!r} is not one of: {', '.join(BLANK_KINDS)}")
    if kind == "noise":
        generator = torch.Generator("cpu").manual_seed(int(seed))
        return torch.rand((1, height, width, 3), generator=generator)
    value = {"black": 0.0, "white": 1.0, "grey": GREY}[kind]
    return torch.full((1, height, width, 3), value)
