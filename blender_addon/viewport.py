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

import contextlib
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

    def draw(self, scene, view_layer, space, region, view_matrix,
             projection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(colour RGBA, albedo RGBA, depth buffer), each top row first, drawn with ``projection``."""
        import gpu

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

        from blender_addon.frame_output import display_lut

        self.space, self.region = space, region
        self.key = space.as_pointer()
        settings = context.scene.reframe
        self.scale = float(settings.scale)
        self.job = job = addon_settings.job_for(context.scene, mode="ss")  # bad settings fail here, in the operator
        self.lut = display_lut(context.scene)  # the scene's colour management, measured once (fails before any thread)
        self.session = self.worker = self.capture = self.texture = None
        self.display_size = None  # (height, width)
        self.size_seen, self.size_since = None, 0.0  # a resize reopens the session once the size holds still
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
        self.handle = None
        self.closed = False
        # Connecting (or starting a server and importing torch there) takes seconds: on a thread, so the window
        # never waits on it; ticks show "starting" until it is ready and any failure as the overlay's error.
        self.runtime = None
        self.runtime_error: str | None = None
        self._runtime_lock = threading.Lock()

        def connect():
            try:
                runtime = open_runtime(job)
            except Exception as exc:
                self.runtime_error = f"{type(exc).__name__}: {exc}"
                return
            with self._runtime_lock:
                if self.closed:  # stopped while connecting: nobody will use it
                    runtime.close()
                else:
                    self.runtime = runtime

        self.connecting = threading.Thread(target=connect, name="reframe-connect", daemon=True)
        self.connecting.start()
        try:
            self.handle = bpy.types.SpaceView3D.draw_handler_add(self.draw, (), "WINDOW", "POST_PIXEL")
            _overlays[self.key] = self
            bpy.app.timers.register(self.tick, first_interval=TICK_S)
        except BaseException:
            self.stop()
            raise

    # --- session ------------------------------------------------------------------------------------------
    def _open(self, display_size) -> None:
        self._close_session()
        self.display_size = display_size
        self.session = self.runtime.open_session("ss", display_size=display_size, scale=self.scale,
                                                 policy=self.job.policy, device=self.job.device,
                                                 precision=self.job.precision,
                                                 weights=self.job.weights,
                                                 **({"reproject": True} if self.job.reproject else {}))
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
    def _locate(self):
        """(window, space, region) of this overlay's 3D View, found again from the window manager: a closed area's
        space and region are freed memory, which Blender does not guard for Python."""
        for window in bpy.context.window_manager.windows:
            for area in window.screen.areas:
                if area.type == "VIEW_3D" and area.spaces.active.as_pointer() == self.key:
                    region = next((r for r in area.regions if r.type == "WINDOW"), None)
                    if region is not None:
                        return window, area.spaces.active, region
        return None

    def tick(self):
        if self.key not in _overlays:
            return None
        found = self._locate()
        if found is None:  # its area was closed (or its window, or another file loaded)
            self.stop()
            return None
        self.window, self.space, self.region = found
        if self.runtime is None:
            if self.runtime_error is None:
                return TICK_S  # still connecting
            self.error = f"the runtime did not start: {self.runtime_error}"
            print(f"ReFrame viewport overlay stopped: {self.error}")
            self.stop(keep_error=True)
            return None
        try:
            self._collect()
            self._feed()
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
        if self._locate() is not None:
            self.region.tag_redraw()

    def _feed(self) -> None:
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
            # Dragging an area's edge resizes it every tick: reopen the session once the size holds for 0.3 s.
            if display_size != self.size_seen:
                self.size_seen, self.size_since = display_size, time.monotonic()
                if self.display_size is not None:
                    return
            if self.display_size is not None and time.monotonic() - self.size_since < 0.3:
                return
            self._open(display_size)
        view_matrix = rv3d.view_matrix.copy()
        window_matrix = np.array(rv3d.window_matrix)
        if self.previous_view is not None and _turn_degrees(self.previous_view, view_matrix) > JUMP_DEGREES:
            self.shot += 1  # a jump: a new "camera", so the session sees a cut and resets its history
        width, height = self.capture.size
        jitter = jitter_offset(self.index, self.scale)
        start = time.perf_counter()
        color, albedo, zbuffer = self.capture.draw(self.window.scene, self.window.view_layer, self.space, self.region,
                                                   view_matrix,
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
        """Remove the overlay and give back what it holds; never raises, never waits long on the main thread."""
        _overlays.pop(self.key, None)
        if keep_error:
            _errors[self.key] = self.error
        with self._runtime_lock:
            self.closed = True
            runtime = self.runtime
        try:
            if self.handle is not None:
                bpy.types.SpaceView3D.draw_handler_remove(self.handle, "WINDOW")
                self.handle = None
        except Exception:
            pass
        self.texture = None
        worker, session, capture = self.worker, self.session, self.capture
        self.worker = self.session = self.capture = None
        if capture is not None:
            with contextlib.suppress(Exception):
                capture.free()
        stopped = worker is None or worker.close(timeout=2.0)

        def release():
            # After a step still running on the worker (a hung runtime): closing waits for it, on this thread.
            if not stopped:
                worker.close(timeout=600.0)
            with contextlib.suppress(Exception):
                if session is not None:
                    session.close()
            with contextlib.suppress(Exception):
                if runtime is not None:
                    runtime.close()

        if stopped:
            release()
        else:
            threading.Thread(target=release, name="reframe-release", daemon=True).start()


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
        if space.region_3d.is_perspective is False:
            self.report({"ERROR"}, "ReFrame overlay needs a perspective view (numpad 5 toggles it)")
            return {"CANCELLED"}
        from blender_addon.render_loop import EEVEE_ENGINES

        rendered_by_eevee = space.shading.type == "RENDERED" and context.scene.render.engine in EEVEE_ENGINES
        if space.shading.type != "MATERIAL" and not rendered_by_eevee:
            # EEVEE's passes exist in Material Preview (always EEVEE) and in Rendered with EEVEE as the engine
            space.shading.type = "MATERIAL"
            self.report({"INFO"}, "ReFrame overlay: switched the view to Material Preview (EEVEE)")
        region = next((r for r in context.area.regions if r.type == "WINDOW"), None)
        try:
            ViewportOverlay(context, space, region)
        except (ReframeError, OSError, RuntimeError, TypeError) as exc:  # settings, LUT measuring, GPU
            from blender_addon.operators import for_artists

            self.report({"ERROR"}, f"ReFrame: {for_artists(str(exc))}")
            return {"CANCELLED"}
        _errors.pop(space.as_pointer(), None)
        self.report({"INFO"}, "ReFrame overlay started")
        return {"FINISHED"}


_SCENE_DATA = ("Object", "Mesh", "Material", "Light", "World", "Image", "NodeTree", "Curve", "Camera")


@bpy.app.handlers.persistent
def _scene_changed(scene, depsgraph=None):
    """An edit (moving an object, a material) makes a converged overlay stale: capture again. Only data the
    picture depends on counts; the overlay's own pass switching is not an edit."""
    if not _overlays or depsgraph is None:
        return
    kinds = tuple(getattr(bpy.types, name) for name in _SCENE_DATA)
    if any(isinstance(u.id, kinds) for u in depsgraph.updates):
        _mark_stale()


@bpy.app.handlers.persistent
def _frame_changed(scene, *args):
    if _overlays:
        _mark_stale()


def _mark_stale() -> None:
    for overlay in _overlays.values():
        overlay.last_key = None  # treated as a view change


@bpy.app.handlers.persistent
def _file_loading(*args):
    stop_all()  # the overlays' areas, scene and timers belong to the file being closed


_HANDLERS = (("depsgraph_update_post", _scene_changed), ("frame_change_post", _frame_changed),
             ("load_pre", _file_loading))


def register():
    bpy.utils.register_class(REFRAME_OT_viewport_overlay)
    for name, handler in _HANDLERS:
        getattr(bpy.app.handlers, name).append(handler)


def unregister():
    stop_all()
    for name, handler in _HANDLERS:
        if handler in getattr(bpy.app.handlers, name):
            getattr(bpy.app.handlers, name).remove(handler)
    bpy.utils.unregister_class(REFRAME_OT_viewport_overlay)
