"""The runtime session (open_session / step / stats / close) on real captured frames (tiny_dataset)."""

import numpy as np
import pytest

from reframe_core.errors import ReframeError, SettingsError
from reframe_core.frames.dataset import Dataset
from reframe_core.runtime.session import open_session


def _frames(root, scale):
    data = Dataset.open(root)
    return [data.load(f, scale) for f in data.frames(scale)]


def _run(session, frames):
    results, previous = [], None
    for frame in frames:
        results.append(session.step(frame, frame.hints(previous)))
        previous = frame
    return results


def test_ss_session_every_2_refreshes_half_and_always_equals_uncached(tiny_dataset):
    low = _frames(tiny_dataset, 2.0)
    size = Dataset.open(tiny_dataset).load(3).color.shape[:2]
    uncached = _run(open_session("ss", display_size=size, policy=None), low)
    always = _run(open_session("ss", display_size=size, policy="always"), low)
    every = open_session("ss", display_size=size, policy="every:2")
    every_results = _run(every, low)
    for u, a in zip(uncached, always):
        assert u.image.shape == (48, 48, 3) and u.image.dtype == np.float32
        np.testing.assert_array_equal(u.image, a.image)  # a refresh every frame is the network itself
    assert [r.refreshed for r in every_results] == [True, False] * 3
    stats = every.stats()
    assert (stats["frames"], stats["network_frames"], stats["refreshes"], stats["hits"]) == (6, 6, 3, 3)
    assert stats["hit_rate"] == 0.5 and stats["fallbacks"] == 0 and stats["settings"]["policy"] == "every:2"
    # Refresh frames equal the uncached run's (the history is the same up to there only on frame 1).
    np.testing.assert_array_equal(every_results[0].image, uncached[0].image)
    every.close()
    with pytest.raises(SettingsError, match="closed"):
        every.step(low[0])


def test_a_non_finite_network_output_falls_back_to_the_baseline(tiny_dataset):
    import torch

    low = _frames(tiny_dataset, 2.0)
    size = Dataset.open(tiny_dataset).load(3).color.shape[:2]
    session = open_session("ss", display_size=size, policy=None)
    first = session.step(low[0], low[0].hints(None))
    assert not first.fallback and np.isfinite(first.image).all()
    with torch.no_grad():  # a network gone bad (overflow, a damaged file): its output is NaN from now on
        next(session.model.parameters()).fill_(float("nan"))
    previous = low[0]
    for frame in low[1:3]:
        result = session.step(frame, frame.hints(previous))
        assert result.fallback and np.isfinite(result.image).all()
        np.testing.assert_array_equal(result.image, session.workload.baseline(frame, size))
        previous = frame
    assert session.stats()["fallbacks"] == 2


def test_fe_session_renders_every_kth_frame_in_full(tiny_dataset):
    frames = _frames(tiny_dataset, 1.0)
    session = open_session("fe", display_size=frames[0].color.shape[:2], policy="every:100", k=2)
    asked, results, previous = [], [], None
    for frame in frames:
        hints = frame.hints(previous)
        asked.append(session.needs_full_render(hints))
        results.append(session.step(frame, hints))
        previous = frame
    assert asked == [True, False, True, False, True, False]
    assert [r.network_ran for r in results] == [False, True, False, True, False, True]
    np.testing.assert_array_equal(results[0].image, frames[0].color.astype(np.float32))
    assert session.stats()["network_frames"] == 3 and session.stats()["refreshes"] == 1


@pytest.mark.parametrize("policy", [None, "every:2"])
def test_fe_runs_at_display_sizes_that_are_not_multiples_of_8(policy):
    """ExtraNet down-samples three times; the runner pads its inputs (1366x768 laptops, 12x12 crops) and crops
    the output. Without the padding the network's skip connections do not line up and step() raises."""
    from bridge.bench import synthetic_frames

    for size in [(12, 12), (20, 16), (64, 100)]:
        session = open_session("fe", display_size=size, policy=policy, k=2)
        previous = None
        for frame in synthetic_frames(4, size):
            result = session.step(frame, frame.hints(previous))
            previous = frame
        assert result.network_ran and result.image.shape == (*size, 3) and np.isfinite(result.image).all()


def test_frames_of_another_size_than_the_session_renders_are_refused():
    from bridge.bench import synthetic_frames

    from reframe_core.frames.buffers import FrameError

    session = open_session("ss", display_size=(32, 32), policy=None)
    with pytest.raises(FrameError, match=r"the buffers are 8x8, but this session takes 16x16 \(display 32x32 at scale 2\)"):
        session.step(synthetic_frames(1, (8, 8))[0])
    with pytest.raises(SettingsError, match="at least 8 pixels per side"):
        open_session("ss", display_size=(12, 12), scale=2.0)


def test_bad_settings_are_one_clear_error():
    with pytest.raises(SettingsError, match="unknown session settings colour"):
        open_session("ss", colour="red")
    with pytest.raises(SettingsError, match="unknown workload"):
        open_session("xx")
    with pytest.raises(ReframeError, match="unknown policy"):
        open_session("ss", policy="sometimes", display_size=(32, 32))


def test_the_torch_free_facts_are_the_workloads():
    """Blender's side asks ``workload_facts`` (no torch) for the period, weights file and render scale; the
    workloads answer the same."""
    import sys

    from reframe_core.workloads import get_workload, workload_facts

    assert get_workload("ss").period == 1 and workload_facts("ss").period(3) == 1
    assert [get_workload("fe", k=k).period for k in (1, 2, 3, 5)] == [1, 2, 3, 5]
    assert [workload_facts("fe").period(k) for k in (1, 2, 3, 5)] == [1, 2, 3, 5]
    assert get_workload("ss").weights_name(2.0) == "ss_x2" and workload_facts("ss").weights_name(1.5) == "ss_x1.5"
    assert get_workload("fe").weights_name(1.0) == "fe_extranet"
    assert get_workload("ss").input_scale(2.0) == 2.0 and get_workload("fe").input_scale(2.0) == 1.0
    assert "reframe_core.workloads.supersampling" in sys.modules  # (the facts module itself imports none of them)
