"""The 3D viewport overlay: the view drawn off-screen at 1/scale, supersampled by the cached SS session, drawn
back over the viewport.

Per viewport frame (on Blender's main thread, from a ``bpy.app.timers`` tick):
  1. if the view changed (or the network's history has not converged on a still view yet), draw it off-screen at
     the reduced size with a Halton-jittered projection: EEVEE's Combined pass (colour) and the depth buffer in one
     draw, its Diffuse Color pass (albedo) in a second (:func:`capture`);
  2. rebuild normals and motion from the depth and the previous view's matrices
     (:func:`reframe_core.frames.viewport.viewport_buffers`) -- the viewport has no Vector pass and its Normal pass
     is clamped to [0, 1];
  3. hand the frame to the session on a worker thread (:class:`bridge.worker.SessionWorker`) and return; a later
     tick picks the result up and the draw handler shows it. While the worker is busy, new views are not
     captured: the newest one waits, older ones are dropped (counted), never queued.

The policy sees the view's matrices like a render camera's (``region_3d.view_matrix`` / ``window_matrix``); a view
jump (numpad views, a big turn between two frames) or a resize is a cut, which resets the network's history.
Drawing needs a GPU context: nothing here runs in background mode.
"""
from __future__ import annotations

import math
import threading
import time

import bpy
import numpy as np

from reframe_core.frames.buffers import jitter_offset
from reframe_core.frames.viewport import camera_from_view, jittered_projection, viewport_buffers
from reframe_core.workloads.base import scaled_size

CONVERGE_FRAMES = 8  # on a still view, frames fed after it stopped (jittered) so the history accumulates
TICK_S = 0.05
JUMP_DEGREES = 25.0  # a view turning more than this between two overlay frames is a cut

_overlays: dict[int, "ViewportOverlay"] = {}


def overlay_for(space) -> "ViewportOverlay | None":
    return _overlays.get(space.as_pointer()) if space is not None else None


def _buffer_array(buffer) -> np.ndarray:
    """A ``gpu.types.Buffer`` as a numpy view. Blender 3.4's Buffer reports Fortran-order strides over C-order
    memory, so ``np.asarray`` alone scrambles it: reinterpret the raw memory with the Buffer's own dimensions."""
    return np.asarray(buffer).ravel(order="K").reshape(buffer.dimensions)


def _matrix(array):
    from mathutils import Matrix

    return Matrix([list(map(float, row)) for row in np.asarray(array).reshape(4, 4)])


def _view_key(region, rv3d) -> tuple:
    return (region.width, region.height, tuple(round(v, 6) for row in rv3d.view_matrix for v in row),
            tuple(round(v, 6) for row in rv3d.window_matrix for v in row))


def _turn_degrees(a, b) -> float:
    """Angle between two views' forward directions (rows 2 of the view matrices)."""
    fa, fb = np.asarray(a)[2, :3], np.asarray(b)[2, :3]
    cosine = float(np.dot(fa, fb) / (np.linalg.norm(fa) * np.linalg.norm(fb)))
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


class Capture:
    """Off-screen drawing of one view at a reduced size: colour + depth, then albedo."""

    def __init__(self, size: tuple[int, int]):
        import gpu

        self.size = size  # (width, height)
        self.offscreen = gpu.types.GPUOffScreen(size[0], size[1], format="RGBA16F")

    def draw(self, context, space, region, view_matrix, projection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(colour RGBA, albedo RGBA, depth buffer), each top row first, drawn with ``projection``."""
        import gpu

        scene, view_layer = context.scene, context.view_layer
        shading = space.shading
        saved_pass = getattr(shading, "render_pass", None)
        saved_overlays = space.overlay.show_overlays
        space.overlay.show_overlays = False  # draw_view3d includes the grid and outlines otherwise
        out = []
        self.pass_ms = {}
        try:
            for render_pass in ("COMBINED", "DIFFUSE_COLOR"):
                start = time.perf_counter()
                if saved_pass is not None:
                    shading.render_pass = render_pass
                self.offscreen.draw_view3d(scene, view_layer, space, region, view_matrix, _matrix(projection),
                                           do_color_management=False)
                out.append(np.array(_buffer_array(self.offscreen.texture_color.read()))[::-1])
                if render_pass == "COMBINED":
                    with self.offscreen.bind():
                        framebuffer = gpu.state.active_framebuffer_get()
                        depth = framebuffer.read_depth(0, 0, *self.size)
                    out.append(np.array(_buffer_array(depth)).reshape(self.size[1], self.size[0])[::-1])
                self.pass_ms[render_pass] = (time.perf_counter() - start) * 1e3
        finally:
            if saved_pass is not None:
                shading.render_pass = saved_pass
            space.overlay.show_overlays = saved_overlays
        color, depth, albedo = out
        return color, albedo, depth

    def free(self) -> None:
        self.offscreen.free()


class ViewportOverlay:
    """The overlay of one 3D View (see the module docstring)."""

    def __init__(self, context, space, region):
        from blender_addon import settings as addon_settings
        from blender_addon.render_loop import open_runtime
        from bridge.worker import SessionWorker

        self.space, self.region = space, region
        self.key = space.as_pointer()
        settings = context.scene.reframe
        self.scale = float(settings.scale)
        job = addon_settings.job_for(context.scene, mode="ss")  # bad settings fail here, in the operator
        self.job = job
        # Connecting (or starting a server and importing torch there) takes seconds: on a thread, so the window
        # never waits on it; ticks show "starting" until it is ready and any failure as the overlay's error.
        self.runtime = None
        self.runtime_error: str | None = None

        def connect():
            try:
                self.runtime = open_runtime(job)
            except Exception as exc:
                self.runtime_error = f"{type(exc).__name__}: {exc}"

        self.connecting = threading.Thread(target=connect, name="reframe-connect", daemon=True)
        self.connecting.start()
        self.session = self.worker = self.capture = self.texture = None
        self.display_size = None  # (height, width)
        self.SessionWorker = SessionWorker
        self.previous = None  # the last submitted FrameBuffers
        self.previous_view = None
        self.shot = 0
        self.index = 0
        self.still = 0  # frames submitted since the view last changed
        self.last_key = None
        self.pending = False  # a view change not captured yet (the worker was busy)
        self.dropped = 0
        self.capture_ms: float | None = None
        self.capture_parts: dict = {}
        self.shown = 0
        self.error: str | None = None
        self.last_image: np.ndarray | None = None  # the last result shown (display size, linear RGB)
        self.last_display: np.ndarray | None = None  # ... and the texture drawn for it
        from blender_addon.frame_output import display_lut

        self.lut = display_lut(context.scene)  # the scene's colour management, measured once
        self.handle = bpy.types.SpaceView3D.draw_handler_add(self.draw, (), "WINDOW", "POST_PIXEL")
        _overlays[self.key] = self
        bpy.app.timers.register(self.tick, first_interval=TICK_S)

    # --- session ------------------------------------------------------------------------------------------
    def _open(self, display_size) -> None:
        self._close_session()
        self.display_size = display_size
        self.session = self.runtime.open_session("ss", display_size=display_size, scale=self.scale,
                                                 policy=self.job.policy, device=self.job.device,
                                                 weights=self.job.weights)
        self.worker = self.SessionWorker(self.session, name="reframe-viewport", postprocess=self._display)
        height, width = scaled_size(display_size, self.scale)
        self.capture = Capture((width, height))
        self.previous, self.shot = None, self.shot + 1

    def _display(self, image: np.ndarray) -> np.ndarray:
        """On the worker: the network's linear image as the texture to draw -- through the scene's view transform
        (:func:`blender_addon.frame_output.display_lut`), then to the power 2.2, because what a POST_PIXEL draw
        shows is its value to the power 1/2.2 -- bottom row first, RGBA."""
        display = self.lut.apply(image)
        height, width = display.shape[:2]
        rgba = np.ones((height, width, 4), np.float32)
        rgba[..., :3] = np.power(np.clip(display, 0.0, 1.0), 2.2)[::-1]
        return rgba

    def _close_session(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None
        if self.session is not None:
            self.session.close()
            self.session = None
        if self.capture is not None:
            self.capture.free()
            self.capture = None

    # --- the loop on the main thread ------------------------------------------------------------------------
    def _area_alive(self) -> bool:
        try:
            self.region.width  # raises ReferenceError once the area is gone
            return True
        except ReferenceError:
            return False

    def tick(self):
        if self.key not in _overlays:
            return None
        if not self._area_alive():
            self.stop()
            return None
        if self.runtime is None:
            if self.runtime_error is None:
                return TICK_S  # still connecting
            self.error = f"the runtime did not start: {self.runtime_error}"
            print(f"ReFrame viewport overlay stopped: {self.error}")
            self.stop(keep_error=True)
            return None
        try:
            self._collect()
            self._feed(bpy.context)
        except Exception as exc:  # shown in the viewport and the panel; the overlay stops instead of looping
            self.error = f"{type(exc).__name__}: {exc}"
            print(f"ReFrame viewport overlay stopped: {self.error}")
            self.stop(keep_error=True)
            return None
        return TICK_S

    def _collect(self) -> None:
        if self.worker is None:
            return
        got = self.worker.poll()
        if got is None:
            return
        _, result, rgba = got
        self.last_image, self.last_display = result.image, rgba
        self._upload(rgba)
        self.shown += 1
        self._redraw()

    def _upload(self, rgba: np.ndarray) -> None:
        import gpu

        height, width = rgba.shape[:2]
        buffer = gpu.types.Buffer("FLOAT", rgba.size, rgba.ravel())  # wraps the array (no copy)
        self.texture = gpu.types.GPUTexture((width, height), format="RGBA16F", data=buffer)

    def _redraw(self) -> None:
        for window in bpy.context.window_manager.windows:
            for area in window.screen.areas:
                if area.type == "VIEW_3D" and area.spaces.active.as_pointer() == self.key:
                    area.tag_redraw()

    def _feed(self, context) -> None:
        rv3d = self.space.region_3d
        key = _view_key(self.region, rv3d)
        changed = key != self.last_key
        if changed:
            if self.pending and self.worker is not None and self.worker.busy:
                self.dropped += 1  # the previous unseen view is replaced by this one: dropped, not queued
            self.pending, self.still = True, 0
            self.last_key = key
        if not self.pending and self.still >= CONVERGE_FRAMES:
            return  # a still view whose history has converged: nothing to do
        if self.worker is not None and self.worker.busy:
            return
        display_size = (self.region.height, self.region.width)
        if display_size != self.display_size:
            self._open(display_size)
        view_matrix = rv3d.view_matrix.copy()
        window_matrix = np.array(rv3d.window_matrix)
        if self.previous_view is not None and _turn_degrees(self.previous_view, view_matrix) > JUMP_DEGREES:
            self.shot += 1  # a jump: a new "camera", so the session sees a cut and resets its history
        width, height = self.capture.size
        jitter = jitter_offset(self.index, self.scale)
        start = time.perf_counter()
        color, albedo, zbuffer = self.capture.draw(context, self.space, self.region, view_matrix,
                                                   jittered_projection(window_matrix, (width, height), jitter))
        camera = camera_from_view(np.array(view_matrix), window_matrix, (width, height), name=f"view.{self.shot}",
                                  frame=self.index, jitter=jitter)
        previous = self.previous.camera if self.previous is not None else None
        drawn = time.perf_counter()
        buffers = viewport_buffers(color, albedo, zbuffer, camera, previous, jitter)
        self.capture_ms = (time.perf_counter() - start) * 1e3
        self.capture_parts = {**self.capture.pass_ms, "buffers": (time.perf_counter() - drawn) * 1e3}
        self.worker.submit(buffers, buffers.hints(self.previous), tag=self.index)
        self.previous, self.previous_view = buffers, view_matrix
        self.index += 1
        self.still += 1
        self.pending = False

    # --- drawing (inside Blender's draw loop: nothing slow here) -------------------------------------------
    def draw(self) -> None:
        if bpy.context.space_data is None or bpy.context.space_data.as_pointer() != self.key:
            return
        region = bpy.context.region
        if self.texture is not None:
            from gpu_extras.presets import draw_texture_2d

            draw_texture_2d(self.texture, (0, 0), region.width, region.height)
        import blf

        blf.size(0, 12) if bpy.app.version >= (4, 0) else blf.size(0, 12, 72)
        blf.color(0, 1.0, 1.0, 1.0, 0.9)
        for i, line in enumerate(reversed(self.stats_lines())):
            blf.position(0, 12, 12 + 16 * i, 0)
            blf.draw(0, line)

    def stats_lines(self) -> list[str]:
        if self.error:
            return [f"ReFrame overlay stopped: {self.error[:120]}"]
        if self.runtime is None:
            return [f"ReFrame overlay: starting the runtime ({self.job.runtime})..."]
        stats = self.worker.stats if self.worker is not None else None
        lines = [f"ReFrame {self.scale:g}x overlay: {self.shown} frames shown, {self.dropped} dropped"]
        if stats is not None and stats.last_ms is not None:
            hit = f", cache hit rate {stats.hit_rate:.0%}" if stats.hit_rate is not None else ""
            lines.append(f"runtime {stats.last_ms:.0f} ms, capture {self.capture_ms or 0:.0f} ms{hit}")
        return lines

    def stop(self, keep_error: bool = False) -> None:
        _overlays.pop(self.key, None)
        if self.handle is not None:
            bpy.types.SpaceView3D.draw_handler_remove(self.handle, "WINDOW")
            self.handle = None
        self._close_session()
        if self.runtime is not None:
            self.runtime.close()
        elif self.connecting.is_alive():  # close it once it connects, whenever that is
            threading.Thread(target=self._close_when_connected, daemon=True).start()
        self.texture = None
        if keep_error:
            _errors[self.key] = self.error


    def _close_when_connected(self) -> None:
        self.connecting.join()
        if self.runtime is not None:
            self.runtime.close()


_errors: dict[int, str] = {}  # why an overlay stopped by itself, per 3D View, until it is started again


def last_error(space) -> str | None:
    return _errors.get(space.as_pointer()) if space is not None else None


def stop_all() -> int:
    overlays = list(_overlays.values())
    for overlay in overlays:
        overlay.stop()
    return len(overlays)


class REFRAME_OT_viewport_overlay(bpy.types.Operator):
    """Show this 3D View supersampled by ReFrame's cached network (drawn at 1/scale, upscaled live); again to stop"""

    bl_idname = "reframe.viewport_overlay"
    bl_label = "ReFrame Viewport Overlay"

    @classmethod
    def poll(cls, context):
        return context.space_data is not None and context.space_data.type == "VIEW_3D" and not bpy.app.background

    def execute(self, context):
        from reframe_core.errors import ReframeError

        space = context.space_data
        existing = overlay_for(space)
        if existing is not None:
            existing.stop()
            self.report({"INFO"}, "ReFrame overlay stopped")
            return {"FINISHED"}
        if space.shading.type not in ("MATERIAL", "RENDERED"):
            space.shading.type = "MATERIAL"  # EEVEE's passes exist only in Material Preview / Rendered
        region = next((r for r in context.area.regions if r.type == "WINDOW"), None)
        if space.region_3d.is_perspective is False:
            self.report({"ERROR"}, "ReFrame overlay needs a perspective view (numpad 5 toggles it)")
            return {"CANCELLED"}
        try:
            ViewportOverlay(context, space, region)
        except ReframeError as exc:
            self.report({"ERROR"}, f"ReFrame: {exc}")
            return {"CANCELLED"}
        _errors.pop(space.as_pointer(), None)
        self.report({"INFO"}, "ReFrame overlay started")
        return {"FINISHED"}


def register():
    bpy.utils.register_class(REFRAME_OT_viewport_overlay)


def unregister():
    stop_all()
    bpy.utils.unregister_class(REFRAME_OT_viewport_overlay)
