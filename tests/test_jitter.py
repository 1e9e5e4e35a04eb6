"""Sub-pixel jitter for temporal SS: Halton(2,3) values and the phase count 8 * scale^2 (FSR 2's rule)."""
from fractions import Fraction as F

import pytest

from reframe_core.frames.buffers import halton, jitter_offset

# The radical inverses written out by hand (digits of the index mirrored about the radix point), index 1 on.
# Base 2: 1 = 1b -> .1b = 1/2, 2 = 10b -> .01b = 1/4, 3 = 11b -> .11b = 3/4, 4 = 100b -> .001b = 1/8, ...
BASE2 = [F(1, 2), F(1, 4), F(3, 4), F(1, 8), F(5, 8), F(3, 8), F(7, 8), F(1, 16), F(9, 16), F(5, 16), F(13, 16)]
# Base 3: 1 -> 1/3, 2 -> 2/3, 3 = 10t -> 1/9, 4 = 11t -> 4/9, 5 = 12t -> 7/9, 6 = 20t -> 2/9, ...
BASE3 = [F(1, 3), F(2, 3), F(1, 9), F(4, 9), F(7, 9), F(2, 9), F(5, 9), F(8, 9), F(1, 27), F(10, 27), F(19, 27)]


def test_halton_is_the_radical_inverse_starting_at_index_1():
    assert [halton(i, 2) for i in range(1, 12)] == pytest.approx([float(v) for v in BASE2], abs=1e-12)
    assert [halton(i, 3) for i in range(1, 12)] == pytest.approx([float(v) for v in BASE3], abs=1e-12)
    assert halton(0, 2) == 0.0 and halton(0, 3) == 0.0  # index 0 is the degenerate corner, hence 1-based


def test_first_frames_get_the_centred_halton_2_3_points():
    # Frame 0 uses index 1 (not the corner point 0, 0): offsets are Halton - 1/2, so they lie in [-0.5, 0.5).
    expected = [(float(x - F(1, 2)), float(y - F(1, 2))) for x, y in zip(BASE2, BASE3)]
    got = [jitter_offset(frame, 2.0) for frame in range(len(expected))]
    assert got == [pytest.approx(e, abs=1e-12) for e in expected]
    assert got[0] == pytest.approx((0.0, -1 / 6), abs=1e-12)


@pytest.mark.parametrize("scale, phases", [(2.0, 32), (1.0, 8)])
def test_phase_count_is_8_scale_squared_and_no_shorter(scale, phases):
    offsets = [jitter_offset(frame, scale) for frame in range(3 * phases)]
    one_cycle = offsets[:phases]
    assert len(set(one_cycle)) == phases, "every phase of one cycle is a different sample position"
    assert offsets[phases:2 * phases] == one_cycle and offsets[2 * phases:] == one_cycle
    for shorter in range(1, phases):
        assert offsets[shorter:shorter + phases] != one_cycle, f"repeats after {shorter} frames"
    assert all(-0.5 <= v < 0.5 for offset in offsets for v in offset)


@pytest.mark.blender
def test_scale_2_capture_applies_the_sequence_from_the_scene_start(tiny_dataset):
    """The tiny dataset (real EEVEE): frames 3-8 of a scene starting at 1, scale 2 jittered, scale 1 not."""
    from reframe_core.frames.dataset import Dataset

    data = Dataset.open(tiny_dataset)
    for frame in range(3, 9):
        index = frame  # frame_start 1 -> frame f is phase f - 1 -> Halton index f
        expected = (float(BASE2[index - 1] - F(1, 2)), float(BASE3[index - 1] - F(1, 2)))
        low = data.load(frame, 2.0)
        assert tuple(low.jitter) == pytest.approx(expected, abs=1e-6)
        width = low.size[1]
        # Applied as a camera shift in units of the image side; Blender's +y shift moves the view up, ours is down.
        assert low.camera.shift == pytest.approx((expected[0] / width, -expected[1] / width), abs=1e-7)
        assert tuple(data.load(frame, 1.0).jitter) == (0.0, 0.0)
