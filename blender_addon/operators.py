"""Operators: the render loop inside Blender (``bpy.ops.reframe.render_animation``), the same loop the command line
and ``render_in_blender.py`` run. The add-on's panel and preferences (a later step) call it; a script can too:

    from blender_addon import operators
    operators.register()
    bpy.ops.reframe.render_animation(mode="ss", scale=2.0, policy="motion")
"""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from reframe_core.errors import ReframeError
from reframe_core.runtime.session import DEFAULT_WARMUP

MODE_ITEMS = [
    ("ss", "Supersampling", "EEVEE at 1/scale, upscaled by the cached SS network"),
    ("fe", "Frame extrapolation", "every k-th frame rendered, the others extrapolated from a cheap G-buffer pass"),
    ("native", "Native", "the plain render, through the same loop"),
]


class REFRAME_OT_render_animation(bpy.types.Operator):
    """Render the scene's frame range with ReFrame and write the frames to the output path"""

    bl_idname = "reframe.render_animation"
    bl_label = "Render Animation with ReFrame"
    bl_options = {"REGISTER"}

    mode: EnumProperty(name="Mode", items=MODE_ITEMS, default="ss")
    scale: FloatProperty(name="Scale", default=2.0, min=1.01, max=4.0, description="display / rendered size per axis")
    policy: StringProperty(name="Policy", default="motion", description="cache refresh policy spec, or 'none'")
    k: IntProperty(name="k", default=2, min=1, description="FE: every k-th frame rendered in full")
    warmup: IntProperty(name="Warm-up", default=DEFAULT_WARMUP, min=0,
                        description="frames stepped but not written before the first frame to render")
    overwrite: BoolProperty(name="Overwrite", default=False, description="render frames already written again")
    device: StringProperty(name="Device", default="cpu")

    def execute(self, context):
        from blender_addon.render_loop import RenderJob, render_animation

        policy = None if self.policy.strip().lower() in ("none", "uncached") else self.policy.strip()
        try:
            job = RenderJob(mode=self.mode, scale=self.scale, policy=policy, k=self.k, warmup=self.warmup,
                            overwrite=self.overwrite, device=self.device)
            report = render_animation(context.scene, job, show_progress=False)
        except ReframeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        totals = report["totals"]
        self.report({"INFO"}, f"ReFrame: {totals['written']} frames written, {totals['skipped']} already done; "
                              f"report {report['report']}")
        return {"FINISHED"}


CLASSES = (REFRAME_OT_render_animation,)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
