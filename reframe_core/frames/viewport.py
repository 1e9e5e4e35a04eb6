"""Frame buffers from what Blender's 3D viewport can draw off-screen. Pure numpy (the drawing is in
``blender_addon.viewport``).

The viewport has no Vector pass and EEVEE's viewport Normal pass is clamped to [0, 1] when drawn (negative
components are lost), so from the off-screen draws we take only colour (Combined), albedo (Diffuse Color) and the
depth buffer, and rebuild the rest from the depth and the two views' matrices:

* depth: the depth buffer's [0, 1] values through the projection (planar view distance);
* normal: the geometric normal from the depth's screen-space derivatives (flat per face, no normal maps: the
  closest a depth buffer gets to the render's normal pass), turned into world space;
* motion: :func:`reframe_core.frames.motion.rebuild_motion` (camera motion; moving objects move with the camera).
"""
from __future__ import annotations

import math

import numpy as np

from reframe_core.frames.buffers import CameraData, FrameBuffers
from reframe_core.frames.motion import rebuild_motion

BACKGROUND_DEPTH = 1e10  # what Blender's Z pass holds where no surface is, as the render's buffers do


def camera_from_view(view_matrix, window_matrix, size: tuple[int, int], name: str = "viewport",
                     frame: int = 0, jitter: tuple[float, float] = (0.0, 0.0)) -> CameraData:
    """The viewport's camera as :class:`CameraData`: ``view_matrix`` (world -> view) and ``window_matrix`` (the
    OpenGL projection) of ``region_3d``, for an image of ``size`` = (width, height) pixels."""
    view = np.asarray(view_matrix, np.float64).reshape(4, 4)
    projection = np.asarray(window_matrix, np.float64).reshape(4, 4)
    if abs(projection[3, 3]) > 1e-9:
        raise ValueError("the view is orthographic: the overlay needs a perspective view (numpad 5 toggles it)")
    near = projection[2, 3] / (projection[2, 2] - 1.0)
    far = projection[2, 3] / (projection[2, 2] + 1.0) if abs(projection[2, 2] + 1.0) > 1e-12 else math.inf
    fov_x = 2 * math.degrees(math.atan(1.0 / projection[0, 0]))
    fov_y = 2 * math.degrees(math.atan(1.0 / projection[1, 1]))
    width, height = size
    return CameraData(frame=frame, name=name, world_matrix=np.linalg.inv(view).tolist(), projection=projection.tolist(),
                      lens_mm=18.0 / math.tan(math.radians(fov_x) / 2), fov_x_deg=fov_x, fov_y_deg=fov_y,
                      clip_start=float(near), clip_end=float(min(far, 1e9)), resolution=(int(width), int(height)),
                      shift=(float(jitter[0]), float(jitter[1])))


def jittered_projection(window_matrix, size: tuple[int, int], jitter: tuple[float, float]) -> np.ndarray:
    """The projection whose pixels sample ``jitter`` pixels (x right, y down) away from the plain one's, as the
    render's camera-shift jitter does (:mod:`blender_addon.capture`): the image content moves by ``-jitter``.
    Moving clip-space x by ``c * w`` is adding ``c`` times the w row (row 3) to row 0; y is up in clip space."""
    projection = np.array(window_matrix, np.float64).reshape(4, 4)
    width, height = size
    projection[0] -= (2.0 * jitter[0] / width) * projection[3]
    projection[1] += (2.0 * jitter[1] / height) * projection[3]
    return projection


def depth_from_zbuffer(zbuffer: np.ndarray, window_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(planar view depth, coverage) from a [0, 1] depth buffer; the far plane (1.0) is background."""
    projection = np.asarray(window_matrix, np.float64).reshape(4, 4)
    z = np.asarray(zbuffer, np.float64)
    covered = z < 1.0 - 1e-7
    ndc = 2.0 * z - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = projection[2, 3] / (ndc + projection[2, 2])
    depth = np.where(covered & np.isfinite(depth) & (depth > 0), depth, BACKGROUND_DEPTH)
    return depth.astype(np.float32), (depth < BACKGROUND_DEPTH).astype(np.float32)


def normals_from_depth(depth: np.ndarray, camera: CameraData) -> np.ndarray:
    """(H, W, 3) world-space unit normals of the surfaces in ``depth`` (planar view depth), facing the camera;
    zero on the background. One-sided differences, each axis taking the side that continues this pixel's
    surface, so a normal never mixes two surfaces (at creases and occlusion edges)."""
    height, width = depth.shape
    projection = np.asarray(camera.projection, np.float64)
    u = (np.arange(width) + 0.5)[None, :].repeat(height, 0)
    v = (np.arange(height) + 0.5)[:, None].repeat(width, 1)
    x_ndc, y_ndc = 2 * u / width - 1, 1 - 2 * v / height
    d = depth.astype(np.float64)
    # view-space position: x = x_ndc * d / P00 (+ shift terms), y likewise, z = -d
    points = np.stack([(x_ndc + projection[0, 2]) * d / projection[0, 0],
                       (y_ndc + projection[1, 2]) * d / projection[1, 1], -d], axis=-1)
    background = depth >= BACKGROUND_DEPTH * 0.5

    inverse = np.where(background, 0.0, 1.0 / np.maximum(d, 1e-12))  # linear in screen space on a plane

    def derivative(axis: int) -> np.ndarray:
        forward = np.roll(points, -1, axis) - points
        backward = points - np.roll(points, 1, axis)
        # Which side is this pixel's own surface: on a plane 1/depth is linear across the screen, so the side whose
        # two pixels extrapolate best to this one (a crease or an occlusion edge lies on the other side).
        ahead = np.abs(2 * np.roll(inverse, -1, axis) - np.roll(inverse, -2, axis) - inverse)
        behind = np.abs(2 * np.roll(inverse, 1, axis) - np.roll(inverse, 2, axis) - inverse)
        out = np.where((ahead <= behind)[..., None], forward, backward)
        for index, side in ((0, forward), (1, forward), (-1, backward), (-2, backward)):  # no wrapping at borders
            edge = [slice(None)] * 2
            edge[axis] = index
            out[tuple(edge)] = side[tuple(edge)]
        return out

    normal = np.cross(derivative(0), derivative(1))  # rows go down, columns right: (down x right) faces the camera
    length = np.linalg.norm(normal, axis=-1, keepdims=True)
    normal = np.divide(normal, length, out=np.zeros_like(normal), where=length > 1e-20)
    facing = np.sum(normal * points, axis=-1) > 0  # must point against the view ray
    normal[facing] *= -1
    rotation = np.asarray(camera.world_matrix, np.float64)[:3, :3]
    world = normal @ rotation.T
    world[background] = 0.0
    return world.astype(np.float32)


def viewport_buffers(color: np.ndarray, albedo: np.ndarray, zbuffer: np.ndarray, camera: CameraData,
                     previous: CameraData | None, jitter: tuple[float, float] = (0.0, 0.0)) -> FrameBuffers:
    """:class:`FrameBuffers` of one viewport draw (arrays top row first, as the buffers' convention)."""
    depth, alpha = depth_from_zbuffer(zbuffer, camera.projection)
    motion_prev, motion_next = rebuild_motion(depth, camera, previous)
    return FrameBuffers(color=np.ascontiguousarray(color[..., :3], np.float32), alpha=alpha, depth=depth,
                        normal=normals_from_depth(depth, camera), albedo=np.ascontiguousarray(albedo[..., :3], np.float32),
                        motion_prev=motion_prev, motion_next=motion_next, camera=camera,
                        jitter=np.asarray(jitter, np.float32))
