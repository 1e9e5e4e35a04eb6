"""Motion vectors rebuilt from depth and two cameras, for frames without a Vector pass.

Blender 3.x EEVEE writes no Vector pass, and Python cannot read EEVEE's velocity buffer in the viewport;
there motion comes from this function. It covers camera motion only: moving objects get the motion the
camera alone would give them. Output follows :mod:`reframe_core.frames.buffers` (pixels, x right, y down).

:func:`rebuild_motion` is what readers call (:func:`reframe_core.frames.buffers.read_blender_exr`, the capture, the
viewport): it gives both motions like a Vector pass would, zero on the background and across a camera cut.
"""
from __future__ import annotations

import numpy as np

from reframe_core.errors import SettingsError
from reframe_core.frames.buffers import CameraData


def motion_from_depth(depth: np.ndarray, current: CameraData, other: CameraData, background_depth: float | None = None) -> np.ndarray:
    """(H, W) planar view depth of the current frame -> (H, W, 2) motion from current to ``other``'s frame.

    Pixels with depth >= ``background_depth`` (default: half the current far clip) are treated as infinitely
    far: only the camera rotation moves them. Perspective cameras only.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise SettingsError(f"depth must be (H, W), got shape {depth.shape}")
    height, width = depth.shape
    if tuple(current.resolution) != (width, height):
        raise SettingsError(f"depth is {width}x{height} but the camera was captured at {current.resolution[0]}x{current.resolution[1]}")
    projection = np.asarray(current.projection, dtype=np.float64)
    if abs(projection[3, 3]) > 1e-9:
        raise SettingsError("motion_from_depth supports perspective cameras only (this projection is orthographic)")
    far = background_depth if background_depth is not None else 0.5 * current.clip_end

    u = (np.arange(width) + 0.5)[None, :].repeat(height, 0)
    v = (np.arange(height) + 0.5)[:, None].repeat(width, 1)
    ndc = np.stack([2 * u / width - 1, 1 - 2 * v / height, np.ones_like(u), np.ones_like(u)], axis=-1)
    ray = ndc @ np.linalg.inv(projection).T  # a point on each pixel's ray, view space, homogeneous
    ray = ray[..., :3] / ray[..., 3:4]
    ray = ray / -ray[..., 2:3]  # view z = -1: scale by the planar depth below
    is_background = depth >= far
    point = np.concatenate([ray * np.where(is_background, 1.0, depth)[..., None],
                            np.where(is_background, 0.0, 1.0)[..., None]], axis=-1)  # w=0: a direction

    to_other = np.linalg.inv(np.asarray(other.world_matrix, np.float64)) @ np.asarray(current.world_matrix, np.float64)
    clip = point @ (np.asarray(other.projection, np.float64) @ to_other).T
    w = np.where(np.abs(clip[..., 3]) < 1e-12, 1e-12, clip[..., 3])
    u_other = (clip[..., 0] / w + 1) / 2 * width
    v_other = (1 - clip[..., 1] / w) / 2 * height
    return np.stack([u_other - u, v_other - v], axis=-1).astype(np.float32)


def continues(current: CameraData, other: CameraData | None) -> bool:
    """Whether motion between the two views means anything: the same camera at the same resolution. Another
    camera (a cut at a timeline marker) or a resized view (the viewport) is not a continuation."""
    return other is not None and other.name == current.name and tuple(other.resolution) == tuple(current.resolution)


def rebuild_motion(depth: np.ndarray, current: CameraData, previous: CameraData | None = None,
                   next: CameraData | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(motion_prev, motion_next), each (H, W, 2), rebuilt from the depth and the other views' cameras.

    ``previous`` / ``next`` are the cameras of the frames before and after (the capture: frames N-1 and N+1;
    the viewport: the view drawn before, and no next). Like Blender's Vector pass, background pixels (depth >=
    half the far clip) hold 0. A motion whose camera is unknown (None) or does not continue this one
    (:func:`continues`) stays 0.
    """
    depth = np.asarray(depth, dtype=np.float32)
    covered = (depth < 0.5 * current.clip_end)[..., None]
    out = []
    for other in (previous, next):
        if continues(current, other):
            out.append(np.where(covered, motion_from_depth(depth, current, other), 0).astype(np.float32))
        else:
            out.append(np.zeros(depth.shape + (2,), np.float32))
    return out[0], out[1]
