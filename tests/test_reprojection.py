"""Reprojection of the current frame into a reference camera: the cache's feature warp and the screen policy."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from reframe_core.caching.cache import cache_model
from reframe_core.frames.buffers import CameraData
from reframe_core.frames.hints import CameraHints
from reframe_core.frames.motion import motion_from_depth
from reframe_core.frames.reprojection import reproject
from reframe_core.policies import FrameContext, parse_policy

SIZE = 32
DEPTH = 10.0
FOV = 60.0
PIXEL = 2 * DEPTH * math.tan(math.radians(FOV / 2)) / SIZE  # scene units per pixel on the plane at DEPTH


def _projection(fov_deg=FOV, near=0.1, far=100.0):
    f = 1 / math.tan(math.radians(fov_deg) / 2)
    return [[f, 0, 0, 0], [0, f, 0, 0], [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)], [0, 0, -1, 0]]


def _world(position, yaw_deg=0.0):
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    return [[c, 0, s, position[0]], [0, 1, 0, position[1]], [-s, 0, c, position[2]], [0, 0, 0, 1]]


def _camera(frame, position, yaw=0.0) -> CameraData:
    return CameraData(frame=frame, name="Camera", world_matrix=_world(position, yaw), projection=_projection(), lens_mm=50,
                      fov_x_deg=FOV, fov_y_deg=FOV, clip_start=0.1, clip_end=100.0, resolution=(SIZE, SIZE))


def _hints(camera: CameraData, previous: CameraData | None = None) -> CameraHints:
    return camera.hints(previous, DEPTH)


def test_reprojection_matches_the_motion_rebuilt_by_the_numpy_reader():
    rng = np.random.default_rng(0)
    depth = rng.uniform(3, 20, (SIZE, SIZE)).astype(np.float32)
    depth[:4] = 1e10  # background rows: directions, moved by the rotation only
    current, reference = _camera(2, (0.3, -0.2, 0.5), yaw=4.0), _camera(1, (0.0, 0.0, 0.0))
    expected = motion_from_depth(depth, current, reference)
    tensor = torch.from_numpy(np.where(depth > 50, np.inf, depth))[None, None]
    moved = reproject(tensor, _hints(current), _hints(reference))
    np.testing.assert_allclose(moved.motion[0].permute(1, 2, 0).numpy(), expected, atol=2e-3)
    # The grid is the same position in grid_sample's coordinates; the planar depth seen from the reference
    # is finite on surfaces and inf on the background.
    u = (np.arange(SIZE) + 0.5)[None, :] + expected[..., 0]
    np.testing.assert_allclose(moved.grid[0, ..., 0].numpy(), u / SIZE * 2 - 1, atol=1e-4)
    assert torch.isinf(moved.reference_depth[0, 0, :4]).all() and torch.isfinite(moved.reference_depth[0, 0, 4:]).all()


class _TwoBranch(nn.Module):
    """Deep features at full resolution from a 2x-pooled branch, plus a shallow full-resolution branch."""

    def __init__(self):
        super().__init__()
        self.deep = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(8, 8, 3, padding=1))
        self.shallow = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(16, 3, 1)

    def forward(self, x):
        return self.head(torch.cat([self.deep(x), self.shallow(x)], 1))


def test_a_hit_reprojects_cached_features_to_the_moved_camera():
    """A sideways move of 4 pixels on a plane: the reprojected hit gives what a refresh would (away from the
    edge the reference never saw); the stored features, reused as they are, do not."""
    torch.manual_seed(0)
    texture = torch.nn.functional.avg_pool2d(torch.rand(1, 3, SIZE, SIZE + 8), 3, 1, 1)
    reference_image, current_image = texture[..., :SIZE], texture[..., 4:SIZE + 4]  # content moves left 4 px
    reference, current = _camera(1, (0, 0, 0)), _camera(2, (4 * PIXEL, 0, 0))
    depth = torch.full((1, 1, SIZE, SIZE), DEPTH)
    net = _TwoBranch().eval()
    interior = (..., slice(2, 2 + 20))  # columns whose reference content exists and is not at an image edge

    def hit(reproject_on: bool) -> torch.Tensor:
        cached = cache_model(net, (reference_image,), cut="deep", reproject=reproject_on)
        cached(reference_image, refresh=True, hints=_hints(reference), depth=depth)
        out = cached(current_image, refresh=False, hints=_hints(current, reference), depth=depth)
        assert cached.decisions[-1].reason == ("hit (reprojected)" if reproject_on else "hit")
        return out

    with torch.no_grad():
        fresh = net(current_image)
    moved_error = (hit(True) - fresh)[interior].abs().max()
    stale_error = (hit(False) - fresh)[interior].abs().max()
    assert moved_error < 1e-4 < stale_error / 100


def test_screen_policy_measures_pixels_moved_and_the_unseen_share():
    reference, current = _camera(1, (0, 0, 0)), _camera(2, (4 * PIXEL, 0, 0))
    plane = torch.full((1, 1, SIZE, SIZE), DEPTH)
    image = torch.zeros(1, 3, SIZE, SIZE)

    def decide(spec, reference_depth, current_depth):
        policy = parse_policy(spec)
        policy.observe_refresh(FrameContext(0, 0, (image,), _hints(reference), reference_depth))
        return policy.check(FrameContext(1, 1, (image,), _hints(current), current_depth)), policy.last

    reason, last = decide("screen:px=3,holes=0.5", plane, plane)
    assert last["pixels"] == pytest.approx(4.0, abs=1e-3) and last["holes"] == pytest.approx(4 / SIZE)
    assert reason == "screen: image moved 4.0 px > 3"
    assert decide("screen:px=5,holes=0.2", plane, plane)[0] is None
    assert "unseen" in decide("screen:px=5,holes=0.1", plane, plane)[0]
    # A near square in the reference view (columns 12-19) hid the plane that the current view sees at columns
    # 8-15: those pixels count as unseen too, with the 4 columns entering the frame.
    occluded = plane.clone()
    occluded[..., 12:20] = 2.0
    assert decide("screen:px=5,holes=0.5", occluded, plane)[1]["holes"] == pytest.approx(12 / SIZE)
    # Without a depth map: a plane at the scene depth, sized by the largest input image.
    reason, last = decide("screen:px=3", None, None)
    assert last["pixels"] == pytest.approx(4.0, rel=0.02) and reason.startswith("screen: image moved")


def test_orthographic_views_are_not_reprojected_and_refresh_when_they_change():
    ortho = [[0.1, 0, 0, 0], [0, 0.1, 0, 0], [0, 0, -0.02, -1.0], [0, 0, 0, 1]]
    still = CameraHints(frame=1, world_matrix=_world((0, 0, 0)), projection=ortho, scene_depth=DEPTH)
    moved = CameraHints(frame=2, world_matrix=_world((1, 0, 0)), projection=ortho, scene_depth=DEPTH)
    image, depth = torch.rand(1, 3, SIZE, SIZE), torch.full((1, 1, SIZE, SIZE), DEPTH)
    policy = parse_policy("screen")
    policy.observe_refresh(FrameContext(0, 0, (image,), still, depth))
    assert policy.check(FrameContext(1, 1, (image,), still, depth)) is None
    assert policy.check(FrameContext(1, 1, (image,), moved, depth)) == "screen: orthographic view changed"
    cached = cache_model(_TwoBranch().eval(), (image,), cut="deep", reproject=True)
    cached(image, refresh=True, hints=still, depth=depth)
    cached(image, refresh=False, hints=moved, depth=depth)
    assert cached.decisions[-1].reason == "hit"  # reused as stored, no error
