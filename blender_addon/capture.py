"""Headless EEVEE capture: render a frame range and return :class:`FrameBuffers` per frame.

Blender's Render Result pixels cannot be read from Python, so each frame is rendered, saved as a multilayer
EXR to memory-backed storage (``/dev/shm`` where it exists) with ``save_render`` and read back with OpenEXR.
Render settings are changed only inside :func:`capture_settings`, which restores them.
"""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import bpy

from reframe_core.blender_compat import eevee_engine_id, has_media_type, motion_needs_rebuilding
from reframe_core.frames.buffers import CameraData, FrameBuffers, jitter_offset, read_blender_exr
from reframe_core.errors import ReframeError


class CaptureError(ReframeError):
    """Bad input to a capture (file, scene, frames, output): the message says what and how to fix it."""


@dataclass(frozen=True)
class CaptureSettings:
    """How to render.

    Attributes:
        resolution: (width, height) of scale 1; None keeps the scene's own.
        scale: divide the resolution by this (2 renders at half width and height: the SS 2x input).
        samples: EEVEE render samples (TAA).
        jitter: offset each frame's samples by the Halton(2,3) sequence (camera shift), for temporal SS.
        fast: the cheap G-buffer mode: no shadows, no raytracing (frame extrapolation's in-between frames); the
            classic cheap pass also takes ``samples=1``; a few samples anti-alias its G-buffers.
        film_filter: EEVEE's film filter width in rendered pixels; None keeps the scene's (1.5 by default). The
            width is in the pixels of the frame rendered, so at 1/scale it covers scale times more of the display.
    """

    resolution: tuple[int, int] | None = None
    scale: float = 1.0
    samples: int = 16
    jitter: bool = False
    fast: bool = False
    film_filter: float | None = None

    def size_for(self, scene) -> tuple[int, int]:
        width, height = self.resolution or (scene.render.resolution_x, scene.render.resolution_y)
        if self.scale <= 0:
            raise CaptureError(f"scale must be > 0, got {self.scale}")
        from reframe_core.workloads.base import scaled_size

        return scaled_size((width, height), self.scale)


@dataclass(frozen=True)
class CaptureTimings:
    render_s: float
    save_s: float  # Blender writing the EXR
    read_s: float  # OpenEXR reading it + conversion to FrameBuffers

    @property
    def overhead(self) -> float:
        """Capture cost as a share of EEVEE's own render time."""
        return (self.save_s + self.read_s) / self.render_s if self.render_s else float("nan")


# --- validation -------------------------------------------------------------------------------------------

def open_blend(path: str | os.PathLike) -> bpy.types.Scene:
    """Open a .blend file (replacing the current session's data) and return its active scene."""
    path = Path(path)
    if not path.exists():
        raise CaptureError(f"{path} does not exist: give the path of a .blend file or a scene name (reframe-blender scenes list)")
    if not path.is_file():
        raise CaptureError(f"{path} is not a file: give the path of a .blend file")
    try:
        bpy.ops.wm.open_mainfile(filepath=str(path.resolve()), load_ui=False)
    except RuntimeError as exc:
        raise CaptureError(f"cannot open {path} as a .blend file ({str(exc).strip().splitlines()[-1]}); "
                           "is it a Blender file, saved by Blender 3.4 or newer?") from None
    return bpy.context.scene


def check_scene(scene: bpy.types.Scene, frames: range, for_capture: bool = True) -> None:
    """Fail early, with one clear message, on what would make the capture fail or lie (``for_capture`` False:
    only what a plain render needs, frames inside the scene and a camera)."""
    if len(frames) == 0 or frames.start < scene.frame_start or frames.stop - 1 > scene.frame_end:
        raise CaptureError(f"frames {frames.start}-{frames.stop - 1} are outside scene {scene.name!r}'s range "
                           f"{scene.frame_start}-{scene.frame_end}; pick frames inside it")
    cameras = [m.camera for m in scene.timeline_markers if m.camera is not None]
    if scene.camera is None and not cameras:
        raise CaptureError(f"scene {scene.name!r} has no camera: add one and make it active (Scene properties > Camera), "
                           "or bind cameras to timeline markers")
    if not for_capture:
        return
    for camera in filter(None, [scene.camera, *cameras]):
        if camera.type != "CAMERA":
            raise CaptureError(f"scene {scene.name!r}: the active camera {camera.name!r} is a {camera.type.lower()}, not a camera")
        if camera.data.type != "PERSP":
            raise CaptureError(f"camera {camera.name!r} is {camera.data.type.lower()}: only perspective cameras are supported")
    for material in bpy.data.materials:
        if material.node_tree and any(n.bl_idname == "ShaderNodeScript" for n in material.node_tree.nodes):
            raise CaptureError(f"material {material.name!r} uses an OSL Script node, which EEVEE cannot render; "
                               "replace it with built-in shader nodes")
    if scene.render.engine not in ("BLENDER_EEVEE", "BLENDER_EEVEE_NEXT", "CYCLES", "BLENDER_WORKBENCH"):
        raise CaptureError(f"scene {scene.name!r} uses the render engine {scene.render.engine!r}; switch it to EEVEE")


# --- settings ---------------------------------------------------------------------------------------------

def _snapshot(obj, names: list[str]) -> dict:
    return {n: getattr(obj, n) for n in names if hasattr(obj, n)}


def _restore(obj, values: dict) -> None:
    for name, value in values.items():
        setattr(obj, name, value)


@contextlib.contextmanager
def capture_settings(scene: bpy.types.Scene, settings: CaptureSettings, view_layer=None):
    """EEVEE, the passes we read, motion blur off, multilayer float EXR; everything restored on exit."""
    layer = view_layer or scene.view_layers[0]
    render, image, eevee = scene.render, scene.render.image_settings, scene.eevee
    saved = [
        (render, _snapshot(render, ["engine", "resolution_x", "resolution_y", "resolution_percentage", "use_motion_blur",
                                    "film_transparent", "filter_size"])),
        (eevee, _snapshot(eevee, ["taa_render_samples", "use_shadows", "use_raytracing", "use_volumetric_shadows"])),
        (layer, _snapshot(layer, ["use_pass_z", "use_pass_normal", "use_pass_vector", "use_pass_diffuse_color"])),
        (image, _snapshot(image, ["media_type", "file_format", "color_depth", "exr_codec"])),
    ]
    try:
        render.engine = eevee_engine_id(bpy.app.version)
        render.resolution_x, render.resolution_y = settings.size_for(scene)
        render.resolution_percentage = 100
        render.use_motion_blur = False  # motion blur would smear what the Vector pass describes
        render.film_transparent = False
        eevee.taa_render_samples = settings.samples
        if settings.film_filter is not None:
            render.filter_size = settings.film_filter
        if settings.fast:
            for name in ("use_shadows", "use_raytracing", "use_volumetric_shadows"):
                if hasattr(eevee, name):
                    setattr(eevee, name, False)
        layer.use_pass_z = layer.use_pass_normal = layer.use_pass_vector = layer.use_pass_diffuse_color = True
        if has_media_type(bpy.app.version):
            image.media_type = "MULTI_LAYER_IMAGE"
        image.file_format = "OPEN_EXR_MULTILAYER"
        image.color_depth = "32"
        image.exr_codec = "NONE"  # the file lives for milliseconds in memory: compression only costs time
        yield layer
    finally:
        for obj, values in reversed(saved):
            _restore(obj, values)


def camera_data(scene: bpy.types.Scene, width: int, height: int, shift: tuple[float, float]) -> CameraData:
    """The active camera's numbers at the current frame; the projection excludes any jitter."""
    camera = scene.camera
    depsgraph = bpy.context.evaluated_depsgraph_get()
    projection = camera.calc_matrix_camera(depsgraph, x=width, y=height,
                                           scale_x=scene.render.pixel_aspect_x, scale_y=scene.render.pixel_aspect_y)
    rows = [list(map(float, row)) for row in projection]
    return CameraData(
        frame=scene.frame_current, name=camera.name,
        world_matrix=[list(map(float, row)) for row in camera.matrix_world],
        projection=rows, lens_mm=float(camera.data.lens),
        fov_x_deg=math.degrees(2 * math.atan(1 / rows[0][0])), fov_y_deg=math.degrees(2 * math.atan(1 / rows[1][1])),
        clip_start=float(camera.data.clip_start), clip_end=float(camera.data.clip_end),
        resolution=(width, height), shift=shift,
    )


def _camera_at(scene: bpy.types.Scene, frame: int, width: int, height: int) -> CameraData:
    """The active camera's numbers at another frame (no render, no jitter); the scene's frame is restored."""
    current = scene.frame_current
    scene.frame_set(frame)
    try:
        camera = scene.camera
        return camera_data(scene, width, height, (camera.data.shift_x, camera.data.shift_y))
    finally:
        scene.frame_set(current)


def _scratch_dir() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def _render(scene: bpy.types.Scene, frame: int, settings: CaptureSettings, width: int, height: int):
    """Render one frame with its jitter; returns (camera data, jitter, render seconds)."""
    scene.frame_set(frame)  # also switches the active camera at markers
    camera = scene.camera
    base_shift = (camera.data.shift_x, camera.data.shift_y)
    jitter = jitter_offset(frame - scene.frame_start, settings.scale) if settings.jitter else (0.0, 0.0)
    largest = max(width, height)
    # Camera shift is in units of the larger image side; +y shift moves the view up, our y is down.
    shift = (base_shift[0] + jitter[0] / largest, base_shift[1] - jitter[1] / largest)
    cam = camera_data(scene, width, height, shift)
    camera.data.shift_x, camera.data.shift_y = shift
    try:
        start = time.perf_counter()
        bpy.ops.render.render()
        return cam, jitter, time.perf_counter() - start
    finally:
        camera.data.shift_x, camera.data.shift_y = base_shift


def scratch_file() -> Path:
    """An empty temporary EXR path in memory-backed storage (named after this process); the caller removes it.
    Files a killed render left (its process is gone) are removed first: in /dev/shm they would hold memory until
    the machine restarts."""
    folder = _scratch_dir()
    for stale in Path(folder).glob("reframe-capture-*-*.exr"):
        pid = stale.name.split("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=f"reframe-capture-{os.getpid()}-", suffix=".exr", dir=folder)
    os.close(fd)
    return Path(scratch)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def render_buffers(scene: bpy.types.Scene, frame: int, settings: CaptureSettings, scratch: Path,
                   previous: CameraData | None = None) -> tuple[FrameBuffers, CaptureTimings]:
    """Render ``frame`` under the settings already applied by :func:`capture_settings` and read it back.

    ``previous``: the camera of frame - 1 when it was just rendered (saves one frame change where motion is
    rebuilt from depth: Blender 3.x)."""
    width, height = scene.render.resolution_x, scene.render.resolution_y  # as applied
    cam, jitter, render_s = _render(scene, frame, settings, width, height)
    start = time.perf_counter()
    bpy.data.images["Render Result"].save_render(str(scratch))
    saved = time.perf_counter()
    following = None
    if motion_needs_rebuilding(bpy.app.version):
        if previous is None or previous.frame != frame - 1:
            previous = _camera_at(scene, frame - 1, width, height)
        following = _camera_at(scene, frame + 1, width, height)
    buffers = read_blender_exr(scratch, cam, jitter=jitter, previous_camera=previous, next_camera=following)
    return buffers, CaptureTimings(render_s, saved - start, time.perf_counter() - saved)


def capture(scene: bpy.types.Scene, frames: range, settings: CaptureSettings = CaptureSettings(),
            progress=None, warmup: bool = True) -> Iterator[tuple[FrameBuffers, CaptureTimings]]:
    """Render ``frames`` of ``scene`` and yield (FrameBuffers, timings) per frame, in order.

    With ``warmup``, the frame before the range is rendered first and thrown away: EEVEE's state (shaders,
    motion steps) then is the same as in a run that started earlier, so a resumed or chunked capture gives
    the same bytes as one uninterrupted run. ``progress``, if given, is called with each frame number.

    Where EEVEE writes no Vector pass (Blender 3.x), each frame's motion is rebuilt from its depth and the
    cameras of frames N-1 and N+1 (read without rendering them, like Blender's own Vector pass does), so
    camera motion is there and moving objects get the camera's motion only; across a camera cut it is 0.
    """
    check_scene(scene, frames)
    scratch = scratch_file()
    try:
        with capture_settings(scene, settings):
            width, height = scene.render.resolution_x, scene.render.resolution_y  # as applied
            previous = None  # the camera of the frame before, for motion rebuilt from depth
            if warmup:
                previous = _render(scene, max(scene.frame_start, frames.start - 1), settings, width, height)[0]
            for frame in frames:
                if progress is not None:
                    progress(frame)
                buffers, timings = render_buffers(scene, frame, settings, scratch, previous)
                previous = buffers.camera
                yield buffers, timings
    finally:
        scratch.unlink(missing_ok=True)


def save_scene(entry, seed: int, out: Path) -> str:
    """Build a library scene (``scenes.get_scene(name)``) and save it as a .blend; returns a one-line summary."""
    out = Path(out)
    if out.suffix != ".blend":
        raise CaptureError(f"--out must end in .blend, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    scene = entry.build(seed)
    bpy.ops.wm.save_as_mainfile(filepath=str(out.resolve()), compress=False)
    return (f"wrote {out}: scene {entry.name} (seed {seed}), frames {scene.frame_start}-{scene.frame_end}, "
            f"{len(bpy.data.objects)} objects, camera {scene.camera.name}")
