"""Networks: ExtraNet checkpoint compatibility, the SS net's shape and cut, warping on analytic flows."""
from pathlib import Path

import pytest
import torch

from reframe_core import cache_model
from reframe_core.networks import get_network
from reframe_core.warp import backward_warp, disocclusion_mask, in_frame_mask

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "extranet_state_dict.tsv"


def _reference_shapes():
    rows = [line.split("\t") for line in REFERENCE.read_text().splitlines() if line and not line.startswith("#")][1:]
    return {key: tuple(int(v) for v in shape.strip("()").split(",") if v.strip()) for key, shape in rows}


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared/reference is not beside this checkout")
def test_extranet_state_dict_matches_the_published_checkpoint_layout():
    model = get_network("extranet").build(n_channels=18, n_classes=3)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == _reference_shapes()
    assert sum(p.numel() for p in model.parameters()) == 262_141
    # A checkpoint of the original code stores the dict under 'state_dict': it loads strictly.
    checkpoint = {"state_dict": {k: torch.zeros(s) for k, s in _reference_shapes().items()}}
    model.load_state_dict(checkpoint["state_dict"], strict=True)


def test_supersampling_net_outputs_display_size_and_caches_its_slow_branch():
    entry = get_network("ss")
    for scale in (1.5, 2.0, 3.0):
        inputs = entry.example_inputs(48, 48, scale=scale)
        model = entry.build().eval()
        out = model(*inputs)
        assert out.shape == (1, 3, 48, 48) and (out > -1).all()  # expm1 of log colour
    cached = cache_model(model, inputs)
    assert cached.plan.name == "slow" and cached.plan.removed_share > 0.3
    hit = {n.split("_")[0] for n in cached.plan.hit_nodes}
    assert "fast" in hit and "refine" in hit and "slow" not in hit


def test_split_design_caches_the_slow_half_of_the_joint_layer():
    entry = get_network("ss")
    inputs = entry.example_inputs(64, 64)
    model = entry.build(design="split").eval()
    v1 = cache_model(entry.build().eval(), inputs)
    cached = cache_model(model, inputs)
    assert cached.plan.name == "slow" and cached.plan.removed_share > 0.75 > v1.plan.removed_share
    hit = {n.split("_")[0] for n in cached.plan.hit_nodes}
    assert {"fast", "joint", "refine"} <= hit and "slow" not in hit
    expected = model(*inputs)
    assert torch.equal(cached(*inputs, refresh=True), expected)
    torch.testing.assert_close(cached(*inputs, refresh=False), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown supersampling design 'v3'"):
        entry.build(design="v3")


def _image(h=32, w=40):
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack([torch.sin(x / 3), torch.cos(y / 4), (x + y) / (h + w)])[None]


def test_zero_flow_is_identity_and_integer_flow_shifts():
    image = _image()
    zero = torch.zeros(1, 2, 32, 40)
    assert torch.allclose(backward_warp(image, zero), image, atol=1e-6)
    flow = zero.clone()
    flow[:, 0] = 3.0  # every pixel's surface was 3 px to the right in the other frame
    flow[:, 1] = -2.0  # and 2 px up
    warped = backward_warp(image, flow)
    assert torch.allclose(warped[..., 2:, :-3], image[..., :-2, 3:], atol=1e-5)
    mask = in_frame_mask(flow)
    assert mask[..., 2:, :-3].all() and not mask[..., :, -3:].any() and not mask[..., :2, :].any()


def test_subpixel_flow_interpolates_linearly():
    ramp = torch.arange(16, dtype=torch.float32).repeat(1, 1, 8, 1)
    flow = torch.zeros(1, 2, 8, 16)
    flow[:, 0] = 0.25
    warped = backward_warp(ramp, flow)
    assert torch.allclose(warped[..., 1:-1], ramp[..., 1:-1] + 0.25, atol=1e-5)


def test_disocclusion_mask_marks_what_a_moving_square_uncovered():
    # Previous frame: a square at x 10..19 moving right by 4 px per frame over a static background.
    h, w = 32, 32
    previous_next = torch.zeros(1, 2, h, w)
    previous_next[:, 0, 10:20, 10:20] = 4.0
    current_prev = torch.zeros(1, 2, h, w)
    current_prev[:, 0, 10:20, 14:24] = -4.0
    mask = disocclusion_mask(current_prev, previous_next)
    # Background at x 10..13 was under the square: disoccluded. Everything else was visible before.
    assert not mask[0, 0, 10:20, 10:14].any()
    assert mask[0, 0, 10:20, 14:24].all() and mask[0, 0, :10].all() and mask[0, 0, 10:20, 24:].all()
