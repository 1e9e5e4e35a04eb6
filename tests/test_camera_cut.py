"""A camera cut reaches the next network frame of every workload: no deep feature or history from the old
shot is reused in the new one. Real EEVEE frames of the camera_cut scene (cameras switch at frame 25)."""
import numpy as np
import pytest

pytest.importorskip("bpy")

from reframe_core import cache_model  # noqa: E402
from reframe_core.frames.dataset import Dataset  # noqa: E402
from reframe_core.workloads.extrapolation import NOT_RELIT, Extrapolator, fe_inputs  # noqa: E402
from reframe_core.workloads.supersampling import Supersampler, ss_inputs  # noqa: E402
from reframe_core.weights import load_network, shipped  # noqa: E402

pytestmark = pytest.mark.blender

FRAMES = list(range(22, 29))  # the cut is at 25


@pytest.fixture(scope="module")
def cut_dataset(tmp_path_factory):
    from reframe_core.cli import main

    out = tmp_path_factory.mktemp("cut") / "camera_cut"
    assert main(["dataset", "--scene", "camera_cut", "--frames", "22-28", "--scales", "1,2", "--resolution", "48",
                 "--samples", "1", "--quiet", "--out", str(out)]) == 0
    return Dataset.open(out)


def _run(runner, frames):
    """Step a workload runner through frames with the hints the frames carry; returns the outputs by frame."""
    out, previous = {}, None
    for frame in frames:
        out[frame.camera.frame] = runner(frame, frame.hints(previous))
        previous = frame
    return out


def test_the_dataset_marks_the_cut(cut_dataset):
    frames = [cut_dataset.load(f) for f in FRAMES]
    cuts = [f.hints(p).cut for p, f in zip([None] + frames[:-1], frames)]
    assert cuts == [True, False, False, True, False, False, False]


def test_fe_cut_on_a_rendered_frame_refreshes_the_next_extrapolated_one(cut_dataset):
    net, _ = load_network(shipped("fe_extranet"), expected_arch="extranet")
    frames = [cut_dataset.load(f) for f in FRAMES]
    example = fe_inputs(*_example_history(frames[0], net.n_channels))
    cached = cache_model(net, example, cut="auto", policy="every:100")  # never refreshes by itself
    extrapolator = Extrapolator(cached, k=2)
    shown = _run(lambda f, h: extrapolator.step(f, h), frames)
    # 22 rendered, 23 extrapolated (first call: refresh), 24 rendered, 25 cut (rendered), 26 extrapolated. The set
    # has no cheap pass, so the shipped (relighting) network shows demodulated reprojection and says so.
    assert [not shown[f].network_ran for f in FRAMES] == [True, False, True, True, False, True, False]
    decisions = cached.decisions
    assert len(decisions) == 3  # frames 23, 26, 28
    assert decisions[1].refresh and decisions[1].reason == "camera cut"
    assert not decisions[2].refresh
    # Independent expectation: an uncached extrapolator that starts at the cut shows the same frame 26.
    fresh = Extrapolator(net, k=2)
    fresh_shown = _run(lambda f, h: fresh.step(f, h), frames[3:5])
    assert (shown[26].refreshed, shown[26].reason) == (True, "camera cut" + NOT_RELIT)
    np.testing.assert_array_equal(shown[26].image, fresh_shown[26].image)


def test_ss_cut_refreshes_the_cache_and_drops_the_history(cut_dataset):
    net, _ = load_network(shipped("ss_x2"), expected_arch="ss")
    low = [cut_dataset.load(f, 2.0) for f in FRAMES]
    size = cut_dataset.load(FRAMES[0]).color.shape[:2]
    cached = cache_model(net, ss_inputs(low[0], None, size), cut="auto", policy="every:100")
    sampler = Supersampler(cached, size)
    shown = _run(lambda f, h: sampler.step(f, h), low)
    assert (shown[25].refreshed, shown[25].reason) == (True, "camera cut")
    assert [shown[f].refreshed for f in FRAMES] == [True, False, False, True, False, False, False]
    # Independent expectation: an uncached supersampler that starts at the cut gives the same frame 25.
    fresh = Supersampler(net, size)
    np.testing.assert_array_equal(shown[25].image, fresh.step(low[3], low[3].hints(None)).image)


def _example_history(frame, channels):
    """Inputs of an extrapolated frame built from one frame alone (shapes for tracing the cut), for a network of
    ``channels`` inputs (a relighting one takes the effects and the relit frame too)."""
    import torch

    from reframe_core.workloads.extrapolation import N_CHANNELS, feature_tensor
    from reframe_core.frames.warp import to_tensor

    color = to_tensor(frame.color)
    mask = color[:, :1] * 0 + 1
    feature = feature_tensor(frame)
    feature = torch.cat([feature, color.new_zeros(1, channels - N_CHANNELS, *color.shape[-2:])], 1)
    return [color] * 3, [mask] * 3, to_tensor(frame.motion_prev), None, feature
