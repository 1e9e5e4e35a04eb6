"""What the artist sees: the Render Properties panel, the preferences, the Render menu entries and the 3D
View's sidebar panel for the overlay. Drawing only: buttons call the operators."""
from __future__ import annotations

import bpy

from reframe_core.workloads import workload_facts  # torch-free

from blender_addon import settings as addon_settings
from blender_addon.render_loop import EEVEE_ENGINES


def _runtime_hint(prefs) -> str | None:
    """One sentence on what to do when the runtime is not set up, or None."""
    if prefs is None:
        return "Enable the ReFrame add-on in Preferences > Add-ons."
    if not prefs.python:
        return "Set the Runtime Python in Preferences > Add-ons > ReFrame (or press Set Up Runtime there)."
    from pathlib import Path

    if not Path(bpy.path.abspath(prefs.python)).exists():
        return f"Runtime Python {prefs.python} is missing: fix it in Preferences > Add-ons > ReFrame."
    if prefs.last_check and not prefs.last_check_ok:
        return prefs.last_check
    return None


def _wrapped(layout, text: str, icon: str = "NONE", width: int = 60) -> None:
    words, line, first = text.split(), "", True
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            layout.label(text=line, icon=icon if first else "BLANK1")
            line, first = word, False
        else:
            line = f"{line} {word}".strip()
    if line:
        layout.label(text=line, icon=icon if first else "BLANK1")


def draw_preferences(prefs, context, layout) -> None:
    col = layout.column()
    col.prop(prefs, "runtime")
    col.prop(prefs, "python")
    col.prop(prefs, "device")
    col.prop(prefs, "precision")
    col.prop(prefs, "weights_folder", text=f"Weights folder ({'default' if not prefs.weights_folder else 'custom'})")
    if not prefs.weights_folder:
        col.label(text=f"  {prefs.resolved_weights_folder()}", icon="BLANK1")
    row = col.row()
    row.prop(prefs, "timeout")
    row.prop(prefs, "fallback")
    row = col.row()
    row.operator("reframe.check_runtime", icon="CHECKMARK")
    row.operator("reframe.release_memory", icon="TRASH")
    if prefs.last_check:
        _wrapped(col.box(), prefs.last_check, "CHECKMARK" if prefs.last_check_ok else "ERROR", width=90)
    box = layout.box()
    box.label(text="No environment with torch yet? Create one (downloads torch from PyPI: 1 GB to several GB):")
    box.prop(prefs, "setup_folder")
    row = box.row()
    row.enabled = bool(getattr(bpy.app, "online_access", True))
    row.operator("reframe.setup_runtime", icon="IMPORT")
    if not row.enabled:
        box.label(text="Blender is offline (Preferences > System > Network > Allow Online Access).", icon="INFO")


class RENDER_PT_reframe(bpy.types.Panel):
    bl_label = "ReFrame"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"

    @classmethod
    def poll(cls, context):
        return context.scene.render.engine in EEVEE_ENGINES

    def draw_header(self, context):
        self.layout.prop(context.scene.reframe, "enabled", text="")

    def draw(self, context):
        layout, settings = self.layout, context.scene.reframe
        layout.use_property_split = True
        layout.use_property_decorate = False
        hint = _runtime_hint(addon_settings.preferences())
        if hint:
            _wrapped(layout.box(), hint, "ERROR", width=50)
        col = layout.column()
        col.active = settings.enabled
        col.prop(settings, "mode")
        facts = workload_facts(settings.mode)  # the workload's own settings, from what it declares
        if facts.renders_scaled:
            col.prop(settings, "scale")
        if facts.period_is_k:
            col.prop(settings, "k")
        col.prop(settings, "policy")
        sub = col.column(align=True)
        calibrated = None
        if settings.policy == "auto":
            try:
                calibrated = settings.calibration()
                if calibrated is not None:
                    sub.label(text=calibrated.describe(), icon="CHECKMARK")
                else:
                    sub.label(text="no calibration beside this .blend: camera motion (reframe-blender calibrate)", icon="INFO")
            except Exception as exc:  # a damaged file: say so here; the render stops with the same sentence
                sub.label(text=str(exc), icon="ERROR")
        if settings.policy == "motion" or (settings.policy == "auto" and calibrated is None):
            sub.prop(settings, "motion_trans")
            sub.prop(settings, "motion_rot")
            sub.prop(settings, "motion_fov")
        elif settings.policy == "delta":
            sub.prop(settings, "delta_threshold")
        elif settings.policy == "every":
            sub.prop(settings, "every_n")
        if settings.policy in ("motion", "delta") or (settings.policy == "auto" and calibrated is None):
            sub.prop(settings, "max_age")
        if settings.policy not in ("none", "always") and calibrated is None:
            sub.prop(settings, "reproject")
        col.prop(settings, "warmup")
        col.prop(settings, "measure_native")
        col.prop(settings, "overwrite")
        row = layout.row(align=True)
        row.enabled = settings.enabled
        row.operator("reframe.render_frame", icon="RENDER_STILL")
        row.operator("reframe.render_animation", icon="RENDER_ANIMATION")
        layout.label(text="F12 / Ctrl F12 render without ReFrame; use these buttons (or Render menu).", icon="INFO")
        if settings.last_summary:
            box = layout.box()
            box.label(text=f"Last render: {settings.last_summary}")
            if settings.last_ms_per_frame >= 0:
                box.label(text=f"{settings.last_ms_per_frame / 1e3:.2f} s per frame"
                               + (f", cache hit rate {settings.last_hit_rate:.0%}" if settings.last_hit_rate >= 0 else ""))
            if settings.last_native_s >= 0:
                box.label(text=f"native frame {settings.last_native_s:.2f} s: saved about {settings.last_saved_s:.0f} s")


def draw_render_menu(self, context):
    layout = self.layout
    layout.separator()
    layout.operator("reframe.render_frame", icon="RENDER_STILL")
    layout.operator("reframe.render_animation", icon="RENDER_ANIMATION")


class VIEW3D_PT_reframe_overlay(bpy.types.Panel):
    bl_label = "ReFrame Viewport"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ReFrame"

    def draw(self, context):
        from blender_addon import viewport

        layout = self.layout
        overlay = viewport.overlay_for(context.space_data)
        layout.operator("reframe.viewport_overlay", text="Stop Overlay" if overlay else "Start Overlay",
                        icon="HIDE_ON" if overlay else "HIDE_OFF", depress=overlay is not None)
        layout.prop(context.scene.reframe, "policy")
        if overlay is not None:
            for line in overlay.stats_lines():
                layout.label(text=line)
        elif viewport.last_error(context.space_data):
            _wrapped(layout.box(), f"Stopped: {viewport.last_error(context.space_data)}", "ERROR", width=40)


CLASSES = (RENDER_PT_reframe, VIEW3D_PT_reframe_overlay)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_render.append(draw_render_menu)


def unregister() -> None:
    bpy.types.TOPBAR_MT_render.remove(draw_render_menu)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
