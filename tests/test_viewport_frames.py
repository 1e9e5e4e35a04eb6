"""Frame buffers rebuilt from what the viewport can draw (reframe_core.frames.viewport) and the session worker that
keeps inference off Blender's UI thread (bridge.worker). Expectations come from geometry computed here
independently: points projected by hand, planes intersected with pixel rays."""
import math
import threading
import time

import numpy as np
import pytest

from reframe_core.frames.viewport import (BACKGROUND_DEPTH, camera_from_view, depth_from_zbuffer,
                                          jittered_projection, normals_from_depth, viewport_buffers)

W, H = 80, 60
NEAR, FAR = 0.1, 100.0


def perspective(fov_y_deg=50.0, aspect=W / H, near=NEAR, far=FAR):
    f = 1 / math.tan(math.radians(fov_y_deg) / 2)
    return np.array([[f / aspect, 0, 0, 0], [0, f, 0, 0],
                     [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)], [0, 0, -1, 0]])


def look(eye, yaw_deg=0.0):
    """world -> view for a camera at ``eye`` looking down -Y... rotated by yaw about Z (Blender: view looks down -Z
    of its own frame; here the camera frame's -Z is world +Y)."""
    yaw = math.radians(yaw_deg)
    # camera-to-world: x right, y up (world Z), -z forward (world +Y rotated by yaw)
    right = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    back = np.cross(right, up)
    cam = np.eye(4)
    cam[:3, 0], cam[:3, 1], cam[:3, 2], cam[:3, 3] = right, up, back, eye
    return np.linalg.inv(cam)


def pixel_of(point, view, projection, size=(W, H)):
    clip = projection @ view @ np.append(point, 1.0)
    ndc = clip[:3] / clip[3]
    return np.array([(ndc[0] + 1) / 2 * size[0], (1 - ndc[1]) / 2 * size[1]])


def test_jittered_projection_moves_the_content_against_the_jitter():
    view, projection = look((0, -5, 1)), perspective()
    point = np.array([0.3, 2.0, 1.4])
    for jitter in ((0.5, 0.0), (0.0, 0.5), (-0.25, 0.375)):
        moved = pixel_of(point, view, jittered_projection(projection, (W, H), jitter))
        # samples taken jitter px right/down of the plain ones see the content jitter px left/up
        np.testing.assert_allclose(moved - pixel_of(point, view, projection), -np.array(jitter), atol=1e-9)


def test_camera_from_view_recovers_the_lens():
    view, projection = look((1, -5, 2), yaw_deg=20), perspective(fov_y_deg=40)
    cam = camera_from_view(view.tolist(), projection.tolist(), (W, H), jitter=(0.25, -0.25))
    assert cam.clip_start == pytest.approx(NEAR) and cam.clip_end == pytest.approx(FAR)
    assert cam.fov_y_deg == pytest.approx(40)
    assert cam.fov_x_deg == pytest.approx(2 * math.degrees(math.atan(W / H * math.tan(math.radians(20)))))
    np.testing.assert_allclose(np.asarray(cam.world_matrix)[:3, 3], (1, -5, 2), atol=1e-12)
    assert cam.resolution == (W, H) and cam.shift == (0.25, -0.25)
    with pytest.raises(ValueError, match="orthographic"):
        ortho = np.eye(4)
        camera_from_view(view.tolist(), ortho.tolist(), (W, H))


def _plane_depth(view, projection, normal, offset):
    """Planar view depth of the plane n.x = offset at each pixel centre (BACKGROUND where the ray misses)."""
    cam = np.linalg.inv(view)
    inv = np.linalg.inv(projection)
    depth = np.full((H, W), BACKGROUND_DEPTH)
    for v in range(H):
        for u in range(W):
            ndc = np.array([2 * (u + 0.5) / W - 1, 1 - 2 * (v + 0.5) / H, 1.0, 1.0])
            p = inv @ ndc
            direction_view = p[:3] / p[3]
            direction = cam[:3, :3] @ direction_view
            origin = cam[:3, 3]
            t = (offset - normal @ origin) / (normal @ direction)
            if t > 0 and -(direction_view * t)[2] < FAR:  # beyond the far plane: not drawn
                depth[v, u] = -(direction_view * t)[2]
    return depth


def _zbuffer(depth, projection):
    ndc = (projection[2, 2] * -depth + projection[2, 3]) / depth
    return np.where(depth < BACKGROUND_DEPTH, (ndc + 1) / 2, 1.0)


def test_depth_from_the_depth_buffer():
    view, projection = look((0, -5, 1)), perspective()
    depth = _plane_depth(view, projection, np.array([0.0, 0.1, 1.0]) / math.hypot(0.1, 1.0), 0.0)  # a floor
    found, alpha = depth_from_zbuffer(_zbuffer(depth, projection), projection)
    covered = depth < BACKGROUND_DEPTH
    assert covered.any() and (~covered).any()
    np.testing.assert_allclose(found[covered], depth[covered], rtol=1e-5)
    assert (found[~covered] == BACKGROUND_DEPTH).all() and (alpha == covered).all()


def test_normals_from_depth_are_the_planes_world_normals_and_never_mix_two_surfaces():
    view, projection = look((0.5, -6, 1.5), yaw_deg=15), perspective()
    cam = camera_from_view(view.tolist(), projection.tolist(), (W, H))
    floor = np.array([0.0, 0.0, 1.0])
    wall = np.array([0.0, -1.0, 0.0])
    d_floor, d_wall = _plane_depth(view, projection, floor, 0.0), _plane_depth(view, projection, wall, -2.0)
    depth = np.minimum(d_floor, d_wall)
    normals = normals_from_depth(depth.astype(np.float32), cam)
    on_floor = (d_floor < d_wall) & (d_floor < BACKGROUND_DEPTH)
    on_wall = (d_wall <= d_floor) & (d_wall < BACKGROUND_DEPTH)
    assert on_floor.sum() > 100 and on_wall.sum() > 100
    # the crease included: one-sided differences keep each pixel on its own surface (a pixel or two where three
    # surfaces meet -- floor, wall, background -- may take the wrong side)
    for mask, expected in ((on_floor, floor), (on_wall, wall)):
        error = np.linalg.norm(normals[mask] - expected, axis=-1)
        assert np.mean(error < 2e-3) > 0.995 and np.median(error) < 1e-4, (np.mean(error < 2e-3), error.max())
    assert (normals[depth >= BACKGROUND_DEPTH] == 0).all()


def test_viewport_buffers_are_valid_frames_with_camera_motion():
    view0, view1, projection = look((0, -5, 1)), look((0.2, -5, 1)), perspective()
    cam0 = camera_from_view(view0.tolist(), projection.tolist(), (W, H))
    cam1 = camera_from_view(view1.tolist(), projection.tolist(), (W, H))
    depth = _plane_depth(view1, projection, np.array([0.0, -1.0, 0.0]), -3.0)
    rng = np.random.default_rng(0)
    frame = viewport_buffers(rng.random((H, W, 4), np.float32), rng.random((H, W, 4), np.float32),
                             _zbuffer(depth, projection), cam1, cam0, jitter=(0.25, 0.0))
    frame.check()
    # the camera moved 0.2 right in front of a wall 8 away: the wall was further right in the previous view
    point = np.array([0.0, 3.0, 1.0])
    expected = pixel_of(point, view0, projection) - pixel_of(point, view1, projection)
    u, v = (int(c) for c in pixel_of(point, view1, projection))
    np.testing.assert_allclose(frame.motion_prev[v, u], expected, atol=0.05)
    assert frame.color.shape == (H, W, 3) and list(frame.jitter) == [0.25, 0.0]


# --- the worker ------------------------------------------------------------------------------------------------

class _SlowSession:
    """A real session whose step waits for a gate first, so a test controls when the worker is busy."""

    def __init__(self, session):
        self.session, self.gate = session, threading.Event()

    def step(self, buffers, hints=None):
        assert self.gate.wait(30)
        return self.session.step(buffers, hints)


def test_worker_drops_frames_while_busy_and_returns_the_newest_result():
    from bridge.bench import synthetic_frames
    from bridge.worker import SessionWorker
    from reframe_core.runtime.session import open_session

    frames = synthetic_frames(3, (16, 16))
    slow = _SlowSession(open_session("ss", display_size=(32, 32), policy=None))
    worker = SessionWorker(slow)
    try:
        assert worker.submit(frames[0], None, tag=0)
        assert not worker.submit(frames[1], None, tag=1)  # busy: dropped, not queued
        assert worker.poll() is None
        slow.gate.set()
        deadline = time.monotonic() + 30
        while (got := worker.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        tag, result, extra = got
        assert extra is None
        expected = open_session("ss", display_size=(32, 32), policy=None).step(frames[0], None)
        assert tag == 0
        np.testing.assert_array_equal(result.image, expected.image)
        assert (worker.stats.submitted, worker.stats.dropped, worker.stats.finished) == (2, 1, 1)
        # a failure on the worker reaches the caller, and the worker goes on
        assert worker.submit(synthetic_frames(1, (8, 8))[0], None, tag=2)
        from reframe_core.frames.buffers import FrameError

        with pytest.raises(FrameError, match="8x8"):
            deadline = time.monotonic() + 30
            while worker.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
        assert worker.submit(frames[2], None, tag=3)
        deadline = time.monotonic() + 30
        while (got := worker.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got[0] == 3
    finally:
        slow.gate.set()
        assert worker.close()


# --- the display lookup table ---------------------------------------------------------------------------------

def _filmic_like(rgb):
    """A per-channel display curve (tone map, then sRGB encoding); mixing the channels first makes it
    non-separable."""
    x = rgb / (1 + rgb)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.abs(x) ** (1 / 2.4) - 0.055)


def _mixing(rgb):
    mix = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
    return _filmic_like(rgb @ mix.T)


@pytest.mark.parametrize("curve, separable", [(_filmic_like, True), (_mixing, False)])
def test_display_lut_reproduces_the_transform_it_was_measured_from(curve, separable):
    from reframe_core.frames.display import DisplayLUT, grid_image

    lut = DisplayLUT.from_saved(curve(grid_image(49).astype(np.float64)))
    assert lut.separable == separable
    rng = np.random.default_rng(0)
    linear = (rng.random((40, 50, 3)) ** 3 * 20).astype(np.float32)
    error = np.abs(lut.apply(linear) - curve(linear.astype(np.float64)))
    assert error.max() < 4 / 255 and error.mean() < 0.5 / 255, (error.max() * 255, error.mean() * 255)
    assert np.abs(lut.apply(np.zeros((1, 1, 3), np.float32))).max() < 1e-6  # black stays black
