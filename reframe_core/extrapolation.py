"""The frame-extrapolation workload (ExtraNet): render every k-th frame in full, the frames between in a
cheap G-buffer mode, and extrapolate their shading from the warped history.

Inputs of one extrapolated frame t, built from what the cheap pass gives (depth, normal, albedo, motion)
and the frames already shown:

* ``x`` (6): the last shown frame warped to t, and the same with disoccluded pixels zeroed;
* ``mask`` (6): the disocclusion mask (1 where frame t-1 saw the surface), repeated;
* ``feature`` (7): normal, normalised depth, albedo (our shipped net; the published one takes roughness and
  metallic instead of albedo, 6 channels: :class:`ExtraNet` takes either through ``n_channels``);
* ``his_buffer`` (3, 4): frames t-3, t-2, t-1 warped to t by chaining each frame's motion, with masks.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from .buffers import FrameBuffers
from .hints import CameraHints
from .placement import Placement
from .supersampling import gbuffer
from .warp import backward_warp, disocclusion_mask, in_frame_mask, to_image, to_tensor

FEATURE_CHANNELS = 7
N_CHANNELS = 12 + FEATURE_CHANNELS


@dataclass
class _Shown:
    """A frame already shown (rendered or extrapolated), kept warped to the current frame."""

    color: torch.Tensor  # (1, 3, H, W), warped to the latest frame
    mask: torch.Tensor  # (1, 1, H, W)
    motion_next: torch.Tensor  # (1, 2, H, W) of the frame itself, for disocclusion tests


def feature_tensor(frame: FrameBuffers) -> torch.Tensor:
    """(1, 7, H, W): normal, normalised depth, albedo."""
    g = to_tensor(gbuffer(frame))  # albedo, normal, depth
    return torch.cat([g[:, 3:6], g[:, 6:7], g[:, 0:3]], 1)


def warp_history(colors: list[torch.Tensor], masks: list[torch.Tensor], motion: torch.Tensor):
    """Bring frames (and their validity masks) one frame forward with that frame's motion_prev."""
    inside = in_frame_mask(motion)
    return ([backward_warp(c, motion) for c in colors],
            [backward_warp(m, motion, mode="nearest") * inside for m in masks])


def fe_inputs(history: list[torch.Tensor], masks: list[torch.Tensor], motion: torch.Tensor,
              previous_motion_next: torch.Tensor | None, feature: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(x, feature, mask, his_buffer) for ExtraNet.

    Args:
        history / masks: the three previous frames already warped to this frame, oldest first, (B, 3|1, H, W).
        motion: this frame's motion_prev (B, 2, H, W); previous_motion_next: the last frame's motion_next.
        feature: (B, 7, H, W) from :func:`feature_tensor`.
    """
    previous = history[-1]
    if previous_motion_next is not None:
        mask = disocclusion_mask(motion, previous_motion_next) * masks[-1]
    else:
        mask = masks[-1]
    x = torch.cat([previous, previous * mask], 1)
    his = torch.stack([torch.cat([c, m], 1) for c, m in zip(history, masks)], dim=1)
    return x, feature, mask.repeat(1, 6, 1, 1), his


class Extrapolator:
    """Shows a sequence where every ``k``-th frame is rendered and the others are extrapolated.

    Call :meth:`step` with each frame's buffers in order; frames where ``is_full_frame`` is True must carry a
    real colour; the others only need G-buffers and motion (the cheap pass). Returns the colour shown.
    ``placement``: device, precision and layout of the network call (default: CPU float32).
    """

    def __init__(self, model, k: int = 2, placement: Placement | None = None):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.model, self.k = model, k
        self.placement = placement or Placement()
        self._history: deque[_Shown] = deque(maxlen=3)
        self._index = 0

    def reset(self) -> None:
        self._history.clear()
        self._index = 0
        if hasattr(self.model, "reset"):
            self.model.reset()

    def is_full_frame(self, hints: CameraHints | None = None) -> bool:
        """Whether the next frame must be rendered in full (every k-th, and after a cut or at the start)."""
        return (hints is not None and hints.cut) or len(self._history) == 0 or self._index % self.k == 0

    def step(self, frame: FrameBuffers, hints: CameraHints | None = None) -> tuple[np.ndarray, bool]:
        """Returns (colour shown, whether it was rendered rather than extrapolated)."""
        full = self.is_full_frame(hints)
        if hints is not None and hints.cut:
            self._history.clear()
            self._index = 0
        device = self.placement.device
        motion = to_tensor(frame.motion_prev).to(device)
        if self._history:  # bring the history to this frame
            colors, masks = warp_history([h.color for h in self._history], [h.mask for h in self._history], motion)
            for item, color, mask in zip(self._history, colors, masks):
                item.color, item.mask = color, mask
        if full:
            shown = to_tensor(frame.color).to(device)
        else:
            history = [h.color for h in self._history]
            masks = [h.mask for h in self._history]
            while len(history) < 3:  # fewer than three frames since the start or a cut: repeat the oldest
                history.insert(0, history[0])
                masks.insert(0, masks[0])
            inputs = self.placement.inputs(fe_inputs(history, masks, motion, self._history[-1].motion_next,
                                                     feature_tensor(frame).to(device)))
            with torch.inference_mode():
                if hasattr(self.model, "plan"):
                    shown = self.model(*inputs, hints=hints)
                else:
                    shown = self.model(*inputs)
                shown = shown.float().clamp(min=0)
        self._history.append(_Shown(shown, torch.ones_like(shown[:, :1]), to_tensor(frame.motion_next).to(device)))
        self._index += 1
        return to_image(shown), full
