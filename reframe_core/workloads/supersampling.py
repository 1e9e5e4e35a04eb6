"""The supersampling workload: from captured low-res frames to display-resolution frames, with temporal
feedback, camera-cut resets and (optionally) layer caching.

One entry point per job: :class:`Supersampler` runs a sequence frame by frame; :func:`ss_inputs` builds
the network's tensors from :class:`FrameBuffers`; :func:`bicubic_upscale` is the baseline to beat.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from reframe_core.frames.buffers import FrameBuffers
from reframe_core.caching.cache import network_of
from reframe_core.networks.supersampling import upsample_unjittered
from reframe_core.frames.hints import CameraHints
from reframe_core.runtime.placement import Placement
from reframe_core.frames.warp import backward_warp, to_image, to_tensor


def gbuffer(buffers: FrameBuffers) -> np.ndarray:
    """(h, w, 7): albedo, normal, depth as ``m / (m + d)`` (m: median visible depth; background -> 0)."""
    median = buffers.scene_depth() or 1.0
    depth = np.where(buffers.alpha > 0, median / (median + np.maximum(buffers.depth, 0)), 0.0)
    return np.concatenate([buffers.albedo, buffers.normal, depth[..., None]], axis=-1).astype(np.float32)


def upscale_motion(motion_lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 2, h, w) low-res pixels -> (B, 2, H, W) display pixels (nearest: motion edges stay sharp)."""
    h, w = motion_lr.shape[-2:]
    scale = torch.tensor([size[1] / w, size[0] / h], dtype=motion_lr.dtype, device=motion_lr.device)
    return F.interpolate(motion_lr, size=size, mode="nearest") * scale[None, :, None, None]


def bicubic_upscale(color_lr: torch.Tensor, size: tuple[int, int], jitter: torch.Tensor | None = None) -> torch.Tensor:
    """The baseline: bicubic up-sampling of a (jittered) low-res frame, sampled where the display pixels
    really are (see :func:`upsample_unjittered`)."""
    if jitter is None:
        jitter = torch.zeros(color_lr.shape[0], 2, dtype=color_lr.dtype)
    return upsample_unjittered(color_lr, jitter, size).clamp(min=0)


def history_warp_mode(model) -> str:
    """How a network (or a CachedModel of one) wants its history warped: its ``history_warp`` attribute,
    "bilinear" or "bicubic" (SupersamplingNet and ExtraNet declare it; others get "bilinear")."""
    return getattr(network_of(model), "history_warp", "bilinear")


def ss_inputs(low: FrameBuffers, history: torch.Tensor | None, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Network inputs for one frame: (color, gbuffer, jitter, history); a None history is a reset."""
    color = to_tensor(low.color)
    jitter = torch.from_numpy(np.asarray(low.jitter, np.float32))[None]
    if history is None:
        history = bicubic_upscale(color, size, jitter)
    return color, to_tensor(gbuffer(low)), jitter, history


@dataclass
class SupersampledFrame:
    image: np.ndarray  # (H, W, 3) linear
    refreshed: bool | None  # None without a cache
    reason: str


class Supersampler:
    """Runs the SS network over a sequence: warps the previous output by the frame's motion, resets the
    history on camera cuts, and asks the cache (if any) whether to refresh.

    Args:
        model: a SupersamplingNet, or a CachedModel wrapping one, already on ``placement``'s device/dtype.
        size: display (height, width).
        placement: device, precision and layout of the network call (default: CPU float32).
    """

    def __init__(self, model, size: tuple[int, int], placement: Placement | None = None):
        self.model = model
        self.size = size
        self.placement = placement or Placement()
        self._previous: torch.Tensor | None = None
        self._warp_mode = history_warp_mode(model)

    def reset(self) -> None:
        self._previous = None
        if hasattr(self.model, "reset"):
            self.model.reset()

    def step(self, low: FrameBuffers, hints: CameraHints | None = None) -> SupersampledFrame:
        if hints is not None and hints.cut:
            self._previous = None
        device = self.placement.device
        history = None
        if self._previous is not None:
            motion = upscale_motion(to_tensor(low.motion_prev).to(device), self.size)
            history = backward_warp(self._previous, motion, mode=self._warp_mode)
        inputs = self.placement.inputs(ss_inputs(low, history, self.size))
        with torch.inference_mode():
            if hasattr(self.model, "plan"):  # a CachedModel: the policy decides
                out = self.model(*inputs, hints=hints)
                decision = self.model.decisions[-1]
                refreshed, reason = decision.refresh, decision.reason
            else:
                out, refreshed, reason = self.model(*inputs), None, "uncached"
        out = out.float().clamp(min=0)
        self._previous = out
        return SupersampledFrame(to_image(out), refreshed, reason)
