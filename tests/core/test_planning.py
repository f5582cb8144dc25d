"""Section planning: exact frame counts, balanced windows, the original padding schedule, prompt weights."""

import math

import pytest

from framepack_core import InputError
from framepack_core.planning import (frames_for_latents, keyframe_latent_index, kept_frame_indices,
                                     latent_index_for_frame, latents_for_frames, padding_schedule, plan_video,
                                     prompt_weights)

LENGTHS = [30, 31, 33, 97, 180, 240, 1800]


def simulate(num_frames, window):
    """Independent brute force: grow sections of at most `window` latents until the frames cover the request."""
    sections = 0
    while frames_for_latents(1 + sections * window) < num_frames:
        sections += 1
    latents = next(n for n in range(1, 10_000) if frames_for_latents(n) >= num_frames)
    return sections, latents


@pytest.mark.parametrize("mode", ["inverted", "forward"])
@pytest.mark.parametrize("num_frames", LENGTHS)
def test_exact_length_and_section_counts(num_frames, mode):
    plan = plan_video(num_frames, mode)
    sections, latents = simulate(num_frames, 9)
    assert len(plan.sections) == sections
    assert plan.total_latents == latents
    assert plan.output_frames == num_frames == len(kept_frame_indices(plan))
    assert 0 <= plan.generated_frames - num_frames <= 3
    windows = [s.num_latents for s in plan.sections_in_time_order]
    assert sum(windows) == latents - 1
    assert max(windows) - min(windows) <= 1 and max(windows) <= 9
    assert windows == sorted(windows, reverse=True)  # the larger windows come first in time
    # sections tile the latent sequence after the start latent, in time order
    starts = [s.latent_start for s in plan.sections_in_time_order]
    assert starts == [1 + sum(windows[:i]) for i in range(len(windows))]


def test_known_figures():
    """Figures worked out by hand from the rule."""
    assert [len(plan_video(n).sections) for n in LENGTHS] == [1, 1, 1, 3, 5, 7, 50]
    plan = plan_video(1800)
    assert plan.total_latents == 451 and plan.generated_frames == 1801 and plan.dropped_frames == (900,)
    plan = plan_video(30)
    assert plan.total_latents == 9 and plan.generated_frames == 33 and plan.dropped_frames == (8, 16, 24)
    assert [s.num_latents for s in plan_video(240).sections_in_time_order] == [9, 9, 9, 9, 8, 8, 8]
    assert plan_video(33).dropped_frames == () and plan_video(31).dropped_frames == (11, 21)


@pytest.mark.parametrize("num_frames", LENGTHS)
def test_dropped_frames_are_interior_and_evenly_spaced(num_frames):
    plan = plan_video(num_frames)
    f, dropped = plan.generated_frames, plan.dropped_frames
    assert all(0 < d < f - 1 for d in dropped)
    assert len(set(dropped)) == len(dropped)
    if len(dropped) > 1:
        gaps = [b - a for a, b in zip((0, *dropped), (*dropped, f - 1))]
        assert max(gaps) - min(gaps) <= 1


@pytest.mark.parametrize("n", range(1, 8))
def test_padding_schedule_is_the_originals(n):
    expected = [3] + [2] * (n - 3) + [1, 0] if n > 4 else list(reversed(range(n)))
    assert padding_schedule(n) == expected
    plan = plan_video(frames_for_latents(1 + 9 * n), "inverted")
    assert [s.padding for s in plan.sections] == expected
    assert plan.sections[0].is_video_end and plan.sections[-1].is_next_to_start


def test_sampling_order_per_mode():
    inv, fwd = plan_video(180, "inverted"), plan_video(180, "forward")
    assert [s.time_index for s in inv.sections] == [4, 3, 2, 1, 0]
    assert [s.time_index for s in fwd.sections] == [0, 1, 2, 3, 4]
    assert all(s.padding == 0 for s in fwd.sections)
    assert fwd.sections[-1].is_video_end and fwd.sections[0].is_next_to_start


@pytest.mark.parametrize("bad", [29, 1801, 30.5, "30", True, None])
def test_num_frames_validation(bad):
    with pytest.raises(InputError, match="num_frames"):
        plan_video(bad)


def test_other_validation():
    with pytest.raises(InputError, match="mode"):
        plan_video(60, "sideways")
    with pytest.raises(InputError, match="window"):
        plan_video(60, window=0)


def test_frame_latent_helpers():
    assert [frames_for_latents(n) for n in (1, 2, 10)] == [1, 5, 37]
    assert [latents_for_frames(f) for f in (1, 5, 6, 37)] == [1, 2, 3, 10]
    assert [latent_index_for_frame(f) for f in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]


def test_summary_is_json_friendly():
    import json
    s = plan_video(240, "forward").summary()
    assert json.loads(json.dumps(s)) == s
    assert s["frames"] == 240 and s["sections"] == 7 and "240 frames" in s["description"]


def test_prompt_weights_blend_across_changes():
    plan = plan_video(180, "forward")  # 5 sections of 1.2 s
    weights = prompt_weights(plan, [0.0, 2.5])
    for row in weights:
        assert math.isclose(sum(row), 1.0)
    by_time = {s.time_index: w for s, w in zip(plan.sections, weights)}
    assert by_time[0] == [1.0, 0.0] and by_time[4] == [0.0, 1.0]
    straddling = [w for s, w in zip(plan.sections, weights) if s.time_range()[0] < 2.5 < s.time_range()[1]]
    assert len(straddling) == 1 and 0 < straddling[0][1] < 1
    # caller's order is kept even when the starts are unsorted
    swapped = prompt_weights(plan, [2.5, 0.0])
    assert [list(reversed(r)) for r in swapped] == weights
    with pytest.raises(InputError):
        prompt_weights(plan, [-1.0])


def test_keyframe_latent_index_clamps():
    plan = plan_video(97)
    assert keyframe_latent_index(plan, 0.0) == 1
    assert keyframe_latent_index(plan, 1.0) == latent_index_for_frame(30)
    assert keyframe_latent_index(plan, 99.0) == plan.total_latents - 1
