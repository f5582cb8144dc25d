"""FramePack Safety Checker: scores a sample of a video's frames (first and last included) with an NSFW image
classifier from models/nsfw_detector/<folder> and reports whether the video is flagged and its top score.

It reads the frames it scores from the video (FramePack Video Combine's video output, the MP4), so it sees the
whole video whether or not the frames output carries every frame; an IMAGE batch can be given instead."""

from __future__ import annotations

import logging
import os

import folder_paths
from comfy_api.latest import io

from ..framepack_core.errors import InputError
from ..framepack_core.limits import DEFAULT_NSFW_THRESHOLD, DEFAULT_SAFETY_SAMPLE_FRAMES, MAX_SAFETY_SAMPLE_FRAMES
from ..framepack_core.mp4 import count_frames, read_frames
from ..framepack_core.safety import sample_indices
from ..framepack_core.safety_classifier import DEFAULT_CLASSIFIER, DOWNLOAD_HINT, ClassifierError, cached_classifier
from .types import CATEGORY

log = logging.getLogger("FramePack")
FOLDER = "nsfw_detector"  # models/nsfw_detector/<classifier folder>/{config.json, model.safetensors}
folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))


class SafetyBlocked(InputError):
    """Raised with block on when the video is flagged: the prompt fails and says why."""


def classifier_folder(name: str) -> str:
    """The classifier folder ``name`` in models/nsfw_detector (any configured nsfw_detector path); a name that is
    not a plain folder name is refused, so the input cannot point elsewhere on disk."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or os.path.isabs(name) or \
            any(ord(c) < 32 for c in name):
        raise InputError(f"classifier {name!r} must be the name of a folder in models/{FOLDER} "
                         f"(e.g. {DEFAULT_CLASSIFIER!r}), not a path")
    for root in folder_paths.get_folder_paths(FOLDER):
        candidate = os.path.join(root, name)
        if os.path.isdir(candidate):
            return candidate
    raise InputError(f"the safety checker's classifier folder {name!r} is not in models/{FOLDER}: create "
                     f"models/{FOLDER}/{name} and {DOWNLOAD_HINT} into it")


def _sampled(video, frames, sample_frames: int):
    """(frames to score, their indices, the video's frame count), from the MP4 when a video is connected."""
    if video is not None:
        total = count_frames(video.get_stream_source())
        indices = sample_indices(total, sample_frames)
        return (read_frames(video.get_stream_source(), indices) if indices else None), indices, total
    if frames is not None:
        total = int(frames.shape[0])
        indices = sample_indices(total, sample_frames)
        return frames[indices], indices, total
    raise InputError("the safety checker has nothing to score: connect FramePack Video Combine's video output to "
                     "its video input (or an IMAGE batch to frames)")


class FramePackSafetyChecker(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FramePackSafetyChecker", display_name="FramePack Safety Checker", category=CATEGORY,
            description="Scores frames spread over the video (always the first and the last) with an NSFW image "
                        f"classifier from models/{FOLDER}/<classifier> (e.g. Falconsai/nsfw_image_detection). "
                        "Outputs whether the video is flagged (top score >= threshold) and the top score; with "
                        "block on, a flagged video fails the prompt. Off: nothing is loaded or scored.",
            inputs=[
                io.Video.Input("video", optional=True,
                               tooltip="FramePack Video Combine's video output: the frames scored are read from the "
                                       "MP4, so every part of the video is seen even with return_frames off"),
                io.Image.Input("frames", optional=True,
                               tooltip="Or an IMAGE batch to score (used when no video is connected)"),
                io.Boolean.Input("enabled", default=True, tooltip="Off: pass, score 0, no classifier needed"),
                io.String.Input("classifier", default=DEFAULT_CLASSIFIER,
                                tooltip=f"Folder in models/{FOLDER} holding config.json and model.safetensors"),
                io.Float.Input("threshold", default=DEFAULT_NSFW_THRESHOLD, min=0.0, max=1.0, step=0.01,
                               tooltip="A frame whose NSFW probability reaches this flags the video"),
                io.Int.Input("sample_frames", default=DEFAULT_SAFETY_SAMPLE_FRAMES, min=1, max=MAX_SAFETY_SAMPLE_FRAMES,
                             tooltip="How many frames to score, spread evenly (first and last always included)"),
                io.Boolean.Input("block", default=False,
                                 tooltip="On: a flagged video fails the prompt with a message (the MP4 is already "
                                         "written; downstream nodes do not run)"),
            ],
            outputs=[io.Boolean.Output(display_name="flagged"), io.Float.Output(display_name="score")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, enabled, classifier, threshold, sample_frames, block, video=None, frames=None):
        if not enabled:
            report = {"enabled": False, "flagged": False, "score": 0.0, "threshold": threshold, "frames_checked": 0}
            return io.NodeOutput(False, 0.0, ui={"text": ["safety checker off"], "framepack_safety": [report]})
        folder = classifier_folder(classifier)
        try:
            model = cached_classifier(folder)
        except ClassifierError as err:  # said with the folder as users name it, not where the server keeps it
            raise InputError(str(err).replace(folder, f"models/{FOLDER}/{classifier}")) from err
        chosen, indices, total = _sampled(video, frames, sample_frames)
        scores = model.scores(chosen) if chosen is not None else None
        top = float(scores.max()) if scores is not None and scores.numel() else 0.0
        flagged = top >= threshold
        report = {"enabled": True, "flagged": flagged, "score": round(top, 6), "threshold": threshold,
                  "frames_checked": len(indices), "video_frames": total, "classifier": classifier}
        text = f"{'FLAGGED' if flagged else 'passed'}: top NSFW score {top:.3f} over {len(indices)} frame(s)"
        log.info("FramePack safety checker: %s", text)
        if flagged and block:
            raise SafetyBlocked(f"the safety checker flagged this video (top NSFW score {top:.3f} >= threshold "
                                f"{threshold}); it was not passed on. Change the prompt or image, or turn block off")
        return io.NodeOutput(flagged, top, ui={"text": [text], "framepack_safety": [report]})
