"""Several GPUs, proven on the CPU: Ulysses sequence parallelism and CFG parallelism on gloo ranks give the
single-process result (one forward, one section, whole videos in both modes with an end image, cfg 1 and 3), the
worker group survives a killed worker and an interrupt, and bad layouts are refused with their fix."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from framepack_core.errors import InputError, Interrupted
from framepack_core.generate import generate_video
from framepack_core.loading import load_framepack_model, save_framepack_model
from framepack_core.parallel import GroupSpec, ModelSpec, WorkerGroup, WorkerGroupError, check_layout
from framepack_core.parallel.mesh import job_split
from framepack_core.parallel.wire import from_wire, to_wire
from framepack_core.parallel.workers import exit_words
from framepack_dev.comfy_server import free_port
from framepack_dev.parallel_check import SCENARIOS, parallel_model, run_ranks, run_scenario, video_request

TOLERANCE = 1e-5


def _assert_close(got: torch.Tensor, want: torch.Tensor):
    assert got.shape == want.shape
    assert (got - want).abs().max().item() < TOLERANCE, (got - want).abs().max().item()


@pytest.fixture(scope="module")
def single_outputs():
    model = parallel_model()
    return {name: run_scenario(model, name).float() for name in SCENARIOS}


@pytest.mark.parametrize("ranks", [2, 3])
def test_forward_and_section_on_gloo_ranks_equal_one_process(ranks, single_outputs, tmp_path):
    """3 ranks split 12 x 8 x 3 + history tokens unevenly (padding); forward_masked is batch 2 with padded
    prompts, which goes through the key mask."""
    out = tmp_path / "out.safetensors"
    run_ranks(ranks, SCENARIOS, out)
    got = load_file(out)
    for name in SCENARIOS:
        _assert_close(got[name], single_outputs[name])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    [path] = save_framepack_model(parallel_model(), tmp_path_factory.mktemp("parallel") / "tiny6.safetensors")
    return path


@pytest.fixture(scope="module")
def loaded(model_file):
    return load_framepack_model(model_file, compute_dtype="fp32")


def _spec(model_file, ranks: int, cfg_parallel: bool = False) -> GroupSpec:
    return GroupSpec(ModelSpec(str(model_file), compute_dtype="fp32"), ("cpu",) * ranks, cfg_parallel)


VIDEOS = [dict(mode="inverted", cfg_scale=1.0), dict(mode="inverted", cfg_scale=3.0),
          dict(mode="forward", cfg_scale=1.0), dict(mode="forward", cfg_scale=3.0)]


def test_whole_videos_through_a_worker_group_equal_one_process(model_file, loaded):
    """The launch path (workers.py) with sequence parallelism: 2-section videos, end image, both modes, cfg 1 and 3;
    the group is reused for every job, steps are relayed and the TeaCache counts match."""
    with WorkerGroup(_spec(model_file, 2)) as group:
        for overrides in VIDEOS:
            steps = []
            got = group.run(video_request(**overrides), on_step=lambda *a: steps.append(a[:4]))
            want = generate_video(loaded, video_request(**overrides))
            assert len(want.plan.sections) == 2
            _assert_close(got.latents, want.latents)
            assert got.seed == want.seed and len(steps) == 2 * 3
        cached = dict(cache="teacache", teacache_threshold=0.3, steps=8, cfg_scale=3.0)
        got, want = group.run(video_request(**cached)), generate_video(loaded, video_request(**cached))
        _assert_close(got.latents, want.latents)
        assert got.stats["teacache_skipped"] == want.stats["teacache_skipped"] > 0


@pytest.mark.parametrize("ranks", [2, 4])
def test_cfg_parallel_equals_one_process(model_file, loaded, ranks):
    """2 ranks: one branch each; 4 ranks: 2 branches x 2-way sequence split. A cfg 1 job on a CFG-parallel group
    (no negative branch) gives the same video too, and the step-cache counts add both branches."""
    with WorkerGroup(_spec(model_file, ranks, cfg_parallel=True)) as group:
        jobs = [dict(mode="inverted", cfg_scale=3.0), dict(mode="forward", cfg_scale=1.0)]
        if ranks == 2:
            jobs += [dict(mode="forward", cfg_scale=3.0, cache="teacache", teacache_threshold=0.3, steps=8)]
        for overrides in jobs:
            got, want = group.run(video_request(**overrides)), generate_video(loaded, video_request(**overrides))
            _assert_close(got.latents, want.latents)
            assert got.stats["teacache_computed"] == want.stats["teacache_computed"]


def test_random_seed_is_agreed_by_every_rank_and_reported(model_file, loaded):
    with WorkerGroup(_spec(model_file, 2)) as group:
        got = group.run(video_request(seed=-1))
    _assert_close(got.latents, generate_video(loaded, video_request(seed=got.seed)).latents)


def test_a_killed_worker_fails_the_job_clearly_and_the_next_group_works(model_file, loaded):
    group = WorkerGroup(_spec(model_file, 2))
    try:
        os.kill(group.processes[1].pid, signal.SIGKILL)
        with pytest.raises(WorkerGroupError, match=r"rank 1 \(cpu\) was killed by SIGKILL.*next run starts a new"):
            group.run(video_request())
        assert not group.alive and group.processes == []
        with pytest.raises(WorkerGroupError, match="stopped"):
            group.run(video_request())
    finally:
        group.stop()
    with WorkerGroup(_spec(model_file, 2)) as fresh:
        _assert_close(fresh.run(video_request()).latents, generate_video(loaded, video_request()).latents)


def test_an_interrupt_stops_every_rank_and_the_group_runs_the_next_job(model_file, loaded):
    with WorkerGroup(_spec(model_file, 2)) as group:
        steps = []
        with pytest.raises(Interrupted):
            group.run(video_request(steps=6), on_step=lambda *a: steps.append(a), interrupt=lambda: bool(steps))
        assert 1 <= len(steps) < 12
        _assert_close(group.run(video_request()).latents, generate_video(loaded, video_request()).latents)


def test_a_failing_rank_names_its_error_and_stops_the_group(tmp_path):
    missing = tmp_path / "gone.safetensors"
    with pytest.raises(WorkerGroupError, match=r"rank \d \(cpu\) failed: .*gone\.safetensors"):
        WorkerGroup(_spec(missing, 2))


# -- layouts, wire format, messages --------------------------------------------------------------------------

def test_layouts_are_checked_with_their_fix():
    assert check_layout(8, 24, False) == 8 and check_layout(8, 24, True) == 4 and check_layout(6, 24, True) == 3
    with pytest.raises(InputError, match="even number of GPUs, not 3"):
        check_layout(3, 24, True)
    with pytest.raises(InputError, match=r"divisible by 5; this model has 24 heads: use 1, 2, 3, 4, 6, 8 GPUs"):
        check_layout(5, 24, False)
    with pytest.raises(InputError, match="use 2, 4, 6, 8, 12, 16 GPUs"):
        check_layout(10, 24, True)


def test_job_split_follows_the_mesh():
    assert job_split(4, 24, True, uses_negative=True) == (2, True)
    assert job_split(4, 24, True, uses_negative=False) == (4, False)  # no negative: all 4 split the sequence
    assert job_split(4, 6, True, uses_negative=False) == (2, False)  # 6 heads do not split 4 ways
    assert job_split(3, 24, False, uses_negative=True) == (3, False)


def test_wire_round_trip_and_refusal():
    request = video_request(keyframes=[], mode="forward")
    back = from_wire(to_wire(request))
    assert type(back).__name__ == "GenerationRequest" and back.mode == "forward" and back.mode is request.mode
    assert torch.equal(back.start.latent, request.start.latent) and torch.equal(back.end.embeds, request.end.embeds)
    assert back.prompts[0][0] == 0.0 and torch.equal(back.prompts[0][1].tokens, request.prompts[0][1].tokens)
    with pytest.raises(TypeError, match="unknown type 'Popen'"):
        from_wire({"__type__": "Popen", "args": ["sh"]})
    with pytest.raises(TypeError, match="cannot be sent"):
        to_wire(object())


def test_exit_words():
    assert exit_words(-signal.SIGKILL).startswith("was killed by SIGKILL (often the system's out-of-memory")
    assert exit_words(-signal.SIGSEGV) == "was killed by SIGSEGV"
    assert exit_words(3) == "exited with code 3"


def test_torchrun_cli_equals_one_process(model_file, loaded, tmp_path):
    """The standalone path: torchrun (torch.distributed.run) with 2 CPU ranks and its env:// rendezvous."""
    import subprocess
    import sys

    from framepack_core.parallel.cli import build_request, parse_args, random_inputs

    out = tmp_path / "latents.safetensors"
    argv = ["--model", str(model_file), "--random-inputs", "64x96", "--num-frames", "40", "--steps", "3", "--seed",
            "5", "--cfg", "2.5", "--cfg-parallel", "--compute-dtype", "fp32", "--out", str(out)]
    port = free_port()
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                          "127.0.0.1", "--master-port", str(port), "-m", "framepack_core.parallel.cli", *argv],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    args = parse_args(argv)
    want = generate_video(loaded, build_request(random_inputs(loaded, 64, 96), args))
    _assert_close(load_file(out)["latents"], want.latents)
    assert f"seed {want.seed}" in run.stderr and "section 2/2 step 3/3" in run.stderr


def test_cli_refuses_incomplete_inputs(tmp_path):
    from safetensors.torch import save_file

    from framepack_core.parallel.cli import parse_args, read_inputs

    path = tmp_path / "cond.safetensors"
    save_file({"start_latent": torch.zeros(1, 16, 1, 8, 8), "start_embeds": torch.zeros(1, 4, 8),
               "prompt_tokens": torch.zeros(1, 3, 8), "negative_tokens": torch.zeros(1, 3, 8)}, path)
    with pytest.raises(InputError, match="lacks prompt_pooled, negative_pooled"):
        read_inputs(path)
    with pytest.raises(InputError, match="no pickle files"):
        read_inputs(tmp_path / "cond.pt")
    for bad in ("64", "64x", "ax64", "32x64", "64x99999"):
        with pytest.raises(SystemExit):
            parse_args(["--model", "m.safetensors", "--out", "o.safetensors", "--random-inputs", bad])


def test_the_scaling_tables_bytes_are_what_the_split_sends():
    """bench/bench_parallel.py's README table counts the bytes the code really sends: a forward of the released
    widths on meta with the collectives counted (4 ranks, 720p)."""
    import dataclasses
    import importlib
    import sys

    from framepack_core import RELEASED, FramePackTransformer
    from framepack_core.memory import image_tokens, measure_peak_activations
    from framepack_core.parallel.ulysses import SimulatedSplit

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    bench = importlib.import_module("bench_parallel")

    class Counting(SimulatedSplit):
        sent = 0

        def _all_to_all(self, send, received):
            self.sent += send.nbytes * (self.size - 1) // self.size

        def _all_gather(self, tensor):
            self.sent += tensor.nbytes * (self.size - 1)
            return super()._all_gather(tensor)

        def _all_gather_into(self, whole, tensor):
            self.sent += tensor.nbytes * (self.size - 1)

    shallow = dataclasses.replace(RELEASED, num_layers=2, num_single_layers=3)
    with torch.device("meta"):
        model = FramePackTransformer(shallow).to(torch.bfloat16)
    model.compute_dtype = torch.bfloat16
    split = Counting(4, shallow.num_attention_heads)
    model.set_sequence_parallel(split)
    measure_peak_activations(model, 9, 90, 160)
    expected = bench.bytes_per_step(shallow, image_tokens(shallow, 9, 90, 160), 4)
    assert split.sent == pytest.approx(expected, rel=1e-3)


def test_a_frozen_rank_cannot_hang_an_interrupted_job(model_file):
    """A rank that neither dies nor answers (SIGSTOP: the other waits for it in a collective) gets the group stopped
    once the interrupt's grace has passed, instead of a parent waiting forever."""
    group = WorkerGroup(_spec(model_file, 2), interrupt_grace_s=2.0)
    try:
        os.kill(group.processes[1].pid, signal.SIGSTOP)
        with pytest.raises(WorkerGroupError, match=r"rank\(s\) 0, 1 did not stop within 2 s of the interrupt"):
            group.run(video_request(), interrupt=lambda: True)
        assert group.processes == []  # killed, the stopped one included
    finally:
        group.stop(grace_s=0.0)


def test_a_lora_in_the_spec_is_applied_on_every_rank(model_file, loaded, tmp_path):
    """The loader's LoRA stack travels in the ModelSpec: every worker merges it as the loader node would."""
    from safetensors.torch import save_file

    from framepack_core.layers import Linear
    from framepack_core.lora_apply import apply_lora_stack

    g = torch.Generator().manual_seed(3)
    tensors = {}
    for name, module in loaded.named_modules():
        if isinstance(module, Linear) and name.startswith(("single_transformer_blocks.0", "transformer_blocks.1")):
            stem = "lora_unet_" + name.replace(".", "_")
            tensors[f"{stem}.lora_down.weight"] = torch.randn(4, module.in_features, generator=g) * 0.1
            tensors[f"{stem}.lora_up.weight"] = torch.randn(module.out_features, 4, generator=g) * 0.1
    lora = tmp_path / "style.safetensors"
    save_file(tensors, lora)
    with_lora = load_framepack_model(model_file, compute_dtype="fp32")
    apply_lora_stack(with_lora, [(lora, 0.8)])
    want = generate_video(with_lora, video_request()).latents
    assert (want - generate_video(loaded, video_request()).latents).abs().max().item() > 1e-3  # the LoRA matters
    spec = GroupSpec(ModelSpec(str(model_file), compute_dtype="fp32", loras=((str(lora), 0.8),)), ("cpu", "cpu"))
    with WorkerGroup(spec) as group:
        _assert_close(group.run(video_request()).latents, want)


def test_loading_waves_and_stored_bytes(model_file, loaded, tmp_path):
    """Ranks load in turns when the host cannot hold every rank's copy at once; the weights' size is read from the
    headers exactly as the loader will store them (compute dtype, fp8 storage)."""
    from framepack_core.offload import module_bytes
    from framepack_core.parallel.worker import loading_waves

    gb = 10 ** 9
    assert loading_waves(8, 26 * gb, 1000 * gb) == 8
    assert loading_waves(4, 26 * gb, 70 * gb) == 2
    assert loading_waves(4, 26 * gb, 20 * gb) == 1
    assert loading_waves(4, 26 * gb, None) == 4 and loading_waves(4, 0, 1) == 4
    raw = lambda m: sum(t.numel() * t.element_size() for t in m.state_dict().values())  # noqa: E731
    spec = ModelSpec(str(model_file), compute_dtype="fp32")
    assert spec.stored_bytes() == raw(loaded) and module_bytes(loaded) >= raw(loaded)
    for storage in ("fp8_e4m3fn", "auto"):
        want = raw(load_framepack_model(model_file, compute_dtype="bf16", storage=storage))
        assert ModelSpec(str(model_file), compute_dtype="bf16", storage=storage).stored_bytes() == want
    [fp8_file] = save_framepack_model(loaded, tmp_path / "fp8.safetensors", storage="fp8_e4m3fn")
    assert ModelSpec(str(fp8_file), compute_dtype="bf16").stored_bytes() == \
        raw(load_framepack_model(fp8_file, compute_dtype="bf16"))
