"""MagCache: the published decision rule on scripted ratios, the published FramePack ratios, calibration runs and
calibration files (JSON only, bounded, confined to a folder)."""

import json

import numpy as np
import pytest
import torch

from framepack_core import TINY, InputError
from framepack_core.conditioning import ImageConditioning, TextConditioning
from framepack_core.generate import GenerationRequest, generate_video
from framepack_core.magcache import (MAX_RATIOS_FILE_BYTES, PUBLISHED_RATIOS, MagCache, MagCacheCalibration,
                                     average_ratios,
                                     confined_path, nearest_interp, ratios_from_json, ratios_to_json,
                                     read_ratios_file)
from framepack_dev.random_weights import random_model


def published_rule(ratios, num_steps, threshold, k, retention):
    """The skip decisions of the authors' FramePack demos (magcache_framepack_forward), written out independently
    of the module: counter cnt over one section's calls, accumulators reset at cnt == 0 and on every compute."""
    decisions = []
    acc_ratio, acc_steps, acc_err = 1.0, 0, 0.0
    for cnt in range(num_steps):
        if cnt == 0:
            acc_ratio, acc_steps, acc_err = 1.0, 0, 0.0
        skip = False
        if cnt >= int(retention * num_steps) and cnt >= 1:
            cur = ratios[cnt]
            acc_ratio = acc_ratio * cur
            acc_err += np.abs(1 - acc_ratio)
            acc_steps += 1
            if acc_err <= threshold and acc_steps <= k and np.abs(1 - cur) <= 0.06:
                skip = True
            else:
                acc_ratio, acc_steps, acc_err = 1.0, 0, 0.0
        decisions.append(not skip)  # True = computed
    return decisions


def run_decisions(cache: MagCache, steps: int) -> list[bool]:
    out = []
    for _ in range(steps):
        computed = cache.should_compute()
        if computed:
            cache.store_residual(torch.zeros(1))
        out.append(computed)
    return out


SCRIPTED = [1.0, 1.3, 1.1, 1.01, 0.99, 1.02, 1.0, 1.005, 1.07, 1.01, 0.98, 1.0, 1.03, 1.01, 0.995, 1.02, 1.04,
            0.97, 1.0, 1.01, 0.99, 0.96, 0.95, 0.93, 0.8]


@pytest.mark.parametrize("threshold,k,retention", [(0.1, 3, 0.2), (0.05, 2, 0.25), (0.3, 5, 0.0), (0.02, 1, 0.5)])
def test_decisions_follow_the_published_rule_on_scripted_ratios(threshold, k, retention):
    steps = len(SCRIPTED)
    cache = MagCache(steps, SCRIPTED, threshold, max_skips=k, retention_ratio=retention)
    ours = run_decisions(cache, steps)
    expected = published_rule(SCRIPTED, steps, threshold, k, retention)
    expected[-1] = True  # our one addition: the last step of a section is always computed
    assert ours == expected
    assert ours[0] and ours[-1]
    assert not any(ours) or cache.computed_steps + cache.skipped_steps == steps
    # retention: no skip before int(retention * steps)
    assert all(ours[: max(1, int(retention * steps))])
    # never more than k skips in a row
    run = longest = 0
    for computed in ours:
        run = 0 if computed else run + 1
        longest = max(longest, run)
    assert longest <= k
    if threshold >= 0.05:
        assert cache.skipped_steps > 0  # the script has calm stretches: the rule does skip


def test_published_ratios_give_the_published_decisions_and_reset_per_section():
    for variant, ratios in PUBLISHED_RATIOS.items():
        assert len(ratios) == 25 and ratios[0] == 1.0
        cache = MagCache(25, ratios)  # defaults: the demos' threshold 0.1, K 3, retention 0.2
        two_sections = run_decisions(cache, 25) + run_decisions(cache, 25)  # the counter wraps after 25 calls
        expected = published_rule(ratios, 25, 0.1, 3, 0.2)
        assert two_sections == expected + expected, variant
        assert expected[-1]  # the published last ratio (~0.79) is always a compute, with or without our rule
        assert 5 <= expected.count(False) <= 15, variant  # the authors report ~2.2-2.5x fewer forward passes


def test_first_and_last_steps_are_computed_where_the_bare_rule_would_skip_them():
    ratios = [1.0] + [1.001] * 9
    bare = published_rule(ratios, 10, 0.5, 5, 0.0)
    assert not bare[-1]  # calm ratios up to the end: the demos' rule skips the last step
    ours = run_decisions(MagCache(10, ratios, 0.5, max_skips=5, retention_ratio=0.0), 10)
    assert ours == bare[:-1] + [True]
    assert ours[0] and ours.count(False) >= 5


def test_threshold_zero_never_skips_even_on_a_ratio_of_exactly_one():
    ratios = [1.0] * 25
    assert run_decisions(MagCache(25, ratios, 0.0), 25) == [True] * 25
    assert published_rule(ratios, 25, 0.0, 3, 0.2).count(False) > 0  # the bare rule would skip here


def test_ratios_for_other_step_counts_are_resampled_by_nearest_index():
    ratios = PUBLISHED_RATIOS["F1"]
    assert list(nearest_interp(ratios, 25)) == list(ratios)
    resampled = nearest_interp(ratios, 13)
    assert len(resampled) == 13 and resampled[0] == 1.0 and resampled[-1] == ratios[-1]
    assert list(resampled) == [ratios[round(i * 2)] for i in range(13)]
    assert len(MagCache(50, ratios).ratios) == 50
    assert list(nearest_interp(ratios, 1)) == [ratios[-1]]  # one step: the last calibrated ratio
    assert list(nearest_interp(ratios, 2)) == [ratios[0], ratios[-1]]


# -- on the model ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    return random_model(TINY, std=0.05)


def _request(**kw):
    g = torch.Generator().manual_seed(1)
    start = ImageConditioning(torch.randn(1, 16, 1, 8, 8, generator=g), torch.randn(1, 6, TINY.image_proj_dim, generator=g))
    text = TextConditioning(torch.randn(1, 5, TINY.text_embed_dim, generator=g), torch.randn(1, 16, generator=g))
    base = dict(start=start, prompts=[(0.0, text)], num_frames=40, steps=10, seed=3, window=4)
    return GenerationRequest(**{**base, **kw})


def test_threshold_zero_is_the_uncached_result_bit_for_bit(model):
    plain = generate_video(model, _request(cache="none"))
    zero = generate_video(model, _request(cache="magcache", magcache_threshold=0.0, magcache_ratios=(1.0,) * 10))
    assert torch.equal(zero.latents, plain.latents)
    assert zero.stats["magcache_skipped"] == 0


def test_magcache_skips_the_scheduled_steps_in_every_section(model):
    ratios = (1.0, 1.2) + (1.001,) * 7 + (0.8,)
    result = generate_video(model, _request(cache="magcache", magcache_threshold=0.5, magcache_ratios=ratios,
                                            cfg_scale=2.0))
    plain = generate_video(model, _request(cache="none", cfg_scale=2.0))
    expected = published_rule(list(ratios), 10, 0.5, 3, 0.2)
    per_branch = expected.count(False)
    sections = result.stats["sections"]
    assert len(sections) >= 3
    # both guidance branches of every section skip exactly the published rule's steps: state is reset per section
    assert all(s["skipped"] == 2 * per_branch and s["computed"] == 2 * (10 - per_branch) for s in sections)
    assert result.stats["magcache_skipped"] == 2 * per_branch * len(sections)
    assert not torch.equal(result.latents, plain.latents)
    assert torch.isfinite(result.latents).all()


def test_calibration_records_one_ratio_per_step_and_the_sampler_takes_the_file(model, tmp_path):
    result = generate_video(model, _request(cache="magcache_calibrate"))
    calibration = result.stats["magcache_calibration"]
    sections = calibration["sections"]
    assert len(sections) == len(result.stats["sections"]) and all(len(s) == 10 for s in sections)
    assert all(s[0] == 1.0 and all(0 < r < 10 for r in s) for s in sections)
    assert calibration["ratios"] == pytest.approx(np.mean(np.asarray(sections), axis=0).tolist(), abs=1e-5)
    assert result.stats["magcache_skipped"] == 0
    # a calibration run computes every step: it is the uncached result
    assert torch.equal(result.latents, generate_video(model, _request(cache="none")).latents)
    path = tmp_path / "mine.json"
    path.write_text(ratios_to_json(calibration["ratios"], sections, model="tiny", steps_run=10))
    ratios = read_ratios_file(path)
    assert ratios == calibration["ratios"]
    cached = generate_video(model, _request(cache="magcache", magcache_threshold=0.3, magcache_ratios=tuple(ratios)))
    assert torch.isfinite(cached.latents).all()


def test_calibration_ratio_is_the_mean_token_norm_ratio():
    cal = MagCacheCalibration(3)
    first = torch.tensor([[[3.0, 4.0], [0.0, 1.0]]])  # token norms 5, 1
    second = torch.tensor([[[6.0, 8.0], [0.0, 3.0]]])  # token norms 10, 3
    for r in (first, second):
        assert cal.should_compute()
        cal.store_residual(r)
    assert cal.ratios == [1.0, 2.5]  # mean(10/5, 3/1)


# -- calibration files -----------------------------------------------------------------------------------------

def _file_text(ratios):
    return json.dumps({"format": "framepack-magcache-ratios", "ratios": ratios})


@pytest.mark.parametrize("text,problem", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "not a FramePack MagCache"),
    (json.dumps({"format": "other", "ratios": [1, 1]}), "not a FramePack MagCache"),
    (_file_text([1.0]), "list of 2-101"),
    (_file_text([1.0] * 102), "list of 2-101"),
    (_file_text([1.0, "1.1"]), "ratio 1"),
    (_file_text([1.0, True]), "ratio 1"),
    (_file_text([1.0, -0.5]), "ratio 1"),
    (_file_text([1.0, 1e300 * 1e10]), "ratio 1"),
    ("[" * 100_000 + "]" * 100_000, "larger than"),
])
def test_bad_calibration_files_are_refused_with_the_reason(text, problem):
    with pytest.raises(InputError, match=problem):
        ratios_from_json(text)


def test_calibration_file_size_is_checked_before_parsing(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(" " * (MAX_RATIOS_FILE_BYTES + 1) + _file_text([1.0, 1.0]))
    with pytest.raises(InputError, match="larger than"):
        read_ratios_file(path)
    (tmp_path / "ratios.txt").write_text(_file_text([1.0, 1.0]))
    with pytest.raises(InputError, match=".json"):
        read_ratios_file(tmp_path / "ratios.txt")
    assert read_ratios_file(_write(tmp_path / "ok.json", [7.0, 1.5])) == [1.0, 1.5]  # entry 0 is a placeholder


def _write(path, ratios):
    path.write_text(_file_text(ratios))
    return path


def test_calibration_averages_only_complete_sections_and_writes_format_version_1():
    # an interrupted section (fewer steps) is left out of the average
    assert average_ratios([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0], [9.0]]) == [2.0, 3.0, 4.0]
    with pytest.raises(InputError, match="no complete section"):
        average_ratios([[]])
    data = json.loads(ratios_to_json([1.0, 0.9], [[1.0, 0.9]], model="m"))
    assert data["version"] == 1 and data["steps"] == 2 and data["ratios"] == [1.0, 0.9] and data["model"] == "m"
    assert data["sections"] == [[1.0, 0.9]]


def test_calibration_paths_stay_inside_their_folder(tmp_path):
    folder = tmp_path / "magcache"
    folder.mkdir()
    assert confined_path(folder, "a.json") == (folder / "a.json").resolve()
    assert confined_path(folder, "sub/b.json") == (folder / "sub" / "b.json").resolve()
    outside = tmp_path / "secret.json"
    _write(outside, [1.0, 1.0])
    (folder / "link.json").symlink_to(outside)
    for name in ("../secret.json", str(outside), "a.txt", "", "sub/../../secret.json", "sub/../a.json"):
        with pytest.raises(InputError, match="must be a .json name inside"):  # refused from the name alone
            confined_path(folder, name)
    with pytest.raises(InputError, match="'link.json' resolves outside"):
        confined_path(folder, "link.json")


def _ratios_text(ratios) -> str:
    return json.dumps({"format": "framepack-magcache-ratios", "ratios": ratios})


def test_ratio_bounds_are_exclusive_and_the_count_inclusive():
    """Both edges (found by the mutation run): 0 and 10 are refused, values just inside accepted; 2 and 101 ratios
    (MAX_RATIOS, written out here) accepted, 1 and 102 refused."""
    assert ratios_from_json(_ratios_text([1.0, 1e-9, 9.999])) == [1.0, 1e-9, 9.999]
    for bad in (0.0, 10.0):
        with pytest.raises(InputError, match=r"ratio 1 \(.*\) must be a number between 0 and 10"):
            ratios_from_json(_ratios_text([1.0, bad]))
    assert len(ratios_from_json(_ratios_text([1.0] * 101))) == 101
    assert len(ratios_from_json(_ratios_text([1.0, 1.0]))) == 2
    for count in (1, 102):
        with pytest.raises(InputError, match="must be a list of 2-101 numbers"):
            ratios_from_json(_ratios_text([1.0] * count))
