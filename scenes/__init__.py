"""Procedural Blender scenes with camera animations. A new scene is one file in ``library/`` plus a line here.

Importing this package does not import bpy; building a scene does.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from reframe_core.errors import SettingsError


@dataclass(frozen=True)
class SceneEntry:
    name: str
    module: str
    covers: str

    def build(self, seed: int = 0):
        """Build the scene in the current Blender session (replacing what is open); returns the bpy scene."""
        return importlib.import_module(self.module).build(seed)

    @property
    def frames(self) -> tuple[int, int]:
        return importlib.import_module(self.module).FRAMES

    @property
    def summary(self) -> str:
        return (importlib.import_module(self.module).__doc__ or "").strip().splitlines()[0]


SCENES: dict[str, SceneEntry] = {e.name: e for e in (
    SceneEntry("static_objects", "scenes.library.static_objects", "static camera, moving objects"),
    SceneEntry("slow_pan", "scenes.library.slow_pan", "slow pan"),
    SceneEntry("fast_orbit", "scenes.library.fast_orbit", "fast orbit"),
    SceneEntry("dolly_interior", "scenes.library.dolly_interior", "dolly forward through an interior"),
    SceneEntry("handheld", "scenes.library.handheld", "hand-held shake"),
    SceneEntry("camera_cut", "scenes.library.camera_cut", "camera cut (two cameras, timeline markers)"),
    SceneEntry("thin_detail", "scenes.library.thin_detail", "thin geometry, high-frequency detail, foliage cards"),
    SceneEntry("emissive_transparent", "scenes.library.emissive_transparent", "emissive and transparent surfaces"),
    SceneEntry("furnished_room", "scenes.library.furnished_room",
               "real furniture models and textures (Sweet Home 3D CC0 catalog), HDRI light, slow dolly (held out)"),
    SceneEntry("sunlit_kitchen", "scenes.library.sunlit_kitchen",
               "real kitchen models (Sweet Home 3D CC0 catalog), low sun on flat painted walls (training data)"),
    SceneEntry("bedroom_study", "scenes.library.bedroom_study",
               "real bedroom and desk models (Sweet Home 3D CC0 catalog), morning HDRI sky (training data)"),
    SceneEntry("night_market", "scenes.library.night_market", "neon tubes, bulbs and glass windows at night (training data)"),
)}


def get_scene(name: str) -> SceneEntry:
    if name not in SCENES:
        raise SettingsError(f"unknown scene {name!r}; known: {', '.join(SCENES)} (or give a .blend file)")
    return SCENES[name]
