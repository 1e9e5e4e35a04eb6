"""Refresh policies on scripted sequences, and the spec syntax."""
import math

import pytest
import torch

from reframe_core import CameraHints, PolicySpecError, cache_model, parse_policy
from reframe_core.policies import FrameContext, smape
from reframe_core.networks import get_network


def _camera(frame, x=0.0, yaw_deg=0.0, fov_deg=40.0, depth=10.0, cut=False):
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    world = ((c, 0, s, x), (0, 1, 0, 0), (-s, 0, c, 0), (0, 0, 0, 1))
    f = 1 / math.tan(math.radians(fov_deg) / 2)
    proj = ((f, 0, 0, 0), (0, f, 0, 0), (0, 0, -1, -0.2), (0, 0, -1, 0))
    return CameraHints(frame=frame, world_matrix=world, projection=proj, cut=cut, scene_depth=depth)


def _run(spec, inputs=None, hints=None, n=None):
    """Drive a real CachedModel (tiny U-Net) and return its refresh pattern."""
    model = get_network("unet").build(width=4).eval()
    n = n or len(inputs or hints)
    inputs = inputs or [torch.ones(1, 3, 16, 16)] * n
    hints = hints or [None] * n
    cached = cache_model(model, (inputs[0],), policy=spec)
    for x, h in zip(inputs, hints):
        cached(x, hints=h)
    return [d.refresh for d in cached.decisions], cached


def _outputs_beside_uncached(spec, n):
    """A cached tiny U-Net and the same network called plainly, on n different frames."""
    model = get_network("unet").build(width=4).eval()
    inputs = [torch.rand(1, 3, 16, 16) for _ in range(n)]
    with torch.no_grad():
        plain = [model(x) for x in inputs]  # the uncached network, no caching code involved
    cached = cache_model(model, (inputs[0],), policy=spec)
    outputs = [cached(x) for x in inputs]
    return [d.refresh for d in cached.decisions], outputs, plain


def test_always_refreshes_every_frame_and_equals_uncached():
    pattern, outputs, plain = _outputs_beside_uncached("always", 4)
    assert pattern == [True] * 4
    for frame, (out, ref) in enumerate(zip(outputs, plain)):
        assert torch.equal(out, ref), f"frame {frame}: not bit-identical to the uncached network"


def test_refresh_frames_equal_uncached_and_hits_reuse_the_refresh_frames_features():
    pattern, outputs, plain = _outputs_beside_uncached("every:3", 7)
    assert pattern == [True, False, False, True, False, False, True]
    for frame, refresh in enumerate(pattern):
        if refresh:
            assert torch.equal(outputs[frame], plain[frame]), f"refresh frame {frame} differs from uncached"
        else:  # the input changed since the refresh: reused deep features must show (else nothing was cached)
            assert not torch.allclose(outputs[frame], plain[frame], atol=1e-6), f"hit frame {frame}"


def test_every_n_follows_frame_index():
    pattern, _ = _run("every:3", n=8)
    assert pattern == [True, False, False, True, False, False, True, False]


def test_max_age_bounds_the_run_of_hits():
    pattern, _ = _run("max-age:3", n=7)
    assert pattern == [True, False, False, True, False, False, True]


def test_smape_is_the_reference_formula():
    x = torch.tensor([1.0, 2.0, 3.0])
    ref = torch.tensor([1.0, 1.0, 5.0])
    assert smape(x, ref) == pytest.approx(2 * (0 + 1 + 2) / 3 / ((2 + 3 + 8) / 3))
    assert smape(torch.zeros(3), torch.zeros(3)) == 0.0


def test_delta_compares_with_the_input_at_the_last_refresh_not_the_previous_frame():
    # Each frame drifts 4 % from the previous: below the threshold frame to frame, but it accumulates.
    inputs = [torch.full((1, 3, 16, 16), 1.0 + 0.04 * i) for i in range(8)]
    pattern, cached = _run("delta:0.1", inputs=inputs)
    assert pattern == [True, False, False, True, False, False, True, False]
    assert "smape" in cached.decisions[3].reason


def test_delta_reads_the_chosen_input():
    policy = parse_policy("delta:0.1,input=1")
    a, b = torch.ones(4), torch.ones(4)
    policy.observe_refresh(FrameContext(0, 0, (a, b), None))
    assert policy.check(FrameContext(1, 1, (a * 5, b), None)) is None
    assert policy.check(FrameContext(1, 1, (a, b * 5), None)) is not None
    with pytest.raises(ValueError, match="input 3"):
        parse_policy("delta:0.1,input=3").check(FrameContext(0, 0, (a, b), None))


def test_motion_translation_is_relative_to_scene_depth():
    hints = [_camera(i, x=0.2 * i, depth=10.0) for i in range(6)]  # 2 % of depth per frame
    pattern, cached = _run("motion:trans=0.05,rot=100,fov=100", hints=hints)
    assert pattern == [True, False, False, True, False, False]
    far = [_camera(i, x=0.2 * i, depth=100.0) for i in range(6)]
    assert _run("motion:trans=0.05,rot=100,fov=100", hints=far)[0] == [True] + [False] * 5


def test_motion_rotation_and_fov():
    turning = [_camera(i, yaw_deg=1.5 * i) for i in range(5)]
    assert _run("motion:rot=2", hints=turning)[0] == [True, False, True, False, True]
    zooming = [_camera(i, fov_deg=40 - 0.6 * i) for i in range(5)]
    pattern, cached = _run("motion:fov=1", hints=zooming)
    assert pattern == [True, False, True, False, True]
    assert "fov changed" in cached.decisions[2].reason


def test_motion_without_hints_refreshes_and_says_why():
    pattern, cached = _run("motion", n=2)
    assert pattern == [True, True] and "no camera hints" in cached.decisions[1].reason


def test_composition_refreshes_when_any_member_asks_and_all_see_refreshes():
    hints = [_camera(i) for i in range(9)]  # a still camera: motion alone would never refresh
    pattern, cached = _run("motion+max-age:4", hints=hints)
    assert pattern == [True, False, False, False, True, False, False, False, True]
    assert cached.decisions[4].reason.startswith("max-age:4")


def test_camera_cut_refreshes_and_restarts_every_n():
    hints = [_camera(i, cut=(i == 2)) for i in range(6)]
    pattern, cached = _run("every:3", hints=hints)
    assert pattern == [True, False, True, False, False, True]
    assert cached.decisions[2].reason == "camera cut"


@pytest.mark.parametrize("spec", ["always", "every:4", "delta:0.1", "delta:0.2,input=1", "motion",
                                  "motion:rot=3", "max-age:8", "delta:0.1+max-age:8", "motion+delta:0.25+max-age:16"])
def test_spec_round_trips(spec):
    assert parse_policy(spec).spec == spec


@pytest.mark.parametrize("bad", ["", "sometimes", "every", "every:0", "every:x", "delta:-1", "delta:0.1,foo=2",
                                 "max-age:1.5", "motion:speed=3", "delta:0.1+", "always:3"])
def test_bad_specs_get_one_error_listing_the_valid_forms(bad):
    with pytest.raises(PolicySpecError) as info:
        parse_policy(bad)
    message = str(info.value)
    for form in ("always", "every:N", "delta:T", "motion", "max-age:K", "SPEC+SPEC"):
        assert form in message


def test_camera_hints_validate_their_numbers():
    with pytest.raises(ValueError, match="4x4"):
        CameraHints(frame=1, world_matrix=[[1, 0], [0, 1]], projection=_camera(0).projection)
    with pytest.raises(ValueError, match="scene_depth"):
        CameraHints(frame=1, world_matrix=_camera(0).world_matrix, projection=_camera(0).projection, scene_depth=-1)
    h = _camera(3, x=1.0, yaw_deg=10)
    assert CameraHints.from_dict(h.to_dict()) == h
    assert h.fov_degrees[1] == pytest.approx(40.0)
    assert _camera(0).rotation_degrees_to(h) == pytest.approx(10.0)
