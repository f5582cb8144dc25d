"""framepack_core.limits: the one home of every limit, option list and mode name.

It must import without torch (the API client reads it), everything else must take its values from it (a literal
copy elsewhere is found by walking the code), and the core, the planner and the client must enforce what it says.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from framepack_core import limits
from framepack_core.limits import Mode

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("framepack_core", "nodes", "framepack_client", "framepack_service")


def test_limits_and_the_client_import_where_torch_cannot_be_imported():
    script = textwrap.dedent("""
        import importlib.abc, sys
        blocked = ("torch", "numpy", "safetensors", "einops")

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in blocked:
                    raise ImportError(f"{name} is blocked: this import must not need it")
                return None

        sys.meta_path.insert(0, Block())
        import framepack_core.limits
        import framepack_client.hosted
        from framepack_core.limits import Mode, MAX_FRAMES
        assert framepack_client.hosted.spec("num_frames").high == MAX_FRAMES
        assert Mode("forward") is Mode.FORWARD
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
        assert not leaked, leaked
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"


def test_package_names_load_on_first_use():
    import framepack_core
    from framepack_core.config import TINY
    from framepack_core.errors import InputError

    assert framepack_core.TINY is TINY and framepack_core.InputError is InputError
    assert set(framepack_core.__all__) <= set(dir(framepack_core))
    with pytest.raises(AttributeError, match="no attribute 'NOT_A_NAME'"):
        framepack_core.NOT_A_NAME  # noqa: B018


def test_modes_are_the_strings_workflows_carry():
    assert limits.MODES == ("inverted", "forward")
    assert Mode.INVERTED == "inverted" and Mode("forward") is Mode.FORWARD
    assert f"{Mode.INVERTED}" == str(Mode.INVERTED) == "inverted"
    assert json.dumps({"mode": Mode.FORWARD}) == '{"mode": "forward"}'
    assert set(limits.VARIANT_MODES) == set(limits.VARIANTS) and set(limits.VARIANT_MODES.values()) == set(Mode)


def _literal_copies(path: Path, values: set, root: Path = REPO) -> list[str]:
    """Constants in the code (docstrings left out) equal to one of values, as 'file:line value'."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)
                  and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings and not isinstance(node.value, bool) \
                and node.value in values:
            found.append(f"{path.relative_to(root)}:{node.lineno} {node.value!r}")
    return found


def test_each_limit_and_mode_is_written_only_in_limits():
    distinctive = {limits.MAX_FRAMES, limits.MAX_SIDE, *limits.MODES}
    copies = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path != REPO / "framepack_core" / "limits.py":
                copies += _literal_copies(path, distinctive)
    assert not copies, f"import these from framepack_core.limits instead: {copies}"


def test_node_defaults_are_written_only_in_limits():
    """The nodes' defaults and bounds that the core also uses (cache thresholds, the input fps bound, the H.264
    quality) are imported, never typed again; the workflow builder writes every default it shares with the nodes
    from limits too."""
    shared = {limits.DEFAULT_TEACACHE_THRESHOLD, limits.MAX_FPS, limits.DEFAULT_CRF, limits.MAX_CRF}
    copies = []
    for package in ("framepack_core", "nodes"):
        for path in sorted((REPO / package).rglob("*.py")):
            if path != REPO / "framepack_core" / "limits.py":
                copies += _literal_copies(path, shared)
    workflow_defaults = {
        limits.DEFAULT_FRAMES, limits.DEFAULT_FRAMES_WITH_END, limits.DEFAULT_STEPS, limits.DEFAULT_GUIDANCE,
        limits.DEFAULT_END_STRENGTH, *limits.DEFAULT_CUSTOM_SIZE, limits.DEFAULT_WINDOW, limits.MAX_CONTEXT_LATENTS,
        limits.DEFAULT_CRF, limits.DEFAULT_TEACACHE_THRESHOLD, limits.DEFAULT_NSFW_THRESHOLD,
        limits.DEFAULT_SAFETY_SAMPLE_FRAMES, limits.DEFAULT_SAMPLER, limits.DEFAULT_ATTENTION,
        limits.DEFAULT_COMPUTE_DTYPE, limits.RESOLUTION_CHOICES[0], limits.AUTO}
    copies += _literal_copies(REPO / "scripts" / "build_workflows.py", shared | workflow_defaults)
    assert not copies, f"import these from framepack_core.limits instead: {copies}"


def test_the_hosted_defaults_and_the_service_bounds_are_not_copied_into_the_client_or_the_service():
    """The API client and the service take the hosted contracts' defaults (180/240 frames, strength 0.8, 32-bit
    seeds) and the service's bounds from limits, like the nodes: a literal copy in either package is found."""
    distinctive = {limits.DEFAULT_FRAMES, limits.DEFAULT_FRAMES_WITH_END, limits.DEFAULT_END_STRENGTH,
                   limits.MAX_HOSTED_SEED, limits.RANDOM_SEED_BOUND, limits.SERVICE_MAX_BODY_BYTES,
                   limits.SERVICE_MAX_IMAGE_BYTES}
    copies = [copy for package in ("framepack_client", "framepack_service")
              for path in sorted((REPO / package).rglob("*.py")) for copy in _literal_copies(path, distinctive)]
    assert not copies, f"import these from framepack_core.limits instead: {copies}"


def test_the_literal_finder_sees_a_copy(tmp_path):
    """The check above would pass vacuously if the finder saw nothing: a copied limit must be found."""
    path = tmp_path / "copy.py"
    path.write_text('"""The docstring may say 1800 and "inverted"."""\nX = ("inverted", 1800)\n')
    assert sorted(_literal_copies(path, {1800, "inverted"}, tmp_path)) == ["copy.py:2 'inverted'", "copy.py:2 1800"]


def test_core_planner_and_client_enforce_the_same_ranges():
    from framepack_client.hosted import SPECS, spec
    from framepack_core.errors import InputError
    from framepack_core.planning import plan_video

    assert (spec("num_frames").low, spec("num_frames").high) == (limits.MIN_FRAMES, limits.MAX_FRAMES)
    assert (spec("num_inference_steps").low, spec("num_inference_steps").high) == (limits.MIN_STEPS, limits.MAX_STEPS)
    assert (spec("width").low, spec("width").high) == (limits.MIN_SIDE, limits.MAX_SIDE)
    assert set(spec("aspect_ratio").choices) == set(limits.ASPECT_RATIOS)
    assert set(spec("resolution").choices) <= set(limits.RESOLUTION_CHOICES)
    assert {s.name for s in SPECS} >= {"num_frames", "num_inference_steps", "guidance_scale", "cfg_scale"}
    for frames in (limits.MIN_FRAMES, limits.MAX_FRAMES):
        assert plan_video(frames, Mode.FORWARD).output_frames == frames
    for frames in (limits.MIN_FRAMES - 1, limits.MAX_FRAMES + 1):
        with pytest.raises(InputError, match="num_frames"):
            plan_video(frames)
    assert plan_video(97, "inverted").mode is Mode.INVERTED
    # the product's steps lie inside what the core runs
    assert limits.CORE_MIN_STEPS <= limits.MIN_STEPS <= limits.DEFAULT_STEPS <= limits.MAX_STEPS <= limits.CORE_MAX_STEPS


@pytest.mark.parametrize("steps,ok", [(limits.CORE_MIN_STEPS - 1, False), (limits.CORE_MIN_STEPS, True),
                                      (limits.CORE_MAX_STEPS, True), (limits.CORE_MAX_STEPS + 1, False)])
def test_the_core_step_range(steps, ok):
    import torch

    from framepack_core.conditioning import ImageConditioning, TextConditioning
    from framepack_core.errors import InputError
    from framepack_core.generate import GenerationRequest

    request = GenerationRequest(start=ImageConditioning(torch.zeros(1, 16, 1, 4, 4), torch.zeros(1, 6, 24)),
                                prompts=[(0.0, TextConditioning(torch.zeros(1, 3, 32), torch.zeros(1, 16)))],
                                num_frames=limits.MIN_FRAMES, steps=steps)
    if ok:
        request.validate()
    else:
        with pytest.raises(InputError, match=f"use {limits.CORE_MIN_STEPS}-{limits.CORE_MAX_STEPS}"):
            request.validate()
