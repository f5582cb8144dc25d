"""The step cache of a generation: TeaCache, MagCache, a MagCache calibration run, EasyCache, or none.

A step cache decides per denoising step whether the transformer runs or a cached result is reused
(FramePackTransformer.forward's `cache`): TeaCache and MagCache skip the block stack and reuse its last residual,
EasyCache skips the whole model and reuses its last transformation. Each section and each guidance branch gets a
fresh one.
"""

from __future__ import annotations

from .easycache import EasyCache
from .errors import InputError
from .limits import (CACHE_CHOICES, DEFAULT_EASYCACHE_THRESHOLD, DEFAULT_MAGCACHE_THRESHOLD,
                     DEFAULT_TEACACHE_THRESHOLD, MAX_EASYCACHE_THRESHOLD, MAX_MAGCACHE_RATIO,
                     VARIANT_MODES)
from .magcache import MagCache, MagCacheCalibration, average_ratios, published_ratios
from .teacache import TeaCache

__all__ = ["CACHE_CHOICES", "validate_cache", "new_step_cache", "stats_kind", "section_stats", "calibration_of",
           "calibration_summary"]
# without explicit ratios MagCache uses the published ones of the model that samples in the request's mode
_VARIANT_OF_MODE = {mode: variant for variant, mode in VARIANT_MODES.items()}


def validate_cache(cache: str, teacache_threshold: float, magcache_threshold: float, magcache_ratios,
                   easycache_threshold: float = DEFAULT_EASYCACHE_THRESHOLD) -> None:
    if cache not in CACHE_CHOICES:
        raise InputError(f"cache {cache!r} must be one of {', '.join(CACHE_CHOICES)}")
    if teacache_threshold < 0:
        raise InputError(f"teacache threshold must be >= 0 (0 = off; {DEFAULT_TEACACHE_THRESHOLD} is the original's "
                         "setting)")
    if not 0 <= magcache_threshold <= 1:
        raise InputError(f"magcache threshold {magcache_threshold} must be between 0 (off) and 1 "
                         f"({DEFAULT_MAGCACHE_THRESHOLD} is the authors' setting)")
    if magcache_ratios is not None and (len(magcache_ratios) < 2
                                        or any(not 0 < r < MAX_MAGCACHE_RATIO for r in magcache_ratios)):
        raise InputError(f"magcache ratios must be at least 2 numbers between 0 and {MAX_MAGCACHE_RATIO:g}, one per "
                         "step")
    if not 0 <= easycache_threshold <= MAX_EASYCACHE_THRESHOLD:
        raise InputError(f"easycache threshold {easycache_threshold} must be between 0 (off) and "
                         f"{MAX_EASYCACHE_THRESHOLD:g} ({DEFAULT_EASYCACHE_THRESHOLD} is the authors' setting for "
                         "HunyuanVideo)")


def new_step_cache(request):
    """A fresh cache for one section and one branch of `request` (a GenerationRequest), or None for no cache."""
    if request.cache == "teacache" and request.teacache_threshold > 0:
        return TeaCache(request.steps, request.teacache_threshold)
    if request.cache == "magcache" and request.magcache_threshold > 0:
        ratios = request.magcache_ratios or published_ratios(_VARIANT_OF_MODE[request.mode])
        return MagCache(request.steps, ratios, request.magcache_threshold)
    if request.cache == "magcache_calibrate":
        return MagCacheCalibration(request.steps)
    if request.cache == "easycache":
        # also at threshold 0, where it computes every step: the run reports its computed steps
        return EasyCache(request.steps, request.easycache_threshold)
    return None


def stats_kind(cache: str) -> str:
    """The prefix of a generation's computed/skipped counters for a cache choice (none counts as teacache: 0)."""
    if cache.startswith("magcache"):
        return "magcache"
    return "easycache" if cache == "easycache" else "teacache"


def section_stats(caches: dict) -> dict:
    """Computed/skipped steps of one section over its branches ({} without a cache)."""
    active = [c for c in caches.values() if c is not None]
    if not active:
        return {}
    return {"computed": sum(c.computed_steps for c in active), "skipped": sum(c.skipped_steps for c in active)}


def calibration_of(caches: dict) -> list[float] | None:
    """The positive branch's recorded ratios of a calibration section (the branch the sampler always runs)."""
    cache = caches.get("positive")
    return list(cache.ratios) if isinstance(cache, MagCacheCalibration) else None


def calibration_summary(per_section: list[list[float]]) -> dict:
    return {"ratios": average_ratios(per_section), "sections": per_section}
