"""The frame-extrapolation workload (ExtraNet): render every k-th frame in full, the frames between in a
cheap G-buffer mode, and extrapolate their shading from the warped history.

Inputs of one extrapolated frame t, built from what the cheap pass gives (depth, normal, albedo, motion)
and the frames already shown:

* ``x`` (6): the last shown frame warped to t, and the same with disoccluded pixels zeroed;
* ``mask`` (6): the disocclusion mask (1 where frame t-1 saw the surface), repeated;
* ``feature`` (7): normal, normalised depth, albedo (our shipped net; the published one takes roughness and
  metallic instead of albedo, 6 channels: :class:`ExtraNet` takes either through ``n_channels``);
* ``his_buffer`` (3, 4): frames t-3, t-2, t-1 warped to t by chaining each frame's motion, with masks.

What the colour channels hold depends on the network's ``inputs`` (:class:`ExtraNet`): linear colour
(``"color"``, the published setup), or ``"shading"``: ``log1p(colour / (albedo + ALBEDO_FLOOR))``, each frame
divided by its own albedo before it is warped and the output multiplied by the current frame's albedo. The
cheap pass renders the current albedo exactly, so texture detail and disoccluded surfaces come from it
rather than from a resampled, smeared old frame; only the slowly varying shading is carried over. On the
held-out ``emissive_transparent`` frames this alone (the network's residual at zero) takes plain
reprojection's FLIP from 0.0181 to 0.0110. The current albedo must then be anti-aliased: from a 1-sample
cheap pass the result is worse than plain reprojection (see the FE model card). Shading-space histories are
warped bicubically (less blur over chained warps than bilinear).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

import numpy as np
import torch

from reframe_core.frames.buffers import FrameBuffers
from reframe_core.frames.hints import CameraHints
from reframe_core.runtime.placement import Placement
from reframe_core.caching.cache import network_of
from reframe_core.workloads.supersampling import gbuffer, history_warp_mode
from reframe_core.frames.warp import backward_warp, disocclusion_mask, in_frame_mask, to_image, to_tensor

FEATURE_CHANNELS = 7
N_CHANNELS = 12 + FEATURE_CHANNELS
# Added to albedo before dividing: keeps black and emissive surfaces (albedo 0) finite, and there the
# division and the multiplication by the current albedo cancel to plain reprojection.
ALBEDO_FLOOR = 0.05
FEATURE_ALBEDO = slice(4, 7)  # albedo's channels in feature_tensor: normal 3, depth 1, albedo 3


def input_space(model) -> str:
    """``"color"`` or ``"shading"``: what an ExtraNet (or a CachedModel of one) takes and returns."""
    return getattr(network_of(model), "inputs", "color")


def encode(color: torch.Tensor, albedo: torch.Tensor, space: str) -> torch.Tensor:
    """Linear colour -> the network's colour space (see the module docstring)."""
    if space == "shading":
        return torch.log1p(color.clamp(min=0) / (albedo.clamp(min=0) + ALBEDO_FLOOR))
    return color


def decode(signal: torch.Tensor, albedo: torch.Tensor, space: str) -> torch.Tensor:
    """The network's colour space -> linear colour (clamped at 0)."""
    if space == "shading":
        return torch.expm1(signal.clamp(min=0, max=20)) * (albedo.clamp(min=0) + ALBEDO_FLOOR)
    return signal.clamp(min=0)


@dataclass
class _Shown:
    """A frame already shown (rendered or extrapolated), kept warped to the current frame."""

    signal: torch.Tensor  # (1, 3, H, W) colour in the network's space (encode), warped to the latest frame
    mask: torch.Tensor  # (1, 1, H, W)
    motion_next: torch.Tensor  # (1, 2, H, W) of the frame itself, for disocclusion tests


def feature_tensor(frame: FrameBuffers) -> torch.Tensor:
    """(1, 7, H, W): normal, normalised depth, albedo."""
    g = to_tensor(gbuffer(frame))  # albedo, normal, depth
    return torch.cat([g[:, 3:6], g[:, 6:7], g[:, 0:3]], 1)


def warp_history(colors: list[torch.Tensor], masks: list[torch.Tensor], motion: torch.Tensor, mode: str = "bilinear"):
    """Bring frames (and their validity masks) one frame forward with that frame's motion_prev."""
    inside = in_frame_mask(motion)
    return ([backward_warp(c, motion, mode=mode) for c in colors],
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
        channels = getattr(network_of(model), "n_channels", N_CHANNELS)
        if channels != N_CHANNELS:
            raise ValueError(
                f"this ExtraNet takes {channels} input channels ({channels - 12} of G-buffer), but the FE workload "
                f"builds {N_CHANNELS} (normal, depth, albedo). The published ExtraNet's 6 (normal, depth, roughness, "
                "metallic) need roughness and metallic passes, which capture does not record yet: such checkpoints "
                "load (load_network) but cannot run in this workload; use the shipped weights or train with "
                "'reframe-blender train --workload fe'")
        self.model, self.k = model, k
        self.space = input_space(model)
        self._warp_mode = history_warp_mode(model)
        self.placement = placement or Placement()
        self._history: deque[_Shown] = deque(maxlen=3)
        self._index = 0
        self._cut_pending = False

    def reset(self) -> None:
        self._history.clear()
        self._index = 0
        self._cut_pending = False
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
            # A cut is always a rendered frame, where the network does not run: carry the cut to the network's
            # next call, so that it never reuses deep features cached from the old shot.
            self._cut_pending = True
        device = self.placement.device
        motion = to_tensor(frame.motion_prev).to(device)
        albedo = to_tensor(frame.albedo).to(device) if self.space == "shading" else None
        if self._history:  # bring the history to this frame
            colors, masks = warp_history([h.signal for h in self._history], [h.mask for h in self._history], motion,
                                         mode=self._warp_mode)
            for item, color, mask in zip(self._history, colors, masks):
                item.signal, item.mask = color, mask
        if full:
            shown = to_tensor(frame.color).to(device)
            signal = encode(shown, albedo, self.space)
        else:
            history = [h.signal for h in self._history]
            masks = [h.mask for h in self._history]
            while len(history) < 3:  # fewer than three frames since the start or a cut: repeat the oldest
                history.insert(0, history[0])
                masks.insert(0, masks[0])
            inputs = self.placement.inputs(fe_inputs(history, masks, motion, self._history[-1].motion_next,
                                                     feature_tensor(frame).to(device)))
            call_hints = hints
            if self._cut_pending:
                self._cut_pending = False
                if hints is not None:
                    call_hints = replace(hints, cut=True)
                elif hasattr(self.model, "reset"):
                    self.model.reset()
            with torch.inference_mode():
                if hasattr(self.model, "plan"):
                    signal = self.model(*inputs, hints=call_hints)
                else:
                    signal = self.model(*inputs)
                signal = signal.float().clamp(min=0)
            shown = decode(signal, albedo, self.space)
        self._history.append(_Shown(signal, torch.ones_like(signal[:, :1]), to_tensor(frame.motion_next).to(device)))
        self._index += 1
        return to_image(shown), full
