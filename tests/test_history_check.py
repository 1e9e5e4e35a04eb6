"""The SS history test: history that shows another surface than the current frame (uncovered behind a moving
object, or entering the frame) is replaced by what a reset feeds the network, at inference and in training."""
import numpy as np
import torch

from reframe_core.frames.buffers import CameraData, FrameBuffers
from reframe_core.frames.warp import history_seen
from reframe_core.networks import get_network
from reframe_core.workloads.supersampling import Supersampler, bicubic_upscale, checked_history, display_depth


def test_history_seen_drops_uncovered_and_off_frame_pixels():
    size = (8, 8)
    flow = torch.zeros(1, 2, *size)
    flow[:, 1, 7] = 3.0  # the bottom row's surface was below the frame in the previous one
    previous_depth = torch.full((1, 1, *size), 2.0)
    previous_depth[..., :, :3] = 1.0  # an object covered the left three columns; now the wall behind shows
    previous_depth[..., 0, 5] = 0.0  # sky seen there before, a wall now
    near, far = torch.full((1, 1, *size), 2.0), torch.full((1, 1, *size), 2.0)
    near[..., 4, 6] = 1.96  # within the 5 % tolerance of the 3x3 range: the same surface
    far[..., 4, 6] = 2.04
    expected = torch.ones(1, 1, *size)
    expected[..., 7, :] = 0
    expected[..., :, :3] = 0
    expected[..., 0, 5] = 0
    assert torch.equal(history_seen(flow, previous_depth, near, far), expected)
    assert torch.equal(history_seen(flow, None, None, None)[..., :7, :], torch.ones(1, 1, 7, 8))  # no depth: frame test only
    sky = torch.zeros(1, 1, *size)
    assert torch.equal(history_seen(torch.zeros(1, 2, *size), sky, sky, sky), torch.ones(1, 1, *size))  # sky meets sky


def _frame(depth: np.ndarray, color: np.ndarray) -> FrameBuffers:
    h, w = depth.shape
    camera = CameraData(frame=1, name="Camera", world_matrix=np.eye(4).tolist(), projection=np.eye(4).tolist(), lens_mm=50.0,
                        fov_x_deg=39.6, fov_y_deg=39.6, clip_start=0.1, clip_end=100.0, resolution=(w, h))
    zeros2 = np.zeros((h, w, 2), np.float32)
    return FrameBuffers(color=color, alpha=np.ones((h, w), np.float32), depth=depth, normal=np.zeros((h, w, 3), np.float32),
                        albedo=np.full((h, w, 3), 0.5, np.float32), motion_prev=zeros2, motion_next=zeros2, camera=camera)


def test_the_supersampler_feeds_bicubic_where_the_history_shows_another_surface():
    """A still camera; an object covering the low-res columns 0-1 is gone in the second frame, uncovering the
    wall: the network's history input there is the bicubic up-sampling of the second frame (as after a reset),
    elsewhere the first output (a still camera warps it onto itself)."""
    torch.manual_seed(0)
    net = get_network("ss").build(width=8).eval()
    seen = []
    net.register_forward_pre_hook(lambda module, args: seen.append(args[3].clone()))
    rng = np.random.default_rng(0)
    first_depth = np.full((8, 8), 2.0, np.float32)
    first_depth[:, :2] = 1.0
    first = _frame(first_depth, rng.uniform(0.1, 1, (8, 8, 3)).astype(np.float32))
    second = _frame(np.full((8, 8), 2.0, np.float32), rng.uniform(0.1, 1, (8, 8, 3)).astype(np.float32))
    sampler = Supersampler(net, (16, 16))
    out = torch.from_numpy(sampler.step(first).image).permute(2, 0, 1)[None]
    sampler.step(second)
    history = seen[1]
    fresh = bicubic_upscale(torch.from_numpy(second.color).permute(2, 0, 1)[None], (16, 16))
    torch.testing.assert_close(history[..., :4], fresh[..., :4])  # display columns 0-3: uncovered
    torch.testing.assert_close(history[..., 4:], out[..., 4:], atol=1e-5, rtol=1e-5)  # the same surface: kept
    sampler.reset()  # a reset forgets the depth too: the next frame is a first frame
    sampler.step(second)
    torch.testing.assert_close(seen[2], fresh)


def test_checked_history_keeps_the_history_where_it_is_seen():
    history, fallback = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    jitter, depth = torch.zeros(1, 2), torch.full((1, 1, 4, 4), 3.0)
    kept = checked_history(history, torch.zeros(1, 2, 8, 8), fallback, jitter, depth, display_depth(depth, jitter, (8, 8)))
    assert torch.equal(kept, history)
    assert torch.equal(display_depth(depth, jitter, (8, 8)), torch.full((1, 1, 8, 8), 3.0))
