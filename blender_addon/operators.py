"""The add-on's operators. Each copies the UI's settings into a :class:`RenderJob` (:func:`settings.job_for`, the
object the command line builds too) and makes one call into the render path or the runtime; none computes
anything itself.

- ``reframe.render_animation``: the scene's frame range (or ``frame_start``/``frame_end``) through
  :class:`~blender_addon.render_loop.RenderRun`. Invoked from the UI it is modal: a timer steps one frame per tick,
  so the window redraws and shows progress between frames, and Esc cancels between frames (every written frame is
  complete; running it again resumes). Executed (a script, ``blender -b``) it renders to the end.
- ``reframe.render_frame``: the current frame (with its warm-up frames), shown in an Image Editor.
- ``reframe.check_runtime``, ``reframe.release_memory``, ``reframe.setup_runtime``: the preferences' buttons.
"""
from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

import bpy
from bpy.props import BoolProperty, IntProperty

from reframe_core.errors import ReframeError, SettingsError

from blender_addon import settings as addon_settings

TIMER_INTERVAL = 0.05  # s between frames when modal: long enough for the window to redraw


# The render path's messages name command-line options; in Blender the same fix is a setting.
_IN_BLENDER = (("pass --overwrite to render it again, or choose another output path with --out",
                "tick Overwrite existing frames (Render Properties > ReFrame) to render it again, or choose another "
                "output path (Output Properties > Output)"),
               ("or render it with --mode native", "or render it with Blender's own F12 / Ctrl F12"),
               ("or use --mode native", "or render it with Blender's own F12 / Ctrl F12"),
               ("--mode ss", "Supersampling"), ("--mode fe", "Frame extrapolation"),
               ("use --frames A-B with A <= B", "set the scene's Frame Start <= Frame End"))


def for_artists(message: str) -> str:
    for cli, ui in _IN_BLENDER:
        message = message.replace(cli, ui)
    return message


def _report_error(operator, exc: BaseException) -> set:
    operator.report({"ERROR"}, f"ReFrame: {for_artists(str(exc))}")
    return {"CANCELLED"}


def _store_stats(scene, report: dict, native_s: float | None) -> None:
    """The last render's figures for the panel."""
    totals, settings = report["totals"], scene.reframe
    stepped = max(len(report["frames"]), 1)
    per_frame = report["wall_s"] / stepped
    settings.last_hit_rate = -1.0 if totals["hit_rate"] is None else totals["hit_rate"]
    settings.last_ms_per_frame = per_frame * 1e3
    settings.last_native_s = -1.0 if native_s is None else native_s
    settings.last_saved_s = 0.0 if native_s is None else (native_s - per_frame) * totals["written"]
    settings.last_summary = (f"{report['status']}: {totals['written']} written, {totals['skipped']} already done"
                             + (f", {totals['fallbacks']} fallback" if totals["fallbacks"] else ""))


def _time_native(scene, frame: int) -> float:
    """Seconds of one plain render of ``frame`` with the scene's own settings (not written): the estimate of
    native time the panel's 'time saved' compares with."""
    saved = scene.frame_current
    try:
        scene.frame_set(frame)
        start = time.perf_counter()
        bpy.ops.render.render()
        return time.perf_counter() - start
    finally:
        scene.frame_set(saved)


# What an operator reports as one clear error instead of a traceback: settings and scene problems (ReframeError),
# files (OSError), and Blender refusing a render (RuntimeError from an operator call).
EXPECTED_ERRORS = (ReframeError, OSError, RuntimeError)


class REFRAME_OT_render_animation(bpy.types.Operator):
    """Render the frame range with ReFrame into the scene's output path and format (Esc cancels; run again to
    resume)"""

    bl_idname = "reframe.render_animation"
    bl_label = "Render Animation (ReFrame)"
    bl_options = {"REGISTER"}

    frame_start: IntProperty(name="First frame", default=-1, description="-1: the scene's frame start")
    frame_end: IntProperty(name="Last frame", default=-1, description="-1: the scene's frame end")
    overwrite: BoolProperty(name="Overwrite", default=False, description="render frames already written again")
    warmup: IntProperty(name="Warm-up frames", default=-1, min=-1,
                        description="frames stepped before the first frame (a farm chunk); -1: the scene's setting")

    _run = None
    _timer = None
    _native_s = None

    def _frames(self, scene) -> range:
        first = scene.frame_start if self.frame_start < 0 else self.frame_start
        last = scene.frame_end if self.frame_end < 0 else self.frame_end
        return range(first, last + 1)

    def _start(self, context):
        from blender_addon import render_loop
        from blender_addon.render_loop import RenderRun

        if render_loop.ACTIVE_RUNS:
            raise SettingsError("a ReFrame render is already running in this Blender: wait for it to finish, or "
                                "press Esc to cancel it")
        scene = context.scene
        job = addon_settings.job_for(scene, frames=self._frames(scene),
                                     overwrite=self.overwrite or scene.reframe.overwrite,
                                     warmup=None if self.warmup < 0 else self.warmup)
        run = RenderRun(scene, job)
        self._native_s = None
        if scene.reframe.measure_native and run.remaining:
            try:
                self._native_s = _time_native(scene, run.plan[-1][0])
            except BaseException:
                run.finish("failed: timing a native frame")
                raise
        return run

    def _finish(self, context, status: str | None = None) -> dict:
        run, self._run = self._run, None
        report = run.finish(status)
        with contextlib.suppress(ReferenceError):  # the scene may be gone (another file loaded)
            _store_stats(run.scene, report, self._native_s)
        return report

    def execute(self, context):
        try:
            from blender_addon.render_loop import saved_lines

            self._run = self._start(context)
            while (record := self._run.step()) is not None:
                if record.written:  # as Blender's own render prints: farm managers (Flamenco) follow these lines
                    print(saved_lines(record), flush=True)
        except EXPECTED_ERRORS as exc:
            if self._run is not None:
                self._finish(context, f"failed: {exc}")
            return _report_error(self, exc)
        except BaseException:
            if self._run is not None:
                self._finish(context, "interrupted")
            raise
        report = self._finish(context)
        self.report({"INFO"}, f"ReFrame: {context.scene.reframe.last_summary}; report {report['report']}")
        return {"FINISHED"}

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        try:
            self._run = self._start(context)
        except EXPECTED_ERRORS as exc:
            return _report_error(self, exc)
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_INTERVAL, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, max(self._run.total, 1))
        self._status(context)
        return {"RUNNING_MODAL"}

    def _status(self, context, note: str = "") -> None:
        run = self._run
        text = (f"ReFrame: frame {run.done}/{run.total} written{note} -- Esc cancels after the current frame")
        with contextlib.suppress(AttributeError):
            context.workspace.status_text_set(text)
        context.window_manager.progress_update(run.done)
        if context.area is not None:
            context.area.header_text_set(text)

    def _end_modal(self, context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        with contextlib.suppress(AttributeError):
            context.workspace.status_text_set(None)
        if context.area is not None:
            context.area.header_text_set(None)

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self._end_modal(context)
            report = self._finish(context, "cancelled")
            self.report({"WARNING"}, f"ReFrame: cancelled; {report['totals']['written']} complete frames written, "
                                     f"run it again to render the rest")
            return {"CANCELLED"}
        # Events carry no timer identity: any timer tick steps (the render itself keeps the pace); none while
        # Blender renders something else (F12 started meanwhile).
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if getattr(bpy.app, "is_job_running", lambda kind: False)("RENDER"):
            return {"PASS_THROUGH"}
        try:
            record = self._run.step()
        except EXPECTED_ERRORS as exc:
            self._end_modal(context)
            self._finish(context, f"failed: {exc}")
            return _report_error(self, exc)
        except BaseException as exc:
            self._end_modal(context)
            self._finish(context, f"failed: {exc}")
            raise
        if record is None:
            self._end_modal(context)
            report = self._finish(context)
            self.report({"INFO"}, f"ReFrame: {context.scene.reframe.last_summary}; report {report['report']}")
            return {"FINISHED"}
        self._status(context, "" if record.written else f" (warming up on frame {record.frame})")
        return {"RUNNING_MODAL"}

    def cancel(self, context):  # Blender quitting or the file reloading while the operator runs
        if self._run is not None:
            self._end_modal(context)
            self._finish(context, "cancelled")


RESULT_IMAGE = "ReFrame Render"


class REFRAME_OT_render_frame(bpy.types.Operator):
    """Render the current frame with ReFrame (after its warm-up frames) and show it in an Image Editor"""

    bl_idname = "reframe.render_frame"
    bl_label = "Render Frame (ReFrame)"
    bl_options = {"REGISTER"}

    def execute(self, context):
        from blender_addon.render_loop import render_animation

        scene = context.scene
        frame = scene.frame_current
        extension = scene.render.file_extension
        with tempfile.TemporaryDirectory(prefix="reframe-frame-") as folder:
            try:
                job = addon_settings.job_for(scene, frames=range(frame, frame + 1), overwrite=True,
                                             output=str(Path(folder) / "frame_####"),
                                             report=str(Path(folder) / "report.json"))
                report = render_animation(scene, job, show_progress=False)
            except EXPECTED_ERRORS as exc:
                return _report_error(self, exc)
            path = Path(report["frames"][-1]["written"])
            image = bpy.data.images.get(RESULT_IMAGE)
            if image is not None:
                bpy.data.images.remove(image)
            image = bpy.data.images.load(str(path))
            image.name = RESULT_IMAGE
            image.pack()  # the temporary file goes away; the image stays in the .blend until replaced
            image.filepath_raw = f"//{RESULT_IMAGE}{extension}"
        _store_stats(scene, report, None)
        if not bpy.app.background:
            show_image(context, image)
        self.report({"INFO"}, f"ReFrame: frame {frame} rendered ({report['frames'][-1]['decision']}); shown as "
                              f"image '{RESULT_IMAGE}'")
        return {"FINISHED"}


def show_image(context, image) -> None:
    """Show ``image`` in an Image Editor: one already open, else Blender's render window."""
    def image_editor():
        for window in context.window_manager.windows:
            for area in window.screen.areas:
                if area.type == "IMAGE_EDITOR":
                    return area
        return None

    area = image_editor()
    if area is None:
        with contextlib.suppress(RuntimeError):
            bpy.ops.render.view_show("INVOKE_DEFAULT")
        area = image_editor()
    if area is not None:
        area.spaces.active.image = image


class REFRAME_OT_check_runtime(bpy.types.Operator):
    """Check that the runtime can run the network: torch, the device and the weights found, or why not"""

    bl_idname = "reframe.check_runtime"
    bl_label = "Check Runtime"

    def execute(self, context):
        from blender_addon import environment

        prefs = addon_settings.preferences()
        try:
            found = environment.probe(bpy.path.abspath(prefs.python), prefs.device, prefs.resolved_weights_folder())
        except ReframeError as exc:
            found = {"ok": False, "reason": str(exc)}
        prefs.last_check_ok = bool(found.get("ok"))
        if found.get("ok"):
            where = "a server process" if prefs.runtime == "server" else "Blender"
            prefs.last_check = (f"OK: torch {found['torch']} on {found['device']} (Python {found['python']}, in "
                                f"{where}); weights {', '.join(sorted(found['weights']))}")
            if prefs.runtime == "inprocess":
                try:  # the same Python version as Blender's, or its compiled packages cannot load here
                    environment.use_in_process(bpy.path.abspath(prefs.python))
                except ReframeError as exc:
                    prefs.last_check_ok = False
                    prefs.last_check = f"Not usable in Blender: {exc}"
        else:
            prefs.last_check = f"Not ready: {found.get('reason', 'unknown')}"
        self.report({"INFO"} if prefs.last_check_ok else {"ERROR"}, f"ReFrame: {prefs.last_check}")
        return {"FINISHED"} if prefs.last_check_ok else {"CANCELLED"}


class REFRAME_OT_release_memory(bpy.types.Operator):
    """Give the GPU memory the network holds back (a server this Blender started stops; it starts again on the
    next render)"""

    bl_idname = "reframe.release_memory"
    bl_label = "Release GPU Memory"

    def execute(self, context):
        import sys

        from blender_addon import viewport

        stopped = viewport.stop_all()  # its session and runtime (a server it started stops)
        freed = None
        if "torch" in sys.modules:  # in-process sessions: what torch's allocator still caches
            from reframe_core.runtime.session import release_device_memory

            freed = release_device_memory()
        self.report({"INFO"}, f"ReFrame: released {stopped} viewport session(s)"
                              + (f", {freed / 2**20:.0f} MiB of GPU cache" if freed else "")
                              + "; renders stop their runtime when they end")
        return {"FINISHED"}


class REFRAME_OT_setup_runtime(bpy.types.Operator):
    """Create a Python environment with torch and the runtime's requirements (downloads from PyPI: about 1 GB
    where PyPI's torch is a CPU build, several GB where it is the CUDA one, as on Linux)"""

    bl_idname = "reframe.setup_runtime"
    bl_label = "Set Up Runtime"

    _job = None
    _timer = None

    def _folder(self, prefs) -> Path:
        if prefs.setup_folder:
            return Path(bpy.path.abspath(prefs.setup_folder))
        return Path(prefs.resolved_weights_folder()).parent / "runtime-env"

    def _refused(self) -> bool:
        if getattr(bpy.app, "online_access", True):
            return False
        self.report({"ERROR"}, "ReFrame: Blender may not go online (Preferences > System > Network > Allow Online "
                               "Access): allow it, or set Runtime Python to an environment you installed")
        return True

    def execute(self, context):  # from a script or blender -b: the same steps, blocking, printing progress
        from blender_addon import environment

        if self._refused():
            return {"CANCELLED"}
        prefs = addon_settings.preferences()
        job = environment.SetupJob(self._folder(prefs))
        try:
            while job.poll():
                time.sleep(0.2)
        except (environment.RuntimeEnvironmentError, OSError) as exc:
            return _report_error(self, exc)
        prefs.python = str(job.python)
        self.report({"INFO"}, f"ReFrame: runtime ready at {job.python}")
        return {"FINISHED"}

    def invoke(self, context, event):
        from blender_addon import environment

        if bpy.app.background or context.window is None:
            return self.execute(context)
        if self._refused():
            return {"CANCELLED"}
        prefs = addon_settings.preferences()
        self._job = environment.SetupJob(self._folder(prefs))
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        from blender_addon.environment import RuntimeEnvironmentError

        if event.type == "ESC":
            self._job.cancel()
            self._end(context)
            self.report({"WARNING"}, "ReFrame: runtime setup cancelled")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            more = self._job.poll()
        except (RuntimeEnvironmentError, OSError) as exc:
            self._job.cancel()
            self._end(context)
            return _report_error(self, exc)
        context.window_manager.progress_update(int(self._job.progress * 100))
        with contextlib.suppress(AttributeError):
            context.workspace.status_text_set(f"ReFrame runtime: {self._job.title} ({self._job.progress:.0%}) "
                                              f"{self._job.line[:80]}")
        if more:
            return {"RUNNING_MODAL"}
        self._end(context)
        prefs = addon_settings.preferences()
        prefs.python = str(self._job.python)
        self.report({"INFO"}, f"ReFrame: runtime ready at {self._job.python}")
        bpy.ops.reframe.check_runtime()
        return {"FINISHED"}

    def cancel(self, context):  # Blender quitting, or another file loaded, while pip runs
        if self._job is not None:
            self._job.cancel()
        self._end(context)

    def _end(self, context):
        wm = context.window_manager
        if self._timer is None:
            return
        wm.event_timer_remove(self._timer)
        self._timer = None
        wm.progress_end()
        with contextlib.suppress(AttributeError):
            context.workspace.status_text_set(None)


CLASSES = (REFRAME_OT_render_animation, REFRAME_OT_render_frame, REFRAME_OT_check_runtime, REFRAME_OT_release_memory,
           REFRAME_OT_setup_runtime)
