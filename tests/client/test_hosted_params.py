"""Offline: the hosted parameters (names, defaults, ranges, types, files) and how they fill the shipped API
workflows. Expected values come from the hosted API pages (shared/seeds) and the workflow files, not from the code."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from PIL import Image

from framepack_client.hosted import HostedParams, ValidationError, parse_cli_value
from framepack_client.workflow import (API_WORKFLOWS_DIR, WorkflowError, build_prompt, default_model, find_node,
                                       hosted_name, load_workflow, model_id, workflow_name)


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


# -- workflows -----------------------------------------------------------------------------------------------------

def shipped(name: str) -> dict:
    return json.loads((API_WORKFLOWS_DIR / f"{name}.json").read_text())


def titled(graph: dict, class_type: str, title: str | None = None) -> dict:
    matches = [n for n in graph.values() if n["class_type"] == class_type
               and (title is None or n["_meta"]["title"] == title)]
    assert len(matches) == 1, (class_type, title, len(matches))
    return matches[0]


def test_workflow_choice_and_model_ids(start_png, end_png):
    plain, flf = make(start_png), make(start_png, end_image=str(end_png))
    assert workflow_name(plain) == "framepack_i2v" and workflow_name(flf) == "framepack_first_last_frame"
    assert workflow_name(plain, f1=True) == workflow_name(flf, f1=True) == "framepack_f1"
    assert (model_id(plain), model_id(flf), model_id(plain, True), model_id(flf, True)) == \
        ("framepack/i2v", "framepack/flf2v", "framepack/f1", "framepack/f1-flf2v")


def test_build_prompt_i2v(start_png):
    p = make(start_png, prompt="the cat jumps", negative_prompt="blur", num_frames=61, num_inference_steps=8,
             guidance_scale=6, cfg_scale=1.5, seed=42, aspect_ratio="9:16", resolution="720p")
    original = shipped("framepack_i2v")
    graph = build_prompt(p, original, start_image_name="up_start.png")
    assert original == shipped("framepack_i2v"), "the input workflow must not change"
    assert set(graph) == set(original)
    assert titled(graph, "FramePackLoadImage", "Start image")["inputs"]["image"] == "up_start.png"
    assert titled(graph, "CLIPTextEncode", "Positive prompt")["inputs"]["text"] == "the cat jumps"
    assert titled(graph, "CLIPTextEncode", "Negative prompt")["inputs"]["text"] == "blur"
    s = titled(graph, "FramePackSampler")["inputs"]
    assert (s["num_frames"], s["num_inference_steps"], s["guidance_scale"], s["cfg_scale"], s["seed"]) == \
        (61, 8, 6.0, 1.5, 42)
    assert isinstance(s["guidance_scale"], float) and isinstance(s["cfg_scale"], float)
    c = titled(graph, "FramePackImageConditioning")["inputs"]
    assert (c["aspect_ratio"], c["resolution"]) == ("9:16", "720p") and "end_image" not in c
    # everything else is the shipped workflow's
    assert titled(graph, "FramePackModelLoader") == titled(original, "FramePackModelLoader")
    assert s["sampler"] == "unipc_bh1" and s["teacache_threshold"] == 0.15


def test_build_prompt_first_last_frame(start_png, end_png):
    p = make(start_png, end_image=str(end_png), strength=0.6, resolution="custom", width=64, height=96)
    graph = build_prompt(p, shipped("framepack_first_last_frame"), start_image_name="s.png", end_image_name="e.png")
    end_id = next(i for i, n in graph.items() if n["_meta"]["title"] == "End image")
    c = titled(graph, "FramePackImageConditioning")["inputs"]
    assert c["end_image"] == [end_id, 0] and graph[end_id]["inputs"]["image"] == "e.png"
    assert (c["strength"], c["resolution"], c["custom_width"], c["custom_height"]) == (0.6, "custom", 64, 96)
    assert titled(graph, "FramePackSampler")["inputs"]["num_frames"] == 240


def test_build_prompt_f1_with_and_without_end_image(start_png, end_png):
    original = shipped("framepack_f1")
    plain = build_prompt(make(start_png), original)
    assert titled(plain, "FramePackLoadImage", "Start image")["inputs"]["image"] == "start.png"  # default: the file name
    assert "F1" in titled(plain, "FramePackModelLoader")["inputs"]["model"]
    assert len(plain) == len(original)
    with_end = build_prompt(make(start_png, end_image=str(end_png)), original, end_image_name="e.png")
    assert len(with_end) == len(original) + 1
    end_id = next(i for i, n in with_end.items() if n["_meta"]["title"] == "End image")
    assert end_id not in original and with_end[end_id]["class_type"] == "FramePackLoadImage"
    assert titled(with_end, "FramePackImageConditioning")["inputs"]["end_image"] == [end_id, 0]


def test_end_image_node_is_removed_when_not_used(start_png):
    graph = build_prompt(make(start_png), shipped("framepack_first_last_frame"))
    assert not [n for n in graph.values() if n["_meta"]["title"] == "End image"]
    assert "end_image" not in titled(graph, "FramePackImageConditioning")["inputs"]


def _renumbered(graph: dict) -> tuple[dict, dict]:
    """The same graph with other node ids (links rewritten), and the old -> new map."""
    mapping = {old: f"n{100 - i}" for i, old in enumerate(graph)}
    out = {}
    for old, node in graph.items():
        node = copy.deepcopy(node)
        for key, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and value[0] in mapping:
                node["inputs"][key] = [mapping[value[0]], value[1]]
        out[mapping[old]] = node
    return out, mapping


@pytest.mark.parametrize("name", ["framepack_i2v", "framepack_first_last_frame", "framepack_f1"])
def test_filling_never_depends_on_node_ids(start_png, end_png, name):
    p = make(start_png, end_image=str(end_png), seed=9, num_frames=33)
    original = shipped(name)
    renamed, _ = _renumbered(original)
    a = build_prompt(p, original, model="m.safetensors", filename_prefix="x/y")
    b = build_prompt(p, renamed, model="m.safetensors", filename_prefix="x/y")
    by_title_a = {(n["class_type"], n["_meta"]["title"]): n["inputs"] for n in a.values()}
    by_title_b = {(n["class_type"], n["_meta"]["title"]): n["inputs"] for n in b.values()}
    assert by_title_a.keys() == by_title_b.keys()
    for key in by_title_a:
        strip = lambda inputs: {k: v for k, v in inputs.items() if not isinstance(v, list)}  # noqa: E731
        assert strip(by_title_a[key]) == strip(by_title_b[key]), key
    assert titled(b, "FramePackModelLoader")["inputs"]["model"] == "m.safetensors"
    assert titled(b, "FramePackVideoCombine")["inputs"]["filename_prefix"] == "x/y"
    end_b = next(i for i, n in b.items() if n["_meta"]["title"] == "End image")
    assert titled(b, "FramePackImageConditioning")["inputs"]["end_image"] == [end_b, 0]


def test_workflow_without_the_titles_is_refused(start_png, tmp_path):
    graph = shipped("framepack_i2v")
    titled(graph, "CLIPTextEncode", "Positive prompt")["_meta"]["title"] = "CLIP Text Encode"
    with pytest.raises(WorkflowError, match="titled 'Positive prompt'"):
        build_prompt(make(start_png), graph)
    with pytest.raises(WorkflowError, match="FramePackSampler"):
        find_node({"1": {"class_type": "KSampler", "inputs": {}}}, "FramePackSampler")
    ui_like = tmp_path / "ui.json"
    ui_like.write_text(json.dumps({"nodes": [], "links": []}))
    with pytest.raises(WorkflowError, match="not an API-format workflow"):
        load_workflow(ui_like)
    with pytest.raises(WorkflowError, match="does not exist"):
        load_workflow(tmp_path / "missing.json")


@pytest.mark.parametrize("content,says", [
    ("{}", "is not an API-format workflow"),
    ('{"1": {"inputs": {}}}', "is not an API-format workflow"),  # a node without class_type
    ('{"1": ["LoadImage"]}', "is not an API-format workflow"),  # a node that is not an object
    ('{"1": ', "is not valid JSON"),
])
def test_a_workflow_file_that_is_no_api_workflow_is_refused_by_its_path(tmp_path, content, says):
    path = tmp_path / "mine.json"
    path.write_text(content)
    with pytest.raises(WorkflowError, match=f"^(workflow file )?'{path}' {says}"):
        load_workflow(path)
    with pytest.raises(WorkflowError, match=f"^workflow file '{tmp_path / 'missing.json'}' does not exist$"):
        load_workflow(tmp_path / "missing.json")


def test_an_added_end_image_node_takes_a_fresh_id_and_keeps_every_node(start_png, end_png):
    graph = shipped("framepack_i2v")  # no end image node: build_prompt adds one
    prompt = build_prompt(make(start_png, end_image=str(end_png)), graph)
    [new_id] = set(prompt) - set(graph)
    assert new_id.isdigit() and int(new_id) > max(int(i) for i in graph)  # after every id, so never a reused one
    assert prompt[new_id]["_meta"]["title"] == "End image"
    assert all(prompt[i]["class_type"] == node["class_type"] for i, node in graph.items())


def test_shipped_workflows_load_by_name():
    for name in ("framepack_i2v", "framepack_first_last_frame", "framepack_f1"):
        assert load_workflow(name) == shipped(name)


def test_node_inputs_map_back_to_hosted_names():
    graph = shipped("framepack_first_last_frame")
    ids = {(n["class_type"], n["_meta"]["title"]): i for i, n in graph.items()}
    assert hosted_name(graph, ids[("FramePackSampler", "FramePack Sampler")], "num_frames") == "num_frames"
    assert hosted_name(graph, ids[("FramePackLoadImage", "End image")], "image") == "end_image"
    assert hosted_name(graph, ids[("FramePackLoadImage", "Start image")], "image") == "image"
    assert hosted_name(graph, ids[("CLIPTextEncode", "Negative prompt")], "text") == "negative_prompt"
    assert hosted_name(graph, ids[("FramePackImageConditioning", "FramePack Image Conditioning")],
                       "custom_width") == "width"
    assert hosted_name(graph, ids[("FramePackSampler", "FramePack Sampler")], "window_size") is None


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


def _with_end_node(graph: dict, node_id: str) -> dict:
    graph = copy.deepcopy(graph)
    graph[node_id] = {"class_type": "LoadImage", "inputs": {"image": "old.png"}, "_meta": {"title": "End image"}}
    return graph


def test_an_end_image_node_already_in_the_workflow_is_filled_and_linked(start_png, end_png):
    graph = _with_end_node(shipped("framepack_i2v"), "900")
    prompt = build_prompt(make(start_png, end_image=str(end_png)), graph, end_image_name="e.png")
    assert prompt["900"]["inputs"]["image"] == "e.png"
    cond = titled(prompt, "FramePackImageConditioning")
    assert cond["inputs"]["end_image"] == ["900", 0]


def test_two_end_image_nodes_are_refused(start_png, end_png):
    graph = _with_end_node(_with_end_node(shipped("framepack_i2v"), "900"), "901")
    with pytest.raises(WorkflowError, match="End image"):
        build_prompt(make(start_png, end_image=str(end_png)), graph)
