"""Section planning: exact frame counts, balanced windows, the original padding schedule, drops, prompt weights.

Expected values come from an independent brute-force simulation (latents added one at a time, windows dealt
round-robin, frames owned by latents listed explicitly) or were worked out by hand from the rule."""

import json
import math
from fractions import Fraction
from itertools import combinations

import pytest

from framepack_core import InputError
from framepack_core.planning import (MAX_FRAMES, MIN_FRAMES, frames_for_latents, keyframe_latent_index,
                                     kept_frame_indices, latent_index_for_frame, latents_for_frames,
                                     output_frame_to_generated, padding_schedule, plan_video, prompt_weights)

LENGTHS = [30, 31, 33, 97, 180, 240, 1800]


def frame_owners(total_latents):
    """Generated frame -> the latent it decodes from: latent 0 gives 1 frame, every later latent 4."""
    return [0] + [i for i in range(1, total_latents) for _ in range(4)]


def simulate(num_frames, window, mode):
    """Brute force, sharing no code with planning.py: a list of per-section dicts in sampling order."""
    latents = 1
    while len(frame_owners(latents)) < num_frames:
        latents += 1
    generated = latents - 1
    n = 1
    while n * window < generated:
        n += 1
    windows = [0] * n
    for i in range(generated):  # deal the latents round-robin: sizes differ by <= 1, larger ones first
        windows[i % n] += 1
    owners = frame_owners(latents)
    sections, start = [], 1
    for t, w in enumerate(windows):
        own = [f for f, lat in enumerate(owners) if start <= lat < start + w or (t == 0 and lat == 0)]
        sections.append(dict(time_index=t, latent_start=start, num_latents=w, frame_start=own[0],
                             frame_end=own[-1] + 1, is_video_end=t == n - 1, is_next_to_start=t == 0))
        start += w
    return list(reversed(sections)) if mode == "inverted" else sections, latents


@pytest.mark.parametrize("mode", ["inverted", "forward"])
@pytest.mark.parametrize("num_frames", LENGTHS)
def test_sections_match_brute_force(num_frames, mode):
    plan = plan_video(num_frames, mode)
    expected, latents = simulate(num_frames, 9, mode)
    assert plan.total_latents == latents
    assert len(plan.sections) == len(expected)
    for i, (got, want) in enumerate(zip(plan.sections, expected)):
        assert got.sampling_index == i
        assert {k: getattr(got, k) for k in want} == want
        assert got.latent_end == got.latent_start + got.num_latents
    assert plan.output_frames == num_frames == len(kept_frame_indices(plan))
    assert plan.generated_frames == len(frame_owners(latents))


@pytest.mark.parametrize("mode", ["inverted", "forward"])
@pytest.mark.parametrize("num_frames", LENGTHS)
def test_final_video_has_exact_length_and_keeps_both_ends(num_frames, mode):
    plan = plan_video(num_frames, mode)
    video = list(range(plan.generated_frames))  # frame labels in generated numbering
    final = [f for f in video if f not in plan.dropped_frames]
    assert len(final) == num_frames
    assert final[0] == 0 and final[-1] == video[-1]  # start image first, true last frame last


def test_known_figures():
    """Worked out by hand: L = ceil((N+3)/4), G = L-1, n = ceil(G/9), F = 4L-3, e = F-N."""
    assert [len(plan_video(n).sections) for n in LENGTHS] == [1, 1, 1, 3, 5, 7, 50]
    plan = plan_video(1800)  # L 451, F 1801, one drop in the middle of 0..1800
    assert (plan.total_latents, plan.generated_frames, plan.dropped_frames) == (451, 1801, (900,))
    plan = plan_video(30)  # L 9, F 33, three drops splitting 0..32 into quarters
    assert (plan.total_latents, plan.generated_frames, plan.dropped_frames) == (9, 33, (8, 16, 24))
    assert plan_video(31).dropped_frames == (11, 21)  # 32/3 = 10.67, 64/3 = 21.33
    assert plan_video(33).dropped_frames == () and plan_video(97).dropped_frames == ()
    assert plan_video(46).dropped_frames == (12, 24, 36)  # L 13, F 49
    assert [s.num_latents for s in plan_video(240).sections_in_time_order] == [9, 9, 9, 9, 8, 8, 8]  # G 60
    assert [s.num_latents for s in plan_video(97).sections_in_time_order] == [8, 8, 8]  # G 24
    assert plan_video(37).dropped_frames == () and len(plan_video(38).sections) == 2  # 38 frames need an 11th latent
    assert [s.num_latents for s in plan_video(38).sections_in_time_order] == [5, 5]


@pytest.mark.parametrize("mode", ["inverted", "forward"])
def test_every_length_and_several_windows(mode):
    """Invariants over the whole valid range (cheap: pure arithmetic)."""
    for window in (9, 1, 4, 33):
        for num_frames in range(MIN_FRAMES, MAX_FRAMES + 1, 1 if window == 9 else 37):
            plan = plan_video(num_frames, mode, window)
            windows = [s.num_latents for s in plan.sections_in_time_order]
            assert plan.output_frames == num_frames
            assert 0 <= plan.generated_frames - num_frames <= 3
            assert max(windows) <= window and max(windows) - min(windows) <= 1
            assert windows == sorted(windows, reverse=True)
            assert len(windows) == math.ceil((plan.total_latents - 1) / window)
            assert all(0 < d < plan.generated_frames - 1 for d in plan.dropped_frames)


@pytest.mark.parametrize("num_frames", LENGTHS + [46, 34, 35])
def test_dropped_frames_are_interior_and_evenly_spaced(num_frames):
    plan = plan_video(num_frames)
    f, dropped = plan.generated_frames, plan.dropped_frames
    e = f - num_frames
    assert len(dropped) == len(set(dropped)) == e
    assert all(0 < d < f - 1 for d in dropped) and list(dropped) == sorted(dropped)
    gaps = [b - a for a, b in zip((0, *dropped), (*dropped, f - 1))]
    assert max(gaps) - min(gaps) <= 1
    for k, d in enumerate(dropped):  # the documented formula, in exact arithmetic
        assert abs(d - Fraction((k + 1) * (f - 1), e + 1)) < Fraction(1, 2)


def test_drops_are_as_even_as_possible():
    """On a short video, no other choice of interior positions has more even gaps."""
    for num_frames in (30, 31, 32):
        plan = plan_video(num_frames)
        f, e = plan.generated_frames, plan.generated_frames - num_frames

        def spread(positions):
            gaps = [b - a for a, b in zip((0, *positions), (*positions, f - 1))]
            return max(gaps) - min(gaps)

        best = min(spread(c) for c in combinations(range(1, f - 1), e))
        assert spread(plan.dropped_frames) == best


@pytest.mark.parametrize("n,expected", [
    (1, [0]), (2, [1, 0]), (3, [2, 1, 0]), (4, [3, 2, 1, 0]), (5, [3, 2, 2, 1, 0]), (6, [3, 2, 2, 2, 1, 0]),
])
def test_padding_schedule_is_the_originals(n, expected):
    assert padding_schedule(n) == expected
    plan = plan_video(frames_for_latents(1 + 9 * n), "inverted")
    assert len(plan.sections) == n
    assert [s.padding for s in plan.sections] == expected
    assert plan.sections[0].is_video_end and plan.sections[-1].is_next_to_start
    assert [s for s in plan.sections if s.padding == 0] == [plan.sections[-1]]  # padding 0: next to the start
    forward = plan_video(frames_for_latents(1 + 9 * n), "forward")
    assert [s.padding for s in forward.sections] == [0] * n


def test_sampling_order_per_mode():
    inv, fwd = plan_video(180, "inverted"), plan_video(180, "forward")
    assert [s.time_index for s in inv.sections] == [4, 3, 2, 1, 0]
    assert [s.time_index for s in fwd.sections] == [0, 1, 2, 3, 4]
    assert fwd.sections[-1].is_video_end and fwd.sections[0].is_next_to_start
    assert inv.sections_in_time_order == tuple(reversed(inv.sections))


@pytest.mark.parametrize("bad", [29, 1801, 0, -5, 30.0, 30.5, "30", True, None])
def test_num_frames_validation(bad):
    with pytest.raises(InputError, match=r"num_frames.*30.*1800"):
        plan_video(bad)


def test_other_validation():
    with pytest.raises(InputError, match="mode.*inverted.*forward"):
        plan_video(60, "sideways")
    for window in (0, 34, 9.0, True):
        with pytest.raises(InputError, match="window"):
            plan_video(60, window=window)
    with pytest.raises(InputError, match="fps"):
        plan_video(60, fps=0)


def test_frame_latent_helpers_match_the_owner_list():
    owners = frame_owners(40)
    assert [latent_index_for_frame(f) for f in range(len(owners))] == owners
    for n in range(1, 40):
        assert frames_for_latents(n) == len(frame_owners(n))
    for f in range(1, 150):
        assert latents_for_frames(f) == min(n for n in range(1, 60) if len(frame_owners(n)) >= f)
    with pytest.raises(ValueError):
        frames_for_latents(0)


@pytest.mark.parametrize("num_frames", [30, 31, 180, 1800])
def test_output_to_generated_mapping(num_frames):
    plan = plan_video(num_frames)
    kept = kept_frame_indices(plan)
    assert [output_frame_to_generated(plan, j) for j in range(num_frames)] == kept
    assert not set(kept) & set(plan.dropped_frames)
    for bad in (-1, num_frames):
        with pytest.raises(ValueError):
            output_frame_to_generated(plan, bad)


def test_summary_is_json_friendly_and_complete():
    plan = plan_video(240, "inverted")
    s = plan.summary()
    assert json.loads(json.dumps(s)) == s
    assert s["frames"] == 240 and s["sections"] == 7 and s["mode"] == "inverted"
    assert s["windows"] == [9, 9, 9, 9, 8, 8, 8] and s["paddings"] == [3, 2, 2, 2, 2, 1, 0]
    assert s["dropped"] == [120] and s["total_latents"] == 61 and s["generated_frames"] == 241
    assert s["section_times_s"][0][0] == 0 and s["section_times_s"][-1][1] == round(241 / 30, 3)
    assert "240 frames" in s["description"] and "7 sections" in s["description"]
    assert "end to start" in s["description"] and "1 interior frame" in s["description"]
    assert "dropped" not in plan_video(97, "forward").summary()["description"]


def test_summary_description_in_words():
    assert plan_video(240, "inverted").summary()["description"] == (
        "240 frames (8.00 s at 30 fps) in 7 sections of 9/8 latents, sampled end to start; 1 interior frame(s) "
        "dropped for the exact length")
    assert plan_video(97, "forward").summary()["description"] == (
        "97 frames (3.23 s at 30 fps) in 3 sections of 8 latents, sampled start to end")
    assert "in 1 section of 8 latents" in plan_video(30, "forward").summary()["description"]
    assert "in 2 sections of 6 latents" in plan_video(46, "inverted").summary()["description"]


def test_prompt_weights_blend_across_changes():
    plan = plan_video(180, "forward")  # 5 sections of 9 latents: frames [0,37), [37,73), [73,109), ...
    weights = prompt_weights(plan, [0.0, 2.5])
    for row in weights:
        assert math.isclose(sum(row), 1.0)
    assert weights[0] == [1.0, 0.0] and weights[1] == [1.0, 0.0] and weights[4] == [0.0, 1.0]
    # section 2 spans [73/30, 109/30) s; prompt 0 covers its first 2.5 - 73/30 = 2/30 s of 36/30 s
    assert weights[2] == pytest.approx([2 / 36, 34 / 36])
    # caller's order is kept when the starts are unsorted
    assert prompt_weights(plan, [2.5, 0.0]) == [list(reversed(r)) for r in weights]


def test_a_change_within_the_first_second_blends_from_0():
    plan = plan_video(180, "forward")  # section 0 holds frames [0, 37), so it spans [0, 37/30) s
    # prompt 0 covers [0, 1.1) s (33 frames' time) of it, prompt 1 the remaining 4/30 s
    assert prompt_weights(plan, [0.0, 1.1])[0] == pytest.approx([33 / 37, 4 / 37])
    assert prompt_weights(plan, [0.5, 1.1])[0] == pytest.approx([33 / 37, 4 / 37])  # the first starts at 0 anyway


def test_prompt_weights_edges():
    plan = plan_video(180, "inverted")  # sampling order runs from the end of the video
    # the earliest prompt covers from 0 even if it starts later; a prompt after the end gets nothing
    weights = prompt_weights(plan, [1.0, 99.0])
    assert all(row == [1.0, 0.0] for row in weights)
    # three prompts, unsorted; sampling order: section 0 is the video's end
    weights = prompt_weights(plan, [4.0, 0.0, 2.0])
    assert weights[0] == [1.0, 0.0, 0.0] and weights[-1] == [0.0, 1.0, 0.0]
    assert all(math.isclose(sum(r), 1.0) for r in weights)
    # equal starts: the later one in the caller's list wins
    assert all(row == [0.0, 1.0] for row in prompt_weights(plan, [0.0, 0.0]))


@pytest.mark.parametrize("bad", [[], [-1.0], [0.0, float("nan")], [0.0, "1"], [0.0, float("inf")]])
def test_prompt_weights_validation(bad):
    with pytest.raises(InputError, match="prompt"):
        prompt_weights(plan_video(60), bad)


def test_keyframe_latent_index():
    plan = plan_video(97)  # no drops: output frame j is generated frame j
    assert keyframe_latent_index(plan, 0.0) == 1  # latent 0 is the start image itself
    assert keyframe_latent_index(plan, 1.0) == 8  # frame 30 lies in latent 8's frames 29..32
    assert keyframe_latent_index(plan, 99.0) == plan.total_latents - 1
    assert keyframe_latent_index(plan, -3.0) == 1
    dropped = plan_video(30)  # generated frame 8 is dropped, so output frame 8 is generated frame 9 (latent 3)
    assert keyframe_latent_index(dropped, 8 / 30) == 3
    assert keyframe_latent_index(dropped, 7 / 30) == 2
    with pytest.raises(InputError, match="keyframe time"):
        keyframe_latent_index(plan, float("nan"))


# -- a start frame that is not an output frame (text-to-video, video continuation) -----------------------------------

@pytest.mark.parametrize("mode", ["inverted", "forward"])
@pytest.mark.parametrize("num_frames", LENGTHS + [32, 36])
def test_start_left_out_gives_exactly_the_new_frames(num_frames, mode):
    """The chain is planned for one frame more (brute force for N + 1 frames), frame 0 is not output, and the
    output still has exactly N frames: generated frames 1 .. F-1 less interior drops."""
    plan = plan_video(num_frames, mode, start_in_output=False)
    expected, latents = simulate(num_frames + 1, 9, mode)
    assert plan.total_latents == latents
    assert [s.num_latents for s in plan.sections] == [s["num_latents"] for s in expected]
    kept = kept_frame_indices(plan)
    assert len(kept) == plan.output_frames == num_frames
    assert kept[0] >= 1 and 0 not in kept and kept[-1] == plan.generated_frames - 1
    assert all(0 < d < plan.generated_frames - 1 for d in plan.dropped_frames)
    assert len(plan.dropped_frames) == plan.generated_frames - 1 - num_frames
    assert [output_frame_to_generated(plan, j) for j in range(num_frames)] == kept
    assert plan.summary()["frames"] == num_frames and plan.summary()["start_frame_in_output"] is False
    assert "not in the output" in plan.summary()["description"]


def test_start_left_out_known_figures():
    plan = plan_video(1800, start_in_output=False)  # 1801 planned frames: L 451, F 1801, nothing dropped
    assert (plan.total_latents, plan.generated_frames, plan.dropped_frames) == (451, 1801, ())
    assert plan.output_frames == 1800 and plan.duration_s == 60.0
    plan = plan_video(32, start_in_output=False)  # 33 planned frames: L 9, F 33, frames 1..32 out
    assert plan.dropped_frames == () and kept_frame_indices(plan) == list(range(1, 33))
    plan = plan_video(30, start_in_output=False)  # 31 planned: F 33, drops at 32/3 -> 11 and 64/3 -> 21
    assert plan.dropped_frames == (11, 21) and len(kept_frame_indices(plan)) == 30
    # output frame 0 is the first new frame, so a keyframe at 0 s pins latent 1 and one at 10/30 s frame 11 -> 12
    assert keyframe_latent_index(plan, 0.0) == 1 and output_frame_to_generated(plan, 10) == 12
    with pytest.raises(InputError, match="num_frames"):
        plan_video(1801, start_in_output=False)


def test_the_plan_keeps_its_window_and_accepts_one_fps():
    """Found by the mutation run: the plan's window was never read back, and fps = 1 (the lowest) never tried."""
    for window in (5, 9, 13):
        assert plan_video(120, "inverted", window).window == window
    assert plan_video(30, "forward", 9, 1).fps == 1
    with pytest.raises(InputError, match="fps"):
        plan_video(30, "forward", 9, 0)


def test_a_boolean_is_not_an_output_frame_index():
    plan = plan_video(60, "inverted")
    for bad in (True, False, 1.0, -1, plan.output_frames):
        with pytest.raises(ValueError, match="output frame"):
            output_frame_to_generated(plan, bad)
