"""Steps of the add-on tests, each run in its own ``bpy`` process (``python tests/addon_scenario.py STEP ...``)
with ``BLENDER_USER_RESOURCES`` set by the test to a temporary folder, so the install never touches the user's
Blender. Each prints one ``RESULT {json}`` line for the test to check.

- ``install ZIP BLEND OUT``: install the zip offline with ``package_install_files(enable_on_install=True)``,
  point the preferences at this Python (server runtime, the default), save them; build the 6-frame test scene with its
  output path OUT/frame_#### and ReFrame enabled, and save it as BLEND.
- ``errors BLEND``: a Cycles scene, a missing runtime Python, Set Up Runtime while Blender may not go online:
  each one clear error; F12 on a ReFrame scene says it renders without the network; Render Frame.
- ``render BLEND``: what ``blender -b BLEND --python-expr "import bpy; bpy.ops.reframe.render_animation()"`` does
  in a Blender binary; the ``bpy`` module loads no preferences by itself, so they are read first.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bpy  # noqa: E402

MODULE = "bl_ext.user_default.reframe_blender"


def _exists(operator) -> bool:
    try:
        operator.get_rna_type()
    except KeyError:
        return False
    return True


def install(zip_path: str, blend: str, out: str) -> dict:
    import render_scene

    render_scene.build(blend)  # reads factory settings: before the install, which it would undo
    result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    addon = bpy.context.preferences.addons.get(MODULE)
    prefs = addon.preferences
    found = {"install": sorted(result), "enabled": addon is not None,
             "preferences": {k: getattr(prefs, k) for k in ("runtime", "python", "device", "precision", "weights_folder")},
             "weights_folder": prefs.resolved_weights_folder(),
             "operators": [_exists(getattr(bpy.ops.reframe, name)) for name in ("render_animation", "render_frame",
                                                                        "check_runtime", "viewport_overlay")]}
    # the default runtime, a server process started from this Python
    prefs.python, prefs.runtime, prefs.device = sys.executable, "server", "cpu"
    prefs.precision = "fp32"  # not the default: the render's report must show the preference reached the session
    bpy.ops.wm.save_userpref()
    bpy.ops.reframe.check_runtime()
    found["check"] = prefs.last_check
    scene = bpy.context.scene
    scene.render.filepath = str(Path(out) / "frame_####")
    scene.reframe.enabled = True
    scene.reframe.measure_native = False
    scene.reframe.warmup = 1  # the resumed run warms up on one frame (the default 3 only costs test time)
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    found["module"] = sys.modules["blender_addon"].__file__
    return found


def render(blend: str) -> dict:
    # As in a stock Blender's Python: neither torch nor the OpenEXR module can be imported on Blender's side.
    sys.modules["torch"] = None
    sys.modules["OpenEXR"] = None
    bpy.ops.wm.read_userpref()
    bpy.ops.wm.open_mainfile(filepath=blend)
    result = bpy.ops.reframe.render_animation()
    settings = bpy.context.scene.reframe
    return {"result": sorted(result), "summary": settings.last_summary, "hit_rate": settings.last_hit_rate,
            "ms_per_frame": settings.last_ms_per_frame, "module": sys.modules["blender_addon"].__file__,
            "torch_imported": sys.modules.get("torch") is not None}


def errors(blend: str) -> dict:
    """Bad settings give one clear error each and render nothing."""
    bpy.ops.wm.read_userpref()
    bpy.ops.wm.open_mainfile(filepath=blend)
    scene, found = bpy.context.scene, {}
    prefs = bpy.context.preferences.addons[MODULE].preferences

    def message(**options):
        try:
            bpy.ops.reframe.render_animation(**options)
        except RuntimeError as exc:
            return str(exc)
        return None

    eevee = scene.render.engine
    scene.render.engine = "CYCLES"
    found["cycles"] = message()
    scene.render.engine = eevee
    prefs.runtime, prefs.python = "server", "/nonexistent/python"
    found["python"] = message()
    try:
        bpy.ops.reframe.check_runtime()
    except RuntimeError:  # the operator reports the problem as an error (and keeps it for the preferences)
        pass
    found["check"] = prefs.last_check
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        bpy.ops.render.render()  # Blender's own render (F12) on a scene with ReFrame enabled
    found["plain_render"] = printed.getvalue()
    found["online_access"] = bpy.app.online_access
    try:
        bpy.ops.reframe.setup_runtime()
        found["setup"] = None
    except RuntimeError as exc:
        found["setup"] = str(exc)
    # Render Frame: the current frame through the network, into an image (no warm-up: one frame is enough here)
    prefs.runtime, prefs.python = "inprocess", sys.executable
    scene.reframe.warmup = 0
    scene.frame_set(3)
    found["render_frame"] = sorted(bpy.ops.reframe.render_frame())
    image = bpy.data.images.get("ReFrame Render")
    found["image"] = None if image is None else {"size": list(image.size), "packed": image.packed_file is not None}
    found["frame_after"] = scene.frame_current
    return found


if __name__ == "__main__":
    step, *args = sys.argv[1:]
    steps = {"install": install, "render": render, "errors": errors}
    print("RESULT " + json.dumps(steps[step](*args)), flush=True)
