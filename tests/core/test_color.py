"""RGB -> yuv420p (BT.709, limited range) in integer arithmetic, against the float formula and known values."""

import pytest
import torch

from framepack_core.color import rgb_to_yuv420p, to_rgb24


def _float_reference(frame: torch.Tensor) -> torch.Tensor:
    rgb = frame.double() / 255
    r, g, b = rgb.unbind(-1)
    y_ = 0.2126 * r + 0.7152 * g + 0.0722 * b
    y = 16 + 219 * y_
    h, w, _ = frame.shape
    blocks = rgb.reshape(h // 2, 2, w // 2, 2, 3).mean(dim=(1, 3))
    br, bg, bb = blocks.unbind(-1)
    by = 0.2126 * br + 0.7152 * bg + 0.0722 * bb
    u = 128 + 224 * (bb - by) / 1.8556
    v = 128 + 224 * (br - by) / 1.5748
    return torch.cat([y.flatten(), u.flatten(), v.flatten()]).reshape(h * 3 // 2, w)


@pytest.mark.parametrize("rgb,expected", [
    ((0, 0, 0), (16, 128, 128)), ((255, 255, 255), (235, 128, 128)),
    ((255, 0, 0), (63, 102, 240)), ((0, 255, 0), (173, 42, 26)), ((0, 0, 255), (32, 240, 118)),
])
def test_known_colours(rgb, expected):
    frame = torch.tensor(rgb, dtype=torch.uint8).expand(4, 6, 3).contiguous()
    out = rgb_to_yuv420p(frame)
    assert out.shape == (6, 6)
    y, chroma = out[:4].flatten(), out[4:].flatten()
    assert set(y.tolist()) == {expected[0]}
    assert set(chroma[:6].tolist()) == {expected[1]} and set(chroma[6:].tolist()) == {expected[2]}


def test_matches_the_float_formula_within_rounding():
    frame = torch.randint(0, 256, (32, 48, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    out = rgb_to_yuv420p(frame).double()
    reference = _float_reference(frame)
    assert (out - reference).abs().max().item() <= 0.5 + 1e-3
    # 16-bit fixed point: it differs from exact rounding only where the exact value is within 0.01 of a half
    differs = out != reference.round()
    assert ((reference[differs] % 1 - 0.5).abs() < 0.01).all()


def test_planes_and_errors():
    frame = torch.zeros(4, 8, 3, dtype=torch.uint8)
    frame[:, 4:, 2] = 255  # right half blue: chroma columns 2-3 of each U/V row
    out = rgb_to_yuv420p(frame)
    u = out[4:].flatten()[:8].reshape(2, 4)
    assert u[:, :2].eq(128).all() and u[:, 2:].eq(240).all()
    with pytest.raises(ValueError, match="even"):
        rgb_to_yuv420p(torch.zeros(3, 4, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_yuv420p(torch.zeros(4, 4, 3))


def test_float_frames_to_rgb24():
    frames = torch.tensor([[[[-0.5, 0.0, 1 / 255, 0.9], [0.5, 127.4 / 255, 1.0, 0.1], [2.0, 254.6 / 255, 0.25, 0.0]]]])
    out = to_rgb24(frames)  # one frame, 1x3 pixels, RGBA: the alpha goes
    assert out.dtype == torch.uint8 and out.shape == (1, 1, 3, 3)
    assert out.flatten().tolist() == [0, 0, 1, 128, 127, 255, 255, 255, 64]
