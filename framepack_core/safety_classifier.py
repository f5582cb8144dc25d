"""Loads the NSFW image classifier behind FramePack Safety Checker: a Hugging Face image-classification folder
(config.json + model.safetensors, e.g. Falconsai/nsfw_image_detection, a ViT-B/16 at 224 px, 343 MB), handed to
framepack_core.safety, which scores the frames.

Only safetensors weights are read, from local files (``local_files_only``); ``transformers`` (which ComfyUI
already requires) builds the architecture the folder's config.json names. No ComfyUI import here.
"""

from __future__ import annotations

import json
import os
import threading

import torch

from .safety import FrameScorer, nsfw_label_index

CONFIG_FILE, WEIGHTS_FILE, PREPROCESSOR_FILE = "config.json", "model.safetensors", "preprocessor_config.json"
DEFAULT_CLASSIFIER = "nsfw_image_detection"
DOWNLOAD_HINT = ("download config.json, model.safetensors (343 MB) and preprocessor_config.json from "
                 "https://huggingface.co/Falconsai/nsfw_image_detection/tree/main")


class ClassifierError(ValueError):
    """The classifier folder is missing, incomplete or not an image classifier; the message says how to fix it."""


def _nsfw_index(labels: dict[int, str], folder: str) -> int:
    index = nsfw_label_index(labels)
    if index is None:
        raise ClassifierError(f"cannot tell which label of {folder} means NSFW (labels: {labels}); use a two-label "
                              "classifier such as Falconsai/nsfw_image_detection (normal / nsfw)")
    return index


def _preprocessing(folder: str, config) -> tuple[tuple[int, int], list[float], list[float]]:
    """Input size, mean and std from preprocessor_config.json, or the ViT defaults (config image_size, 0.5)."""
    side = int(getattr(config, "image_size", 224) or 224)
    size, mean, std = (side, side), [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    path = os.path.join(folder, PREPROCESSOR_FILE)
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                pre = json.load(f)
        except (OSError, ValueError) as err:
            raise ClassifierError(f"{path} is not valid JSON ({err}); download it again ({DOWNLOAD_HINT})") from err
        got = pre.get("size")
        if isinstance(got, dict) and {"height", "width"} <= set(got):
            size = (int(got["height"]), int(got["width"]))
        elif isinstance(got, int):
            size = (got, got)
        mean = [float(v) for v in pre.get("image_mean", mean)]
        std = [float(v) for v in pre.get("image_std", std)]
    return size, mean, std


def load_classifier(folder: str) -> FrameScorer:
    """Loads the classifier in ``folder``; ClassifierError names the missing or bad file and where to get it."""
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not os.path.isfile(os.path.join(folder, name)):
            raise ClassifierError(f"the safety checker needs {os.path.join(folder, name)}, which is missing: "
                                  f"{DOWNLOAD_HINT} into {folder}")
    from transformers import AutoConfig, AutoModelForImageClassification  # heavy: only when the checker runs

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        model, info = AutoModelForImageClassification.from_pretrained(
            folder, config=config, local_files_only=True, use_safetensors=True, output_loading_info=True)
    except (OSError, ValueError, KeyError, RuntimeError) as err:  # RuntimeError: weights of other shapes
        raise ClassifierError(f"{folder} does not hold a usable image classifier ({err}); {DOWNLOAD_HINT}") from err
    broken = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "mismatched_keys") and v}
    if broken:
        raise ClassifierError(f"{os.path.join(folder, WEIGHTS_FILE)} does not match its config.json ({broken}); "
                              f"download both again ({DOWNLOAD_HINT})")
    labels = {int(k): v for k, v in (config.id2label or {}).items()}
    size, mean, std = _preprocessing(folder, config)
    model = model.eval().to(torch.float32)
    return FrameScorer(logits=lambda pixels: model(pixel_values=pixels).logits,
                       nsfw_index=_nsfw_index(labels, folder), size=size,
                       mean=torch.tensor(mean).view(1, -1, 1, 1), std=torch.tensor(std).view(1, -1, 1, 1))


_cache: dict[str, tuple[tuple, FrameScorer]] = {}
_cache_lock = threading.Lock()


def cached_classifier(folder: str) -> FrameScorer:
    """The classifier of ``folder``, loaded once and reloaded when its weights file changes."""
    weights = os.path.join(folder, WEIGHTS_FILE)
    try:
        stat = os.stat(weights)
        stamp = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        stamp = None
    with _cache_lock:
        hit = _cache.get(folder)
        if hit is not None and stamp is not None and hit[0] == stamp:
            return hit[1]
        classifier = load_classifier(folder)
        _cache.clear()  # one classifier at a time: they are a few hundred MB each
        _cache[folder] = (stamp, classifier)
        return classifier
