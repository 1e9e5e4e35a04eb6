"""Write a network's output frame exactly as Blender writes its own render (bpy-side; numpy, no torch).

The render path hands over a *linear* RGBA frame (the scene's linear working space, alpha premultiplied: what
the Combined pass holds). Rather than tonemapping it by hand, it goes through a temporary float image and
``Image.save_render(path, scene=scene)``, which applies the scene's output settings the way a native render
write does: file format, colour depth, codec, view transform, look, exposure, gamma, curves and dither. Measured
with bpy 5.0.1 (``tests/test_frame_output.py``): the PNG equals Blender's own within 1/255 with
``render.dither_intensity = 0``; 8-bit formats get the view transform, OpenEXR stays linear (bit-exact).

Blender facts this relies on (bpy 5.0.1, checked by hand and in the tests):

* ``RenderSettings.frame_path(frame=f)`` is the file a render writes for frame ``f``: it expands ``//``
  against the saved .blend (unsaved: a relative path, which Blender resolves against the working directory),
  fills the *last* run of ``#`` with the zero-padded frame (``f_#_x_###`` -> ``f_#_x_007``), appends a 4-digit
  frame when there is no ``#``, adds the format's extension when ``use_file_extension`` is on, and in 5.0 also
  expands path templates (``{blend_name}``; an unknown variable raises ``RuntimeError``).
* ``save_render`` creates missing parent folders (as a render does), writes whatever the scene's format is
  whatever the file name, and the written size is the image's size (it never rescales to the scene's
  resolution): so :func:`write_frame` checks the array against :func:`output_size`.
* Pixel rows of ``Image.pixels`` run bottom to top; our arrays run top to bottom (like EXR files and PIL).
* A PNG write onto a full disk reports *no* error and leaves a truncated file; JPEG and OpenEXR raise
  ``RuntimeError("... No space left on device ...")``; TIFF raises "internal error". Hence the checks after
  the write (:func:`_check_complete`).
* Multilayer EXR cannot be written from a plain image ("Did not write, no Multilayer Image").
"""
from __future__ import annotations

import errno as _errno
import os
import tempfile
from pathlib import Path

import numpy as np

import bpy
from reframe_core.errors import ReframeError

# Extension per ImageFormatSettings.file_format, used for the temporary file when ``path`` has none.
_EXTENSIONS = {
    "PNG": ".png", "JPEG": ".jpg", "OPEN_EXR": ".exr", "OPEN_EXR_MULTILAYER": ".exr", "BMP": ".bmp",
    "TARGA": ".tga", "TARGA_RAW": ".tga", "TIFF": ".tif", "WEBP": ".webp", "HDR": ".hdr", "CINEON": ".cin",
    "DPX": ".dpx", "IRIS": ".rgb", "JPEG2000": ".jp2",
}
# How a complete file ends, for formats whose writer may truncate silently on a full disk.
_TRAILERS = {"PNG": b"IEND\xaeB`\x82", "JPEG": b"\xff\xd9"}
_WHERE = "Output Properties > Output"


class OutputError(ReframeError, RuntimeError):
    """A frame could not be written; the message names the file or folder and what to do.

    ``errno`` is set for operating-system failures (``errno.ENOSPC`` for a full disk), else None."""

    def __init__(self, message: str, path: str | Path | None = None, errno: int | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.errno = errno


def _check_format(scene) -> None:
    settings = scene.render.image_settings
    if scene.render.is_movie_format:
        raise OutputError(f"Scene '{scene.name}' writes a movie ({settings.file_format}); upscaled frames are "
                          f"written as image files: choose an image format in {_WHERE}.")
    if settings.file_format == "OPEN_EXR_MULTILAYER":
        raise OutputError(f"Scene '{scene.name}' writes multilayer OpenEXR, which holds every render pass; an "
                          f"upscaled frame has only the combined image: choose OpenEXR (single layer) or another "
                          f"image format in {_WHERE}.")


def output_path(scene, frame: int) -> Path:
    """The file Blender's render writes for ``frame``, as an absolute path (see the module docstring)."""
    _check_format(scene)
    try:
        path = scene.render.frame_path(frame=int(frame))
    except RuntimeError as exc:  # 5.0 path templates: "Parse errors in path ..."
        raise OutputError(f"Scene '{scene.name}' has an output path Blender cannot expand "
                          f"({scene.render.filepath!r}): {str(exc).strip()}. Fix it in {_WHERE}.") from exc
    # frame_path already made '//' absolute for a saved file; for an unsaved one Blender writes relative to the
    # working directory, and so does Path.absolute().
    return Path(bpy.path.abspath(path)).absolute()


def output_size(scene) -> tuple[int, int]:
    """(width, height) of the image a render of ``scene`` writes: resolution x percentage, truncated, and the
    render region's size when 'Crop to Render Region' is on (Blender's ``RE_InitState``: each border edge is
    ``(int)(float border * size)``)."""
    r = scene.render
    width = r.resolution_x * r.resolution_percentage // 100
    height = r.resolution_y * r.resolution_percentage // 100
    if r.use_border and r.use_crop_to_border:
        f32 = np.float32

        def edge(fraction, size):
            return int(f32(fraction) * f32(size))

        width = edge(r.border_max_x, width) - edge(r.border_min_x, width)
        height = edge(r.border_max_y, height) - edge(r.border_min_y, height)
    return width, height


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    blocks = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize


def _disk_full(folder: Path) -> bool:
    free = _free_bytes(folder)
    return free is not None and free < 4096


def _disk_full_error(path: Path, detail: str = "") -> OutputError:
    return OutputError(f"The disk is full: could not write {path.name} to {path.parent}"
                       f"{f' ({detail})' if detail else ''}. Free some space on that disk or choose another "
                       f"output folder in {_WHERE}.", path, _errno.ENOSPC)


def _folder_error(folder: Path, exc: OSError) -> OutputError:
    if exc.errno == _errno.ENOSPC:
        return _disk_full_error(folder / "frame", exc.strerror or str(exc))
    reason = exc.strerror or str(exc)
    if exc.errno in (_errno.EEXIST, _errno.ENOTDIR):
        reason = "part of that path is a file, not a folder"
    return OutputError(f"Cannot write frames to the folder {folder}: {reason}. Choose an output folder you can "
                       f"write to in {_WHERE}, or fix the folder's permissions.", folder, exc.errno)


def _check_complete(tmp: Path, path: Path, file_format: str) -> None:
    """Blender's PNG writer ignores write errors (a full disk leaves a truncated file): make sure the bytes are
    on disk (fsync surfaces delayed-allocation ENOSPC) and that the file is whole."""
    try:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 16))
            tail = f.read()
    except OSError as exc:
        if exc.errno == _errno.ENOSPC:
            raise _disk_full_error(path, exc.strerror) from exc
        raise OutputError(f"Could not write {path}: {exc.strerror or exc}.", path, exc.errno) from exc
    trailer = _TRAILERS.get(file_format)
    whole = size > 0 and (trailer is None or tail.endswith(trailer))
    if trailer is None and _disk_full(path.parent):
        whole = False  # no way to check this format's end: a disk that is full now most likely cut it short
    if not whole:
        if _disk_full(path.parent):
            raise _disk_full_error(path, "the file was cut short")
        raise OutputError(f"Blender wrote an incomplete {file_format} file for {path}; check the disk and the "
                          f"output folder {path.parent}.", path, _errno.EIO)


def write_frame(scene, linear_rgba: np.ndarray, path: str | Path, before_replace=None) -> Path:
    """Write ``linear_rgba`` (H, W, 4), rows top to bottom, linear and premultiplied like the Combined pass, to
    ``path`` through the scene's colour management and file format, atomically (a temporary file in the same
    folder, then ``os.replace``: ``path`` is either the old file or the whole new one). Returns ``path``.

    (H, W) must be :func:`output_size` of the scene, as Blender writes its own frames at that size.
    Raises :class:`OutputError` (message names the folder/file and the fix) when the folder is not writable, the
    disk is full, or the format cannot hold a single image. ``before_replace()``, if given, runs once the whole
    file is written and just before it is moved into place (the render loop records the frame there, so a kill
    between the two leaves a record without a file, re-rendered on resume, never a file without a record)."""
    path = Path(path)
    _check_format(scene)
    rgba = np.asarray(linear_rgba, dtype=np.float32)
    if rgba.ndim != 3 or rgba.shape[2] not in (3, 4):
        raise OutputError(f"A frame must be an (H, W, 4) RGBA array, got shape {rgba.shape}.", path)
    height, width = rgba.shape[:2]
    if (width, height) != output_size(scene):
        w, h = output_size(scene)
        raise OutputError(f"The frame is {width}x{height} but scene '{scene.name}' renders {w}x{h} "
                          f"(resolution x percentage); Blender would write {w}x{h}.", path)
    if rgba.shape[2] == 3:
        rgba = np.concatenate([rgba, np.ones((height, width, 1), np.float32)], axis=2)

    image = None
    try:
        image = bpy.data.images.new(".reframe_output", width, height, alpha=True, float_buffer=True)
        working = getattr(getattr(bpy.data, "colorspace", None), "working_space", None)  # 5.0+: per-file
        if working and image.colorspace_settings.name != working:
            image.colorspace_settings.name = working
        image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1]).reshape(-1))  # Blender's rows: bottom first
        _save_atomically(scene, image, path, before_replace)
    finally:
        if image is not None:
            bpy.data.images.remove(image)
    return path


def write_render_result(scene, path: str | Path, before_replace=None) -> Path:
    """Write the last render (the Render Result) to ``path`` as Blender's own animation render writes it
    (scene format and colour management), atomically; errors as :func:`write_frame`."""
    path = Path(path)
    _check_format(scene)
    _save_atomically(scene, bpy.data.images["Render Result"], path, before_replace)
    return path


def _save_atomically(scene, image, path: Path, before_replace=None) -> None:
    """``image.save_render`` into a temporary file beside ``path``, checked whole, then moved onto ``path``."""
    settings = scene.render.image_settings
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)  # as Blender's render write does
        suffix = ".partial" + (path.suffix or _EXTENSIONS.get(settings.file_format, ""))  # keep the extension
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=folder)
        os.close(fd)
    except OSError as exc:
        raise _folder_error(folder, exc) from exc
    tmp = Path(tmp_name)
    try:
        try:
            image.save_render(str(tmp), scene=scene)
        except RuntimeError as exc:
            message = " ".join(str(exc).split())
            if "No space left" in message or _disk_full(folder):
                raise _disk_full_error(path, message) from exc
            raise OutputError(f"Blender could not write {path} ({message}); check the output folder {folder} "
                              f"and the format in {_WHERE}.", path) from exc
        _check_complete(tmp, path, settings.file_format)
        if before_replace is not None:
            before_replace()
        umask = os.umask(0)
        os.umask(umask)
        try:
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; Blender's files get the usual permissions
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(f"Could not move the finished frame into place at {path}: {exc.strerror or exc}. "
                              f"If a folder has that name, remove it or change the output path in {_WHERE}.",
                              path, exc.errno) from exc
    finally:
        tmp.unlink(missing_ok=True)


def check_output_folder(scene, frame: int) -> Path:
    """Fail before any rendering when the folder of ``frame``'s file cannot be created or written."""
    path = output_path(scene, frame)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".reframe-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _folder_error(folder, exc) from exc
    return path


def display_lut(scene, size: int = 65):
    """The scene's view transform, look, exposure and gamma as a :class:`reframe_core.frames.display.DisplayLUT`,
    measured by saving a grid of colours with ``Image.save_render`` (8-bit PNG, no dither) -- Blender's own
    colour management, whatever the transform (65 nodes per axis). For images Blender does not colour-manage itself (the viewport
    overlay's texture)."""
    from reframe_core.frames.display import DisplayLUT, grid_image

    grid = grid_image(size)
    height, width = grid.shape[:2]
    image = bpy.data.images.new("ReFrame LUT grid", width, height, alpha=True, float_buffer=True)
    rgba = np.ones((height, width, 4), np.float32)
    rgba[..., :3] = grid[::-1]  # Blender's pixels start at the bottom row
    image.pixels.foreach_set(rgba.ravel())
    settings = scene.render.image_settings
    saved = (settings.file_format, settings.color_mode, settings.color_depth, scene.render.dither_intensity)
    fd, name = tempfile.mkstemp(suffix=".png", prefix="reframe-lut-")
    os.close(fd)
    try:
        settings.file_format, settings.color_mode, settings.color_depth = "PNG", "RGB", "8"
        scene.render.dither_intensity = 0.0
        image.save_render(name, scene=scene)
        saved_png = bpy.data.images.load(name)  # Blender's own reader (Blender has no PIL); byte pixels / 255
        try:
            values = np.empty(width * height * 4, np.float32)
            saved_png.pixels.foreach_get(values)
        finally:
            bpy.data.images.remove(saved_png)
        pixels = values.reshape(height, width, 4)[::-1, :, :3]
    finally:
        settings.file_format, settings.color_mode, settings.color_depth, scene.render.dither_intensity = saved
        bpy.data.images.remove(image)
        os.unlink(name)
    return DisplayLUT.from_saved(pixels)
