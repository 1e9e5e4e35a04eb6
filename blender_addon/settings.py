"""What the artist sets: the add-on's preferences (where the network runs) and the scene's ReFrame settings
(what to render), and the one function that turns both into the render path's :class:`RenderJob` -- the same
settings object the command line builds. Operators call :func:`job_for`; they compute nothing themselves.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from reframe_core.errors import SettingsError
from reframe_core.runtime.session import DEFAULT_WARMUP

PACKAGE = __package__  # replaced at register by the installed extension's module name (bl_ext.REPO.reframe_blender)
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "reframe_core" / "weights"
SCALES = (1.5, 2.0, 3.0)  # the quality modes offered where weights exist


def preferences():
    """The add-on's preferences, or None when the add-on is not registered under :data:`PACKAGE`."""
    addon = bpy.context.preferences.addons.get(PACKAGE)
    return addon.preferences if addon is not None else None


def default_weights_folder() -> str:
    """Per-user and kept across upgrades (the extension's own folder is replaced on every upgrade)."""
    if hasattr(bpy.utils, "extension_path_user") and PACKAGE.startswith("bl_ext."):
        return bpy.utils.extension_path_user(PACKAGE, path="weights", create=True)
    return str(Path(bpy.utils.user_resource("CONFIG")) / "reframe_blender" / "weights")


def default_python() -> str:
    """The project environment this add-on was built from, when it is there (``addon install`` sets it anyway)."""
    candidate = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else ""


def weights_name(mode: str, scale: float) -> str:
    from reframe_core.workloads import workload_facts

    return workload_facts(mode).weights_name(scale)


def weights_file(mode: str, scale: float, folder: str | None) -> Path | None:
    """The user's weights for this mode and scale (their folder first), or the shipped ones, or None."""
    name = weights_name(mode, scale) + ".pt"
    for base in ([Path(bpy.path.abspath(folder))] if folder else []) + [SHIPPED_WEIGHTS]:
        if (base / name).is_file():
            return base / name
    return None


def _scale_items(self, context):
    prefs = preferences()
    folder = prefs.resolved_weights_folder() if prefs is not None else None
    items = []
    for i, scale in enumerate(SCALES):
        found = weights_file("ss", scale, folder) is not None
        label = f"{scale:g}x" + ("" if found else " (no weights)")
        items.append((f"{scale:g}", label, f"render at 1/{scale:g} of the output size per axis" +
                      ("" if found else f"; needs ss_x{scale:g}.pt in the weights folder"), i))
    _scale_items.keep = items  # Blender keeps no reference to dynamic enum strings: Python must
    return items


POLICY_ITEMS = [
    ("auto", "Calibrated", "the setting 'reframe-blender calibrate' stored beside this .blend for the workload "
                           "(FILE.reframe-calibration.json); camera motion with the limits below when there is none", 5),
    ("motion", "Camera motion", "refresh the cache when the camera moved or turned more than the limits (uses "
                                "Blender's exact camera)", 0),
    ("delta", "Input change", "refresh when the input frame differs from the last refresh by more than a threshold "
                              "(the paper's policy)", 1),
    ("every", "Every N frames", "refresh every N-th frame", 2),
    ("always", "Always refresh", "the network's full pass every frame (no reuse; for comparison)", 3),
    ("none", "No caching", "the plain network, no cache at all", 4),
]


class ReframeSceneSettings(bpy.types.PropertyGroup):
    enabled: BoolProperty(name="ReFrame", default=False,
                          description="render this scene through ReFrame's network (Render > Render Animation (ReFrame))")
    mode: EnumProperty(name="Workload", default="ss", items=[
        ("ss", "Supersampling", "EEVEE renders at a lower resolution; the network brings it to the output size", 0),
        ("fe", "Frame extrapolation", "every k-th frame rendered in full and as a cheap G-buffer pass, the frames "
                                      "between predicted from their own cheap pass", 1)])
    scale: EnumProperty(name="Quality", items=_scale_items, default=SCALES.index(2.0),
                        description="supersampling factor per axis: higher is faster, lower looks closer to native")
    k: IntProperty(name="Full frame every", default=2, min=2, max=8,
                   description="frame extrapolation: every k-th frame is rendered in full")
    policy: EnumProperty(name="Cache policy", items=POLICY_ITEMS, default="auto")
    reproject: BoolProperty(name="Follow the camera", default=False,
                            description="on a cache hit, move the cached features to the current camera (from the "
                                        "depth pass and the two cameras), so a moving camera needs fewer refreshes")
    motion_trans: FloatProperty(name="Move", default=0.05, min=0.001, max=1.0, precision=3,
                                description="refresh after the camera moved this share of the scene depth")
    motion_rot: FloatProperty(name="Turn", default=2.0, min=0.05, max=45.0, description="refresh after the camera "
                                                                                         "turned this many degrees")
    motion_fov: FloatProperty(name="Zoom", default=1.0, min=0.05, max=30.0,
                              description="refresh after the field of view changed this many degrees")
    delta_threshold: FloatProperty(name="Threshold", default=0.1, min=0.001, max=2.0, precision=3,
                                   description="SMAPE of the input against the last refresh above which it refreshes")
    every_n: IntProperty(name="N", default=4, min=1, max=64)
    max_age: IntProperty(name="Max age", default=0, min=0, max=64,
                         description="also refresh when the cache is this many frames old (0: no limit)")
    warmup: IntProperty(name="Warm-up frames", default=DEFAULT_WARMUP, min=0, max=32,
                        description="frames rendered but not written before the first frame of a resumed or partial "
                                    "render, so the network's history is warm")
    overwrite: BoolProperty(name="Overwrite existing frames", default=False,
                            description="render frames that already exist again (off: frames this add-on already "
                                        "wrote are kept and skipped; files written otherwise stop the render)")
    measure_native: BoolProperty(name="Time one native frame", default=True,
                                 description="render the first frame once natively (not written) to estimate the "
                                             "time ReFrame saves")
    # the last render's figures, shown in the panel
    last_summary: StringProperty(name="Last render", default="")
    last_hit_rate: FloatProperty(default=-1.0)
    last_ms_per_frame: FloatProperty(default=-1.0)
    last_saved_s: FloatProperty(default=0.0)
    last_native_s: FloatProperty(default=-1.0)

    def calibration(self, mode: str | None = None):
        """The calibration stored beside the saved .blend for ``mode`` (default: the panel's workload), or None
        (unsaved file, none stored)."""
        from reframe_core.evaluation.calibration import read_calibration

        return read_calibration(bpy.data.filepath, mode or self.mode) if bpy.data.filepath else None

    def reproject_spec(self, mode: str | None = None) -> bool:
        """Whether cache hits reproject: the calibration's choice under 'Calibrated', else the checkbox."""
        found = self.calibration(mode) if self.policy == "auto" else None
        return found.reproject if found is not None else bool(self.reproject)

    def policy_spec(self, mode: str | None = None) -> str | None:
        """The policy spec for ``mode``'s network (default: the panel's workload; the viewport always runs SS)."""
        if self.policy == "none":
            return None
        found = self.calibration(mode) if self.policy == "auto" else None
        if found is not None:
            return found.policy
        policy = "motion" if self.policy == "auto" else self.policy
        spec = {"motion": f"motion:trans={self.motion_trans:g},rot={self.motion_rot:g},fov={self.motion_fov:g}",
                "delta": f"delta:{self.delta_threshold:g}", "every": f"every:{self.every_n}",
                "always": "always"}[policy]
        if self.max_age and policy in ("motion", "delta"):
            spec += f"+max-age:{self.max_age}"
        return spec


class ReframePreferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE  # set again at register (the installed module's name)

    runtime: EnumProperty(name="Runtime", default="server", items=[
        ("server", "Server process", "the network runs in a separate Python process started from the Python below: "
                                     "Blender never loads torch, a crash there cannot take Blender down, and "
                                     "'Release GPU memory' gives every byte back", 0),
        ("inprocess", "In Blender", "the network runs inside Blender's Python, with the packages of the Python below "
                                    "(it must be Blender's Python version)", 1)])
    python: StringProperty(name="Runtime Python", subtype="FILE_PATH", default=default_python(),
                           description="the Python of the environment with torch (the project's .venv/bin/python, or "
                                       "the one 'Set up runtime' creates)")
    device: EnumProperty(name="Device", default="auto", items=[
        ("auto", "Auto", "the GPU when torch sees one, else the CPU", 0),
        ("cuda", "CUDA GPU", "an NVIDIA GPU (fails clearly when torch sees none)", 1),
        ("cpu", "CPU", "the processor", 2)])
    precision: EnumProperty(name="Precision", default="mixed", items=[
        ("mixed", "Mixed", "float32, with the upscaler's last layers in bfloat16 where the processor has bf16 "
                           "arithmetic (recent AMD and Intel CPUs, recent GPUs): a cache hit about a quarter faster, "
                           "the same look", 0),
        ("fp32", "Float32", "every layer in float32: frames agree to float rounding on machines whose processors "
                            "differ in bf16 arithmetic (a farm of mixed nodes)", 1)])
    weights_folder: StringProperty(name="Weights folder", subtype="DIR_PATH", default="",
                                   description="your own weights (ss_x2.pt, ...), used before the shipped ones; kept "
                                               "across upgrades (empty: the per-user extension folder)")
    timeout: FloatProperty(name="Timeout (s)", default=120.0, min=5.0, max=3600.0,
                           description="longest a single network call may take before the runtime counts as hung")
    fallback: BoolProperty(name="Fall back to upscaling", default=True,
                           description="a frame the runtime cannot produce shows the plain upscale (marked in the "
                                       "report) instead of stopping the render")
    setup_folder: StringProperty(name="New environment", subtype="DIR_PATH", default="",
                                 description="where 'Set up runtime' creates the environment (empty: beside the weights)")
    last_check: StringProperty(default="")
    last_check_ok: BoolProperty(default=False)

    def draw(self, context):
        from blender_addon import ui

        ui.draw_preferences(self, context, self.layout)

    def resolved_weights_folder(self) -> str:
        return bpy.path.abspath(self.weights_folder) if self.weights_folder else default_weights_folder()


def job_for(scene, frames: range | None = None, overwrite: bool = False, output: str | None = None,
            report: str | None = None, mode: str | None = None, warmup: int | None = None):
    """The :class:`RenderJob` for ``scene``'s ReFrame settings and the add-on's preferences (``warmup``: None for
    the scene's setting)."""
    from blender_addon.render_loop import RenderJob
    from blender_addon import environment

    settings, prefs = scene.reframe, preferences()
    if prefs is None:
        raise SettingsError("the ReFrame add-on is not enabled: enable it in Preferences > Add-ons")
    mode = mode or settings.mode
    from reframe_core.workloads import workload_facts

    scale = workload_facts(mode).input_scale(float(settings.scale))  # FE renders at full size: scale 1
    weights = weights_file(mode, scale, prefs.resolved_weights_folder())
    if weights is None:
        raise SettingsError(f"no weights for {'supersampling ' + f'{scale:g}x' if mode == 'ss' else 'extrapolation'}: "
                            f"put {weights_name(mode, scale)}.pt into {prefs.resolved_weights_folder()} or choose "
                            f"another Quality")
    common = dict(mode=mode, scale=scale, policy=settings.policy_spec(mode), reproject=settings.reproject_spec(mode),
                  k=settings.k, frames=frames,
                  warmup=settings.warmup if warmup is None else warmup, overwrite=overwrite, output=output, report=report,
                  device=prefs.device, precision=prefs.precision,
                  weights=str(weights) if weights.parent != SHIPPED_WEIGHTS else None,
                  fallback=prefs.fallback, timeout=prefs.timeout)
    if prefs.runtime == "server":
        python = str(environment.check_python(bpy.path.abspath(prefs.python)))
        return RenderJob(runtime="server", server_python=python, **common)
    if importlib.util.find_spec("torch") is None:  # Blender's own Python: torch from the environment
        environment.use_in_process(bpy.path.abspath(prefs.python))
    return RenderJob(runtime="inprocess", **common)


CLASSES = (ReframeSceneSettings, ReframePreferences)


def register(package: str) -> None:
    global PACKAGE
    PACKAGE = package
    ReframePreferences.bl_idname = package
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.reframe = PointerProperty(type=ReframeSceneSettings)


def unregister() -> None:
    del bpy.types.Scene.reframe
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
