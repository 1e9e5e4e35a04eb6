"""Camera hints: what Blender knows exactly about the camera on each frame, as plain numbers.

No bpy here: the capture (``scenes/``), the bridge and the add-on build a :class:`CameraHints` from the
camera's matrices, and policies read it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from reframe_core.errors import SettingsError

Matrix4 = tuple[tuple[float, float, float, float], ...]


def _as_matrix4(value, name: str) -> Matrix4:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (4, 4):
        raise SettingsError(f"CameraHints.{name} must be a 4x4 matrix, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise SettingsError(f"CameraHints.{name} contains NaN or infinite values")
    return tuple(tuple(float(v) for v in row) for row in array)


@dataclass(frozen=True)
class CameraHints:
    """The camera of one frame.

    Attributes:
        frame: Blender frame number.
        world_matrix: camera-to-world 4x4 matrix (Blender's ``camera.matrix_world``), row-major.
        projection: 4x4 projection matrix (OpenGL convention, as Blender's ``calc_matrix_camera``).
        cut: True when this frame starts a new shot (active camera switched, or a jump): caches must reset.
        scene_depth: a representative view distance of the visible scene (e.g. median depth) in scene units;
            the motion policy measures translation relative to it. ``None`` when unknown.
        camera_name: name of the active camera object, for reports.
    """

    frame: int
    world_matrix: Matrix4
    projection: Matrix4
    cut: bool = False
    scene_depth: float | None = None
    camera_name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "world_matrix", _as_matrix4(self.world_matrix, "world_matrix"))
        object.__setattr__(self, "projection", _as_matrix4(self.projection, "projection"))
        object.__setattr__(self, "frame", int(self.frame))
        object.__setattr__(self, "cut", bool(self.cut))
        if self.scene_depth is not None:
            depth = float(self.scene_depth)
            if not math.isfinite(depth) or depth <= 0:
                raise SettingsError(f"CameraHints.scene_depth must be a positive finite number, got {self.scene_depth}")
            object.__setattr__(self, "scene_depth", depth)

    @property
    def position(self) -> np.ndarray:
        """Camera position in world space, shape (3,)."""
        return np.asarray(self.world_matrix, dtype=np.float64)[:3, 3]

    @property
    def rotation(self) -> np.ndarray:
        """Camera rotation (3x3, columns normalised so that object scale does not count)."""
        rot = np.asarray(self.world_matrix, dtype=np.float64)[:3, :3]
        norms = np.linalg.norm(rot, axis=0)
        return rot / np.where(norms > 0, norms, 1.0)

    @property
    def is_perspective(self) -> bool:
        """A perspective projection (an orthographic one has a last row of 0, 0, 0, 1)."""
        return abs(self.projection[3][3]) < 1e-9

    @property
    def fov_degrees(self) -> tuple[float, float]:
        """Horizontal and vertical field of view in degrees, read off the projection matrix."""
        proj = np.asarray(self.projection, dtype=np.float64)
        return (math.degrees(2 * math.atan(1.0 / proj[0, 0])), math.degrees(2 * math.atan(1.0 / proj[1, 1])))

    def rotation_degrees_to(self, other: "CameraHints") -> float:
        """Angle of the relative rotation between this camera and ``other``, in degrees."""
        relative = self.rotation.T @ other.rotation
        cos_angle = (np.trace(relative) - 1.0) / 2.0
        return math.degrees(math.acos(max(-1.0, min(1.0, cos_angle))))

    def translation_to(self, other: "CameraHints") -> float:
        """Distance between the two camera positions, in scene units."""
        return float(np.linalg.norm(other.position - self.position))

    def to_dict(self) -> dict:
        return {
            "frame": self.frame,
            "world_matrix": [list(r) for r in self.world_matrix],
            "projection": [list(r) for r in self.projection],
            "cut": self.cut,
            "scene_depth": self.scene_depth,
            "camera_name": self.camera_name,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "CameraHints":
        return cls(
            frame=data["frame"],
            world_matrix=data["world_matrix"],
            projection=data["projection"],
            cut=data.get("cut", False),
            scene_depth=data.get("scene_depth"),
            camera_name=data.get("camera_name", ""),
        )
