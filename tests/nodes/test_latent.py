"""The LATENT between FramePack Sampler and FramePack Video Combine (nodes/latent.py): the sampler's section plan
travels with the samples, and a LATENT from anywhere else is refused with what to connect instead."""

from __future__ import annotations

import pytest
import torch

from tests.nodes.pack import pack_module

latent_module = pack_module("nodes.latent")
planning = pack_module("framepack_core.planning")
config = pack_module("framepack_core.config")
InputError = pack_module("framepack_core.errors").InputError
write_mp4 = pack_module("framepack_core.mp4").write_mp4


def _sampled(num_frames=37, **kw):
    plan = planning.plan_video(num_frames, "inverted", window=3)
    model_latents = torch.randn(1, 16, plan.total_latents, 2, 3, generator=torch.Generator().manual_seed(0))
    return plan, model_latents, latent_module.sampler_latent(model_latents, latent_module.SampledPlan(plan, 7, **kw))


def test_the_sampler_plan_travels_with_the_samples_in_the_vae_space():
    plan, model_latents, latent = _sampled()
    samples, sampled = latent_module.sampled_video(latent)
    assert sampled.plan is plan  # the sampler's own plan object: Video Combine plans nothing again
    assert (sampled.seed, sampled.lead_latents, sampled.continues, sampled.keep_input) == (7, 1, None, True)
    assert samples.shape == model_latents.shape
    torch.testing.assert_close(samples * config.VAE_SCALING_FACTOR, model_latents)
    torch.testing.assert_close(config.to_model_space(samples), model_latents)


def test_vae_scaling_is_one_pair_of_inverse_helpers():
    x = torch.randn(2, 16, 3, 4, 4)
    torch.testing.assert_close(config.to_vae_space(config.to_model_space(x)), x)
    assert torch.equal(config.to_model_space(torch.ones(1)), torch.tensor([config.VAE_SCALING_FACTOR]))


@pytest.mark.parametrize("latent,words", [
    ({"samples": torch.zeros(1, 16, 5, 2, 2)}, "does not come from FramePack Sampler"),  # e.g. Load Latent
    ({"samples": torch.zeros(1, 16, 2, 2)}, "not a video latent"),  # an image latent
    ({"samples": torch.zeros(1, 16, 5, 2, 2), "framepack": {"num_frames": 37, "mode": "inverted", "window": 3}},
     "older version of this pack"),  # the plan fields an earlier version carried
    ({}, "holds no latent samples"),
    ("not a latent", "holds no latent samples"),
])
def test_latents_from_elsewhere_are_clear_errors(latent, words):
    with pytest.raises(InputError, match=words):
        latent_module.sampled_video(latent)


def test_samples_changed_after_the_sampler_are_checked_against_its_plan_before_anything_is_written(tmp_path):
    plan, _, latent = _sampled()
    changed = {**latent, "samples": latent["samples"][:, :, :-1]}  # a latent node dropped a frame; the plan stayed
    samples, sampled = latent_module.sampled_video(changed)
    path = tmp_path / "out.mp4"
    with pytest.raises(InputError, match=f"but its plan expects {plan.total_latents}"):
        write_mp4(str(path), sampled.plan, samples, lambda chunk: pytest.fail("nothing may be decoded"),
                  lead_latents=sampled.lead_latents)
    assert not path.exists()
