"""A tiny NSFW classifier with the released classifier's architecture (ViTForImageClassification, labels
normal / nsfw, as Falconsai/nsfw_image_detection) and random weights, saved as config.json + model.safetensors +
preprocessor_config.json. The classifier head is set so that every image scores far above (``nsfw=True``) or far
below (``nsfw=False``) any threshold, through the real loading and scoring code."""

from __future__ import annotations

import json
from pathlib import Path

import torch

IMAGE_SIDE = 32


def write_tiny_classifier(folder: Path, *, nsfw: bool, seed: int = 0) -> Path:
    from transformers import ViTConfig, ViTForImageClassification

    folder = Path(folder)
    if (folder / "model.safetensors").is_file() and (folder / "config.json").is_file():
        return folder
    torch.manual_seed(seed)
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=IMAGE_SIDE, patch_size=16, num_labels=2, id2label={0: "normal", 1: "nsfw"},
                       label2id={"normal": 0, "nsfw": 1})
    model = ViTForImageClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 9.0] if nsfw else [9.0, 0.0]))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5], "image_processor_type": "ViTImageProcessor", "resample": 2,
        "rescale_factor": 1 / 255, "size": {"height": IMAGE_SIDE, "width": IMAGE_SIDE}}))
    return folder


def install_tiny_classifiers(models_dir: Path) -> dict[str, Path]:
    """models/nsfw_detector/nsfw_image_detection (the shipped workflows' name; scores high) and
    models/nsfw_detector/tiny_clean (scores low)."""
    root = Path(models_dir) / "nsfw_detector"
    return {"nsfw_image_detection": write_tiny_classifier(root / "nsfw_image_detection", nsfw=True),
            "tiny_clean": write_tiny_classifier(root / "tiny_clean", nsfw=False)}
