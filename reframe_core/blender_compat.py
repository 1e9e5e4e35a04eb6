"""Blender version differences, in one place (no bpy import: callers pass ``bpy.app.version``).

| what | 3.x | 4.2 - 4.5 | 5.0+ |
|---|---|---|---|
| EEVEE engine id | ``BLENDER_EEVEE`` (legacy EEVEE) | ``BLENDER_EEVEE_NEXT`` | ``BLENDER_EEVEE`` |
| multilayer EXR | one part, all channels | one part, all channels | one part per pass (``media_type`` exists) |
| Vector pass in EEVEE | none: rebuild motion from depth + cameras | yes | yes |

The viewport has no Vector pass in any version (Python cannot read EEVEE's velocity buffer): there motion is
always rebuilt (:func:`reframe_core.frames.motion.rebuild_motion`), as for 3.x renders.

Debian's ``blender`` 3.4 links the system's shared ``libOpenEXR-3_1``/``libOpenEXRCore``; the ``OpenEXR`` wheel
from PyPI exports the same C symbols (``exr_*``) in another version, and inside such a process it crashes
(``basic_string: construction from null``, ``free(): invalid pointer`` with ``RTLD_DEEPBIND``). There
:mod:`reframe_core.frames.buffers` reads EXRs with its own numpy reader (:func:`openexr_wheel_unsafe`).
"""
from __future__ import annotations

import re

Version = tuple[int, int, int]


def eevee_engine_id(version: Version) -> str:
    return "BLENDER_EEVEE_NEXT" if (4, 2, 0) <= tuple(version) < (5, 0, 0) else "BLENDER_EEVEE"


def has_media_type(version: Version) -> bool:
    """5.0 added ``ImageFormatSettings.media_type``; it must be 'MULTI_LAYER_IMAGE' for multilayer EXR."""
    return tuple(version) >= (5, 0, 0)


def eevee_has_vector_pass(version: Version) -> bool:
    return tuple(version) >= (4, 2, 0)


def motion_needs_rebuilding(version: Version, viewport: bool = False) -> bool:
    """True where EEVEE gives no Vector pass, so motion must be rebuilt from depth and the neighbour cameras."""
    return viewport or not eevee_has_vector_pass(version)


# Shared OpenEXR core libraries older than 3.2 (soname 30 and below: Debian bookworm's libOpenEXRCore-3_1.so.30).
# bpy 5.0's own libOpenEXRCore.so.32 (3.3) lives happily beside the wheel.
_OPENEXR_CORE = re.compile(r"/libOpenEXRCore(?:-\d+_\d+)?\.so\.(\d+)")


def openexr_wheel_unsafe(maps: str = "/proc/self/maps") -> bool:
    """Whether this process has an old shared OpenEXR core mapped (Debian's Blender 3.4 does), next to which
    the PyPI ``OpenEXR`` module crashes. False where ``/proc`` does not exist."""
    try:
        with open(maps, encoding="utf-8", errors="replace") as f:
            return any((m := _OPENEXR_CORE.search(line)) and int(m.group(1)) <= 30 for line in f)
    except OSError:
        return False


def minimum_supported(version: Version) -> bool:
    return tuple(version) >= (3, 4, 0)


def action_fcurves(action) -> list:
    """F-curves of an action: 4.4+ keeps them in layered-action channel bags, earlier versions on the action."""
    if getattr(action, "layers", None):
        return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves]
    return list(getattr(action, "fcurves", []))
