"""Conditioning inputs of a generation, and how they are mixed per section.

Text comes as LLaMA hidden states [1, N, 4096] (what ComfyUI's hunyuan_video text encoder gives, template already
cropped) plus the CLIP-L pooled vector [1, 768]. Images come as a VAE latent in model space (scaled by
VAE_SCALING_FACTOR) plus SigLIP last_hidden_state tokens [1, 729, 1152].
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .config import MAX_TEXT_TOKENS
from .errors import InputError
from .limits import MAX_ONE_PROMPT_CHARS, MAX_PROMPT_TEXT_CHARS, MAX_TIMED_PROMPTS

log = logging.getLogger(__name__)


@dataclass
class TextConditioning:
    tokens: torch.Tensor  # [1, N, D_text]
    pooled: torch.Tensor  # [1, D_pooled]
    mask: torch.Tensor | None = None  # [1, N] bool; None = all valid

    def cropped(self) -> "TextConditioning":
        """Valid tokens only, at most MAX_TEXT_TOKENS (the original's limit: the model never saw more)."""
        tokens = self.tokens if self.mask is None else self.tokens[:, self.mask[0].bool()]
        if tokens.shape[1] > MAX_TEXT_TOKENS:
            log.warning("prompt has %d tokens; FramePack uses the first %d", tokens.shape[1], MAX_TEXT_TOKENS)
            tokens = tokens[:, :MAX_TEXT_TOKENS]
        if tokens.shape[1] == 0:
            tokens = torch.zeros_like(self.tokens[:, :1])
        return TextConditioning(tokens.float(), self.pooled.float().reshape(1, -1), None)

    def zeros_like(self) -> "TextConditioning":
        """What the original feeds as 'negative' when real CFG is off."""
        return TextConditioning(torch.zeros_like(self.tokens), torch.zeros_like(self.pooled), self.mask)


@dataclass
class ImageConditioning:
    latent: torch.Tensor  # [1, 16, 1, h, w], model space
    embeds: torch.Tensor  # [1, N, D_siglip]

    def __post_init__(self):
        if self.latent.ndim == 4:
            self.latent = self.latent[:, :, None]
        if self.latent.ndim != 5 or self.latent.shape[2] != 1:
            raise InputError(f"an image latent must be [1, 16, 1, h, w]; got {list(self.latent.shape)}")
        if self.embeds.ndim == 2:
            self.embeds = self.embeds[None]


@dataclass
class Keyframe:
    """An image pinned at a time: the latent holding that time is pulled towards the image with `strength`."""
    time_s: float
    image: ImageConditioning
    strength: float = 1.0


def blend_text(prompts: list[TextConditioning], weights: list[float]) -> TextConditioning:
    """Weighted mix of cropped prompts: tokens zero-padded to the longest, so a prompt's tokens fade in and out
    (the blending FramePack-Studio users know), pooled vectors mixed with the same weights."""
    active = [(p, w) for p, w in zip(prompts, weights) if w > 0]
    if len(active) == 1:
        return active[0][0]
    length = max(p.tokens.shape[1] for p, _ in active)
    tokens = sum(w * torch.nn.functional.pad(p.tokens, (0, 0, 0, length - p.tokens.shape[1])) for p, w in active)
    pooled = sum(w * p.pooled for p, w in active)
    return TextConditioning(tokens, pooled, None)


def check_same_size(start: ImageConditioning, other: ImageConditioning, what: str) -> None:
    if other.latent.shape != start.latent.shape:
        raise InputError(f"the {what} latent {list(other.latent.shape)} does not match the start image latent "
                         f"{list(start.latent.shape)}; encode the {what} at the start image's pixel size with the "
                         "same VAE")
    if other.embeds.shape[-1] != start.embeds.shape[-1]:
        raise InputError(f"the {what} image embeddings have width {other.embeds.shape[-1]}, the start image's "
                         f"{start.embeds.shape[-1]}; encode both with the same CLIP vision model")


_DIGITS = frozenset("0123456789")
_MAX_NUMBER_DIGITS = 9  # a time mark's minutes, seconds or fraction; longer is text, not a mark


def _number(text: str) -> bool:
    return 0 < len(text) <= _MAX_NUMBER_DIGITS and all(c in _DIGITS for c in text)


def _time_mark(line: str) -> tuple[float, str] | None:
    """(seconds, rest of the line) when the line starts with a time mark ("[2s]", "[2.5]", "[0:02]", "[ 1 s ]"),
    else None. Plain string scanning, linear in the line: this runs on text from any API caller."""
    text = line.lstrip()
    if not text.startswith("["):
        return None
    close = text.find("]")
    if close < 0:
        return None
    inside = text[1:close].strip()
    if inside.endswith("s"):
        inside = inside[:-1].rstrip()
    minutes, colon, seconds = inside.partition(":")
    if not colon:
        minutes, seconds = "0", minutes
    whole, dot, fraction = seconds.partition(".")
    if not (_number(minutes) and _number(whole) and (not dot or _number(fraction))):
        return None
    return int(minutes) * 60 + float(seconds), text[close + 1:].strip()


def parse_timestamped_prompts(text: str, *, max_chars: int = MAX_PROMPT_TEXT_CHARS,
                              max_prompts: int = MAX_TIMED_PROMPTS,
                              max_prompt_chars: int = MAX_ONE_PROMPT_CHARS) -> list[tuple[float, str]]:
    """Parses one prompt per time range: a line starting with [seconds] ("[2s]", "[2.5]", "[0:02]") starts a new
    prompt at that time; following lines without a timestamp continue it. Text before the first timestamp starts
    at 0 s. Returns (start seconds, prompt) sorted by time; two prompts at the same time are an error. The text, the
    number of prompts and each prompt are capped (limits.MAX_PROMPT_TEXT_CHARS, MAX_TIMED_PROMPTS,
    MAX_ONE_PROMPT_CHARS)."""
    if len(text) > max_chars:
        raise InputError(f"the timestamped prompt text has {len(text)} characters; the limit is {max_chars}: "
                         f"shorten it (the model reads the first {MAX_TEXT_TOKENS} tokens of each prompt)")
    entries: list[tuple[float, list[str]]] = []  # (start, the prompt's pieces), joined once at the end
    for line in text.splitlines():
        mark = _time_mark(line)
        if mark is not None:
            if len(entries) == max_prompts:
                raise InputError(f"the timestamped prompt text starts {max_prompts + 1} prompts or more; at most "
                                 f"{max_prompts} are allowed: merge some of them")
            entries.append((mark[0], [mark[1]]))
        elif line.strip():
            if not entries:
                entries.append((0.0, []))
            entries[-1][1].append(line.strip())
    if not entries:
        raise InputError("the timestamped prompt text is empty; write e.g. '[0s] a cat walks' on the first line")
    entries.sort(key=lambda e: e[0])
    times = [t for t, _ in entries]
    if len(set(times)) != len(times):
        raise InputError(f"two prompts start at the same time ({times}); give each a different [seconds] mark")
    prompts = [(t, " ".join(p for p in pieces if p)) for t, pieces in entries]
    for start, prompt in prompts:
        if len(prompt) > max_prompt_chars:
            raise InputError(f"the prompt at {start:g}s has {len(prompt)} characters; the limit is {max_prompt_chars} "
                             f"a prompt (the model reads its first {MAX_TEXT_TOKENS} tokens, about 1,000 characters): "
                             "shorten it")
    return prompts
