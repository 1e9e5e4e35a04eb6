"""A non-neural temporal upscaler in the style of FSR 2: what a user gets without a network, so the SS network must
beat it as well as bicubic.

Per frame, at display resolution, in a tonemapped space ``x / (1 + x)`` (so one bright sample cannot dominate a
blend, then mapped back):

- the current frame's contribution is its bicubic reconstruction at the display pixel (taken where the jittered
  samples really are, as a TAAU's Catmull-Rom reconstruction), weighted by how close a sample lands to the
  display pixel's centre (a Gaussian of the distance in low-res pixels): over a jitter sequence every display
  pixel is reconstructed from samples that land on it, which is where the detail beyond bicubic comes from;
- the history (the previous output) is reprojected with the frame's motion, clamped to the 3x3 neighbourhood range
  of the current low-res samples (ghosting: a colour the current frame does not have nearby is dropped), and
  discarded where it is off-screen or its depth lies outside the depth range of the current 3x3 samples around
  the pixel, widened by ``depth_tolerance`` (disocclusion);
- each pixel keeps an accumulated weight (warped with the history, capped at ``max_weight``, so the output
  follows changes with a blend factor of at least ``1 / max_weight``), divided by ``1 + velocity * |motion|``
  (display pixels) on every warp: each resampling of a moving history blurs it a little, and on EEVEE frames
  that blur, compounded over frames, grew the error frame after frame (furnished_room: from 0.035 to 0.052 FLIP
  over 16 frames without it; flat at 0.037 with it).

A camera cut (or the first frame) starts over: that frame shows bicubic, its samples start the accumulation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reframe_core.frames.buffers import FrameBuffers
from reframe_core.frames.hints import CameraHints
from reframe_core.frames.warp import backward_warp, history_seen, surface_depth, to_image, to_tensor, upscale_motion
from reframe_core.networks.supersampling import local_range, sample_distance, upsample_unjittered


def _tone(x: torch.Tensor) -> torch.Tensor:
    return x / (1 + x.amax(dim=1, keepdim=True))


def _untone(y: torch.Tensor) -> torch.Tensor:
    return y / (1 - y.amax(dim=1, keepdim=True)).clamp(min=1e-4)


@dataclass
class TemporalUpscalerSettings:
    sample_sigma: float = 0.25  # low-res pixels: the current sample's weight falls off with its distance
    max_weight: float = 10.0  # accumulated weight cap (minimum blend factor 1/10, as TAA's)
    fallback_weight: float = 0.05  # the current frame's least weight, where no sample lands close
    velocity: float = 0.5  # history weight / (1 + velocity * motion in display pixels) on each warp
    depth_tolerance: float = 0.05  # relative depth change that marks a disocclusion


class TemporalUpscaler:
    """Steps a sequence of jittered low-res frames to display size (``size`` = (H, W))."""

    def __init__(self, size: tuple[int, int], settings: TemporalUpscalerSettings | None = None):
        self.size = size
        self.settings = settings or TemporalUpscalerSettings()
        self.reset()

    def reset(self) -> None:
        self._history = self._weight = self._depth = None

    def step_tensors(self, color: torch.Tensor, jitter: torch.Tensor, motion: torch.Tensor | None,
                     depth: torch.Tensor | None = None, cut: bool = False) -> torch.Tensor:
        """One frame. ``color`` (1, 3, h, w) linear, ``jitter`` (1, 2) low-res pixels, ``motion`` (1, 2, h, w)
        current -> previous in low-res pixels (None: no history), ``depth`` (1, 1, h, w) or None. Returns
        (1, 3, H, W) linear."""
        s, size = self.settings, self.size
        h, w = color.shape[-2:]
        tone = _tone(color.clamp(min=0))
        bicubic = upsample_unjittered(tone, jitter, size).clamp(0, 1 - 1e-4)
        near_weight = torch.exp(-sample_distance(jitter, (h, w), size) / (2 * s.sample_sigma ** 2))
        # The nearest sample's depth flips between foreground and background along silhouettes as the jitter
        # moves; the depth range of the 3x3 samples around it does not, so edges keep their history.
        depth_range = None if depth is None else local_range(depth, jitter, size)
        fresh = cut or motion is None or self._history is None
        if fresh:
            history, weight = torch.zeros_like(bicubic), torch.zeros_like(near_weight)
        else:
            flow = upscale_motion(motion, size)
            history = backward_warp(self._history, flow, mode="bicubic").clamp(0, 1 - 1e-4)
            near, far = depth_range if depth_range is not None else (None, None)
            weight = backward_warp(self._weight, flow, mode="nearest") * history_seen(flow, self._depth, near, far, s.depth_tolerance)
            weight = weight / (1 + s.velocity * flow.norm(dim=1, keepdim=True))
            low, high = local_range(tone, jitter, size)
            history = torch.minimum(torch.maximum(history, low), high)
        total = weight + near_weight + s.fallback_weight
        out = (history * weight + bicubic * (near_weight + s.fallback_weight)) / total
        self._history = out
        self._weight = (weight + near_weight).clamp(max=s.max_weight)
        self._depth = None if depth is None else upsample_unjittered(depth, jitter, size, mode="nearest")
        return _untone(out.clamp(0, 1 - 1e-4))

    def step(self, low: FrameBuffers, hints: CameraHints | None = None) -> np.ndarray:
        """One captured frame -> (H, W, 3) linear display-resolution image."""
        jitter = torch.from_numpy(np.asarray(low.jitter, np.float32))[None]
        out = self.step_tensors(to_tensor(low.color), jitter, to_tensor(low.motion_prev), surface_depth(low.depth, low.alpha),
                                cut=hints is not None and hints.cut)
        return to_image(out)
