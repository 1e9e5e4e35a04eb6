"""The non-neural temporal upscaler (the FSR 2-style baseline the SS network must beat): it recovers detail
bicubic cannot from jittered frames, follows motion, drops history the current frame contradicts, and starts
over at cuts. Frames are sampled from a known texture, so the truth is exact."""
import numpy as np
import torch
import torch.nn.functional as F

from reframe_core.evaluation.metrics import flip
from reframe_core.frames.buffers import halton
from reframe_core.frames.temporal_upscaler import TemporalUpscaler
from reframe_core.frames.warp import to_image
from reframe_core.networks.supersampling import upsample_unjittered

H = W = 96
SCALE = 2


def _texture(seed=0, width=W + 80):
    g = torch.Generator().manual_seed(seed)
    texture = torch.rand(1, 3, H, width, generator=g)
    return F.avg_pool2d(F.pad(texture, (1, 1, 1, 1), mode="replicate"), 3, 1) * 0.8 + 0.1


def _view(texture, offset, jx=0.0, jy=0.0, scale=1):
    """The texture seen with the view shifted ``offset`` display pixels right, sampled at a grid ``scale`` times
    coarser whose samples sit ``(jx, jy)`` of its pixels off their centres."""
    h, w = H // scale, W // scale
    xs = ((torch.arange(w) + 0.5 + jx) * scale + offset) / texture.shape[3] * 2 - 1
    ys = ((torch.arange(h) + 0.5 + jy) * scale) / H * 2 - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
    return F.grid_sample(texture, grid, mode="bilinear", align_corners=False)


def _run(texture, speed, frames=24, upscaler=None):
    """Mean FLIP over the last half of the frames: (temporal, bicubic)."""
    upscaler = upscaler or TemporalUpscaler((H, W))
    motion = torch.zeros(1, 2, H // SCALE, W // SCALE)
    motion[:, 0] = speed / SCALE  # current -> previous, low-res pixels: the content came from the right
    scores = []
    for t in range(frames):
        jx, jy = halton(t + 1, 2) - 0.5, halton(t + 1, 3) - 0.5
        low, jitter = _view(texture, t * speed, jx, jy, SCALE), torch.tensor([[jx, jy]])
        out = upscaler.step_tensors(low, jitter, None if t == 0 else motion)
        if t < frames // 2:
            continue  # accumulating
        truth = to_image(_view(texture, t * speed))
        bicubic = upsample_unjittered(low, jitter, (H, W)).clamp(min=0)
        scores.append((flip(truth, to_image(out), linear=False).mean,
                       flip(truth, to_image(bicubic), linear=False).mean))
    return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


def test_jittered_frames_accumulate_detail_bicubic_cannot_recover():
    temporal, bicubic = _run(_texture(), speed=0.0)
    assert temporal < 0.9 * bicubic, (temporal, bicubic)


def test_a_moving_view_is_followed_through_its_motion():
    temporal, bicubic = _run(_texture(), speed=0.6)
    assert temporal < 0.85 * bicubic, (temporal, bicubic)


def test_history_the_current_frame_contradicts_is_dropped():
    """A bright square vanishes: one frame later, the output there is the background again (neighbourhood
    clamping), not a fading ghost of the square."""
    background = torch.full((1, 3, H // SCALE, W // SCALE), 0.2)
    square = background.clone()
    square[..., 16:32, 16:32] = 4.0
    upscaler = TemporalUpscaler((H, W))
    still = torch.zeros(1, 2, H // SCALE, W // SCALE)
    for t in range(8):
        upscaler.step_tensors(square, torch.tensor([[halton(t + 1, 2) - 0.5, halton(t + 1, 3) - 0.5]]),
                              None if t == 0 else still)
    after = upscaler.step_tensors(background, torch.tensor([[0.0, 0.0]]), still)
    assert float((after - 0.2).abs().max()) < 0.01


def test_a_cut_starts_over_from_the_new_shot():
    upscaler = TemporalUpscaler((H, W))
    _run(_texture(seed=1), speed=0.0, frames=6, upscaler=upscaler)
    other = _view(_texture(seed=2), 0.0, 0.1, -0.2, SCALE)
    jitter = torch.tensor([[0.1, -0.2]])
    after_cut = upscaler.step_tensors(other, jitter, torch.zeros(1, 2, H // SCALE, W // SCALE), cut=True)
    fresh = TemporalUpscaler((H, W)).step_tensors(other, jitter, None)
    assert torch.equal(after_cut, fresh), "nothing of the old shot is left"
    bicubic = upsample_unjittered(other, jitter, (H, W)).clamp(min=0)
    # Bicubic, taken in the upscaler's tonemapped space: within a percent of linear bicubic.
    assert float((bicubic - after_cut).abs().mean()) < 0.01


def test_negated_motion_scores_worse_than_the_true_motion():
    """The control for the moving-view test: history fetched from the wrong side does not pass it."""
    texture = _texture()

    class Negated(TemporalUpscaler):
        def step_tensors(self, color, jitter, motion, depth=None, cut=False):
            return super().step_tensors(color, jitter, None if motion is None else -motion, depth, cut)

    right, bicubic = _run(texture, speed=0.6)
    wrong, _ = _run(texture, speed=0.6, upscaler=Negated((H, W)))
    assert right < 0.85 * bicubic and wrong > right * 1.1, (right, wrong, bicubic)


def test_history_behind_a_disocclusion_is_dropped_by_the_depth_test():
    """A near grey square moves away and uncovers a far wall of dark and bright pixels. Motion follows the wall
    (static), so the square's history lands on the uncovered wall, and its grey lies inside the wall's
    neighbourhood range, so clamping keeps it: only the depth test drops it, and the wall shows at once."""
    wall = torch.full((1, 3, H // SCALE, W // SCALE), 0.1)
    wall[..., ::2, ::2] = 1.0
    with_square = wall.clone()
    with_square[..., 16:32, 16:32] = 0.5
    far = torch.full((1, 1, H // SCALE, W // SCALE), 10.0)
    near = far.clone()
    near[..., 16:32, 16:32] = 2.0
    still = torch.zeros(1, 2, H // SCALE, W // SCALE)
    jitter = torch.tensor([[0.0, 0.0]])
    no_history = TemporalUpscaler((H, W)).step_tensors(wall, jitter, None)

    def left_over(depth_test: bool) -> float:
        upscaler = TemporalUpscaler((H, W))
        for t in range(8):
            upscaler.step_tensors(with_square, torch.tensor([[halton(t + 1, 2) - 0.5, halton(t + 1, 3) - 0.5]]),
                                  None if t == 0 else still, near if depth_test else None)
        after = upscaler.step_tensors(wall, jitter, still, far if depth_test else None)
        return float((after - no_history)[..., 36:60, 36:60].abs().mean())

    assert left_over(depth_test=True) < 0.01
    assert left_over(depth_test=False) > 0.1  # the square lingers where only clamping guards the history
