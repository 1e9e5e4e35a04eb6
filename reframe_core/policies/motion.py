"""``motion``: refresh from the camera motion that Blender knows exactly, instead of from pixels.

Compares the current camera with the camera at the last refresh: translation relative to the scene depth
(a dolly of 5 % of the viewing distance moves the image about as much as 3 degrees of rotation), rotation
angle in degrees, and change of field of view in degrees. Object motion is invisible to it: compose with
``delta`` or ``max-age`` for scenes with moving objects.
"""
from __future__ import annotations

from reframe_core.errors import SettingsError
from reframe_core.frames.hints import CameraHints
from reframe_core.policies.base import FrameContext, RefreshPolicy, fmt_number

DEFAULTS = {"trans": 0.05, "rot": 2.0, "fov": 1.0}


class CameraMotion(RefreshPolicy):
    name = "motion"
    usage = "motion[:trans=F,rot=DEG,fov=DEG]   (defaults trans=0.05 of scene depth, rot=2, fov=1)"
    summary = "refresh when the camera moved/turned/zoomed more than the limits since the last refresh"
    reads_depth = False

    def __init__(self, trans: float = DEFAULTS["trans"], rot: float = DEFAULTS["rot"], fov: float = DEFAULTS["fov"]):
        for key, value in (("trans", trans), ("rot", rot), ("fov", fov)):
            if not value > 0:
                raise SettingsError(f"motion {key} limit must be > 0, got {value}")
        self.trans, self.rot, self.fov = float(trans), float(rot), float(fov)
        self._reference: CameraHints | None = None

    @classmethod
    def from_spec(cls, positional, options):
        if positional or set(options) - set(DEFAULTS):
            raise SettingsError("motion takes only trans=, rot=, fov=, e.g. motion:trans=0.05,rot=2,fov=1")
        return cls(**{k: float(v) for k, v in options.items()})

    def check(self, ctx: FrameContext) -> str | None:
        hints = ctx.hints
        if hints is None:
            return "motion: no camera hints given"
        if self._reference is None:
            return "motion: no reference camera"
        ref = self._reference
        distance = ref.translation_to(hints)
        depth = hints.scene_depth or ref.scene_depth
        # Without a depth the translation is taken in scene units (documented in the README).
        relative = distance / depth if depth else distance
        if relative > self.trans:
            return f"motion: moved {relative:.3f} of scene depth > {fmt_number(self.trans)}"
        angle = ref.rotation_degrees_to(hints)
        if angle > self.rot:
            return f"motion: turned {angle:.2f} deg > {fmt_number(self.rot)}"
        fov_change = max(abs(a - b) for a, b in zip(ref.fov_degrees, hints.fov_degrees))
        if fov_change > self.fov:
            return f"motion: fov changed {fov_change:.2f} deg > {fmt_number(self.fov)}"
        return None

    def observe_refresh(self, ctx: FrameContext) -> None:
        self._reference = ctx.hints

    def reset(self) -> None:
        self._reference = None

    @property
    def spec(self) -> str:
        parts = [f"{k}={fmt_number(getattr(self, k))}" for k in DEFAULTS if getattr(self, k) != DEFAULTS[k]]
        return "motion" + (":" + ",".join(parts) if parts else "")
