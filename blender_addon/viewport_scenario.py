"""The viewport overlay exercised in a real Blender window (Debian's Blender 3.4 under Xvfb), with the add-on
installed by ``reframe-blender addon install`` into a throw-away HOME; used by ``tests/test_viewport.py`` and by
``reframe-blender bench-viewport`` (which adds the orbit):

    xvfb-run blender --enable-event-simulate SCENE.blend -P blender_addon/viewport_scenario.py -- OUT [FRAMES [camera]]

Steps, driven by ``bpy.app.timers`` so the window keeps running between them:
  1. the add-on is loaded; a 3D View in Material Preview at a fixed view; a screenshot of the plain viewport;
  2. the overlay is started (``bpy.ops.reframe.viewport_overlay``); while its runtime works, a timer every 0.05 s
     records when it fires (responsiveness); once the overlay has converged on the still view, a screenshot;
     the texture it drew, its network output, the low-res colour it was given and a full-resolution draw of the
     same view are saved for the test (FLIP is computed outside Blender);
  3. with FRAMES > 0: the view orbits FRAMES steps of 0.5 degrees, for the overlay's per-frame costs with the
     scene's cache policy, then again with no cache (the measurement behind README's viewport figures);
  4. "Render Animation (ReFrame)" is invoked as from the UI (modal), Esc is pressed (simulated) after its second
     frame, and the frames on disk are listed.
Results go to OUT/viewport.json; Blender quits with status 0, or 1 and the traceback in that file.
"""
import json
import os
import sys
import time
import traceback
from pathlib import Path

import bpy

ARGS = sys.argv[sys.argv.index("--") + 1:]
OUT = Path(ARGS[0])
ORBIT_FRAMES = int(ARGS[1]) if len(ARGS) > 1 else 0
CAMERA_VIEW = len(ARGS) > 2 and ARGS[2] == "camera"  # look from the scene camera (else a fixed view for the tests)
OUT.mkdir(parents=True, exist_ok=True)
RESULT: dict = {}
bpy.context.preferences.view.show_splash = False


def save_result():
    (OUT / "viewport.json").write_text(json.dumps(RESULT, indent=1, default=str))


def finish(code: int):
    save_result()
    sys.stdout.flush()
    os._exit(code)


def view3d():
    window = bpy.context.window_manager.windows[0]
    area = max((a for a in window.screen.areas if a.type == "VIEW_3D"), key=lambda a: a.width * a.height)
    region = next(r for r in area.regions if r.type == "WINDOW")
    return window, area, area.spaces.active, region


def screenshot(name: str):
    import numpy as np

    window, area, _, region = view3d()
    path = OUT / f"{name}.png"
    with bpy.context.temp_override(window=window, area=area, region=region):
        bpy.ops.screen.screenshot(filepath=str(path))
    image = bpy.data.images.load(str(path))
    pixels = np.empty(image.size[0] * image.size[1] * 4, np.float32)
    image.pixels.foreach_get(pixels)
    shape = (image.size[1], image.size[0], 4)
    bpy.data.images.remove(image)
    full = pixels.reshape(shape)  # bottom row first, as the window's coordinates
    return full[region.y:region.y + region.height, region.x:region.x + region.width, :3][::-1]  # top row first


def steps():
    import numpy as np

    from blender_addon import viewport  # the installed add-on's copy (its lib folder is on sys.path)

    RESULT["addon"] = {"module": sys.modules["blender_addon"].__file__,
                       "enabled": [a.module for a in bpy.context.preferences.addons if "reframe" in a.module]}
    window, area, space, region = view3d()
    space.shading.type = "MATERIAL"
    space.overlay.show_overlays = False  # grid and outlines would differ between the two screenshots
    space.show_gizmo = False
    rv3d = space.region_3d
    rv3d.view_perspective = "PERSP"
    from mathutils import Euler, Vector

    if CAMERA_VIEW and bpy.context.scene.camera is not None:
        camera = bpy.context.scene.camera.matrix_world
        rv3d.view_matrix = camera.inverted()
        space.lens = bpy.context.scene.camera.data.lens
    else:
        rv3d.view_location = Vector((0.0, 3.0, 1.0))
        rv3d.view_rotation = Euler((1.2, 0.0, 0.0)).to_quaternion()
        rv3d.view_distance = 7.0
    area.tag_redraw()
    yield 3.0  # the first Material Preview draw compiles its shaders
    RESULT["region"] = [region.width, region.height]

    ticks: list[tuple[float, bool]] = []  # (when the heartbeat fired, whether the runtime was working then)

    def heartbeat():
        current = viewport.overlay_for(space)
        ticks.append((time.monotonic(), bool(current and current.worker and current.worker.busy)))
        return 0.05 if "done" not in RESULT.get("overlay", {}) else None

    bpy.app.timers.register(heartbeat, first_interval=0.05)
    with bpy.context.temp_override(window=window, area=area, region=region):
        RESULT["start"] = sorted(bpy.ops.reframe.viewport_overlay())
    overlay = viewport.overlay_for(space)
    assert overlay is not None, "the overlay did not start"
    started = time.monotonic()
    busy_spans = []
    while True:  # until the still view has converged and the last result is on screen
        if overlay.worker is not None and overlay.worker.busy:
            busy_spans.append(time.monotonic())
        if overlay.error:
            raise RuntimeError(f"overlay stopped: {overlay.error}")
        if overlay.still >= viewport.CONVERGE_FRAMES and overlay.worker is not None and not overlay.worker.busy \
                and overlay.worker.stats.finished == overlay.index and overlay.shown:
            break
        if time.monotonic() - started > 400:
            raise TimeoutError(f"the overlay did not converge: {overlay.stats_lines()}")
        yield 0.1
    area.tag_redraw()
    yield 0.5
    drawn = screenshot("overlay")
    stats = overlay.worker.stats
    # gaps after a tick that saw the runtime working: how long the UI waited while the network ran
    times = np.array([t for t, _ in ticks])
    working = np.array([b for _, b in ticks])
    gaps = np.diff(times)[working[:-1]] if len(ticks) > 1 and working[:-1].any() else np.array([0.0])
    RESULT["overlay"] = {"frames": overlay.index, "shown": overlay.shown, "dropped": overlay.dropped,
                         "runtime_ms_last": stats.last_ms, "capture_ms_last": overlay.capture_ms,
                         "capture_parts_ms": overlay.capture_parts,
                         "hit_rate": stats.hit_rate, "stats_lines": overlay.stats_lines(),
                         "seconds_to_converge": time.monotonic() - started,
                         "heartbeat": {"ticks": len(ticks), "ticks_while_working": int(working.sum()),
                                       "median_gap_s": float(np.median(gaps)), "max_gap_s": float(gaps.max()),
                                       "all_gaps_max_s": float(np.diff(times).max()),
                                       "busy_polls": len(busy_spans)},
                         "capture_size": list(overlay.capture.size)}
    # what the test compares: texture drawn, network output, its input, and a full-resolution draw of the view
    width, height = overlay.capture.size
    native = viewport.Capture((region.width, region.height))
    color_full, _, _ = native.draw(window.scene, window.view_layer, space, region, rv3d.view_matrix.copy(), np.array(rv3d.window_matrix))
    native.free()
    np.savez_compressed(OUT / "overlay.npz", drawn=drawn, texture=overlay.last_display,
                        network=overlay.last_image, low=overlay.previous.color, native=color_full[..., :3],
                        low_jitter=overlay.previous.jitter)
    yield 0.1

    if ORBIT_FRAMES:
        RESULT["orbit"] = {}
        for policy in (bpy.context.scene.reframe.policy, "none"):
            if viewport.overlay_for(space) is None:
                bpy.context.scene.reframe.policy = policy
                with bpy.context.temp_override(window=window, area=area, region=region):
                    bpy.ops.reframe.viewport_overlay()
            overlay = viewport.overlay_for(space)
            times, capture, decisions = [], [], []
            base = rv3d.view_rotation.copy()
            for step in range(ORBIT_FRAMES):
                rv3d.view_rotation = (Euler((0.0, 0.0, 0.5 * (step + 1) * 3.14159 / 180)).to_quaternion() @ base)
                area.tag_redraw()
                finished = overlay.worker.stats.finished if overlay.worker else 0
                start = time.monotonic()
                while overlay.worker is None or overlay.worker.stats.finished <= finished or overlay.worker.busy:
                    if overlay.error:
                        raise RuntimeError(overlay.error)
                    yield 0.02
                times.append(time.monotonic() - start)
                capture.append(overlay.capture_ms)
                decisions.append(overlay.worker.stats.last_ms)
            RESULT["orbit"][policy or "none"] = {"frame_s": times, "capture_ms": capture, "runtime_ms": decisions,
                                       "hit_rate": overlay.worker.stats.hit_rate, "dropped": overlay.dropped}
            with bpy.context.temp_override(window=window, area=area, region=region):
                bpy.ops.reframe.viewport_overlay()  # stop
            rv3d.view_rotation = base
            yield 0.2
    elif viewport.overlay_for(space) is not None:
        with bpy.context.temp_override(window=window, area=area, region=region):
            bpy.ops.reframe.viewport_overlay()  # stop
    RESULT["overlay"]["done"] = True
    RESULT["after_stop"] = viewport.overlay_for(space) is None
    area.tag_redraw()
    yield 1.0
    # The plain viewport of the same view, now that EEVEE's shaders are compiled (earlier, materials still
    # compiling show as grey placeholders).
    np.save(OUT / "plain.npy", screenshot("plain"))

    # The modal render, cancelled with Esc after its second frame.
    scene = bpy.context.scene
    frames = OUT / "frames"
    scene.render.filepath = str(frames / "f_####")
    scene.reframe.enabled = True
    scene.reframe.measure_native = False
    with bpy.context.temp_override(window=window, area=area, region=region):
        RESULT["invoke"] = sorted(bpy.ops.reframe.render_animation("INVOKE_DEFAULT"))
    started = time.monotonic()
    while len(list(frames.glob("f_*.png"))) < 2:
        if time.monotonic() - started > 400 or scene.reframe.last_summary:
            raise TimeoutError(f"the modal render did not write 2 frames: {scene.reframe.last_summary!r}")
        yield 0.05
    window.event_simulate(type="ESC", value="PRESS")
    while not scene.reframe.last_summary:
        if time.monotonic() - started > 600:
            raise TimeoutError("the modal render did not stop after Esc")
        yield 0.1
    RESULT["cancel"] = {"summary": scene.reframe.last_summary,
                        "files": sorted(p.name for p in frames.iterdir())}


def runner():
    generator = steps()

    def tick():
        try:
            delay = next(generator)
            save_result()
            return delay
        except StopIteration:
            finish(0)
        except BaseException:
            RESULT["error"] = traceback.format_exc()
            finish(1)

    bpy.app.timers.register(tick, first_interval=1.0)


runner()
