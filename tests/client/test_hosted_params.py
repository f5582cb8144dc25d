"""Offline: the hosted parameters (names, defaults, ranges, types, files) and how they fill the shipped API
workflows. Expected values come from the hosted API pages (shared/seeds) and the workflow files, not from the code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from framepack_client.hosted import HostedParams, ValidationError, parse_cli_value
from framepack_client.workflow import API_WORKFLOWS_DIR, WorkflowError, build_prompt, default_model, load_workflow


@pytest.fixture
def start_png(tmp_path) -> Path:
    path = tmp_path / "start.png"
    Image.new("RGB", (96, 64), (200, 30, 30)).save(path)
    return path


@pytest.fixture
def end_png(tmp_path) -> Path:
    path = tmp_path / "end.jpg"
    Image.new("RGB", (80, 80), (10, 200, 30)).save(path)
    return path


def make(start_png, **changes) -> HostedParams:
    return HostedParams.from_mapping({"image": str(start_png), "prompt": "a cat walks", **changes})


def problems_of(start_png, **changes) -> list[str]:
    with pytest.raises(ValidationError) as err:
        make(start_png, **changes)
    return err.value.problems


def shipped(name: str) -> dict:
    return json.loads((API_WORKFLOWS_DIR / f"{name}.json").read_text())


def titled(graph: dict, class_type: str, title: str | None = None) -> dict:
    matches = [n for n in graph.values() if n["class_type"] == class_type
               and (title is None or n["_meta"]["title"] == title)]
    assert len(matches) == 1, (class_type, title, len(matches))
    return matches[0]


# -- defaults (hosted pages: I2V + FLF2V) --------------------------------------------------------------------------

def test_defaults_are_the_hosted_ones(start_png):
    p = make(start_png)
    assert (p.aspect_ratio, p.resolution, p.num_inference_steps, p.guidance_scale, p.cfg_scale, p.seed) == \
        ("16:9", "480p", 25, 10, 1, -1)
    assert p.frames == 180 and p.negative_prompt == "" and p.end_image is None
    assert p.effective()["num_frames"] == 180 and "strength" not in p.effective()


def test_end_image_defaults_to_240_frames_and_strength_08(start_png, end_png):
    p = make(start_png, end_image=str(end_png))
    assert p.frames == 240 and p.end_strength == 0.8
    assert p.effective()["strength"] == 0.8
    assert make(start_png, end_image=str(end_png), num_frames=90).frames == 90


# -- ranges and types ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("num_frames", 30), ("num_frames", 1800), ("num_inference_steps", 4), ("num_inference_steps", 50),
    ("guidance_scale", 0), ("guidance_scale", 32), ("guidance_scale", 7.5), ("cfg_scale", 0), ("cfg_scale", 7),
    ("seed", -1), ("seed", 0), ("seed", 2**31 - 1), ("aspect_ratio", "9:16"), ("aspect_ratio", "auto"),
    ("resolution", "720p"), ("negative_prompt", "blurry"), ("prompt", "x" * 500),
])
def test_values_at_the_edges_are_accepted(start_png, field, value):
    assert getattr(make(start_png, **{field: value}), field) == value


@pytest.mark.parametrize("field,value,says", [
    ("num_frames", 29, "out of range; use a value from 30 to 1800"),
    ("num_frames", 1801, "out of range; use a value from 30 to 1800"),
    ("num_frames", 30.5, "drop the fraction"),
    ("num_frames", 30.0, "drop the fraction"),
    ("num_frames", "30", "text, not a number"),
    ("num_frames", True, "a boolean"),
    ("num_inference_steps", 0, "from 4 to 50"),
    ("num_inference_steps", 3, "from 4 to 50"),
    ("num_inference_steps", 51, "from 4 to 50"),
    ("num_inference_steps", False, "a boolean"),
    ("guidance_scale", -1, "from 0 to 32"),
    ("guidance_scale", 32.01, "from 0 to 32"),
    ("guidance_scale", "10", "text, not a number"),
    ("guidance_scale", math.nan, "finite"),
    ("guidance_scale", math.inf, "finite"),
    ("cfg_scale", -0.1, "from 0 to 7"),
    ("cfg_scale", 7.5, "from 0 to 7"),
    ("seed", 2**31, "from -1 to 2147483647"),
    ("seed", -2, "from -1 to 2147483647"),
    ("seed", 1.0, "drop the fraction"),
    ("seed", [1], "got [1] (a list, not a number)"),
    ("aspect_ratio", "4:3", "one of 16:9, 9:16, auto"),
    ("resolution", "1080p", "one of 480p, 720p, custom"),
    ("prompt", "x" * 600, "600 characters; the limit is 500"),
    ("prompt", "", "prompt is empty"),
    ("prompt", "   \n", "prompt is empty"),
    ("prompt", 5, "must be text"),
    ("negative_prompt", 3, "must be text"),
])
def test_bad_values_are_named_with_the_fix(start_png, field, value, says):
    problems = problems_of(start_png, **{field: value})
    assert len(problems) == 1, problems
    assert problems[0].startswith(field), problems
    assert says in problems[0], problems


# Both edges of every range: the last accepted value, and the first refused one with its whole message.
RANGE_EDGES = [
    # field, lowest accepted, first refused below, highest accepted, first refused above, "from .. to .."
    ("num_frames", 30, 29, 1800, 1801, "from 30 to 1800"),
    ("num_inference_steps", 4, 3, 50, 51, "from 4 to 50"),
    ("guidance_scale", 0, -0.01, 32, 32.01, "from 0 to 32"),
    ("cfg_scale", 0, -0.01, 7, 7.01, "from 0 to 7"),
    ("seed", -1, -2, 2147483647, 2147483648, "from -1 to 2147483647"),
    ("strength", 0, -0.01, 1, 1.01, "from 0 to 1"),
    ("width", 64, 48, 2048, 2064, "from 64 to 2048"),
    ("height", 64, 48, 2048, 2064, "from 64 to 2048"),
]


def _with(field, value, end_png) -> dict:
    """What a value of `field` needs beside it: strength an end image, width/height the custom resolution."""
    if field == "strength":
        return {"end_image": str(end_png), "strength": value}
    if field in ("width", "height"):
        return {"resolution": "custom", "width": 64, "height": 64, field: value}
    return {field: value}


@pytest.mark.parametrize("field,low,below,high,above,range_text", RANGE_EDGES, ids=[e[0] for e in RANGE_EDGES])
def test_both_edges_of_every_range_with_exact_messages(start_png, end_png, field, low, below, high, above,
                                                       range_text):
    for value in (low, high):
        assert getattr(make(start_png, **_with(field, value, end_png)), field) == value
    for value in (below, above):
        assert problems_of(start_png, **_with(field, value, end_png)) == [
            f"{field} {value} is out of range; use a value {range_text}"]


def test_prompt_length_edge_with_exact_message(start_png):
    assert make(start_png, prompt="x" * 500).prompt == "x" * 500
    assert problems_of(start_png, prompt="x" * 501) == ["prompt has 501 characters; the limit is 500: shorten it"]


@pytest.mark.parametrize("field", ["width", "height"])
@pytest.mark.parametrize("value,message", [
    (63, "{field} 63 is out of range; use a value from 64 to 2048"),  # out of range: no "multiple" advice
    (65, "{field} 65 is not a multiple of 16; use 64 or 80"),
    (72, "{field} 72 is not a multiple of 16; use 64 or 80"),
    (79, "{field} 79 is not a multiple of 16; use 64 or 80"),
    (2040, "{field} 2040 is not a multiple of 16; use 2032 or 2048"),
    (2049, "{field} 2049 is out of range; use a value from 64 to 2048"),
])
def test_custom_sides_must_be_multiples_of_16(start_png, end_png, field, value, message):
    assert problems_of(start_png, **_with(field, value, end_png)) == [message.format(field=field)]
    for fine in (80, 2032):
        assert getattr(make(start_png, **_with(field, fine, end_png)), field) == fine


@pytest.mark.parametrize("field", ["negative_prompt", "aspect_ratio", "resolution", "num_frames", "num_inference_steps",
                                   "guidance_scale", "cfg_scale", "seed", "enable_safety_checker", "end_image",
                                   "strength", "width", "height"])
def test_a_null_parameter_is_not_given(start_png, field):
    """JSON null means "not given": the default applies, as when the key is absent, also in the filled workflow."""
    given = make(start_png, **{field: None})
    assert given == make(start_png)
    assert build_prompt(given, shipped("framepack_i2v")) == build_prompt(make(start_png), shipped("framepack_i2v"))
    assert make(start_png).frames == 180 and make(start_png).negative_prompt == ""


def test_strength_needs_an_end_image(start_png, end_png):
    problems = problems_of(start_png, strength=0.8)
    assert len(problems) == 1 and problems[0].startswith("strength") and "end_image" in problems[0]
    assert "add end_image or remove strength" in problems[0]
    assert make(start_png, end_image=str(end_png), strength=0.0).end_strength == 0.0
    assert make(start_png, end_image=str(end_png), strength=1).end_strength == 1.0
    for bad in (1.1, -0.1):
        assert "from 0 to 1" in problems_of(start_png, end_image=str(end_png), strength=bad)[0]


@pytest.mark.parametrize("changes,says", [
    ({"resolution": "custom"}, ["width is required with resolution custom", "height is required"]),
    ({"resolution": "custom", "width": 65, "height": 64}, ["width 65 is not a multiple of 16; use 64 or 80"]),
    ({"resolution": "custom", "width": 48, "height": 64}, ["width 48 is out of range; use a value from 64 to 2048"]),
    ({"resolution": "custom", "width": 2064, "height": 64}, ["from 64 to 2048"]),
    ({"width": 64, "height": 64}, ["width and height are used only with resolution custom"]),
])
def test_custom_resolution_rules(start_png, changes, says):
    problems = problems_of(start_png, **changes)
    assert len(problems) == len(says), problems
    for problem, fragment in zip(problems, says):
        assert fragment in problem


def test_custom_resolution_accepted(start_png):
    p = make(start_png, resolution="custom", width=64, height=2048)
    assert (p.width, p.height) == (64, 2048)


def test_required_inputs(tmp_path):
    with pytest.raises(ValidationError) as err:
        HostedParams.from_mapping({})
    assert [p.split(" ")[0] for p in err.value.problems] == ["image", "prompt"]
    assert all("is required" in p for p in err.value.problems)


def test_every_problem_is_reported_at_once(start_png):
    problems = problems_of(start_png, num_frames=29, num_inference_steps=51, guidance_scale=-1, seed=2**31,
                           prompt="y" * 600, strength=0.5)
    assert {p.split(" ")[0] for p in problems} == {"num_frames", "num_inference_steps", "guidance_scale", "seed",
                                                   "prompt", "strength"}
    assert "invalid parameters" in str(ValidationError(problems))


# -- images --------------------------------------------------------------------------------------------------------

def test_missing_image_file_is_named(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(ValidationError) as err:
        HostedParams.from_mapping({"image": str(missing), "prompt": "x"})
    (problem,) = err.value.problems
    assert problem.startswith("image file") and str(missing) in problem and "does not exist" in problem


@pytest.mark.parametrize("kind", ["text", "empty", "folder"])
def test_non_images_are_refused(tmp_path, start_png, kind):
    bad = tmp_path / "bad.png"
    if kind == "text":
        bad.write_text("hello, not a picture")
    elif kind == "empty":
        bad.write_bytes(b"")
    else:
        bad.mkdir()
    problems = problems_of(start_png, end_image=str(bad))
    assert len(problems) == 1 and problems[0].startswith("end_image") and str(bad) in problems[0]
    assert {"text": "not a PNG, JPEG", "empty": "is empty", "folder": "is not a file"}[kind] in problems[0]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
def test_every_loadimage_format_is_accepted(tmp_path, fmt):
    path = tmp_path / f"img.{fmt.lower()}"
    Image.new("RGB", (8, 8)).save(path, format=fmt)
    assert make(path).image == str(path)


def test_urls_are_checked_for_form_only(start_png):
    assert make(start_png, end_image="https://example.com/last.png").end_image == "https://example.com/last.png"
    assert "has no host" in problems_of(start_png, end_image="http:///x.png")[0]
    assert "only local files and http(s) URLs" in problems_of(start_png, end_image="ftp://host/x.png")[0]


def test_hosted_aliases_and_unknown_keys(start_png, end_png):
    p = HostedParams.from_mapping({"image_url": str(start_png), "end_image_url": str(end_png), "prompt": "p",
                                   "enable_safety_checker": False})
    assert p.image == str(start_png) and p.end_image == str(end_png)
    with pytest.raises(ValidationError) as err:
        HostedParams.from_mapping({"image": str(start_png), "image_url": str(start_png), "prompt": "p",
                                   "num_frame": 30, "enable_safety_checker": True})
    text = "\n".join(err.value.problems)
    assert "image is given twice" in text and "unknown parameter 'num_frame'" in text
    assert not any(line.startswith("enable_safety_checker") for line in err.value.problems)  # a known parameter


def test_safety_checker_switch_fills_the_checker_node(start_png):
    graph = load_workflow("framepack_i2v")
    (checker_id, checker), = [(i, n) for i, n in graph.items() if n["class_type"] == "FramePackSafetyChecker"]
    assert checker["inputs"]["enabled"] is False  # shipped off
    assert checker["inputs"]["video"] == [next(i for i, n in graph.items()
                                               if n["class_type"] == "FramePackVideoCombine"), 1]
    on = build_prompt(HostedParams.from_mapping({"image": str(start_png), "prompt": "p",
                                                 "enable_safety_checker": True}), graph)
    off = build_prompt(HostedParams.from_mapping({"image": str(start_png), "prompt": "p"}), graph)
    assert on[checker_id]["inputs"]["enabled"] is True and off[checker_id]["inputs"]["enabled"] is False
    with pytest.raises(ValidationError, match="enable_safety_checker must be true or false, got 'yes'"):
        HostedParams.from_mapping({"image": str(start_png), "prompt": "p", "enable_safety_checker": "yes"})
    del graph[checker_id]
    with pytest.raises(WorkflowError, match="no FramePackSafetyChecker node"):
        build_prompt(HostedParams.from_mapping({"image": str(start_png), "prompt": "p",
                                                "enable_safety_checker": True}), graph)
    assert build_prompt(HostedParams.from_mapping({"image": str(start_png), "prompt": "p"}), graph)  # off: not needed


@pytest.mark.parametrize("name", ["framepack_i2v", "framepack_first_last_frame", "framepack_f1"])
def test_shipped_workflows_return_no_frames_and_the_checker_reads_the_video(name):
    """What the client and the service fill never holds every frame in the server's memory (1800 frames at 720p
    would be 20 GB); the safety checker then reads the frames it scores from the video output, the MP4."""
    graph = load_workflow(name)
    (video_id, video), = [(i, n) for i, n in graph.items() if n["class_type"] == "FramePackVideoCombine"]
    (checker,) = [n for n in graph.values() if n["class_type"] == "FramePackSafetyChecker"]
    assert video["inputs"]["return_frames"] is False
    assert checker["inputs"]["video"] == [video_id, 1] and "frames" not in checker["inputs"]


def test_relative_image_from_base_dir(tmp_path, start_png, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)
    p = HostedParams.from_mapping({"image": "start.png", "prompt": "p"}, base_dir=tmp_path)
    assert Path(p.image) == start_png


def test_round_trip_through_to_dict(start_png, end_png):
    p = make(start_png, end_image=str(end_png), strength=0.3, seed=5, num_frames=45)
    again = HostedParams.from_mapping(json.loads(json.dumps(p.to_dict())))
    assert again == p


def test_cli_strings_are_parsed_strictly():
    assert parse_cli_value("num_frames", "45") == 45
    assert parse_cli_value("seed", "-1") == -1
    assert parse_cli_value("num_frames", "30.5") == 30.5  # kept as a float: validation says "drop the fraction"
    assert parse_cli_value("guidance_scale", "7.5") == 7.5
    assert parse_cli_value("num_frames", "thirty") == "thirty"


@pytest.mark.parametrize("text,value", [("true", True), ("1", True), ("yes", True), ("on", True), (" On ", True),
                                        ("TRUE", True), ("false", False), ("0", False), ("no", False),
                                        ("off", False), ("OFF", False), (" No", False)])
def test_cli_booleans_take_the_usual_spellings_in_any_case(text, value):
    assert parse_cli_value("new_only", text) is value


def test_a_cli_boolean_that_is_no_spelling_of_one_is_kept_for_validation_to_name():
    assert parse_cli_value("new_only", "maybe") == "maybe"


# -- found by the mutation run (scripts/mutation.sh): each test below fails on a mutant that passed before ----------

@pytest.mark.parametrize("field,value,message", [
    ("num_frames", "90", "num_frames must be a whole number from 30 to 1800, got '90' (text, not a number)"),
    ("num_frames", True, "num_frames must be a whole number from 30 to 1800, got True (a boolean)"),
    ("num_frames", 90.5, "num_frames must be a whole number from 30 to 1800, got 90.5; drop the fraction"),
    ("guidance_scale", "10", "guidance_scale must be a number from 0 to 32, got '10' (text, not a number)"),
    ("guidance_scale", [10], "guidance_scale must be a number from 0 to 32, got [10] (a list, not a number)"),
])
def test_wrong_types_say_whole_number_or_number(start_png, field, value, message):
    assert problems_of(start_png, **{field: value}) == [message]


@pytest.mark.parametrize("side", ["width", "height"])
def test_one_custom_side_without_custom_resolution_is_refused(start_png, side):
    problems = problems_of(start_png, **{side: 64})
    assert len(problems) == 1 and "width and height are used only with resolution custom" in problems[0]


def test_default_model_is_the_i2v_model_unless_f1(start_png):
    t2v = HostedParams.from_mapping({"prompt": "waves", "text_to_video": True})
    i2v_model = titled(shipped("framepack_i2v"), "FramePackModelLoader")["inputs"]["model"]
    f1_model = titled(shipped("framepack_f1"), "FramePackModelLoader")["inputs"]["model"]
    assert i2v_model != f1_model
    assert default_model(t2v) == i2v_model and default_model(t2v, f1=True) == f1_model
    assert default_model(make(start_png)) is None  # image-to-video: the workflow's own model
