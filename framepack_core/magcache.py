"""MagCache (Ma et al. 2025, "MagCache: Fast Video Generation with Magnitude-Aware Cache", arXiv:2506.09045) for
FramePack, beside TeaCache.

The residual of the whole block stack (output - input over the image tokens) changes slowly and predictably from
one denoising step to the next: its magnitude ratio ||r_t|| / ||r_t-1|| per step is nearly the same for every prompt
and image, so it is measured once ("calibrated") per model and step count. Step t may reuse the last computed
residual when the error this causes, estimated from those ratios, stays small:

    for each step t past the retained first steps (t >= int(retention_ratio * steps) and t >= 1):
        ratio  *= ratios[t]                  # accumulated magnitude drift since the last computed step
        error  += |1 - ratio|
        skips  += 1
        skip when error <= threshold and skips <= max_skips and |1 - ratios[t]| <= 0.06
        otherwise compute, and reset ratio = 1, error = 0, skips = 0

That is the rule of the authors' FramePack demos. Here the first and the last step of a section are also always
computed, and a threshold of 0 never skips (the published ratios hold an exact 1.0, which the bare rule would
skip even at threshold 0). One MagCache serves one sequence of `num_steps` calls (one section, one guidance
branch); make a new one per section.

`MagCacheCalibration` records the ratios of a run instead (it never skips), and `ratios_to_json` /
`read_ratios_file` store them as a small JSON file the sampler can take in place of the published ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .limits import DEFAULT_MAGCACHE_THRESHOLD, MAX_MAGCACHE_RATIO

# Magnitude ratios published by the MagCache authors for FramePack at 25 steps (unipc, distilled guidance 10,
# 640 bucket), entry 0 a placeholder for the first step. Source: github.com/Zehong-Ma/MagCache,
# MagCache4FramePack/, function initialize_magcache():
# - F1: magcache_demo_gradio_f1.py at commit e14a899dc1b4774235fcbd21687905409766166e.
# - I2V_HY: magcache_demo_gradio.py, read from its verbatim copy in github.com/ruribe17/framepack-pe
#   (magcache_demo_gradio.py at commit a87189eb8b813295dd94895bf79ff30252cfb412), which loads
#   lllyasviel/FramePackI2V_HY; the same authors' F1 file differs only in the ratios and the model.
PUBLISHED_RATIOS: dict[str, tuple[float, ...]] = {
    "I2V_HY": (1.0, 1.26562, 1.23438, 1.03125, 1.02344, 1.03906, 1.01562, 1.03906, 1.05469, 1.02344, 1.03906,
               0.99609, 1.03125, 1.02344, 1.01562, 1.02344, 1.00781, 1.04688, 0.98828, 1.0, 1.00781, 0.98828,
               0.94141, 0.94141, 0.78906),
    "F1": (1.0, 1.25781, 1.08594, 1.02344, 1.00781, 1.02344, 1.00781, 1.02344, 1.05469, 0.99609, 1.03906,
           1.00781, 1.01562, 1.00781, 1.02344, 1.01562, 0.98047, 1.05469, 0.98047, 0.96875, 1.03125, 0.97266,
           0.9375, 0.96484, 0.78516),
}
# The authors' demo defaults (threshold slider limits.DEFAULT_MAGCACHE_THRESHOLD, K 3, retention 0.2).
DEFAULT_MAX_SKIPS = 3
DEFAULT_RETENTION_RATIO = 0.2
MAX_RATIO_DRIFT = 0.06  # a step whose own ratio moves more than this is always computed

RATIOS_FORMAT = "framepack-magcache-ratios"
MAX_RATIOS_FILE_BYTES = 64 * 1024
MAX_RATIOS = 101  # steps are at most 100, plus slack for hand-written files


def published_ratios(variant: str) -> tuple[float, ...]:
    try:
        return PUBLISHED_RATIOS[variant]
    except KeyError:
        raise InputError(f"no published MagCache ratios for {variant!r}; use one of "
                         f"{', '.join(PUBLISHED_RATIOS)} or a calibration file") from None


def nearest_interp(ratios, num_steps: int) -> np.ndarray:
    """Ratios calibrated for another step count, resampled to `num_steps` by nearest index (the authors' rule)."""
    src = np.asarray(ratios, dtype=np.float64)
    if num_steps == 1:
        return src[-1:]
    scale = (len(src) - 1) / (num_steps - 1)
    return src[np.round(np.arange(num_steps) * scale).astype(int)]


class MagCache:
    """The skip decision and the reused residual for one section and one guidance branch (see the module doc)."""

    needs_probe = False  # decides from the calibrated ratios alone, unlike TeaCache

    def __init__(self, num_steps: int, ratios, threshold: float = DEFAULT_MAGCACHE_THRESHOLD,
                 max_skips: int = DEFAULT_MAX_SKIPS, retention_ratio: float = DEFAULT_RETENTION_RATIO):
        self.num_steps = int(num_steps)
        self.ratios = nearest_interp(ratios, self.num_steps) if len(ratios) != self.num_steps else np.asarray(ratios, np.float64)
        self.threshold = float(threshold)
        self.max_skips = int(max_skips)
        self.first_cacheable = max(1, int(retention_ratio * self.num_steps))
        self.reset()

    def reset(self) -> None:
        self.step = 0
        self.residual: torch.Tensor | None = None
        self.computed_steps = 0
        self.skipped_steps = 0
        self._restart()

    def _restart(self) -> None:
        self.accumulated_ratio = 1.0
        self.accumulated_error = 0.0
        self.accumulated_steps = 0

    def should_compute(self, probe=None) -> bool:
        """Decides for the current step and advances the step counter (`probe` is unused)."""
        t = self.step
        skip = False
        if self.first_cacheable <= t < self.num_steps - 1 and self.threshold > 0 and self.residual is not None:
            ratio = float(self.ratios[t])
            self.accumulated_ratio *= ratio
            self.accumulated_error += abs(1.0 - self.accumulated_ratio)
            self.accumulated_steps += 1
            skip = (self.accumulated_error <= self.threshold and self.accumulated_steps <= self.max_skips
                    and abs(1.0 - ratio) <= MAX_RATIO_DRIFT)
        if not skip:
            self._restart()
        self.step = (self.step + 1) % self.num_steps
        if skip:
            self.skipped_steps += 1
        else:
            self.computed_steps += 1
        return not skip

    def store_residual(self, residual: torch.Tensor) -> None:
        self.residual = residual


class MagCacheCalibration:
    """Computes every step and records the residual magnitude ratios, mean over tokens of ||r_t|| / ||r_t-1||
    (the authors' calibration statistic), for one section and one branch."""

    needs_probe = False

    def __init__(self, num_steps: int):
        self.num_steps = int(num_steps)
        self.residual: torch.Tensor | None = None
        self.ratios: list[float] = [1.0]
        self.computed_steps = 0
        self.skipped_steps = 0

    def should_compute(self, probe=None) -> bool:
        self.computed_steps += 1
        return True

    def store_residual(self, residual: torch.Tensor) -> None:
        if self.residual is not None and len(self.ratios) < self.num_steps:
            ratio = residual.float().norm(dim=-1) / self.residual.float().norm(dim=-1)
            self.ratios.append(round(float(ratio.mean()), 5))
        self.residual = residual


def average_ratios(per_section: list[list[float]]) -> list[float]:
    """One ratio per step from several sections' recordings (only complete ones count)."""
    complete = [r for r in per_section if r and len(r) == len(per_section[0])]
    if not complete:
        raise InputError("the calibration run recorded no complete section; run at least one section to the end")
    return [round(float(v), 5) for v in np.mean(np.asarray(complete, dtype=np.float64), axis=0)]


# -- calibration files ---------------------------------------------------------------------------------------

def ratios_to_json(ratios: list[float], sections: list[list[float]], **about) -> str:
    """The calibration file: the averaged ratios the sampler uses, each section's own, and what the run was."""
    return json.dumps({"format": RATIOS_FORMAT, "version": 1, "steps": len(ratios), "ratios": list(ratios),
                       "sections": [list(s) for s in sections], **about}, indent=1)


def ratios_from_json(text: str, label: str = "calibration file") -> list[float]:
    """Validated ratios from a calibration file's text: JSON only, a bounded list of positive finite numbers."""
    if len(text) > MAX_RATIOS_FILE_BYTES:
        raise InputError(f"{label} is larger than {MAX_RATIOS_FILE_BYTES // 1024} KiB; it is not a MagCache "
                         "calibration file")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise InputError(f"{label} is not valid JSON ({err}); make it again with cache = magcache_calibrate") from None
    if not isinstance(data, dict) or data.get("format") != RATIOS_FORMAT:
        raise InputError(f"{label} is not a FramePack MagCache calibration (no \"format\": \"{RATIOS_FORMAT}\")")
    ratios = data.get("ratios")
    if not isinstance(ratios, list) or not 2 <= len(ratios) <= MAX_RATIOS:
        raise InputError(f"{label}: \"ratios\" must be a list of 2-{MAX_RATIOS} numbers, one per step")
    values = []
    for i, value in enumerate(ratios):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0.0 < value < MAX_MAGCACHE_RATIO:
            raise InputError(f"{label}: ratio {i} ({value!r}) must be a number between 0 and {MAX_MAGCACHE_RATIO:g}")
        values.append(float(value))
    values[0] = 1.0  # the first step has no previous residual; its entry is a placeholder
    return values


def read_ratios_file(path: str | Path) -> list[float]:
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise InputError(f"{path.name}: MagCache calibration files are .json")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_RATIOS_FILE_BYTES + 1)
    except OSError as err:
        raise InputError(f"MagCache calibration file {path.name} cannot be read ({err.strerror})") from None
    if len(raw) > MAX_RATIOS_FILE_BYTES:
        raise InputError(f"{path.name} is larger than {MAX_RATIOS_FILE_BYTES // 1024} KiB; it is not a MagCache "
                         "calibration file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path.name} is not UTF-8 text; it is not a MagCache calibration file") from None
    return ratios_from_json(text, path.name)


def confined_path(folder: str | Path, name: str) -> Path:
    """`name` inside `folder` (a .json file name or a relative path without '..'); anything that would resolve
    outside the folder, symlinks included, is refused."""
    root = Path(folder).resolve()
    relative = Path(name)
    if not name or relative.is_absolute() or ".." in relative.parts or relative.suffix.lower() != ".json":
        raise InputError(f"MagCache calibration file {name!r} must be a .json name inside {root}")
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise InputError(f"MagCache calibration file {name!r} resolves outside {root}")
    return path
