"""Headless EEVEE capture with the real bpy module: buffers, motion, warping, cuts, jitter, bad input."""
import errno
import math
import subprocess

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from reframe_core.frames.buffers import CameraData, ExrError, read_blender_exr  # noqa: E402
from reframe_core.evaluation.metrics import flip  # noqa: E402
from reframe_core.frames.motion import motion_from_depth  # noqa: E402
from reframe_core.frames.warp import backward_warp, disocclusion_mask, to_image, to_tensor  # noqa: E402
from scenes import get_scene  # noqa: E402
from blender_addon.capture import CaptureError, CaptureSettings, capture, capture_settings, open_blend  # noqa: E402

pytestmark = pytest.mark.blender
SIZE = (96, 96)


@pytest.fixture(scope="module")
def pan_frames():
    """Three frames of the slow pan (camera-only motion), 1 sample."""
    scene = get_scene("slow_pan").build(0)
    return [fb for fb, _ in capture(scene, range(10, 13), CaptureSettings(resolution=SIZE, samples=1))]


@pytest.fixture(scope="module")
def orbit_frames():
    """Three frames of the fast orbit (camera-only motion), 1 sample: fast, and shading stays put."""
    scene = get_scene("fast_orbit").build(0)
    return [fb for fb, _ in capture(scene, range(10, 13), CaptureSettings(resolution=SIZE, samples=1))]


def test_buffers_have_documented_shapes_and_content(orbit_frames):
    fb = orbit_frames[1]
    h, w = SIZE[1], SIZE[0]
    assert fb.color.shape == (h, w, 3) and fb.normal.shape == (h, w, 3) and fb.albedo.shape == (h, w, 3)
    assert fb.depth.shape == (h, w) and fb.alpha.shape == (h, w)
    assert fb.motion_prev.shape == fb.motion_next.shape == (h, w, 2)
    assert fb.has_vector_pass and fb.camera.name == "Camera" and fb.camera.frame == 11
    assert 0.3 < fb.alpha.mean() < 1.0  # ground and sculptures, and some sky
    assert np.allclose(np.linalg.norm(fb.normal[fb.alpha > 0], axis=-1), 1, atol=0.05)
    assert fb.color.min() >= 0 and fb.color.max() > 0.1
    assert abs(fb.camera.fov_x_deg - 2 * math.degrees(math.atan(36 / 2 / 30))) < 0.1  # 30 mm lens, 36 mm sensor
    assert np.abs(fb.motion_prev[fb.alpha > 0]).mean() > 1.0, "the orbit moves the image by pixels per frame"


def test_backward_warp_with_captured_motion_reproduces_the_next_frame(pan_frames):
    previous, current = pan_frames[0], pan_frames[1]
    motion = to_tensor(current.motion_prev)
    warped = to_image(backward_warp(to_tensor(previous.color), motion))
    visible = to_image(disocclusion_mask(motion, to_tensor(previous.motion_next)))[..., 0] > 0
    assert visible.mean() > 0.8
    warped_error = flip(current.color, warped).error_map[visible].mean()
    unwarped_error = flip(current.color, previous.color).error_map[visible].mean()
    # What remains after warping is resampling blur and 1-sample aliasing (measured: 0.017 here, against 0.054
    # unwarped). 0.04 is the FLIP of bicubic upscaling (reframe_core/README.md), which any useful warp must beat, and
    # the warp must remove most of the error that the motion causes.
    assert warped_error < 0.04, warped_error
    assert warped_error < 0.5 * unwarped_error, (warped_error, unwarped_error)


@pytest.mark.parametrize("frames_fixture", ["pan_frames", "orbit_frames"])
def test_motion_rebuilt_from_depth_agrees_with_the_vector_pass(frames_fixture, request):
    orbit_frames = request.getfixturevalue(frames_fixture)
    previous, current = orbit_frames[0], orbit_frames[1]
    rebuilt = motion_from_depth(current.depth, current.camera, previous.camera)
    covered = current.alpha > 0
    error = np.abs(rebuilt - current.motion_prev)[covered]
    assert np.median(error) < 0.02 and error.mean() < 0.05, (np.median(error), error.mean())
    forward = motion_from_depth(current.depth, current.camera, orbit_frames[2].camera)
    assert np.abs(forward - current.motion_next)[covered].mean() < 0.05


def test_capture_rebuilds_motion_where_the_file_has_no_vector_pass(monkeypatch, tmp_path):
    """The capture path of Blender 3.x (no Vector pass), run in 5.0 by dropping the pass from each file it
    reads: motion rebuilt from depth and the cameras of frames N-1 and N+1 must match the dropped pass."""
    import blender_addon.capture as capture_module

    real_read, vector_pass = capture_module.read_blender_exr, []

    def read_without_vector(path, camera, **kwargs):
        vector_pass.append(real_read(path, camera, jitter=kwargs.get("jitter", (0.0, 0.0))))
        _repack_single_part(path, tmp_path / "legacy.exr", drop_vector=True)
        return real_read(tmp_path / "legacy.exr", camera, **kwargs)

    monkeypatch.setattr(capture_module, "read_blender_exr", read_without_vector)
    monkeypatch.setattr(capture_module, "motion_needs_rebuilding", lambda version: True)
    scene = get_scene("fast_orbit").build(0)
    settings = CaptureSettings(resolution=(48, 48), samples=1)
    rebuilt = [fb for fb, _ in capture(scene, range(10, 12), settings)]
    assert scene.frame_current == 11, "looking up the neighbour cameras leaves the scene at the captured frame"
    rebuilt += [fb for fb, _ in capture(scene, range(11, 12), settings, warmup=False)]  # frame 10's camera looked up
    assert len(rebuilt) == len(vector_pass) == 3
    for fb, reference in zip(rebuilt, vector_pass):
        assert reference.has_vector_pass and not fb.has_vector_pass
        covered = fb.alpha > 0
        for name in ("motion_prev", "motion_next"):
            expected, got = getattr(reference, name), getattr(fb, name)
            assert np.linalg.norm(expected, axis=-1)[covered].mean() > 1.0, "the orbit moves the image by pixels"
            error = np.abs(got - expected)[covered]
            # As motion_from_depth against the Vector pass above (measured here: median 0.0004 px, mean 0.0006).
            assert np.median(error) < 0.02 and error.mean() < 0.05, (fb.camera.frame, name, np.median(error), error.mean())
            assert not got[~covered].any(), "background holds 0, as in the Vector pass"


def test_jitter_shifts_samples_but_not_motion():
    scene = get_scene("slow_pan").build(0)
    plain = [fb for fb, _ in capture(scene, range(5, 7), CaptureSettings(resolution=(64, 64), samples=1))]
    jittered = [fb for fb, _ in capture(scene, range(5, 7), CaptureSettings(resolution=(64, 64), scale=1, samples=1, jitter=True))]
    assert not np.allclose(jittered[1].jitter, 0) and not np.allclose(jittered[0].jitter, jittered[1].jitter)
    assert not np.allclose(plain[1].color, jittered[1].color)
    covered = plain[1].alpha > 0
    assert np.abs(plain[1].motion_prev - jittered[1].motion_prev)[covered].mean() < 0.02
    assert plain[1].camera.projection == jittered[1].camera.projection, "recorded projection is un-jittered"


def test_camera_switch_at_a_marker_is_a_cut():
    scene = get_scene("camera_cut").build(0)
    frames = [fb for fb, _ in capture(scene, range(23, 27), CaptureSettings(resolution=(48, 48), samples=1))]
    hints = [fb.hints(prev) for prev, fb in zip([None] + frames[:-1], frames)]
    assert [h.cut for h in hints] == [True, False, True, False]
    assert [h.camera_name for h in hints] == ["CamA", "CamA", "CamB", "CamB"]
    assert all(h.scene_depth and h.scene_depth > 1 for h in hints)


def _repack_single_part(source, target, drop_vector=False):
    """Write Blender 4.2's layout (one part, every pass's channels in it) from a 5.0 multi-part file."""
    import OpenEXR

    channels = {}
    with OpenEXR.File(str(source), separate_channels=True) as exr:
        for part in exr.parts:
            for name, channel in part.channels.items():
                if not (drop_vector and ".Vector." in name):
                    channels[name] = np.array(channel.pixels)
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, channels) as out:
        out.write(str(target))


def test_exr_layouts_of_5_0_and_4_2_and_3_x_read_alike(tmp_path):
    scene = get_scene("handheld").build(0)
    with_exr = tmp_path / "multi.exr"
    with capture_settings(scene, CaptureSettings(resolution=(48, 48), samples=1)):
        scene.frame_set(3)
        bpy.ops.render.render()
        bpy.data.images["Render Result"].save_render(str(with_exr))
    import OpenEXR

    with OpenEXR.File(str(with_exr)) as exr:
        assert len(exr.parts) >= 5, "Blender 5.0 writes one part per pass"
    camera = CameraData(3, "Camera", np.eye(4).tolist(), np.eye(4).tolist(), 40, 50, 50, 0.1, 200, (48, 48))
    multi = read_blender_exr(with_exr, camera)
    _repack_single_part(with_exr, tmp_path / "single.exr")
    single = read_blender_exr(tmp_path / "single.exr", camera)
    for name in ("color", "alpha", "depth", "normal", "albedo", "motion_prev", "motion_next"):
        assert np.array_equal(getattr(multi, name), getattr(single, name)), name
    _repack_single_part(with_exr, tmp_path / "legacy.exr", drop_vector=True)
    legacy = read_blender_exr(tmp_path / "legacy.exr", camera)
    assert not legacy.has_vector_pass and not legacy.motion_prev.any()
    # Without the OpenEXR module (Blender's own Python: the add-on ships no wheels) the numpy reader reads both
    # layouts to the same arrays.
    import sys

    saved = sys.modules.get("OpenEXR")
    sys.modules["OpenEXR"] = None  # import OpenEXR now raises ImportError
    try:
        for path, reference in ((with_exr, multi), (tmp_path / "single.exr", single)):
            numpy_read = read_blender_exr(path, camera)
            for name in ("color", "alpha", "depth", "normal", "albedo", "motion_prev", "motion_next"):
                assert np.array_equal(getattr(numpy_read, name), getattr(reference, name)), (path.name, name)
    finally:
        sys.modules["OpenEXR"] = saved
    (tmp_path / "junk.exr").write_bytes(b"not an exr")
    with pytest.raises(ExrError, match="junk.exr"):
        read_blender_exr(tmp_path / "junk.exr", camera)


# --- bad input ---------------------------------------------------------------------------------------------

def test_missing_and_unreadable_blend_files(tmp_path):
    with pytest.raises(CaptureError, match="does not exist"):
        open_blend(tmp_path / "missing.blend")
    junk = tmp_path / "junk.blend"
    junk.write_bytes(b"definitely not a blend file")
    with pytest.raises(CaptureError, match="cannot open .*junk.blend"):
        open_blend(junk)


def test_scene_problems_are_named(tmp_path):
    scene = get_scene("handheld").build(0)
    with pytest.raises(CaptureError, match="outside scene .* range 1-48"):
        next(capture(scene, range(40, 60)))
    material = bpy.data.materials[0]
    material.node_tree.nodes.new("ShaderNodeScript")
    with pytest.raises(CaptureError, match="OSL Script node"):
        next(capture(scene, range(1, 2)))
    bpy.data.objects.remove(scene.camera)
    with pytest.raises(CaptureError, match="has no camera"):
        next(capture(scene, range(1, 2)))
