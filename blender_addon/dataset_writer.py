"""Writing datasets of captured frames (layout and reading: :mod:`reframe_core.frames.dataset`).

Every file is written atomically, and ``metadata.json`` after each frame, so an interrupted run leaves only
complete frames; re-running the same command skips them. The same command with the same seed writes the
same bytes (EEVEE renders deterministically here; nothing time-dependent goes into the data files).
"""
from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from pathlib import Path

import bpy

from reframe_core.frames.buffers import atomic_write, write_buffers_exr
from reframe_core.frames.dataset import SCHEMA_VERSION, frame_file, scale_dir

from scenes import get_scene
from blender_addon.capture import CaptureError, CaptureSettings, capture, check_scene, open_blend


@dataclass(frozen=True)
class DatasetSpec:
    scene: str  # a scene name from scenes.SCENES, or a .blend path
    frames: range
    scales: tuple[float, ...] = (1.0,)
    resolution: tuple[int, int] = (256, 256)
    samples: int = 16
    jitter: bool = True  # applied to scales > 1 only: the full-resolution frames are the reference
    seed: int = 0
    cheap: bool = False  # FE's cheap G-buffer pass (1 sample, shadows and raytracing off) instead of full frames
    film_filter: float | None = None  # EEVEE's film filter in rendered pixels (CaptureSettings); None: the scene's

    def settings(self) -> dict:
        settings = {"scene": self.scene, "frames": [self.frames.start, self.frames.stop - 1],
                    "scales": list(self.scales), "resolution": list(self.resolution), "samples": self.samples,
                    "jitter": self.jitter, "seed": self.seed}
        if self.cheap:  # only when set: datasets written before the option keep matching their settings
            settings["cheap"] = True
        if self.film_filter is not None:  # the same
            settings["film_filter"] = self.film_filter
        return settings


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CaptureError(f"cannot write to output folder {out}: {exc.strerror or exc}; choose a writable --out") from None


def _load_metadata(out: Path, spec: DatasetSpec) -> dict:
    path = out / "metadata.json"
    if not path.exists():
        return {"schema_version": SCHEMA_VERSION, "settings": spec.settings(), "frames": {}}
    try:
        metadata = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CaptureError(f"{path} is unreadable ({exc}); delete it to start the dataset again") from None
    if metadata.get("settings") != spec.settings():
        # Frames and scales may be added to a dataset (another quality mode's inputs beside the same targets),
        # nothing else may change: the frames of every scale must come from the same scene, samples and seed.
        old = dict(metadata.get("settings", {}))
        new = spec.settings()
        old_scales, old_frames = old.pop("scales", []), old.pop("frames", None) or new["frames"]
        new_scales, new_frames = new.pop("scales"), new.pop("frames")
        if old != new:
            raise CaptureError(f"{out} holds a dataset made with other settings ({old}); use another --out, or the same settings")
        metadata["settings"] = dict(spec.settings(), scales=sorted(set(old_scales) | set(new_scales)),
                                    frames=[min(old_frames[0], new_frames[0]), max(old_frames[1], new_frames[1])])
    return metadata


def _write_metadata(out: Path, metadata: dict) -> None:
    text = json.dumps(metadata, indent=1, sort_keys=True) + "\n"
    atomic_write(out / "metadata.json", lambda tmp: tmp.write_text(text))


def _prepare_scene(spec: DatasetSpec):
    if spec.scene.endswith(".blend") or "/" in spec.scene:
        return open_blend(spec.scene), {"blend": str(spec.scene)}
    try:
        entry = get_scene(spec.scene)
    except KeyError as exc:
        raise CaptureError(exc.args[0]) from None
    return entry.build(spec.seed), {"builder": entry.module}


def write_dataset(spec: DatasetSpec, out: str | Path, show_progress: bool = True) -> dict:
    """Render and write the dataset (resuming); returns the metadata."""
    from tqdm import tqdm

    out = Path(out)
    _check_writable(out)
    metadata = _load_metadata(out, spec)
    scene, source = _prepare_scene(spec)
    check_scene(scene, spec.frames)
    metadata.update({"scene_source": source, "blender_version": ".".join(map(str, bpy.app.version))})
    done = metadata["frames"]
    todo = [(scale, frame) for scale in spec.scales for frame in spec.frames
            if not (str(frame) in done.get(scale_dir(scale), {}) and (out / frame_file(scale, frame)).exists())]
    bar = tqdm(total=len(spec.scales) * len(spec.frames), initial=len(spec.scales) * len(spec.frames) - len(todo),
               desc=f"dataset {spec.scene}", unit="frame", disable=not show_progress)
    for scale in spec.scales:
        frames = sorted({f for s, f in todo if s == scale})
        if not frames:
            continue
        (out / scale_dir(scale)).mkdir(exist_ok=True)
        settings = CaptureSettings(resolution=spec.resolution, scale=scale, samples=spec.samples,
                                   jitter=spec.jitter and scale > 1, fast=spec.cheap, film_filter=spec.film_filter)
        # Render contiguous runs, so that each frame's motion comes from its real neighbours.
        for buffers, timings in _capture_runs(scene, frames, settings):
            frame = buffers.camera.frame
            path = out / frame_file(scale, frame)
            try:
                write_buffers_exr(path, buffers)
                done.setdefault(scale_dir(scale), {})[str(frame)] = {
                    "file": frame_file(scale, frame), "camera": buffers.camera.to_dict(),
                    "jitter": [float(v) for v in buffers.jitter], "has_vector_pass": buffers.has_vector_pass,
                    "scene_depth": buffers.scene_depth(),
                }
                _write_metadata(out, metadata)
                with open(out / "timings.jsonl", "a") as log:
                    log.write(json.dumps({"scale": scale, "frame": frame, "render_s": timings.render_s,
                                          "save_s": timings.save_s, "read_s": timings.read_s}) + "\n")
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise CaptureError(f"disk full while writing {path}: the frames written before it are complete; "
                                       "free space and re-run the same command to resume") from None
                raise CaptureError(f"cannot write {path}: {exc.strerror or exc}") from None
            bar.update(1)
    bar.close()
    return metadata


def _capture_runs(scene, frames: list[int], settings: CaptureSettings):
    run: list[int] = []
    for frame in frames + [None]:
        if run and (frame is None or frame != run[-1] + 1):
            yield from capture(scene, range(run[0], run[-1] + 1), settings)
            run = []
        if frame is not None:
            run.append(frame)
