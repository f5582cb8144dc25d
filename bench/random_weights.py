"""Shared by the benchmarks: their command line, token counts of a forward; the random-weight models come from
framepack_dev.random_weights."""

from __future__ import annotations

import argparse

from framepack_core import FramePackTransformer
from framepack_dev.random_weights import random_model  # noqa: F401  (the benchmarks import it from here)


def sequence_tokens(model: FramePackTransformer, inputs: dict) -> dict[str, int]:
    """How many tokens one forward on ``inputs`` (FramePackTransformer.forward's keyword arguments) attends over:
    image tokens (noisy latents plus the packed 1x/2x/4x history), SigLIP tokens and text tokens."""
    context = model.prepare(inputs["hidden_states"].shape, inputs["latent_indices"], inputs["image_embeddings"],
                            inputs["clean_latents"], inputs["clean_latent_indices"], inputs["clean_latents_2x"],
                            inputs["clean_latent_2x_indices"], inputs["clean_latents_4x"],
                            inputs["clean_latent_4x_indices"])
    history = 0 if context.history_tokens is None else context.history_tokens.shape[1]
    _, _, t, h, w = inputs["hidden_states"].shape
    p = model.config.patch_size
    noisy = t // model.config.patch_size_t * (h // p) * (w // p)
    return {"image": history + noisy, "noisy": noisy, "history": history,
            "siglip": context.image_tokens.shape[1], "text": inputs["encoder_hidden_states"].shape[1]}


def benchmark_parser(description: str, dry_run_help: str) -> argparse.ArgumentParser:
    """The benchmarks' common options: --cpu-only, --gpu-only, and --dry-run (the GPU part's code on the CPU)."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-only", action="store_true")
    ap.add_argument("--gpu-only", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help=dry_run_help)
    return ap
