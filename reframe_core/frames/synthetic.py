"""A synthetic camera pan with exact camera hints, for demos and tests that must run without Blender.

The image is a crop of a fixed procedural texture, moved by a sub-pixel camera translation per frame
(bilinear resampling); the hints describe the same camera, so image motion and camera motion agree.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reframe_core.frames.hints import CameraHints

FOV_DEGREES = 40.0
SCENE_DEPTH = 10.0


def _texture(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth colour noise at three scales plus a fine checker: (3, H, W) in [0, 1]."""
    image = torch.zeros(3, height, width)
    for cells, weight in ((8, 0.5), (32, 0.3), (128, 0.15)):
        coarse = torch.rand(1, 3, max(2, height // cells + 2), max(2, width // cells + 2), generator=generator)
        image += weight * F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    image += 0.05 * (((yy // 4) + (xx // 4)) % 2).float()
    return image.clamp(0, 1)


def _projection(aspect: float) -> tuple:
    f = 1.0 / math.tan(math.radians(FOV_DEGREES) / 2)
    near, far = 0.1, 100.0
    return ((f / aspect, 0, 0, 0), (0, f, 0, 0), (0, 0, (far + near) / (near - far), 2 * far * near / (near - far)), (0, 0, -1, 0))


def panning_sequence(frames: int = 48, height: int = 256, width: int = 256, speed_px: float = 0.75,
                     cut_at: int | None = None, seed: int = 0) -> list[tuple[torch.Tensor, CameraHints]]:
    """Frames of a horizontal pan: list of ((1, 3, H, W) image, CameraHints).

    ``cut_at`` switches to another texture (a second camera) at that frame and marks the cut in the hints.
    """
    generator = torch.Generator().manual_seed(seed)
    margin = int(math.ceil(frames * speed_px)) + 4
    textures = [_texture(height, width + margin, generator) for _ in range(2 if cut_at is not None else 1)]
    world_per_px = 2 * SCENE_DEPTH * math.tan(math.radians(FOV_DEGREES) / 2) / height
    out = []
    for frame in range(frames):
        shot = 1 if cut_at is not None and frame >= cut_at else 0
        start = frame if shot == 0 else frame - cut_at
        offset = start * speed_px
        texture = textures[shot]
        # Sample columns offset .. offset + width with bilinear weights (sub-pixel motion).
        xs = (torch.arange(width) + offset + 0.5) / texture.shape[2] * 2 - 1
        ys = (torch.arange(height) + 0.5) / height * 2 - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
        image = F.grid_sample(texture[None], grid, mode="bilinear", align_corners=False)
        world = ((1, 0, 0, offset * world_per_px + 100.0 * shot), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1))
        hints = CameraHints(frame=frame + 1, world_matrix=world, projection=_projection(width / height),
                            cut=cut_at is not None and frame == cut_at, scene_depth=SCENE_DEPTH,
                            camera_name=f"Camera.{shot}")
        out.append((image.contiguous(), hints))
    return out
