"""Per-scene calibration of the cache: the fastest refresh setting that keeps a FLIP target, stored beside the
scene so that renders (``reframe-blender render``, the add-on, farm chunks) use it without anyone tuning.

``reframe-blender calibrate`` measures the candidates on a short clip of the scene with the bench
(:func:`reframe_core.evaluation.bench.measure_sequence`), :func:`choose` picks one, and :func:`write_calibration`
stores it in ``FILE.reframe-calibration.json`` beside ``FILE.blend`` (for a library scene, in
``out/calibration/NAME.reframe-calibration.json``); :func:`read_calibration` is what renders call. Pure: no bpy.
"""
from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from reframe_core.errors import SettingsError
from reframe_core.frames.buffers import atomic_write

SCHEMA = "reframe-calibration/1"
SUFFIX = ".reframe-calibration.json"
# A frame may be at most this many times the mean target (the bench's 0.05 against 0.02).
MAX_OVER_MEAN = 2.5


def candidate_settings(workload) -> list[tuple[str, bool]]:
    """(policy spec, reproject) pairs to try: the screen policy over a grid of limits with the cached features
    reprojected, the same without reprojection (cheaper per frame; the coarser limits, where it pays), the
    paper's fixed schedules as a floor, and graded refresh on the long schedules (for tight targets: partial
    refreshes in between cost less than full ones). The coarsest settings reach where a loose target such as
    the default 0.02 binds (the FE net's cached output is far inside it at every:8)."""
    screen = [f"screen:px={px:g},holes={holes:g}" for px in (8, 24, 64, 128) for holes in (0.05, 0.15, 0.3)]
    return ([(spec, True) for spec in screen] + [(spec, False) for spec in screen[3:]]
            + [(f"every:{n}", False) for n in (2, 4, 8, 16)] + [(f"every:{n}", True) for n in (4, 8, 16)]
            + [("every:8/every:2", False), ("every:8/every:4", False), ("every:16/every:4", False)])


@dataclass(frozen=True)
class Calibration:
    """One workload's calibrated setting for one scene, with what it was measured to give."""

    workload: str
    policy: str
    reproject: bool
    target_flip: float
    speedup: float
    flip_mean: float
    flip_max: float
    hit_rate: float
    frames: list
    measured_on: str  # what was measured: scene, size, samples
    date: str = ""
    command: str = ""

    def describe(self) -> str:
        return (f"{self.policy}{' with reprojection' if self.reproject else ''}: {self.speedup:.2f}x at FLIP "
                f"{self.flip_mean:.4f} (max {self.flip_max:.4f}) vs uncached, {self.hit_rate:.0%} hits")


def calibration_path(scene: str) -> Path:
    """Where the calibration of ``scene`` (a .blend path or a library scene name) lives."""
    if scene.endswith(".blend") or "/" in scene:
        path = Path(scene)
        return path.with_name(path.stem + SUFFIX)
    return Path("out/calibration") / f"{scene}{SUFFIX}"


def choose(rows: list[dict], target_flip: float, workload: str) -> dict:
    """The fastest row (``policy``, ``reproject``, ``speedup``, ``flip_mean``, ``flip_max``, ``hit_rate``) whose
    mean FLIP vs uncached is within ``target_flip`` and no frame above ``MAX_OVER_MEAN`` times it. Ties go to
    the lower FLIP."""
    if not target_flip > 0:
        raise SettingsError(f"--target-flip must be > 0 (mean FLIP of cached vs uncached output), got {target_flip}")
    fitting = [r for r in rows if r["flip_mean"] <= target_flip and r["flip_max"] <= MAX_OVER_MEAN * target_flip]
    if not fitting:
        best = min(rows, key=lambda r: r["flip_mean"])
        raise SettingsError(f"no {workload} setting keeps mean FLIP <= {target_flip:g} (and every frame <= "
                            f"{MAX_OVER_MEAN * target_flip:g}) on this clip; the closest is {best['policy']} at "
                            f"{best['flip_mean']:.4f} (max {best['flip_max']:.4f}): raise --target-flip, or render "
                            f"this scene uncached (--policy none)")
    return max(fitting, key=lambda r: (round(r["speedup"], 2), -r["flip_mean"]))


def read_calibration(scene: str, workload: str) -> Calibration | None:
    """The stored calibration of ``workload`` for ``scene``, or None when there is none. A damaged file is an
    error that names it (a render must not silently fall back to another setting than the one calibrated)."""
    path = calibration_path(scene)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != SCHEMA:
            raise ValueError(f"schema {data.get('schema')!r}, expected {SCHEMA!r}")
        entry = data.get("workloads", {}).get(workload)
        return Calibration(**entry) if entry is not None else None
    except (OSError, ValueError, TypeError) as exc:
        raise SettingsError(f"{path} is not a readable calibration ({exc}); run reframe-blender calibrate again or "
                            f"delete it") from None


def write_calibration(scene: str, calibration: Calibration) -> Path:
    """Store ``calibration`` for ``scene``, keeping the other workloads' entries already in the file."""
    path = calibration_path(scene)
    data = {"schema": SCHEMA, "workloads": {}}
    if path.exists():
        try:
            old = json.loads(path.read_text())
            if old.get("schema") == SCHEMA:
                data["workloads"] = old.get("workloads", {})
        except ValueError:
            pass  # a damaged file is replaced
    entry = asdict(calibration)
    entry["date"] = entry["date"] or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    data["workloads"][calibration.workload] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(data, indent=1)
        atomic_write(path, lambda tmp: tmp.write_text(text))
    except OSError as exc:
        raise SettingsError(f"cannot write the calibration {path}: {exc.strerror or exc}") from None
    return path
