"""Shared by the compile tests: both block kinds of a TINY-width model trace into one graph each (dynamo's explain)."""

from __future__ import annotations

import torch

from framepack_core import TINY
from framepack_core.rope import rope_grid, to_complex


def assert_blocks_trace_in_one_graph(model) -> None:
    g = torch.Generator().manual_seed(3)
    tokens, text, temb = (torch.randn(*s, generator=g) for s in ((1, 48, 32), (1, 9, 32), (1, 32)))
    cos, sin = rope_grid(torch.arange(3), 4, 4, TINY.rope_axes_dim, TINY.rope_theta)
    rope = to_complex(cos, sin)
    joint_rope = torch.view_as_real(torch.cat([rope, torch.ones(9, rope.shape[1], dtype=rope.dtype)]))
    rope = torch.view_as_real(rope)  # the form the compiled blocks get
    with torch.no_grad():
        dual = torch._dynamo.explain(model.transformer_blocks[0])(tokens, text, temb, rope, None)
        single = torch._dynamo.explain(model.single_transformer_blocks[0])(torch.cat([tokens, text], 1), temb,
                                                                           joint_rope, None)
    for report in (dual, single):
        assert report.graph_break_count == 0, report.break_reasons
        assert report.graph_count == 1
