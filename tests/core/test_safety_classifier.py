"""The safety checker's classifier: frame sampling (framepack_core.safety), and scores equal to transformers' own
ViT image processor + model on the same pictures, through a tiny random-weight classifier saved as safetensors and
loaded from its folder by framepack_core/safety_classifier.py (torch and transformers, no ComfyUI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from framepack_core import safety_classifier
from framepack_core.safety import sample_indices

transformers = pytest.importorskip("transformers")


def test_sample_indices_cover_first_and_last():
    assert sample_indices(30, 4) == [0, 10, 19, 29]
    assert sample_indices(30, 1) == [0, 29]
    assert sample_indices(3, 8) == [0, 1, 2]
    assert sample_indices(1, 8) == [0]
    assert sample_indices(0, 8) == []
    many = sample_indices(1800, 8)
    assert len(many) == 8 and many[0] == 0 and many[-1] == 1799


def write_classifier(folder: Path, side: int = 32) -> Path:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(3)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=side, patch_size=16, num_labels=2, id2label={0: "normal", 1: "nsfw"},
                       label2id={"normal": 0, "nsfw": 1})
    model = ViTForImageClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(40)  # spread the scores so that a preprocessing slip shows
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5], "image_processor_type": "ViTImageProcessor", "resample": 2,
        "rescale_factor": 1 / 255, "size": {"height": side, "width": side}}))
    return folder


def test_scores_match_transformers_processor_and_model(tmp_path):
    folder = write_classifier(tmp_path / "clf")
    classifier = safety_classifier.load_classifier(str(folder))
    reference = transformers.AutoModelForImageClassification.from_pretrained(folder, local_files_only=True).eval()
    processor = transformers.ViTImageProcessor.from_pretrained(folder, local_files_only=True)
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)  # the model's own size: no resampling
    frames = torch.from_numpy(pictures).float() / 255.0
    ours = classifier.scores(frames)
    with torch.no_grad():
        logits = reference(**processor(images=list(pictures), return_tensors="pt")).logits
    expected = torch.softmax(logits, dim=-1)[:, 1]
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)
    assert float(expected.max() - expected.min()) > 0.05  # the pictures score differently: a real comparison

    # larger frames are resized; PIL's uint8 resize and torch's float resize differ slightly
    big = rng.integers(0, 256, (3, 96, 80, 3), dtype=np.uint8)
    ours = classifier.scores(torch.from_numpy(big).float() / 255.0)
    with torch.no_grad():
        expected = torch.softmax(reference(**processor(images=list(big), return_tensors="pt")).logits, -1)[:, 1]
    torch.testing.assert_close(ours, expected, atol=0.05, rtol=0)


def test_bad_folders_are_named(tmp_path):
    folder = write_classifier(tmp_path / "clf")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"never read")  # a pickle next to the config is not a fallback
    with pytest.raises(safety_classifier.ClassifierError, match=r"model.safetensors, which is missing"):
        safety_classifier.load_classifier(str(folder))
    other = write_classifier(tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    config["id2label"] = {"0": "cat", "1": "dog", "2": "bird"}
    config["label2id"] = {"cat": 0, "dog": 1, "bird": 2}
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(safety_classifier.ClassifierError, match="does not hold a usable image classifier"):
        safety_classifier.load_classifier(str(other))
