"""Networks: ExtraNet checkpoint compatibility, the SS net's shape and cut, warping on analytic flows."""
import math
from pathlib import Path

import pytest
import torch

from reframe_core import cache_model
from reframe_core.networks import get_network
from reframe_core.frames.warp import backward_warp, disocclusion_mask, in_frame_mask

# Keys and shapes of the original ExtraNet(18, 3) state dict, checked against the original repository's checkpoint.
REFERENCE = Path(__file__).resolve().parent / "data" / "extranet_state_dict.tsv"
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # BatchNorm entries that are not parameters


def _reference_shapes() -> dict[str, tuple[int, ...]]:
    rows = [line.split("\t") for line in REFERENCE.read_text().splitlines() if line and not line.startswith("#")]
    assert rows[0] == ["key", "shape"]
    return {key: tuple(int(v) for v in shape.strip("()").split(",") if v.strip()) for key, shape in rows[1:]}


def _random_published_extranet() -> torch.nn.Module:
    """ExtraNet as the original code builds it, ExtraNet(18, 3), with random weights and BatchNorm statistics."""
    net = get_network("extranet").build(n_channels=18, n_classes=3, inputs="color", residual="full")
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            else:
                tensor.normal_(0, 0.2)
    return net.eval()


def test_extranet_state_dict_matches_the_published_checkpoint_layout():
    reference = _reference_shapes()
    # The table itself: 195 entries, 262,141 parameters (the BatchNorm buffers are entries but not parameters).
    assert len(reference) == 195
    assert sum(math.prod(s) for k, s in reference.items() if not k.endswith(BUFFERS)) == 262_141
    assert reference["conv1.conv_feature.weight"] == (24, 18, 3, 3) and reference["outc.bias"] == (3,)
    model = get_network("extranet").build(n_channels=18, n_classes=3)
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == list(reference.items())  # same keys, same order, same shapes
    assert sum(p.numel() for p in model.parameters()) == 262_141


def test_original_extranet_checkpoints_load_through_load_network(tmp_path):
    from reframe_core.weights import PLAIN_FORMAT, load_network

    net = _random_published_extranet()
    inputs = get_network("extranet").example_inputs(32, 32, channels=18)
    with torch.no_grad():
        expected = net(*inputs)
    assert expected.isfinite().all() and not torch.allclose(expected, inputs[0][:, :3])  # a non-trivial residual
    # As the original Model/train.py saves its final model, its periodic checkpoints, and with DataParallel.
    final = tmp_path / "finalModel.pkl"
    torch.save(net.state_dict(), final)
    periodic = tmp_path / "totalModel.5.pth.tar"
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    torch.save({"epoch": 6, "state_dict": net.state_dict(), "optimizer": optimizer.state_dict()}, periodic)
    parallel = tmp_path / "parallel.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, parallel)
    for path in (final, periodic, parallel):
        loaded, payload = load_network(path, expected_arch="extranet")
        assert payload["format"] == PLAIN_FORMAT and payload["arch"] == "extranet"
        assert payload["config"]["n_channels"] == 18 and str(path) in payload["card"]["file"]
        assert not loaded.training and loaded.inputs == "color" and loaded.residual == "full" and loaded.skip
        with torch.no_grad():
            assert torch.equal(loaded(*inputs), expected), path.name
    assert load_network(periodic, "extranet")[1]["card"]["epoch"] == 6
    assert "'module.' prefix removed" in load_network(parallel, "extranet")[1]["card"]["source"]


def test_a_mismatched_plain_state_dict_gets_one_clear_error(tmp_path):
    from reframe_core.weights import WeightsError, load_network

    state = _random_published_extranet().state_dict()
    del state["outc.bias"]
    state["flowpred.weight"] = torch.zeros(3)
    state["conv1.conv_feature.weight"] = torch.zeros(24, 19, 3, 3)  # trained with 19 input channels
    bad = tmp_path / "other.pth"
    torch.save(state, bad)
    with pytest.raises(WeightsError) as error:
        load_network(bad, expected_arch="extranet")
    message = str(error.value)
    assert str(bad) in message and "does not match the published layout" in message
    assert "missing 1: outc.bias" in message and "unexpected 1: flowpred.weight" in message
    assert "conv1.conv_feature.weight (24, 19, 3, 3) in the file, (24, 18, 3, 3) expected" in message
    assert "'n_channels': 18" in message and "195 entries" in message
    # Without an architecture that has a published layout, an untagged file is refused as before.
    torch.save(_random_published_extranet().state_dict(), bad)
    for arch in (None, "ss"):
        with pytest.raises(WeightsError, match=r"other\.pth is not a ReFrame weights file.*plain state dict"):
            load_network(bad, expected_arch=arch)
    torch.save({"weights": [1, 2]}, bad)
    untagged = r"other\.pth is not a ReFrame weights file \(no 'reframe-weights/1' format tag\)"
    with pytest.raises(WeightsError, match=untagged + r" \(expected architecture 'extranet'\)$"):
        load_network(bad, expected_arch="extranet")


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
    v1 = cache_model(entry.build(design="v1").eval(), inputs)
    cached = cache_model(model, inputs)
    assert cached.plan.name == "slow" and cached.plan.removed_share > 0.75 > v1.plan.removed_share
    hit = {n.split("_")[0] for n in cached.plan.hit_nodes}
    assert {"fast", "joint", "refine"} <= hit and "slow" not in hit
    expected = model(*inputs)
    assert torch.equal(cached(*inputs, refresh=True), expected)
    torch.testing.assert_close(cached(*inputs, refresh=False), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown supersampling design 'v9'"):
        entry.build(design="v9")


def test_v3_design_hit_runs_the_fast_branch_and_a_per_pixel_resolve():
    entry = get_network("ss")
    inputs = entry.example_inputs(64, 64)
    model = entry.build(design="v3", width=32).eval()
    assert model.history_warp == "bicubic"
    cached = cache_model(model, inputs)
    v2 = cache_model(entry.build(design="v2").eval(), inputs)
    # The hit path: the fast branch, the fast half of the joint layer and 1x1 layers at display resolution.
    assert cached.plan.name == "slow" and cached.plan.hit_share < 0.12 < 0.45 < v2.plan.hit_share
    hit = {n.split("_")[0] for n in cached.plan.hit_nodes}
    assert {"fast", "joint", "refine"} <= hit and "slow" not in hit
    assert all(m.kernel_size == (1, 1) for m in model.refine if isinstance(m, torch.nn.Conv2d))
    wider = cache_model(entry.build(design="v3", width=32, resolve_kernel=3).eval(), inputs)
    assert cached.plan.hit_share < wider.plan.hit_share < v2.plan.hit_share  # a 3x3 display layer costs each hit
    expected = model(*inputs)
    assert torch.equal(cached(*inputs, refresh=True), expected)
    torch.testing.assert_close(cached(*inputs, refresh=False), expected, rtol=1e-5, atol=1e-5)


def test_v4_design_caches_more_and_starts_from_exactly_what_a_v2_computes():
    from reframe_core.errors import SettingsError
    from reframe_core.networks.supersampling import v4_from_v2

    entry = get_network("ss")
    inputs = entry.example_inputs(64, 64, batch=2)
    torch.manual_seed(3)
    v2 = entry.build(design="v2", correction="range").eval()
    with torch.no_grad():  # weights far from their initialisation, as a trained net's are
        for p in v2.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    v4 = v4_from_v2(v2, slow_width=40).eval()
    assert v4.design == "v4" and v4.correction == "range" and v4.slow[0].enc1[0][0].out_channels == 40
    with torch.no_grad():
        torch.testing.assert_close(v4(*inputs), v2(*inputs), rtol=1e-5, atol=1e-5)
        # The added channels carry activity; only the zero weights that read them keep the output v2's.
        assert v4.slow[0].enc1[0][0].weight[24:].abs().sum() > 0
        for p in v4.slow.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        assert (v4(*inputs) - v2(*inputs)).abs().max() > 1e-3
    # The cut keeps the slow half of v2's joint layer with the wider branch: a hit does less than v2's, and what
    # a hit runs does not grow with the cached branch's width.
    plans = {w: cache_model(entry.build(design="v4", slow_width=w).eval(), inputs).plan for w in (24, 48)}
    v2_plan = cache_model(v2, inputs).plan
    assert v2_plan.name == plans[48].name == "slow"
    assert plans[24].hit_flops == plans[48].hit_flops < v2_plan.hit_flops
    assert plans[48].removed_share > 0.8 > 0.5 > v2_plan.removed_share
    cached = cache_model(v4, inputs)
    with torch.no_grad():
        expected = v4(*inputs)
        assert torch.equal(cached(*inputs, refresh=True), expected)
        torch.testing.assert_close(cached(*inputs, refresh=False), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(SettingsError, match="slow_width is design v4's"):
        entry.build(design="v2", slow_width=48)
    with pytest.raises(SettingsError, match="narrower than the v2 network's width 24"):
        v4_from_v2(v2, slow_width=16)


def test_the_resolve_computes_the_same_channels_last_or_channels_first(monkeypatch):
    """On a CPU the resolve's input is written in place, channels-last; built by concatenation (autograd, as in
    training) it is channels-first below CHANNELS_LAST_RESOLVE_PIXELS display pixels and channels-last from
    there. The output is the same every way, in the network and in its cached copy."""
    from reframe_core.networks import supersampling
    from reframe_core.networks.resampling import is_channels_last as channels_last

    torch.manual_seed(0)
    net = get_network("ss").build(design="v4", slow_width=32, correction="range").eval()
    inputs = get_network("ss").example_inputs(40, 56, batch=2)
    tone, joint = torch.rand(2, 3, 20, 28), torch.rand(2, 24, 20, 28)
    with torch.no_grad():
        assert channels_last(supersampling.resolve_inputs(tone, inputs[2], joint, inputs[3])[0])
        first = net(*inputs)
        cached = cache_model(net, inputs)
        hit = (cached(*inputs, refresh=True), cached(*inputs, refresh=False))[1]
    joint.requires_grad_(True)
    assert supersampling.resolve_inputs(tone, inputs[2], joint, inputs[3])[0].is_contiguous()
    trained = net(*inputs)
    monkeypatch.setattr(supersampling, "CHANNELS_LAST_RESOLVE_PIXELS", 0)
    assert channels_last(supersampling.resolve_inputs(tone, inputs[2], joint, inputs[3])[0])
    trained_last = net(*inputs)
    assert trained.requires_grad and trained_last.requires_grad
    torch.testing.assert_close(hit, first, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(trained_last.detach(), first, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(trained.detach(), first, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale", [1.5, 2, 3])
def test_v2_resolve_reads_its_candidates_as_separate_up_samplings_would(scale):
    """The resolve reads every up-sampling through one grid, one grid_sample per mode (at whole-number scales,
    without autograd: shifted weighted sums written into one tensor), and takes the 3x3 range by separable
    min/max: the network's output is what the plain formulation (a grid per call, max_pool2d) computes from the
    same weights."""
    import torch.nn.functional as F
    from reframe_core.networks.supersampling import V2_CANDIDATES, neighbourhood_range, sample_distance

    def grid_of(jitter, low, size):  # the display pixel centres in low-res coordinates, minus the jitter
        (h, w), (H, W) = low, size
        xs = (torch.arange(W) + 0.5) * w / W - jitter[:, 0, None, None]
        ys = (torch.arange(H)[:, None] + 0.5) * h / H - jitter[:, 1, None, None]
        return torch.stack([(xs / w * 2 - 1).expand(-1, H, W), (ys / h * 2 - 1).expand(-1, H, W)], -1)

    def sample(image, jitter, size, mode):
        return F.grid_sample(image, grid_of(jitter, image.shape[-2:], size), mode=mode, padding_mode="border", align_corners=False)

    tone = torch.rand(2, 3, 12, 20, generator=torch.Generator().manual_seed(0))
    padded = F.pad(tone, (1, 1, 1, 1), mode="replicate")
    low, high = neighbourhood_range(tone)
    torch.testing.assert_close(high, F.max_pool2d(padded, 3, 1), rtol=0, atol=0)
    torch.testing.assert_close(low, -F.max_pool2d(-padded, 3, 1), rtol=0, atol=0)

    torch.manual_seed(0)
    net = get_network("ss").build(design="v2", correction="range").eval()
    color, gbuffer, jitter, history = get_network("ss").example_inputs(36, 60, batch=2, scale=scale)
    jitter[0] = torch.tensor([0.25, -0.5])  # quarter and half pixels: ties of the nearest sample at scale 2
    joints = []
    hook = net.joint.register_forward_hook(lambda m, a, out: joints.append(out))
    with torch.no_grad():
        out = net(color, gbuffer, jitter, history)
        hook.remove()
        t, size = torch.log1p(color), history.shape[-2:]
        lo, hi = (sample(x, jitter, size, "nearest") for x in (-F.max_pool2d(-F.pad(t, (1, 1, 1, 1), mode="replicate"), 3, 1),
                                                               F.max_pool2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), 3, 1)))
        past = torch.log1p(history)
        candidates = torch.stack([past, past.clamp(min=lo).minimum(hi), sample(t, jitter, size, "bicubic"),
                                  sample(t, jitter, size, "bilinear"), sample(t, jitter, size, "nearest")], 1)
        refined = net.refine(torch.cat([sample(joints[0], jitter, size, "bilinear"), candidates.flatten(1, 2),
                                        sample_distance(jitter, t.shape[-2:], size).expand(2, -1, -1, -1)], 1))
        blend = (torch.softmax(refined[:, :V2_CANDIDATES], 1)[:, :, None] * candidates).sum(1)
        expected = torch.expm1((blend + refined[:, V2_CANDIDATES:] * (hi - lo)).clamp(max=12))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_v2_design_resolves_among_candidates_and_caches_exactly():
    from reframe_core.networks.supersampling import sample_distance

    # Scale 2, no jitter: every display pixel centre is a quarter low-res pixel from a sample on each axis.
    d = sample_distance(torch.zeros(1, 2), (4, 4), (8, 8))
    torch.testing.assert_close(d, torch.full((1, 1, 8, 8), 0.125))
    # Jitter (0.25, -0.25) puts samples exactly on every other display pixel centre.
    d = sample_distance(torch.tensor([[0.25, -0.25]]), (4, 4), (8, 8))
    assert d.min() == 0 and d.max() == 0.5 and (d == 0).float().mean() == 0.25
    entry = get_network("ss")
    model = entry.build(design="v2").eval()
    assert model.history_warp == "bicubic" and entry.build(design="v1").history_warp == "bilinear"
    assert entry.build().design == "v2"  # the shipped design is the default
    inputs = entry.example_inputs(64, 64)
    cached = cache_model(model, inputs)
    assert cached.plan.name == "slow" and 0.3 < cached.plan.removed_share
    with torch.no_grad():  # as the cache runs it (with autograd, the resolve builds its input another way)
        expected = model(*inputs)
    assert expected.shape == (1, 3, 64, 64)
    assert torch.equal(cached(*inputs, refresh=True), expected)
    torch.testing.assert_close(cached(*inputs, refresh=False), expected, rtol=1e-5, atol=1e-5)


def test_extranet_head_at_zero_outputs_the_warped_history_and_leaves_the_network_alone():
    from reframe_core.networks.extranet import head_at_zero
    from reframe_core.weights import load_network, shipped

    net, _ = load_network(shipped("fe_extranet"), expected_arch="extranet")
    torch.manual_seed(0)
    x, feature, mask, history = get_network("extranet").example_inputs(32, 32, channels=net.n_channels)
    mask[..., 8:20, 8:20] = 0  # a hole in the history, where the head's residual applies
    head = net.outc.weight.clone()
    with torch.no_grad():
        ablated = head_at_zero(net)(x, feature, mask, history)
        trained = net(x, feature, mask, history)
    assert torch.equal(ablated, x[:, :3])  # the warped history, untouched
    assert not torch.equal(trained, ablated) and torch.equal(net.outc.weight, head)


def test_shading_space_extranet_with_a_zero_head_is_demodulated_reprojection():
    from reframe_core.workloads.extrapolation import ALBEDO_FLOOR, decode, encode, fe_inputs, warp_history

    torch.manual_seed(0)
    color, albedo, current_albedo = torch.rand(1, 3, 32, 32) * 4, torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    albedo[..., :8, :] = 0  # black / emissive surfaces: the floor keeps them finite
    torch.testing.assert_close(decode(encode(color, albedo, "shading"), albedo, "shading"), color)
    assert torch.equal(decode(encode(color, albedo, "color"), albedo, "color"), color)
    motion = torch.zeros(1, 2, 32, 32)
    motion[:, 0] = 2.0  # whole-pixel motion: bicubic warping is exact
    ones = torch.ones(1, 1, 32, 32)
    colors, masks = warp_history([encode(color, albedo, "shading")] * 3, [ones] * 3, motion, mode="bicubic")
    feature = torch.cat([torch.rand(1, 4, 32, 32), current_albedo], 1)
    net = get_network("extranet").build(n_channels=19, inputs="shading").eval()
    torch.nn.init.zeros_(net.outc.weight)
    torch.nn.init.zeros_(net.outc.bias)
    with torch.no_grad():
        out = decode(net(*fe_inputs(colors, masks, motion, None, feature)), current_albedo, "shading")
    expected = backward_warp(color / (albedo + ALBEDO_FLOOR), motion, mode="bicubic") * (current_albedo + ALBEDO_FLOOR)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="unknown ExtraNet inputs 'hdr'"):
        get_network("extranet").build(inputs="hdr")


def test_workloads_read_the_network_settings_through_the_cache():
    from reframe_core.workloads.extrapolation import input_space
    from reframe_core.workloads.supersampling import history_warp_mode

    fe = get_network("extranet")
    net = fe.build(n_channels=19, inputs="shading", residual="holes").eval()
    cached = cache_model(net, fe.example_inputs(32, 32, channels=19))
    assert cached.network is net and input_space(cached) == "shading" == input_space(net)
    ss = get_network("ss")
    cached = cache_model(ss.build(design="v2").eval(), ss.example_inputs(32, 32))
    assert history_warp_mode(cached) == "bicubic" and history_warp_mode(ss.build(design="v1")) == "bilinear"


def test_holes_residual_changes_only_pixels_whose_history_is_invalid():
    torch.manual_seed(0)
    net = get_network("extranet").build(n_channels=19, inputs="shading", residual="holes").eval()
    x, feature, mask, his = get_network("extranet").example_inputs(32, 32, channels=19)
    mask = torch.ones_like(mask)
    mask[..., 10:14, 20:23] = 0  # a disoccluded patch
    mask[..., 25, 5] = mask[..., 27, 9] = 0  # isolated invalid pixels (dithered glass), not holes
    with torch.no_grad():
        changed = (net(x, feature, mask, his) - x[:, :3]).abs().amax(1)[0] > 0
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[8:16, 18:25] = True  # the patch grown by two pixels
    assert torch.equal(changed, expected)
    with pytest.raises(ValueError, match="unknown ExtraNet residual 'some'"):
        get_network("extranet").build(residual="some")


def test_relight_residual_picks_between_the_warped_history_and_the_relit_frame_and_never_beyond():
    torch.manual_seed(0)
    net = get_network("extranet").build(n_channels=25, inputs="shading", residual="relight").eval()
    x, feature, mask, his = get_network("extranet").example_inputs(32, 32, channels=25)
    history, relit = x[:, :3], feature[:, -3:]
    with torch.no_grad():
        torch.nn.init.zeros_(net.outc.weight)
        torch.nn.init.zeros_(net.outc.bias)
        assert torch.equal(net(x, feature, mask, his), history)  # head at zero: the warped history alone
        net.outc.bias.fill_(5.0)  # a weight past 1 is clamped: exactly the relit frame
        torch.testing.assert_close(net(x, feature, mask, his), relit)
        net.outc.bias.copy_(torch.tensor([0.1, 0.3, 0.5]))  # the channels' mean, 0.3, for every channel alike
        torch.testing.assert_close(net(x, feature, mask, his), history + 0.3 * (relit - history))
        torch.nn.init.normal_(net.outc.weight, std=3.0)  # any head: each pixel lies between the two predictions
        out = net(x, feature, mask, his)
    low, high = torch.minimum(history, relit), torch.maximum(history, relit)
    assert ((out >= low - 1e-6) & (out <= high + 1e-6)).all()
    assert not torch.equal(out, history) and not torch.allclose(out, relit)


def test_relighting_puts_a_frames_effects_back_on_its_own_cheap_pass():
    from reframe_core.workloads.extrapolation import effects_ratio, gated_relight, relight

    torch.manual_seed(0)
    cheap = torch.rand(1, 3, 16, 16) * 3
    shadow = torch.rand(1, 3, 16, 16)  # what the effects the cheap pass leaves out do to each pixel
    color = cheap * shadow
    color[..., :4, :] = 0  # a black region of both passes stays black
    cheap[..., :4, :] = 0
    torch.testing.assert_close(relight(effects_ratio(color, cheap), cheap), color, rtol=1e-5, atol=1e-5)
    brighter = cheap * 2  # this frame's cheap pass twice as bright (a light turned up): so is the relit frame
    torch.testing.assert_close(relight(effects_ratio(color, cheap), brighter), color * 2, rtol=1e-3, atol=3e-3)
    effects = torch.zeros(1, 3, 16, 16)
    effects[..., 8:, :] = 2.0  # the effects change these pixels by e^2: too much to trust the ratio there
    gated = gated_relight(effects, torch.full_like(cheap, 1.0), torch.full_like(cheap, 7.0))
    assert (gated[..., :8, :] == 1).all() and (gated[..., 8:, :] == 7).all()


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


def test_a_round_trip_within_a_pixel_is_not_a_hole():
    """A surface seen in both frames whose vectors disagree by under a pixel (dithered glass, anti-aliased edges:
    the round trip reads the other frame's vector at the nearest pixel) is seen; a disagreement of more than a
    pixel is not, as a real disocclusion's is (the uncovered strip's here is 4 px). In a larger frame, whose
    vectors are longer in its pixels, the tolerance grows with the width."""
    h, w = 32, 32
    previous_next = torch.zeros(1, 2, h, w)
    previous_next[:, 0, 10:20, 10:20] = 4.0
    current_prev = torch.zeros(1, 2, h, w)
    current_prev[:, 0, 10:20, 14:24] = -4.0
    previous_next[:, 0, :, 28] = 0.8  # under a pixel off
    previous_next[:, 1, :, 2] = 1.2  # more than a pixel off
    mask = disocclusion_mask(current_prev, previous_next)
    assert mask[0, 0, :, 28].all() and not mask[0, 0, :, 2].any()
    assert not mask[0, 0, 10:20, 10:14].any() and mask[0, 0, 10:20, 14:24].all()
    # The same scene 20 times as large (640x640: vectors 20 times as long, in its pixels): the tolerance is 2.5 px
    # there (a pixel per 256 of width), so a 2 px disagreement is seen, a 3 px one is not, nor the uncovered strip.
    large = lambda m: torch.nn.functional.interpolate(m * 20, scale_factor=20, mode="nearest")  # noqa: E731
    current_prev, previous_next = large(current_prev), large(previous_next)
    previous_next[:, 0, :, 28 * 20:29 * 20] = 2.0
    previous_next[:, 1, :, 2 * 20:3 * 20] = 3.0
    mask = disocclusion_mask(current_prev, previous_next)
    assert mask[0, 0, :, 28 * 20:29 * 20].all() and not mask[0, 0, :, 2 * 20:3 * 20].any()
    assert not mask[0, 0, 200:400, 200:280].any() and mask[0, 0, 200:400, 280:480].all()


def test_depth_keeps_what_the_motion_round_trip_wrongly_rejects():
    """The same moving square; the background's motion is noisy along a column (as EEVEE's anti-aliased vector
    pass is along edges), so the round trip fails there although nothing was uncovered. Depth agrees there, so
    with depths given it is not a hole; the uncovered strip (depth: the square's before, the wall's now) and the
    sky (inf both times) keep their answers."""
    h, w = 32, 32
    previous_next = torch.zeros(1, 2, h, w)
    previous_next[:, 0, 10:20, 10:20] = 4.0
    current_prev = torch.zeros(1, 2, h, w)
    current_prev[:, 0, 10:20, 14:24] = -4.0
    previous_next[:, 1, :, 28] = 2.0  # disagreeing motion on one background column
    previous_depth = torch.full((1, 1, h, w), 10.0)
    previous_depth[..., 10:20, 10:20] = 3.0
    previous_depth[..., :4, :] = float("inf")  # sky at the top
    depth = torch.full((1, 1, h, w), 10.0)
    depth[..., 10:20, 14:24] = 3.0
    depth[..., :4, :] = float("inf")
    motion_only = disocclusion_mask(current_prev, previous_next)
    with_depth = disocclusion_mask(current_prev, previous_next, depth=depth, previous_depth=previous_depth)
    assert not motion_only[0, 0, 4:, 28].any() and with_depth[0, 0, 4:, 28].all()
    assert not with_depth[0, 0, 10:20, 10:14].any(), "the uncovered strip stays a hole"
    assert with_depth[0, 0, :4].all() and with_depth[0, 0, 10:20, 14:24].all()


def test_shipped_weights_load_with_their_card():
    from reframe_core.weights import load_network, shipped

    model, payload = load_network(shipped("ss_x2"), expected_arch="ss")
    assert payload["card"]["scale"] == 2.0 and "slow_pan" in payload["card"]["held_out"]
    fe, fe_payload = load_network(shipped("fe_extranet"), expected_arch="extranet")
    assert fe_payload["card"]["workload"] == "fe"
    total = sum(shipped(n).stat().st_size for n in ("ss_x2", "fe_extranet"))
    assert total < 20 * 2**20, "shipped weights stay under 20 MB"


@pytest.mark.parametrize("radius", [1, 3])
def test_window_extremes_are_max_pooling_with_the_outside_ignored(radius):
    import torch.nn.functional as F
    from reframe_core.networks.windows import window_max, window_min

    image = torch.rand(2, 3, 9, 13, generator=torch.Generator().manual_seed(radius))
    image[0, 0, 0, 0] = 5.0  # a corner extreme reaches radius pixels in, no further
    side = 2 * radius + 1
    expected_max = F.max_pool2d(image, side, stride=1, padding=radius)  # max_pool2d pads with -inf
    expected_min = -F.max_pool2d(-image, side, stride=1, padding=radius)
    assert torch.equal(window_max(image, radius), expected_max) and torch.equal(window_min(image, radius), expected_min)
    assert (window_max(image, radius)[0, 0] == 5.0).sum() == (radius + 1) ** 2


def test_ss_low_resolution_branches_run_channels_last_on_a_cpu_with_the_same_output(monkeypatch):
    """The SS network's low-resolution branches take channels-last inputs on a CPU (faster convolutions there),
    and the joint features reach the resolve in that layout (the phase up-sampling streams through it). Turning
    that off, as a placement that asks for channels-last everywhere does, changes no output; nor does caching."""
    from reframe_core.networks import supersampling
    from reframe_core.networks.resampling import is_channels_last
    from reframe_core.runtime.placement import Placement

    torch.manual_seed(0)
    net = get_network("ss").build(design="v4", slow_width=32).eval()
    inputs = get_network("ss").example_inputs(40, 56, batch=2)
    seen = []
    net.slow.register_forward_pre_hook(lambda module, args: seen.append(("slow", args[0])))
    net.fast.register_forward_pre_hook(lambda module, args: seen.append(("fast", args[0])))
    resolve_inputs = supersampling.resolve_inputs
    monkeypatch.setattr(supersampling, "resolve_inputs", lambda tone, jitter, joint, past: (
        seen.append(("joint", joint)), resolve_inputs(tone, jitter, joint, past))[1])
    with torch.no_grad():
        mixed = net(*inputs)
        last_layout = {name: is_channels_last(t) for name, t in seen}
        assert last_layout == {"slow": True, "fast": True, "joint": True}
        cached = cache_model(net, inputs)
        hit = (cached(*inputs, refresh=True), cached(*inputs, refresh=False))[1]
        net.mixed_memory_format = False
        seen.clear()
        plain = net(*inputs)
        assert all(t.is_contiguous() for _, t in seen)
        last = Placement(device="cpu", channels_last=True)
        everywhere = last.model(get_network("ss").build(design="v4", slow_width=32).eval())
        assert everywhere.mixed_memory_format is False
    torch.testing.assert_close(mixed, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hit, plain, rtol=1e-5, atol=1e-5)


def test_extranet_gives_the_same_output_channels_first_mixed_or_channels_last():
    """ExtraNet runs its full-resolution layers channels-last and its lower levels channels-first; a placement
    that asks for channels-last everywhere turns the mix off. Neither changes what it computes."""
    from reframe_core.runtime.placement import Placement

    torch.manual_seed(0)
    net = _random_published_extranet()
    inputs = get_network("extranet").example_inputs(32, 48)
    with torch.no_grad():
        mixed = net(*inputs)
        last = Placement(device="cpu", channels_last=True)
        everywhere = last.model(net)
        assert everywhere.mixed_memory_format is False
        torch.testing.assert_close(everywhere(*last.inputs(inputs)), mixed, rtol=1e-5, atol=1e-5)
        cached = cache_model(everywhere, last.inputs(inputs))
        torch.testing.assert_close(cached(*last.inputs(inputs), refresh=False), mixed, rtol=1e-5, atol=1e-5)


def test_the_fe_workload_refuses_a_published_extranet_with_the_reason():
    from reframe_core.workloads.extrapolation import Extrapolator
    from reframe_core.networks.extranet import ExtraNet

    published = ExtraNet(18, 3, inputs="color", residual="full").eval()
    with pytest.raises(ValueError, match="roughness and metallic passes"):
        Extrapolator(published)


def test_range_correction_leaves_a_flat_area_its_colour_whatever_the_weights():
    from reframe_core.errors import SettingsError
    from reframe_core.networks.supersampling import local_range

    entry = get_network("ss")
    colour = torch.tensor([0.9, 0.6, 0.3])[None, :, None, None].expand(1, 3, 16, 16).contiguous()
    gbuffer = torch.rand(1, 7, 16, 16, generator=torch.Generator().manual_seed(1))  # the G-buffers vary; the colour does not
    history = colour.new_ones(1, 3, 32, 32) * colour[:, :, :1, :1]
    inputs = (colour, gbuffer, torch.tensor([[0.2, -0.1]]), history)
    for design in ("v2", "v3", "v4"):
        nets = {}
        for correction in ("free", "range", "bounded"):
            torch.manual_seed(0)
            nets[correction] = entry.build(design=design, correction=correction).eval()
            with torch.no_grad():
                for p in nets[correction].refine.parameters():
                    p.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))  # a large, arbitrary correction
        with torch.no_grad():
            # Every candidate is the flat colour; "free" adds the layers' correction, "range" and "bounded" cannot.
            assert (nets["free"](*inputs) - history).abs().max() > 0.05
            torch.testing.assert_close(nets["range"](*inputs), history, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(nets["bounded"](*inputs), history, rtol=1e-5, atol=1e-5)
            # A sharp bright edge: "bounded" never leaves the range of the 3x3 low-res samples around each pixel
            # (read at the pixel's nearest sample); the others overshoot it with these weights.
            edge = torch.full((1, 3, 16, 16), 0.2)
            edge[..., 8:] = 6.0
            sharp = (edge, gbuffer, torch.tensor([[0.2, -0.1]]), torch.nn.functional.interpolate(edge, scale_factor=2))
            tone = torch.log1p(edge)
            low, high = local_range(tone, sharp[2], (32, 32))
            for correction, net in nets.items():
                out = torch.log1p(net(*sharp))
                outside = ((out < low - 1e-5) | (out > high + 1e-5)).float().mean()
                assert (outside == 0) if correction == "bounded" else (outside > 0.01), correction
    with pytest.raises(SettingsError, match="correction must be one of"):
        entry.build(design="v1", correction="range")


def _cpu_flags() -> set:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def test_mixed_precision_runs_only_the_ss_resolve_in_bf16_where_the_cpu_has_bf16_arithmetic():
    """``Placement(precision="mixed")``: the shipped SS network's resolve layers in bfloat16 on a CPU whose flags
    (read here from /proc/cpuinfo, not from torch) list bf16 arithmetic, everything else float32; the output stays
    float32 and within bf16 rounding of the float32 network's; a hit equals its own full pass; on other CPUs nothing
    changes."""
    from reframe_core.runtime.placement import Placement
    from reframe_core.workloads import get_workload

    flags = _cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags to check the CPU's bf16 arithmetic against")
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    workload = get_workload("ss")
    plain, _ = workload.load(None, 2.0)
    mixed, _ = workload.load(None, 2.0)
    placement = Placement("cpu", "mixed")
    mixed = placement.model(mixed)
    assert placement.reduces_layers is native
    dtypes = {name: p.dtype for name, p in mixed.named_parameters()}
    reduced = {name for name, dtype in dtypes.items() if dtype == torch.bfloat16}
    assert reduced == ({name for name in dtypes if name.startswith("refine.")} if native else set())
    assert ("bf16 resolve" in placement.describe(mixed)) is native
    extranet = placement.model(get_workload("fe").load(None, 1.0)[0])  # FE names no such layers: all float32
    assert {p.dtype for p in extranet.parameters()} == {torch.float32}
    assert placement.describe(extranet).endswith("(all fp32: no bf16 layers in this network)" if native else
                                                 "(all fp32: no bf16 arithmetic here)")
    torch.manual_seed(0)
    inputs = workload.example_inputs(plain, (48, 64), scale=2.0)
    inputs = (inputs[0] * 4, *inputs[1:])  # HDR colour, as rendered
    with torch.no_grad():
        want, got = plain(*inputs), mixed(*inputs)
        cached = cache_model(mixed, inputs)
        hit = (cached(*inputs, refresh=True), cached(*inputs, refresh=False))[1]
    assert got.dtype == torch.float32
    torch.testing.assert_close(hit, got, rtol=0, atol=0)
    if not native:
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        return
    # bf16 keeps 8 bits of mantissa: the blend weights and the correction move by about 2^-8 of their size, which
    # moves the (log-space) output by far less than a colour rounded to bf16 would (2^-8 of the colour itself).
    difference = (torch.log1p(got.clamp(min=0)) - torch.log1p(want.clamp(min=0))).abs()
    assert 0 < difference.max() < 0.05 and difference.mean() < 0.005
