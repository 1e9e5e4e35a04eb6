"""Blender version differences, in one place (no bpy import: callers pass ``bpy.app.version``).

| what | 3.x | 4.2 - 4.5 | 5.0+ |
|---|---|---|---|
| EEVEE engine id | ``BLENDER_EEVEE`` (legacy EEVEE) | ``BLENDER_EEVEE_NEXT`` | ``BLENDER_EEVEE`` |
| multilayer EXR | one part, all channels | one part, all channels | one part per pass (``media_type`` exists) |
| Vector pass in EEVEE | none: rebuild motion from depth + cameras | yes | yes |
"""
from __future__ import annotations

Version = tuple[int, int, int]


def eevee_engine_id(version: Version) -> str:
    return "BLENDER_EEVEE_NEXT" if (4, 2, 0) <= tuple(version) < (5, 0, 0) else "BLENDER_EEVEE"


def has_media_type(version: Version) -> bool:
    """5.0 added ``ImageFormatSettings.media_type``; it must be 'MULTI_LAYER_IMAGE' for multilayer EXR."""
    return tuple(version) >= (5, 0, 0)


def eevee_has_vector_pass(version: Version) -> bool:
    return tuple(version) >= (4, 2, 0)


def minimum_supported(version: Version) -> bool:
    return tuple(version) >= (3, 4, 0)


def action_fcurves(action) -> list:
    """F-curves of an action: 4.4+ keeps them in layered-action channel bags, earlier versions on the action."""
    if getattr(action, "layers", None):
        return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves]
    return list(getattr(action, "fcurves", []))
