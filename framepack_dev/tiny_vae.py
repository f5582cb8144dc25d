"""A random-init TAEHV (tiny HunyuanVideo autoencoder) state dict that ComfyUI's VAELoader loads natively.

ComfyUI (comfy/sd.py, VAE.__init__) recognises a TAEHV-family state dict by the key ``decoder.22.bias``,
reads the latent channels from ``decoder.1.weight``'s input dimension, and takes a float16
``decoder.1.weight`` with 16 latent channels to mean TAEHV for HunyuanVideo (latent format
``HunyuanVideo``: scale 0.476986; time x4, space x8 compression). The module layout below is that of
``comfy/taesd/taehv.py`` (madebyollin's TAEHV): 3x3 convs, "MemBlock" residual blocks that also see the
previous frame, 1x1 time-pooling (TPool) / time-growing (TGrow) convs. 11.3M parameters.

The weights are random, so decoded images are noise: this is for exercising ComfyUI's real
VAELoader / VAEEncode / VAEDecode path fast (a full HunyuanVideo VAE is 246M parameters).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

LATENT_CHANNELS = 16
IMAGE_CHANNELS = 3

# (kind, args) per nn.Sequential index. conv = 3x3 Conv2d(n_in, n_out, bias); mem = MemBlock(n_in, n_out);
# pool/grow = 1x1 bias-free Conv2d over frames stacked on channels; None = layer without weights.
_ENCODER = (
    [("conv", (IMAGE_CHANNELS, 64, True)), None]
    + [("pool", (64, 2)), ("conv", (64, 64, False))] + [("mem", (64, 64))] * 3
    + [("pool", (64, 2)), ("conv", (64, 64, False))] + [("mem", (64, 64))] * 3
    + [("pool", (64, 1)), ("conv", (64, 64, False))] + [("mem", (64, 64))] * 3
    + [("conv", (64, LATENT_CHANNELS, True))]
)
_DECODER = (
    [None, ("conv", (LATENT_CHANNELS, 256, True)), None]
    + [("mem", (256, 256))] * 3 + [None, ("grow", (256, 1)), ("conv", (256, 128, False))]
    + [("mem", (128, 128))] * 3 + [None, ("grow", (128, 2)), ("conv", (128, 64, False))]
    + [("mem", (64, 64))] * 3 + [None, ("grow", (64, 2)), ("conv", (64, 64, False))]
    + [None, ("conv", (64, IMAGE_CHANNELS, True))]
)


def taehv_parameter_shapes() -> dict[str, tuple[int, ...]]:
    """Every TAEHV (HunyuanVideo, 16 latent channels) parameter name with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(prefix: str, n_in: int, n_out: int, bias: bool, kernel: int = 3) -> None:
        shapes[f"{prefix}.weight"] = (n_out, n_in, kernel, kernel)
        if bias:
            shapes[f"{prefix}.bias"] = (n_out,)

    for part, layers in (("encoder", _ENCODER), ("decoder", _DECODER)):
        for index, layer in enumerate(layers):
            if layer is None:
                continue
            kind, args = layer
            prefix = f"{part}.{index}"
            if kind == "conv":
                conv(prefix, *args)
            elif kind == "mem":  # conv(2n_in -> n_out), ReLU, conv, ReLU, conv; skip conv only if n_in != n_out
                n_in, n_out = args
                conv(f"{prefix}.conv.0", 2 * n_in, n_out, True)
                conv(f"{prefix}.conv.2", n_out, n_out, True)
                conv(f"{prefix}.conv.4", n_out, n_out, True)
                if n_in != n_out:
                    conv(f"{prefix}.skip", n_in, n_out, False, kernel=1)
            elif kind == "pool":  # stride frames stacked on channels -> one frame
                channels, stride = args
                conv(f"{prefix}.conv", channels * stride, channels, False, kernel=1)
            elif kind == "grow":  # one frame -> stride frames
                channels, stride = args
                conv(f"{prefix}.conv", channels, channels * stride, False, kernel=1)
    return shapes


def tiny_taehv_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float16 TAEHV weights: N(0, 1/fan_in) kernels (keeps activations O(1) through the
    residual stacks), N(0, 0.01) biases; the same for the same ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, shape in taehv_parameter_shapes().items():
        if name.endswith(".bias"):
            values = 0.01 * torch.randn(shape, generator=generator)
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            values = torch.randn(shape, generator=generator) / fan_in**0.5
        state[name] = values.to(torch.float16).contiguous()
    return state


def write_tiny_taehv(path: str | Path, seed: int = 0) -> Path:
    """Save :func:`tiny_taehv_state_dict` as safetensors at ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tiny_taehv_state_dict(seed), str(path))
    return path
