"""Datasets of captured frames, read without Blender (``blender_addon.dataset_writer`` writes them).

Layout::

    DIR/metadata.json                 settings, scene, Blender version, per-frame camera + jitter
    DIR/scale_1/frame_0001.exr        FrameBuffers (reframe_core.frames.buffers layout)
    DIR/scale_2/frame_0001.exr        the same frame rendered at 1/2 width and height
    DIR/timings.jsonl                 render / save / read seconds per frame (not part of the data)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reframe_core.errors import MissingInputError, SettingsError
from reframe_core.frames.buffers import CameraData, FrameBuffers, read_buffers_exr

SCHEMA_VERSION = 1


def scale_dir(scale: float) -> str:
    return f"scale_{scale:g}"


def frame_file(scale: float, frame: int) -> str:
    return f"{scale_dir(scale)}/frame_{frame:04d}.exr"


@dataclass(frozen=True)
class Dataset:
    """A dataset folder opened for reading (no bpy needed by the reading side)."""

    root: Path
    metadata: dict

    @classmethod
    def open(cls, root: str | Path) -> "Dataset":
        root = Path(root)
        path = root / "metadata.json"
        if not path.exists():
            raise MissingInputError(f"{root} is not a dataset (no metadata.json); write one with reframe-blender dataset")
        return cls(root, json.loads(path.read_text()))

    @property
    def label(self) -> str:
        """Its scene and display size (``night_market 640x360``), as model cards name training data: two datasets of
        one scene at two sizes are told apart, and no path of this machine is kept."""
        settings = self.metadata.get("settings", {})
        if "scene" not in settings or len(settings.get("resolution") or ()) != 2:
            return self.root.name  # written before the settings were recorded
        width, height = settings["resolution"]
        return f"{settings['scene']} {width}x{height}"

    @property
    def scales(self) -> list[float]:
        return sorted(float(k.split("_", 1)[1]) for k in self.metadata["frames"])

    def frames(self, scale: float = 1.0) -> list[int]:
        return sorted(int(f) for f in self.metadata["frames"].get(scale_dir(scale), {}))

    def load(self, frame: int, scale: float = 1.0) -> FrameBuffers:
        entry = self.metadata["frames"][scale_dir(scale)][str(frame)]
        return read_buffers_exr(self.root / entry["file"], CameraData.from_dict(entry["camera"]),
                                jitter=entry["jitter"], has_vector_pass=entry["has_vector_pass"])


def selected_frames(data: Dataset, scale: float, frames=None) -> list[int]:
    """The dataset's frames at ``scale``, or those of them in ``frames`` (a range or list); an error naming what
    the dataset has when none is left."""
    have = data.frames(scale)
    if frames is None:
        return have
    wanted = set(frames)
    chosen = [f for f in have if f in wanted]
    if not chosen:
        span = f"{have[0]}-{have[-1]}" if have else "none"
        raise SettingsError(f"{data.root} has no frame in {min(wanted)}-{max(wanted)} at scale {scale:g} (it has {span}); "
                            "choose --frames within that range")
    return chosen


def reference_for(data: Dataset, reference_root: str | Path, frames: list[int]) -> Dataset:
    """``reference_root`` opened as the reference to score ``data``'s ``frames`` against: the same frames and view
    rendered with more samples (``dataset --scales 1 --samples N``). Why: the native render at its own sample count
    is noisy, and the error of even a perfect output against it is at least that noise, which caps what FLIP can
    show. Refused, with what to render, where it lacks a frame or shows another camera or size."""
    ref = Dataset.open(reference_root)
    have = set(ref.frames(1.0))
    missing = [f for f in frames if f not in have]
    settings = data.metadata.get("settings", {})
    if missing:
        raise SettingsError(f"reference {ref.root} lacks frames {missing[0]}..{missing[-1]} of {data.root} at scale 1; render "
                            f"them: reframe-blender dataset --scene {settings.get('scene', 'SCENE')} --frames {missing[0]}-{missing[-1]} "
                            f"--scales 1 --samples N --out {ref.root}")
    for frame in frames:
        mine = data.metadata["frames"][scale_dir(1.0)][str(frame)]["camera"]
        theirs = ref.metadata["frames"][scale_dir(1.0)][str(frame)]["camera"]
        if mine["resolution"] != theirs["resolution"] or not np.allclose(mine["world_matrix"], theirs["world_matrix"], atol=1e-4):
            raise SettingsError(f"reference {ref.root} frame {frame} is not the view of {data.root} frame {frame} (another camera "
                                f"or size: {theirs['resolution']} against {mine['resolution']}); pass a dataset of the same scene, "
                                "frames and resolution")
    return ref


def cheap_pass_for(root: str | Path, cheap_root: str | Path, frames) -> Dataset:
    """``cheap_root`` opened as FE's cheap pass (``dataset --cheap``) of ``frames`` of the dataset at ``root``;
    refused, with what to render, where it lacks one of them."""
    cheap = Dataset.open(cheap_root)
    missing = sorted(set(frames) - set(cheap.frames(1.0)))
    if missing:
        raise SettingsError(f"cheap-pass dataset {cheap_root} lacks frames {missing[0]}..{missing[-1]} of {root}; "
                            f"render them with reframe-blender dataset --cheap --frames A-B --out {cheap_root}")
    return cheap


def reference_fields(ref: Dataset | None, reference) -> dict:
    """What an evaluation report says of its reference (:func:`reference_for`): nothing without one."""
    if ref is None:
        return {}
    return {"reference": str(reference), "reference_samples": ref.metadata.get("settings", {}).get("samples")}


def runs_between_cuts(data: Dataset, scale: float, make_item, frames=None) -> list[list]:
    """``make_item(buffers, frame)`` for every frame at ``scale`` (or those in ``frames``), split into runs at
    camera cuts."""
    runs: list[list] = []
    previous = None
    for frame in selected_frames(data, scale, frames):
        buffers = data.load(frame, scale)
        if buffers.camera.hints(previous.camera if previous else None).cut or not runs:
            runs.append([])
        runs[-1].append(make_item(buffers, frame))
        previous = buffers
    return runs
