"""Where each pixel of the current frame was in another camera's image, from its depth and the two cameras.

The torch counterpart of :func:`reframe_core.frames.motion.motion_from_depth`, batched and on the tensors'
device: the cache uses it to move cached feature maps from the refresh frame to the current one, and the
``screen`` policy to measure camera motion in pixels and the share of the frame the reference did not see.
Camera-induced motion only (moving objects move with the camera here). Perspective cameras only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from reframe_core.errors import SettingsError
from reframe_core.frames.buffers import FrameBuffers
from reframe_core.frames.hints import CameraHints


@dataclass(frozen=True)
class Reprojection:
    """The current frame's pixels seen from a reference camera, at the depth map's resolution.

    Attributes:
        grid: (B, H, W, 2) position in the reference image, in ``grid_sample`` coordinates (-1..1, align_corners
            False): ``F.grid_sample(reference_image, grid)`` is the reference brought to the current frame.
        motion: (B, 2, H, W) the same as a displacement in pixels (current -> reference, x right, y down).
        reference_depth: (B, 1, H, W) the planar depth each pixel's point has in the reference view (inf for
            background pixels, which are directions).
        inside: (B, 1, H, W) True where the point is in front of the reference camera and inside its image.
    """

    grid: torch.Tensor
    motion: torch.Tensor
    reference_depth: torch.Tensor
    inside: torch.Tensor

    def resized(self, size: tuple[int, int]) -> torch.Tensor:
        """The grid at another resolution of the same image (a cached feature map's), for ``grid_sample``."""
        if tuple(self.grid.shape[1:3]) == tuple(size):
            return self.grid
        return F.interpolate(self.grid.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)

    def warp(self, image: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """``image`` (B, C, h, w), seen from the reference camera, brought to the current frame (edge pixels where
        the reference did not see)."""
        # In float32 whatever the features' precision: an fp16 grid is off by a fraction of a pixel.
        grid = self.resized(image.shape[-2:]).float()
        return F.grid_sample(image.float(), grid, mode=mode, padding_mode="border", align_corners=False).to(image.dtype)

    def disoccluded(self, reference_depth: torch.Tensor, tolerance: float = 0.05) -> torch.Tensor:
        """(B, 1, H, W) True where the reference did not see this pixel's surface: outside its image, or hidden
        behind something nearer (the reference's own depth, read where the point lands, is more than
        ``tolerance`` closer than the point)."""
        seen = F.grid_sample(reference_depth.to(self.grid.dtype), self.grid, mode="nearest", padding_mode="border", align_corners=False)
        finite = torch.isfinite(self.reference_depth)
        hidden = finite & torch.isfinite(seen) & (seen < self.reference_depth * (1 - tolerance))
        hidden |= finite & ~torch.isfinite(seen)  # a surface where the reference saw only sky
        return ~self.inside | hidden


def _matrix(value) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value, dtype=np.float64))


def reproject(depth: torch.Tensor, current: CameraHints, reference: CameraHints) -> Reprojection:
    """Reproject the current frame, given its (B, 1, H, W) planar view depth (``inf`` or NaN on background
    pixels, which are taken as infinitely far), into the ``reference`` camera's image.

    Both cameras' projections are for the same image size (the render resolution); a camera shift is part of
    the projection, a sub-pixel jitter is not.
    """
    if depth.ndim != 4 or depth.shape[1] != 1:
        raise SettingsError(f"reproject takes a (B, 1, H, W) depth map, got shape {tuple(depth.shape)}")
    for hints, who in ((current, "current"), (reference, "reference")):
        if abs(hints.projection[3][3]) > 1e-9:
            raise SettingsError(f"reproject supports perspective cameras only (the {who} camera is orthographic)")
    batch, _, height, width = depth.shape
    dtype, device = torch.float32, depth.device
    # Current pixel -> view-space ray (z = -1), then the point at its planar depth (w = 0: a direction).
    u = (torch.arange(width, dtype=torch.float64) + 0.5)
    v = (torch.arange(height, dtype=torch.float64) + 0.5)
    ndc = torch.stack([(2 * u / width - 1)[None, :].expand(height, -1), (1 - 2 * v / height)[:, None].expand(-1, width),
                       torch.ones(height, width, dtype=torch.float64), torch.ones(height, width, dtype=torch.float64)], -1)
    ray = ndc @ torch.linalg.inv(_matrix(current.projection)).T
    ray = ray[..., :3] / ray[..., 3:4]
    ray = (ray / -ray[..., 2:3]).to(dtype=dtype, device=device)  # (H, W, 3)
    to_reference = torch.linalg.inv(_matrix(reference.world_matrix)) @ _matrix(current.world_matrix)
    view = to_reference.to(dtype=dtype, device=device)
    clip_of_view = (_matrix(reference.projection)).to(dtype=dtype, device=device)

    d = depth[:, 0].to(dtype)
    background = ~torch.isfinite(d)
    scale = torch.where(background, torch.ones_like(d), d)[..., None]
    point = torch.cat([ray[None] * scale, torch.where(background, 0.0, 1.0)[..., None]], -1)  # (B, H, W, 4)
    in_reference = point @ view.T  # reference view space
    clip = in_reference @ clip_of_view.T
    w = clip[..., 3]
    front = w > 1e-6
    w = torch.where(front, w, torch.full_like(w, 1e-6))
    x_ndc, y_ndc = clip[..., 0] / w, clip[..., 1] / w
    grid = torch.stack([x_ndc, -y_ndc], -1)  # grid_sample: y down
    inside = front & (x_ndc.abs() <= 1) & (y_ndc.abs() <= 1)
    px = torch.stack([(x_ndc + 1) / 2 * width - (u.to(dtype=dtype, device=device))[None, None, :],
                      (1 - y_ndc) / 2 * height - (v.to(dtype=dtype, device=device))[None, :, None]], 1)
    reference_depth = torch.where(background, torch.full_like(d, float("inf")), -in_reference[..., 2])
    return Reprojection(grid=grid, motion=px, reference_depth=reference_depth[:, None], inside=inside[:, None])


def depth_tensor(frame: FrameBuffers) -> torch.Tensor:
    """A frame's depth pass as the (1, 1, H, W) tensor :func:`reproject` takes: ``inf`` on the pixels that
    :meth:`FrameBuffers.scene_depth` leaves out (no surface, or beyond half the far clip)."""
    covered = (frame.alpha > 0.5) & (frame.depth < 0.5 * frame.camera.clip_end)
    depth = np.where(covered, frame.depth, np.inf).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(depth))[None, None]
