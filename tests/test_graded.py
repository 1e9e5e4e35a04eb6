"""Graded refresh: a deeper cut stored at full refreshes, partial refreshes that recompute only what lies above
it. Expectations come from the unmodified network run with forward hooks, not from the cache's own graphs."""
import pytest
import torch
from torch import nn

from conftest import flops_removed_measured
from reframe_core import CutError, cache_model
from reframe_core.errors import SettingsError
from reframe_core.evaluation import bench
from reframe_core.networks import get_network
from reframe_core.policies import GradedRefresh, PolicySpecError, parse_policy


def _run_with(model, module, inputs, replace=None):
    """The model's output with ``module``'s output replaced by ``replace`` (when given), and that module's
    output as the run saw it."""
    seen = {}

    def hook(_module, _args, output):
        seen["value"] = output.clone()
        return replace

    handle = module.register_forward_hook(hook)
    try:
        with torch.inference_mode():
            out = model(*inputs)
    finally:
        handle.remove()
    return out, seen["value"] if replace is None else replace


def _unet_whose_deep_path_matters():
    """The U-Net with He-initialised weights: at PyTorch's default initialisation its deep path changes the
    output by about 1e-5, too little to tell reused deep features from fresh ones."""
    torch.manual_seed(0)
    model = get_network("unet").build().eval()
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return model


def test_unet_partial_refresh_reuses_the_deeper_cut_and_the_next_hit_reuses_the_partial_frame():
    model = _unet_whose_deep_path_matters()
    # Frames that differ in brightness and layout, so that the deep features differ (noise alone averages out).
    ramp = torch.linspace(0, 1, 64).expand(1, 3, 64, 64)
    x0, x1, x2 = torch.rand(1, 3, 64, 64), 4 * ramp + torch.rand(1, 3, 64, 64), 3 * ramp.transpose(-1, -2)
    cached = cache_model(model, (x0,), cut="level:0", policy="every:8/every:2")
    assert cached.plan.cached_labels == ("up1",)
    assert [cached._analysis.label(n) for n in cached.graded.stored] == ["up2"]  # auto: level:1

    cached(x0, refresh=True)
    partial = cached(x1, refresh="partial")
    hit = cached(x2, refresh=False)
    assert [d.grade for d in cached.decisions] == ["full", "partial", "hit"]

    # Independent: the plain network on x1 with up2's output taken from the run on x0 ...
    _, up2_of_x0 = _run_with(model, model.up2, (x0,))
    expected_partial, _ = _run_with(model, model.up2, (x1,), replace=up2_of_x0)
    torch.testing.assert_close(partial, expected_partial, rtol=1e-5, atol=1e-5)
    # ... and the hit after it reuses up1 as that partial frame computed it (x1's skips over x0's deep part).
    captured = {}
    handle_up1 = model.up1.register_forward_hook(lambda m, a, out: captured.setdefault("up1", out.clone()))
    try:
        _run_with(model, model.up2, (x1,), replace=up2_of_x0)
    finally:
        handle_up1.remove()
    expected_hit, _ = _run_with(model, model.up1, (x2,), replace=captured["up1"])
    torch.testing.assert_close(hit, expected_hit, rtol=1e-5, atol=1e-5)
    # Not simply a full pass, nor a hit on the first frame's features.
    with torch.inference_mode():
        assert (partial - model(x1)).abs().max() > 0.1
    assert cached.stats.partials == 1


def test_ss_partial_refresh_recomputes_the_current_jitter():
    """Values derived from the inputs by FLOP-free ops (the jitter and its sampling grids) are small, like deep
    features, but belong to the current frame: the deeper cut must not store them."""
    entry = get_network("ss")
    model = entry.build().eval()
    a = entry.example_inputs(64, 64)
    b = tuple(t.clone() for t in a)
    torch.manual_seed(1)
    b = (b[0] * 0.7 + 0.1 * torch.rand_like(b[0]), b[1], torch.tensor([[0.25, -0.25]]), torch.rand_like(b[3]))
    cached = cache_model(model, a, policy="every:8/every:2")  # the shipped cut (slow), deeper cut auto
    labels = [cached._analysis.label(n) for n in cached.graded.stored]
    assert labels == ["slow.dec2"]
    cached(*a, refresh=True)
    partial = cached(*b, refresh="partial")
    _, dec2_of_a = _run_with(model, model.slow.dec2, a)
    expected, _ = _run_with(model, model.slow.dec2, b, replace=dec2_of_a)
    torch.testing.assert_close(partial, expected, rtol=1e-4, atol=1e-5)


def test_graded_policy_grades_frames_and_counts_partials_from_any_refresh():
    model = get_network("unet").build().eval()
    x = torch.rand(1, 3, 32, 32)
    cached = cache_model(model, (x,), policy="every:8/every:2")
    for _ in range(10):
        cached(x)
    assert [d.grade for d in cached.decisions] == ["full", "hit", "partial", "hit", "partial", "hit", "partial",
                                                    "hit", "full", "hit"]
    assert [d.refresh for d in cached.decisions] == [g != "hit" for g in (d.grade for d in cached.decisions)]
    assert cached.decisions[2].reason.startswith("partial: every:2")
    # max-age in the partial grade counts from the last refresh of either grade; in the full grade, from the last full.
    cached = cached.with_policy("max-age:5/max-age:2")
    for _ in range(8):
        cached(x)
    assert [d.grade for d in cached.decisions] == ["full", "hit", "partial", "hit", "partial", "full", "hit", "partial"]


def test_stats_count_the_flops_partial_refreshes_really_ran():
    model = get_network("unet").build().eval()
    x = torch.rand(1, 3, 32, 32)
    cached = cache_model(model, (x,), policy="every:4/every:2")
    measured = flops_removed_measured(cached, model, (x,), 8)
    stats = cached.stats
    assert (stats.frames, stats.refreshes, stats.partials, stats.hits) == (8, 4, 2, 4)
    assert stats.flops_removed == pytest.approx(measured)
    assert cached.graded.partial_share > 1 - cached.plan.removed_share  # a partial costs more than a hit


def test_graded_specs_and_their_errors():
    policy = parse_policy("screen:px=16,holes=0.1/screen:px=2")
    assert isinstance(policy, GradedRefresh) and policy.spec == "screen:px=16,holes=0.1/screen:px=2"
    assert parse_policy("motion+max-age:8/every:2").spec == "motion+max-age:8/every:2"
    with pytest.raises(PolicySpecError, match="FULL/PARTIAL"):
        parse_policy("every:8/every:4/every:2")
    with pytest.raises(PolicySpecError, match="each side"):
        parse_policy("every:8/")
    model = get_network("unet").build().eval()
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(SettingsError, match="graded policy"):
        cache_model(model, (x,), policy="every:2").forward(x, refresh="partial")
    with pytest.raises(CutError, match="not deeper"):
        cache_model(model, (x,), cut="level:0", policy="every:8/every:2", graded_cut="level:0")
    assert bench.policy_family("screen:px=64,holes=0.3/screen:px=16@reproject") == "screen/screen@reproject"
    from reframe_core.workloads import get_workload
    assert not bench.is_paper_peer("every:8/every:2", get_workload("ss"))


def test_bench_speedup_mixes_the_median_of_each_grade():
    got = bench.speedups([10] * 6, [10, 10, 6, 6, 2, 2], ["full", "full", "partial", "partial", "hit", "hit"])
    assert got["speedup"] == pytest.approx(10 / ((10 * 2 + 6 * 2 + 2 * 2) / 6))
    # The two-grade form (refreshed or not) reads the same as full/hit.
    assert bench.speedups([10] * 4, [10, 2, 2, 2], [True, False, False, False]) == \
        bench.speedups([10] * 4, [10, 2, 2, 2], ["full", "hit", "hit", "hit"])


def test_the_cache_says_when_it_reads_the_depth():
    """Workloads build the depth tensor only when the cache reads it: reprojection, or a screen policy anywhere
    in the spec."""
    model = get_network("unet").build().eval()
    x = torch.rand(1, 3, 32, 32)
    cached = cache_model(model, (x,), policy="every:4")
    assert not cached.needs_depth
    assert cached.with_policy("every:4", reproject=True).needs_depth
    assert cached.with_policy("motion+screen:px=8").needs_depth
    assert cached.with_policy("every:8/screen:px=8").needs_depth
    assert not cached.with_policy("every:8/every:2").needs_depth


class _SharedCut(nn.Module):
    """A value both caches keep (``interpolate``, up-sampled deep features) that the hit path changes in place."""

    def __init__(self):
        super().__init__()
        self.c0, self.ca, self.cb = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.cc, self.f, self.head = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(12, 3, 1)

    def forward(self, x):
        p = torch.nn.functional.avg_pool2d(self.c0(x), 2)
        ua = torch.nn.functional.interpolate(self.ca(p), scale_factor=2.0)
        ub = self.cc(torch.nn.functional.interpolate(self.cb(p), scale_factor=2.0))
        h = torch.nn.functional.leaky_relu(ua, 0.1, inplace=True)
        return self.head(torch.cat([h, ub, self.f(x)], 1))


def test_a_value_both_cuts_keep_is_passed_on_untouched_by_in_place_ops():
    torch.manual_seed(0)
    model, x = _SharedCut().eval(), torch.rand(1, 3, 16, 16)
    cached = cache_model(model, (x,), cut=["interpolate", "cc"], policy="every:8/every:2",
                         graded_cut=["interpolate", "interpolate_1"])
    with torch.inference_mode():
        expected = model(x.clone())
    cached(x, refresh=True)
    cached(x, refresh="partial")  # the same frame: the partial and the hit after it are the full output
    torch.testing.assert_close(cached(x, refresh=False), expected, rtol=1e-5, atol=1e-6)


def test_a_deeper_cut_must_lie_under_the_cache():
    entry = get_network("ss")
    model = entry.build().eval()
    inputs = entry.example_inputs(32, 32)
    with pytest.raises(CutError, match="which every hit recomputes"):
        cache_model(model, inputs, policy="every:8/every:2", graded_cut="fast")  # the branch a hit runs
