"""Frame buffers and camera data of one rendered frame, and their EXR files. Pure: no bpy.

Conventions (all arrays numpy float32, row 0 at the top of the image):

* ``color``: (H, W, 3) linear scene-referred RGB (Blender's Combined pass, un-tonemapped).
* ``alpha``: (H, W) coverage: 1 where the camera sees geometry, 0 where it sees the world background
  (from the depth pass, so it holds whether or not the film is transparent).
* ``depth``: (H, W) view-space Z distance along the camera axis; background pixels hold Blender's huge value.
* ``normal``: (H, W, 3) world-space unit normal. ``albedo``: (H, W, 3) diffuse colour.
* ``motion_prev`` / ``motion_next``: (H, W, 2) in pixels, x to the right and y **down**: from the current
  pixel to where the same surface was in the previous frame / will be in the next frame (current ->
  previous is what backward warping and DLSS/FSR/XeSS take). Blender's Vector pass (origin bottom-left,
  y up, Z/W negated) is converted on reading. Background pixels hold 0.
* ``jitter``: (2,) sub-pixel offset (x right, y down, in pixels of this frame) of the sample positions; the
  motion vectors do not contain it.
"""
from __future__ import annotations

import errno
import math
import os
import struct
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from reframe_core.errors import ReframeError, SettingsError
from reframe_core.frames.hints import CameraHints


@dataclass(frozen=True)
class CameraData:
    """The camera of one frame, as numbers read from Blender."""

    frame: int
    name: str
    world_matrix: list  # 4x4 camera-to-world, row-major
    projection: list  # 4x4 OpenGL-style projection for the render resolution (camera shift included, jitter not)
    lens_mm: float
    fov_x_deg: float
    fov_y_deg: float
    clip_start: float
    clip_end: float
    resolution: tuple[int, int]  # (width, height) in pixels
    shift: tuple[float, float] = (0.0, 0.0)  # camera shift actually used, jitter included

    def to_dict(self) -> dict:
        data = asdict(self)
        data["resolution"] = list(self.resolution)
        data["shift"] = list(self.shift)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "CameraData":
        return cls(**{**data, "resolution": tuple(data["resolution"]), "shift": tuple(data.get("shift", (0.0, 0.0)))})

    def hints(self, previous: "CameraData | None", scene_depth: float | None = None) -> CameraHints:
        """CameraHints for this frame; a change of active camera or a frame jump is a cut."""
        cut = previous is None or previous.name != self.name or self.frame - previous.frame != 1
        return CameraHints(frame=self.frame, world_matrix=self.world_matrix, projection=self.projection, cut=cut,
                           scene_depth=scene_depth, camera_name=self.name)


class FrameError(ReframeError, ValueError):
    """A frame's buffers are unusable (shapes that disagree, NaN/Inf values); the message names the array."""


@dataclass
class FrameBuffers:
    """Everything captured for one frame at one resolution (see the module docstring for conventions)."""

    color: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    albedo: np.ndarray
    motion_prev: np.ndarray
    motion_next: np.ndarray
    camera: CameraData
    jitter: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))
    has_vector_pass: bool = True
    # The colour of this frame's cheap pass (no shadows, no raytracing), where one was rendered beside the full
    # frame: a relighting FE network (extrapolation.relights) carries the ratio of the two to the next frames.
    cheap_color: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.color.shape[:2]

    # array -> its shape in channels after (H, W); jitter is (2,)
    CHANNELS = {"color": 3, "alpha": None, "depth": None, "normal": 3, "albedo": 3, "motion_prev": 2, "motion_next": 2}
    OPTIONAL = {"cheap_color": 3}  # arrays a frame may carry (None where it does not)

    def arrays(self) -> dict[str, np.ndarray]:
        """The pixel arrays and the jitter by name (what the bridge puts in shared memory), with the optional
        arrays the frame carries."""
        optional = {name: getattr(self, name) for name in self.OPTIONAL if getattr(self, name) is not None}
        return {**{name: getattr(self, name) for name in self.CHANNELS}, **optional, "jitter": np.asarray(self.jitter)}

    def check(self) -> None:
        """Shapes that agree and values that are finite, or one :class:`FrameError` naming the array: a NaN
        that reaches the network spreads through its history into every later frame."""
        h, w = self.color.shape[:2] if self.color.ndim == 3 else (0, 0)
        for name, array in self.arrays().items():
            channels = {**self.CHANNELS, **self.OPTIONAL}.get(name, "jitter")
            expected = (2,) if channels == "jitter" else (h, w) if channels is None else (h, w, channels)
            if array.shape != expected:
                raise FrameError(f"frame {self.camera.frame}: {name} has shape {array.shape}, expected {expected} "
                                 f"(colour is {self.color.shape}): every pass must come from the same render")
            bad = array.size - int(np.count_nonzero(np.isfinite(array)))
            if bad:
                raise FrameError(f"frame {self.camera.frame}: {name} holds {bad} NaN or infinite values (of "
                                 f"{array.size}); the render produced broken pixels: check the scene's materials "
                                 f"(a division by zero in a shader) and render the frame again")

    def scene_depth(self) -> float | None:
        """Median depth of the covered pixels: the representative view distance used by the motion policy."""
        covered = self.depth[(self.alpha > 0.5) & (self.depth < 0.5 * self.camera.clip_end)]
        return float(np.median(covered)) if covered.size else None

    def hints(self, previous: "FrameBuffers | None") -> CameraHints:
        return self.camera.hints(previous.camera if previous is not None else None, self.scene_depth())


# --- EXR --------------------------------------------------------------------------------------------------

# Our dataset files: one part, named channels, float32, ZIP. Same data -> same bytes (no dates in the header).
_LAYOUT = {
    "color": ("color.R", "color.G", "color.B"),
    "alpha": ("alpha.A",),
    "depth": ("depth.Z",),
    "normal": ("normal.X", "normal.Y", "normal.Z"),
    "albedo": ("albedo.R", "albedo.G", "albedo.B"),
    "motion_prev": ("motion_prev.X", "motion_prev.Y"),
    "motion_next": ("motion_next.X", "motion_next.Y"),
}


class ExrError(ReframeError, ValueError):
    """An EXR file is unreadable or lacks a pass we need; the message names the file and the pass."""


def _channels(path: Path) -> dict[str, np.ndarray]:
    """All channels of all parts, split into single channels named 'Layer.Pass.C'."""
    from reframe_core.blender_compat import openexr_wheel_unsafe

    if openexr_wheel_unsafe():  # inside Debian's Blender 3.4 the OpenEXR wheel crashes the process
        return _read_scanline_exr(path)
    try:
        import OpenEXR
    except ImportError:  # Blender's own Python (the add-on ships no wheels): the numpy reader
        return _read_scanline_exr(path)

    try:
        with OpenEXR.File(str(path), separate_channels=True) as exr:
            out: dict[str, np.ndarray] = {}
            for part in exr.parts:
                for name, channel in part.channels.items():
                    out[name] = np.asarray(channel.pixels, dtype=np.float32)
            return out
    except (OSError, RuntimeError) as exc:
        raise ExrError(f"cannot read EXR {path}: {exc}") from exc


_EXR_TYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}
_EXR_LINES = {0: 1, 2: 1, 3: 16}  # compression -> scanlines per chunk: NONE, ZIPS, ZIP


def _read_scanline_exr(path: Path) -> dict[str, np.ndarray]:
    """A numpy reader for scanline EXRs, single- or multi-part, uncompressed or ZIP(S): what Blender writes with
    the capture's ``exr_codec = 'NONE'`` (3.x and 4.2 one part, 5.0 one part per pass) and what
    :func:`write_buffers_exr` writes. Used where the OpenEXR module cannot run (Debian's Blender 3.4:
    :func:`reframe_core.blender_compat.openexr_wheel_unsafe`) or is not installed (Blender's own Python: the
    add-on ships no wheels). Channels are named as the OpenEXR module names them ("Layer.Pass.C")."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ExrError(f"cannot read EXR {path}: {exc}") from exc
    try:
        magic, version = struct.unpack_from("<ii", data, 0)
        if magic != 20000630:
            raise SettingsError("not an OpenEXR file")
        if version & 0x0A00:  # tiled or deep
            raise SettingsError("only scanline files are supported here")
        multipart = bool(version & 0x1000)
        pos, headers = 8, []
        while True:  # one header per part; a multi-part file ends the list with an empty header
            header: dict[str, bytes] = {}
            while data[pos] != 0:
                name_end = data.index(b"\0", pos)
                type_end = data.index(b"\0", name_end + 1)
                size = struct.unpack_from("<i", data, type_end + 1)[0]
                header[data[pos:name_end].decode()] = data[type_end + 5:type_end + 5 + size]
                pos = type_end + 5 + size
            pos += 1
            headers.append(header)
            if not multipart or data[pos] == 0:
                break
        if multipart:
            pos += 1
        parts = []
        for header in headers:
            channels, chlist, i = [], header["channels"], 0
            while chlist[i] != 0:
                end = chlist.index(b"\0", i)
                pixel_type, _, x_sampling, y_sampling = struct.unpack_from("<iB3xii", chlist, end + 1)
                if (x_sampling, y_sampling) != (1, 1):
                    raise SettingsError("sub-sampled channels are not supported")
                channels.append((chlist[i:end].decode(), _EXR_TYPES[pixel_type]))
                i = end + 17
            x0, y0, x1, y1 = struct.unpack("<iiii", header["dataWindow"])
            compression = header["compression"][0]
            if compression not in _EXR_LINES:
                raise SettingsError(f"compression {compression} is not supported here (use NONE, ZIPS or ZIP)")
            lines = _EXR_LINES[compression]
            chunks = -(-(y1 - y0 + 1) // lines)
            offsets = struct.unpack_from(f"<{chunks}Q", data, pos)
            pos += 8 * chunks
            parts.append((channels, (x0, y0, x1, y1), lines, offsets))
        out: dict[str, np.ndarray] = {}
        for channels, (x0, y0, x1, y1), lines, offsets in parts:
            width, height = x1 - x0 + 1, y1 - y0 + 1
            row_bytes = sum(width * dtype.itemsize for _, dtype in channels)
            planes = {name: np.empty((height, width), np.float32) for name, _ in channels}
            skip = 4 if multipart else 0  # a multi-part chunk starts with its part number
            for offset in offsets:
                y, size = struct.unpack_from("<ii", data, offset + skip)
                block = data[offset + skip + 8:offset + skip + 8 + size]
                rows = min(lines, y1 + 1 - y)
                if size < rows * row_bytes:  # compressed: zlib, then undo the predictor and the byte interleave
                    raw = np.frombuffer(zlib.decompress(block), np.uint8)
                    raw = np.cumsum(np.concatenate([raw[:1], raw[1:].astype(np.int64) - 128])).astype(np.uint8)
                    half = (raw.size + 1) // 2
                    block = np.empty_like(raw)
                    block[0::2], block[1::2] = raw[:half], raw[half:]
                    block = block.tobytes()
                at = 0
                for row in range(y - y0, y - y0 + rows):
                    for name, dtype in channels:
                        planes[name][row] = np.frombuffer(block, dtype, width, at)
                        at += width * dtype.itemsize
            out.update(planes)
        return out
    except (ValueError, KeyError, IndexError, struct.error, zlib.error) as exc:
        raise ExrError(f"cannot read EXR {path}: {exc}") from exc


def _pass(channels: dict[str, np.ndarray], path: Path, layer: str, name: str, suffixes: str) -> np.ndarray | None:
    keys = [f"{layer}.{name}.{c}" for c in suffixes]
    if not all(k in channels for k in keys):
        return None
    return np.stack([channels[k] for k in keys], axis=-1)


def read_blender_exr(path: str | Path, camera: CameraData, jitter=(0.0, 0.0), view_layer: str | None = None,
                     previous_camera: CameraData | None = None, next_camera: CameraData | None = None) -> FrameBuffers:
    """Read a multilayer EXR that Blender wrote with Combined, Z, Normal, (Vector,) Diffuse Color passes.

    Handles 5.0's one-part-per-pass files and 4.2's / 3.x's single-part files alike: channels are matched by
    name. Without a Vector pass (Blender 3.x EEVEE), ``has_vector_pass`` is False and the motion is rebuilt
    from the depth and the cameras of the previous and next frames
    (:func:`reframe_core.frames.motion.rebuild_motion`: camera motion only); a motion whose neighbour camera is not
    given, or is another camera (a cut), stays zero.
    """
    path = Path(path)
    channels = _channels(path)
    layers = sorted({k.split(".")[0] for k in channels if k.count(".") >= 2})
    layer = view_layer or (layers[0] if layers else "")
    missing = []

    def need(name: str, suffixes: str) -> np.ndarray:
        found = _pass(channels, path, layer, name, suffixes)
        if found is None:
            missing.append(name)
            return np.zeros(0, np.float32)
        return found

    combined = need("Combined", "RGBA")
    depth = need("Depth", "Z")
    normal = need("Normal", "XYZ")
    albedo = need("Diffuse Color", "RGB") if _pass(channels, path, layer, "Diffuse Color", "RGB") is not None else need("DiffCol", "RGB")
    if missing:
        raise ExrError(f"{path}: view layer {layer!r} lacks the pass(es) {', '.join(missing)}; enable them "
                       f"(view_layer.use_pass_z / use_pass_normal / use_pass_diffuse_color) before rendering")
    vector = _pass(channels, path, layer, "Vector", "XYZW")
    height, width = combined.shape[:2]
    if vector is None:
        from reframe_core.frames.motion import rebuild_motion  # motion imports this module

        motion_prev, motion_next = rebuild_motion(depth[..., 0], camera, previous_camera, next_camera)
    else:
        # Blender: X,Y current->previous, Z,W = -(current->next), y up. Ours: y down, both positive-going.
        motion_prev = np.stack([vector[..., 0], -vector[..., 1]], axis=-1)
        motion_next = np.stack([-vector[..., 2], vector[..., 3]], axis=-1)
    return FrameBuffers(
        color=np.ascontiguousarray(combined[..., :3]),
        alpha=(depth[..., 0] < 0.5 * camera.clip_end).astype(np.float32),
        depth=np.ascontiguousarray(depth[..., 0]), normal=normal, albedo=albedo,
        motion_prev=np.ascontiguousarray(motion_prev, dtype=np.float32),
        motion_next=np.ascontiguousarray(motion_next, dtype=np.float32),
        camera=camera, jitter=np.asarray(jitter, np.float32), has_vector_pass=vector is not None,
    )


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the final file gets the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_buffers_exr(path: str | Path, buffers: FrameBuffers) -> None:
    """Write the buffers as one single-part EXR (float32, ZIP), atomically."""
    import OpenEXR

    channels = {}
    for attr, names in _LAYOUT.items():
        array = getattr(buffers, attr)
        array = array[..., None] if array.ndim == 2 else array
        for i, name in enumerate(names):
            channels[name] = np.ascontiguousarray(array[..., i], dtype=np.float32)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}

    def write(tmp: Path) -> None:
        try:
            with OpenEXR.File(header, channels) as exr:
                exr.write(str(tmp))
        except RuntimeError as exc:  # OpenEXR reports I/O failures as RuntimeError: give them an errno
            full = "No space left" in str(exc)
            raise OSError(errno.ENOSPC if full else errno.EIO, str(exc)) from exc

    atomic_write(Path(path), write)


def read_buffers_exr(path: str | Path, camera: CameraData, jitter=(0.0, 0.0), has_vector_pass: bool = True) -> FrameBuffers:
    """Read a file written by :func:`write_buffers_exr`."""
    path = Path(path)
    channels = _channels(path)
    arrays = {}
    for attr, names in _LAYOUT.items():
        if not all(n in channels for n in names):
            raise ExrError(f"{path} is not a ReFrame buffers file: channel(s) {', '.join(n for n in names if n not in channels)} missing")
        stacked = np.stack([channels[n] for n in names], axis=-1)
        arrays[attr] = stacked[..., 0] if len(names) == 1 else stacked
    return FrameBuffers(**arrays, camera=camera, jitter=np.asarray(jitter, np.float32), has_vector_pass=has_vector_pass)


def halton(index: int, base: int) -> float:
    """The ``index``-th (1-based) element of the Halton sequence of ``base``, in [0, 1)."""
    result, fraction = 0.0, 1.0
    while index > 0:
        fraction /= base
        result += fraction * (index % base)
        index //= base
    return result


def jitter_offset(frame_index: int, scale: float) -> tuple[float, float]:
    """Halton(2,3) sub-pixel offset in [-0.5, 0.5) for a frame; the phase count grows with the upscale
    factor as in FSR 2 (8 * scale^2), so every high-resolution pixel gets samples."""
    phases = max(8, int(math.ceil(8 * scale * scale)))
    i = frame_index % phases + 1
    return halton(i, 2) - 0.5, halton(i, 3) - 0.5
