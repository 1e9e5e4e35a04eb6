"""The cache mechanism: exactness, hit-path semantics, invalidation, dtypes/layouts, manual path."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reframe_core import CameraHints, CutError, cache_model
from reframe_core.networks import NETWORKS, get_network
from conftest import devices, flops_removed_measured

IDENTITY = tuple(tuple(float(i == j) for j in range(4)) for i in range(4))


def _hints(frame, cut=False):
    return CameraHints(frame=frame, world_matrix=IDENTITY, projection=IDENTITY, cut=cut)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_refresh_is_bit_identical_and_hit_on_same_input_matches(name):
    entry = get_network(name)
    model = entry.build().eval()
    inputs = entry.example_inputs(64, 64)
    cached = cache_model(model, inputs)
    with torch.inference_mode():
        expected = model(*inputs)
    refreshed = cached(*inputs, refresh=True)
    assert torch.equal(refreshed, expected)
    hit = cached(*inputs, refresh=False)
    assert cached.decisions[-1].refresh is False
    torch.testing.assert_close(hit, expected, rtol=1e-5, atol=1e-5)


def test_unet_hit_reproduces_reframe_semantics():
    model = get_network("unet").build().eval()
    x0, x1 = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    cached = cache_model(model, (x0,), cut="auto")
    assert cached.plan.cached_labels == ("up1",)
    cached(x0, refresh=True)
    with torch.inference_mode():
        s1 = model.enc1(x0)
        s2 = model.enc2(model.pool(s1))
        s3 = model.enc3(model.pool(s2))
        deep = model.bottleneck(model.pool(s3))
        d2 = model.dec2(torch.cat([model.up2(model.dec3(torch.cat([model.up3(deep), s3], 1))), s2], 1))
        cached_up1 = model.up1(d2)
        expected = model.head(model.dec1(torch.cat([cached_up1, model.enc1(x1)], 1)))
    got = cached(x1, refresh=False)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, model(x1).detach(), atol=1e-4), "a hit must not be a full pass"


def test_unetpp_caches_every_upsampled_input_of_the_top_row():
    entry = get_network("unetpp")
    cached = cache_model(entry.build().eval(), entry.example_inputs(64, 64), cut="level:0")
    assert len(cached.plan.cached) == 3
    assert all(shape[-2:] == (64, 64) for shape in cached.plan.cached_shapes)
    top_row = {n for n in cached.plan.hit_nodes if n.startswith("nodes_x0_")}
    assert top_row and not any(n.startswith("nodes_x1_") for n in cached.plan.hit_nodes)


def test_extranet_cut_skips_down_and_first_up_blocks():
    entry = get_network("extranet")
    model = entry.build().eval()
    inputs = entry.example_inputs(64, 64)
    cached = cache_model(model, inputs, cut="up2")
    hit = cached.plan.hit_nodes
    assert not any(n.startswith(("down", "up1", "up2", "convHis", "lowlevelGated")) for n in hit)
    assert any(n.startswith("conv1") for n in hit) and any(n.startswith("up3") for n in hit) and "outc" in hit
    cached(*inputs, refresh=True)
    torch.testing.assert_close(cached(*inputs, refresh=False), model(*inputs).detach(), rtol=1e-5, atol=1e-5)


def test_invalidates_on_resolution_batch_dtype_change_instead_of_failing():
    model = get_network("unet").build().eval()
    cached = cache_model(model, (torch.rand(1, 3, 64, 64),))
    cached(torch.rand(1, 3, 64, 64), refresh=True)
    for x in (torch.rand(1, 3, 96, 64), torch.rand(2, 3, 96, 64), torch.rand(2, 3, 96, 64, dtype=torch.float64)):
        model.to(x.dtype)
        out = cached(x, refresh=False)
        decision = cached.decisions[-1]
        assert decision.refresh and decision.reason.startswith("inputs changed")
        torch.testing.assert_close(out, model(x).detach())
        cached(x, refresh=False)
        assert cached.decisions[-1].refresh is False


def _other_devices():
    # A second real device where one exists; else 'meta' (shapes without data), which exercises the same
    # refresh logic: features cached on one device must never be combined with inputs on another.
    return ["cuda"] if torch.cuda.is_available() else ["meta"]


@pytest.mark.parametrize("device", _other_devices())
def test_refreshes_when_the_inputs_move_to_another_device(device):
    model = get_network("unet").build().eval()
    x = torch.rand(1, 3, 32, 32)
    cached = cache_model(model, (x,))
    cached(x, refresh=True)
    model.to(device)
    out = cached(x.to(device), refresh=False)
    decision = cached.decisions[-1]
    assert decision.refresh and decision.reason.startswith("inputs changed") and device in decision.reason
    assert out.device.type == device and out.shape == (1, 3, 32, 32)
    cached(x.to(device), refresh=False)
    assert cached.decisions[-1].refresh is False, "once refreshed on the new device, hits resume"


def test_reset_and_camera_cut_force_a_refresh():
    model = get_network("unet").build().eval()
    x = torch.rand(1, 3, 32, 32)
    cached = cache_model(model, (x,), policy="every:100")
    cached(x, hints=_hints(1))
    cached(x, hints=_hints(2))
    assert [d.refresh for d in cached.decisions] == [True, False]
    cached(x, hints=_hints(3, cut=True))
    assert cached.decisions[-1].reason == "camera cut"
    cached(x, refresh=False, hints=_hints(4, cut=True))
    assert cached.decisions[-1].refresh, "a cut refreshes even when the caller asks for a hit"
    cached.reset()
    cached(x, refresh=False)
    assert cached.decisions[-1].reason == "no cache yet"


def test_without_policy_or_refresh_flag_the_error_says_what_to_pass():
    model = get_network("unet").build().eval()
    x = torch.rand(1, 3, 32, 32)
    cached = cache_model(model, (x,))
    cached(x, refresh=True)
    with pytest.raises(ValueError, match="refresh=True/False"):
        cached(x)


def test_stats_count_hits_and_flops_removed():
    model = get_network("unet").build().eval()
    x = torch.rand(1, 3, 32, 32)
    cached = cache_model(model, (x,), policy="every:4")
    # Independent of the plan's own accounting: count the FLOPs that really ran, cached vs plain.
    measured = flops_removed_measured(cached, model, (x,), 8)
    stats = cached.stats
    assert (stats.frames, stats.refreshes, stats.hits) == (8, 2, 6)
    assert stats.hit_rate == pytest.approx(0.75)
    assert stats.flops_removed == pytest.approx(measured)
    # Times are recorded (their values are the benchmark's business, not a test's).
    assert stats.full_ms is not None and stats.hit_ms is not None
    assert stats.policy == "every:4" and stats.cut == cached.plan.name


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_channels_last_and_low_precision(device, dtype):
    model = get_network("unet").build().eval().to(device=device, dtype=dtype, memory_format=torch.channels_last)
    x = torch.rand(1, 3, 64, 64, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    cached = cache_model(model, (x,))
    with torch.inference_mode():
        expected = model(x)
        out = cached(x, refresh=True)
        hit = cached(x, refresh=False)
    assert torch.equal(out, expected)
    assert hit.dtype == dtype
    torch.testing.assert_close(hit, expected, rtol=2e-2, atol=2e-2)


class _UpThenInplace(nn.Module):
    """The cached tensor's next user writes into it in place, with an op that changes it every time it runs
    (``mul_``/``add_``; an idempotent one such as ReLU would hide a corrupted cache)."""

    def __init__(self, op: str):
        super().__init__()
        self.op = op
        self.enc = nn.Conv2d(3, 8, 3, padding=1)
        self.low = nn.Conv2d(8, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.head = nn.Conv2d(16, 3, 1)

    def forward(self, x):
        skip = self.enc(x)
        up = self.up(self.low(F.avg_pool2d(skip, 2)))
        up = up.mul_(2.0) if self.op == "mul_" else up.add_(1.0)
        return self.head(torch.cat([up, skip], 1))


@pytest.mark.parametrize("op", ["mul_", "add_"])
def test_inplace_users_do_not_corrupt_the_cache(op):
    model = _UpThenInplace(op).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        expected = model(x.clone())
    cached = cache_model(model, (x,), cut="up")
    # The refresh must store `up` before the in-place op writes into it (else the first hit sees it twice).
    torch.testing.assert_close(cached(x, refresh=True), expected)
    for _ in range(3):  # the hit path must not write into the cache (else every hit would scale it again)
        torch.testing.assert_close(cached(x, refresh=False), expected)


class _DataDependent(nn.Module):
    """Python control flow on tensor values: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.deep = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(3, 8, 3, padding=1), nn.Upsample(scale_factor=2))
        self.shallow = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(16, 3, 1)

    def reframe_deep(self, x):
        feature = self.deep(x)
        return (feature if feature.mean() > 0 else -feature,)

    def reframe_shallow(self, x, deep):
        return self.head(torch.cat([self.shallow(x), deep[0]], 1))

    def forward(self, x):
        return self.reframe_shallow(x, self.reframe_deep(x))


def test_manual_path_for_untraceable_models():
    model = _DataDependent().eval()
    x0, x1 = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16)
    for cut in ("manual", "auto"):
        cached = cache_model(model, (x0,), cut=cut)
        assert cached.plan.name == "manual" and 0 < cached.plan.removed_share < 1
        assert torch.equal(cached(x0, refresh=True), model(x0).detach())
        expected = model.reframe_shallow(x1, model.reframe_deep(x0)).detach()
        torch.testing.assert_close(cached(x1, refresh=False), expected)


def test_untraceable_model_without_manual_cut_gets_a_clear_error():
    class Plain(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(CutError, match="reframe_deep"):
        cache_model(Plain(), (torch.rand(1, 3, 8, 8),))


def test_bad_cut_names_list_what_exists():
    entry = get_network("unet")
    with pytest.raises(CutError, match="Submodules: .*enc1"):
        cache_model(entry.build(), entry.example_inputs(32, 32), cut="nonexistent")
    with pytest.raises(CutError, match="level:9 does not exist"):
        cache_model(entry.build(), entry.example_inputs(32, 32), cut="level:9")
    with pytest.raises(CutError, match="not usable"):
        cache_model(entry.build(), entry.example_inputs(32, 32), cut="enc1")
