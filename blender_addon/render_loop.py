"""Render an animation with cached SS or FE (or natively), frame by frame, the way Blender's own animation render
would write it. One loop for every front end: the ``render`` command, ``blender -b -P`` (:mod:`blender_addon.
render_in_blender`), farm chunks and the add-on's operators.

Per frame: the session says what to render (:meth:`~reframe_core.runtime.session.Session.next_render`: SS the
low-res jittered frame, FE a full render every k-th frame, with its cheap G-buffer pass for the relighting network,
and the cheap pass alone between); the frame is
rendered and captured (:mod:`blender_addon.capture`, temporary EXR in RAM), stepped through the session, and
written at the scene's output size through Blender's colour management (:mod:`blender_addon.frame_output`).
``native`` renders with the scene's own settings and writes the Render Result, for comparison.

Resume and chunks: a frame whose file exists and was written by this loop with the same settings (a line in
``.reframe-frames/`` beside the frames, :mod:`reframe_core.frames.records`) is skipped. Before the first frame to render, ``warmup`` frames
(never before the start of the shot) are rendered and stepped but not written, so the network's history and
its cache are warm at the first written frame as in an uninterrupted run.

Front ends step it: :class:`RenderRun` renders one frame per :meth:`~RenderRun.step` (the add-on's modal operator
calls it from a timer); :func:`render_animation` runs it to the end.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import bpy

from reframe_core.errors import SettingsError
from reframe_core.frames import records
from reframe_core.frames.buffers import atomic_write
from reframe_core.runtime.session import DEFAULT_WARMUP

from blender_addon.capture import (CaptureError, CaptureSettings, camera_data, capture_settings, check_scene,
                                   render_buffers, scratch_file)
from blender_addon.frame_output import (OutputError, check_output_folder, output_path, output_size, write_frame,
                                        write_render_result)

MODES = {"ss": "ss", "fe": "fe", "native": None}  # render mode -> workload (reframe_core.workloads)
EEVEE_ENGINES = ("BLENDER_EEVEE", "BLENDER_EEVEE_NEXT")
ACTIVE_RUNS = 0  # RenderRuns open in this process: their renders are ReFrame's own (the add-on's handler skips them)  # beside the frames: which settings wrote which frame (one JSON line each)


@dataclass(frozen=True)
class RenderJob:
    """What to render and how. ``frames`` None: the scene's range; ``output``: a Blender output path (``#``
    for the frame number; None: the scene's own); ``report``: the report JSON (None: beside the frames)."""

    mode: str = "ss"
    scale: float = 2.0
    policy: str | None = "motion"
    k: int = 2
    frames: range | None = None
    warmup: int = DEFAULT_WARMUP
    output: str | None = None
    overwrite: bool = False
    report: str | None = None
    device: str = "cpu"
    precision: str = "mixed"  # float32, the SS resolve in bf16 where the processor has bf16 arithmetic (runtime.placement)
    weights: str | None = None
    runtime: str = "inprocess"  # where the network runs: "inprocess" or "server" (bridge.connect)
    server_python: str | None = None  # the Python that starts a server (default: this one)
    server_address: str | None = None  # a running server's socket (default: the per-user one)
    fallback: bool = False  # frames the runtime cannot produce show the baseline (flagged) instead of stopping
    timeout: float | None = None  # seconds one runtime call may take (default: the bridge's)
    reproject: bool = False  # cache hits move the cached features to the current camera (SessionSettings.reproject)

    def __post_init__(self):
        if self.mode not in MODES:
            raise SettingsError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        from bridge.runtime import TRANSPORTS

        if self.runtime not in TRANSPORTS:
            raise SettingsError(f"unknown runtime {self.runtime!r}: use one of {', '.join(TRANSPORTS)}")
        if self.warmup < 0:
            raise SettingsError(f"--warmup must be 0 or more frames, got {self.warmup}")

    @property
    def workload(self) -> str | None:
        return MODES[self.mode]

    def settings_key(self, scene) -> dict:
        """What decides a written frame's pixels: a frame written with other values is not a finished one."""
        r = scene.render
        key = {"mode": self.mode, "size": list(output_size(scene)), "samples": _samples(scene),
               "format": r.image_settings.file_format, "view": scene.view_settings.view_transform}
        if self.workload is not None:
            key.update(scale=self.scale, k=self.k, policy=self.policy, weights=_digest(self.weights))
            if self.reproject and self.policy is not None:  # only then does it change pixels (older records lack it)
                key["reproject"] = True
        return key


@dataclass
class FrameRecord:
    """One frame of the loop, as the report lists it."""

    frame: int
    written: str | None  # the file, or None for a warm-up frame
    rendered: str  # what EEVEE rendered
    decision: str  # "refresh", "hit", "uncached", "rendered" (shown as rendered), "fallback", "native"
    reason: str
    cut: bool
    render_s: float
    capture_s: float | None = None
    network_ms: float | None = None
    write_s: float | None = None
    fallback: bool = False


@dataclass
class RenderReport:
    job: dict
    scene: dict
    frames: list[FrameRecord] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    status: str = "running"
    session: dict | None = None
    wall_s: float = 0.0
    machine: dict | None = None  # where the network ran (the runtime's machine), plus Blender

    def totals(self) -> dict:
        written = [f for f in self.frames if f.written]
        network = [f for f in self.frames if f.network_ms is not None]
        decisions = [f.decision for f in network]
        hits = decisions.count("hit")

        def total(name, rows):
            values = [getattr(f, name) for f in rows if getattr(f, name) is not None]
            return float(sum(values))

        return {"written": len(written), "skipped": len(self.skipped),
                "warmup": len(self.frames) - len(written),
                "render_s": total("render_s", self.frames), "capture_s": total("capture_s", self.frames),
                "network_s": total("network_ms", self.frames) / 1e3, "write_s": total("write_s", self.frames),
                "network_frames": len(network), "hit_rate": hits / len(network) if network else None,
                "fallbacks": sum(f.fallback for f in self.frames),
                "fallback_frames": [f.frame for f in self.frames if f.fallback],
                "seconds_per_written_frame": self.wall_s / len(written) if written else None}

    def as_dict(self) -> dict:
        return {"status": self.status, "job": self.job, "scene": self.scene, "totals": self.totals(),
                "session": self.session, "machine": {**(self.machine or {}), "blender": bpy.app.version_string},
                "skipped": self.skipped,
                "frames": [asdict(f) for f in self.frames], "wall_s": self.wall_s}


def _digest(path: str | None) -> str | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def _samples(scene) -> int:
    return int(scene.eevee.taa_render_samples)


# --- checks -----------------------------------------------------------------------------------------------

def check_job(scene, job: RenderJob, frames: range) -> None:
    """Everything that would make the loop fail later, checked before the first render."""
    if job.workload is None:
        check_scene(scene, frames, for_capture=False)
        return
    engine = scene.render.engine
    if engine not in EEVEE_ENGINES:
        name = {"CYCLES": "Cycles", "BLENDER_WORKBENCH": "Workbench"}.get(engine, engine)
        raise CaptureError(f"scene {scene.name!r} renders with {name}; --mode {job.mode} needs EEVEE, whose passes "
                           f"the network reads and whose look it was trained on: switch the Render Engine to EEVEE "
                           f"(Render Properties), or render it with --mode native")
    check_scene(scene, frames)
    r = scene.render
    if r.use_border and r.use_crop_to_border:
        raise CaptureError(f"scene {scene.name!r} crops to a render region, which --mode {job.mode} cannot render: "
                           "turn off Render Region (Output Properties > Format) or use --mode native")


# --- what to render -----------------------------------------------------------------------------------------

def _camera_name(scene, frame: int) -> str:
    scene.frame_set(frame)  # switches the active camera at timeline markers, as the render does
    return scene.camera.name if scene.camera else ""


def shot_start(scene, frame: int, limit: int) -> int:
    """The first frame of ``frame``'s shot, looking back at most ``limit`` frames: a warm-up never crosses a
    camera switch (the cut would reset what it warmed)."""
    name = _camera_name(scene, frame)
    start = frame
    while start > scene.frame_start and frame - start < limit and _camera_name(scene, start - 1) == name:
        start -= 1
    return start


def shots(scene, frames: range) -> list[tuple[int, int]]:
    """(first, last) frame runs of ``frames`` seen by one camera: a farm splits a range at these cuts."""
    runs: list[list[int]] = []
    previous = None
    for frame in frames:
        name = _camera_name(scene, frame)
        if runs and name == previous:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
        previous = name
    return [(a, b) for a, b in runs]


def plan_segments(scene, job: RenderJob, todo: list[int]) -> list[tuple[int, int]]:
    """Contiguous (first, last) frame runs to step through: each missing frame with its warm-up before it;
    runs closer than a warm-up are merged (stepping the frames between costs no more than warming up again)."""
    segments: list[list[int]] = []
    period = 1
    if job.workload is not None:
        from reframe_core.workloads import workload_facts  # torch-free (the workload's module is not)

        period = workload_facts(job.workload).period(job.k)
    for frame in todo:
        start = frame
        if job.workload is not None and job.warmup:
            shot = shot_start(scene, frame, job.warmup + period)
            start = max(shot, frame - job.warmup)
            # FE renders in full every k-th frame from the start of the shot: a chunk must keep that pattern.
            start = shot + (start - shot) // period * period
        if segments and start <= segments[-1][1] + 1:
            segments[-1][1] = frame
        else:
            segments.append([start, frame])
    return [(a, b) for a, b in segments]


# --- finished frames --------------------------------------------------------------------------------------

def _finishing(path: Path, frame: int, key: dict):
    """What runs once a frame's new file is complete, just before it moves into place: any older file is removed,
    then the frame is recorded. A kill between the steps leaves a record without a file (rendered again on
    resume), never an old file under a new record, nor a new file without one."""
    def finish():
        path.unlink(missing_ok=True)
        records.append(path, frame, key)
    return finish


def finished_frames(scene, job: RenderJob, frames: range) -> list[int]:
    """Frames whose file exists and was written by this loop with the same settings; an existing file written
    otherwise (by Blender, or with another mode) stops the job unless ``overwrite``."""
    if job.overwrite:
        return []
    key = job.settings_key(scene)
    done, recorded = [], {}
    for frame in frames:
        path = output_path(scene, frame)
        if not path.exists():
            continue
        if path.parent not in recorded:
            recorded[path.parent] = records.latest(path.parent)
        settings = recorded[path.parent].get(path.name)
        if settings == key:
            done.append(frame)
            continue
        how = "by something else (Blender's own render, another tool)" if settings is None else \
            f"with other settings ({', '.join(f'{k}={v}' for k, v in settings.items() if key.get(k) != v)})"
        raise OutputError(f"{path} already exists, written {how}; pass --overwrite to render it again, or choose "
                          f"another output path with --out", path)
    return done


# --- the loop ---------------------------------------------------------------------------------------------

class _OutputPath:
    """``scene.render.filepath`` set to the job's pattern while the job runs."""

    def __init__(self, scene, pattern: str | None):
        self.scene, self.pattern, self.saved = scene, pattern, scene.render.filepath

    def __enter__(self):
        if self.pattern is not None:
            self.scene.render.filepath = str(Path(self.pattern).absolute()) + ("/" if self.pattern.endswith("/") else "")
        return self

    def __exit__(self, *exc):
        self.scene.render.filepath = self.saved


def open_runtime(job: RenderJob):
    """The job's runtime (:func:`bridge.connect`): in this process, or a server (started here if none runs)."""
    from bridge.runtime import connect

    if job.runtime == "inprocess":
        return connect("inprocess", fallback=job.fallback)
    options = {"python": job.server_python, "address": job.server_address}
    if job.timeout is not None:
        options["timeout"] = job.timeout
    return connect("server", fallback=job.fallback, **{k: v for k, v in options.items() if v is not None})


def default_report(scene, job: RenderJob, frames: range) -> Path:
    return output_path(scene, frames.start).parent / f"reframe-{job.mode}-{frames.start:04d}-{frames.stop - 1:04d}.json"


class RenderRun:
    """One render job stepped frame by frame, so a front end controls the pace: the command line runs it to the
    end (:func:`render_animation`), the add-on's modal operator steps one frame per timer tick (the UI stays
    live between frames) and cancels between frames. Every frame written is complete (atomic writes), so a
    cancelled or killed run leaves only finished frames, and the same job run again resumes.

        run = RenderRun(scene, job)      # checks everything, opens the runtime (nothing rendered yet)
        while run.step(): ...            # one frame stepped (warm-up frames included)
        report = run.finish()            # "complete" when every frame was stepped, else "cancelled"

    ``on_frame(frame, buffers, result)``, if given, is called for every frame stepped (warm-up included) with
    the captured :class:`FrameBuffers` and the session's :class:`FrameResult` (both None in native mode)."""

    def __init__(self, scene, job: RenderJob, on_frame=None):
        self.scene, self.job, self.on_frame = scene, job, on_frame
        self.frames = job.frames or range(scene.frame_start, scene.frame_end + 1)
        if len(self.frames) == 0:
            raise SettingsError("the frame range is empty: use --frames A-B with A <= B")
        self.original_frame = scene.frame_current
        self.output = _OutputPath(scene, job.output).__enter__()
        self.session = self.runtime = None
        self.finished_report: dict | None = None
        global ACTIVE_RUNS
        ACTIVE_RUNS += 1
        self._counted = True
        try:
            self._prepare()
        except BaseException:
            self._release(failed=True)
            raise

    def _prepare(self) -> None:
        scene, job, frames = self.scene, self.job, self.frames
        check_job(scene, job, frames)
        check_output_folder(scene, frames.start)
        self.report_path = Path(job.report) if job.report else default_report(scene, job, frames)
        done = finished_frames(scene, job, frames)
        finished = set(done)
        todo = [f for f in frames if f not in finished]
        self.wanted = set(todo)
        self.width, self.height = output_size(scene)
        self.key = job.settings_key(scene)
        if job.workload is not None and todo:
            self.runtime = open_runtime(job)
            try:
                self.session = self.runtime.open_session(
                    job.workload, display_size=(self.height, self.width), scale=job.scale, policy=job.policy, k=job.k,
                    device=job.device, precision=job.precision, weights=job.weights,
                    # only when on: a server started before this setting existed refuses fields it does not know
                    **({"reproject": True} if job.reproject else {}))
            except BaseException:
                self.runtime.close()
                raise
        self.report = RenderReport(job={**{k: v for k, v in asdict(job).items() if k != "frames"},
                                        "frames": [frames.start, frames.stop - 1]},
                                   scene={"name": scene.name, "file": bpy.data.filepath or None,
                                          "output": scene.render.filepath, "size": [self.width, self.height],
                                          "samples": _samples(scene), "engine": scene.render.engine,
                                          "format": scene.render.image_settings.file_format,
                                          "view_transform": scene.view_settings.view_transform,
                                          "frame_range": [scene.frame_start, scene.frame_end]},
                                   skipped=done)
        # The frames to step, in order, each with whether it is written and whether a segment starts there.
        self.plan: list[tuple[int, bool, bool]] = []
        for first, last in plan_segments(scene, job, todo):
            self.plan += [(f, f in self.wanted, f == first) for f in range(first, last + 1)]
        self.position = 0
        self.previous = None
        self.scratch = scratch_file()
        self.elapsed = 0.0

    @property
    def total(self) -> int:
        """Frames of the range (finished ones included), for progress."""
        return len(self.frames)

    @property
    def done(self) -> int:
        """Frames of the range finished so far (skipped + written)."""
        return len(self.report.skipped) + sum(1 for f in self.report.frames if f.written)

    @property
    def remaining(self) -> int:
        return len(self.plan) - self.position

    def step(self) -> FrameRecord | None:
        """Step the next frame (render, capture, network, write); None when every frame is done."""
        if self.position >= len(self.plan):
            return None
        frame, write, segment_start = self.plan[self.position]
        start = time.perf_counter()
        try:
            if segment_start:
                if self.session is not None:
                    self.session.reset()
                self.previous = None
            if self.job.workload is None:
                record = _native_frame(self.scene, frame, self.key if write else None)
            else:
                record, self.previous = _network_frame(self.scene, frame, self.session, self.scratch, self.previous,
                                                       self.width, self.height, self.key if write else None,
                                                       self.on_frame)
        finally:
            self.elapsed += time.perf_counter() - start
        self.report.frames.append(record)
        self.position += 1
        return record

    def _release(self, failed: bool = False) -> None:
        """Everything the run holds, given back whatever fails on the way: the runtime, the scratch file, the
        scene's frame and output path, the count of open runs."""
        global ACTIVE_RUNS
        try:
            scratch = getattr(self, "scratch", None)
            if scratch is not None:
                scratch.unlink(missing_ok=True)
            try:
                if self.session is not None:
                    self.session.close()
            finally:
                if self.runtime is not None:
                    self.runtime.close()
        finally:
            if self._counted:
                self._counted = False
                ACTIVE_RUNS -= 1
            with contextlib.suppress(Exception):  # the scene may be gone (file loaded, undo)
                self.scene.frame_set(self.original_frame)
            with contextlib.suppress(Exception):
                self.output.__exit__(None, None, None)

    def finish(self, status: str | None = None) -> dict:
        """Close the runtime, restore the scene and write the report (also returned). ``status`` by default:
        "complete" when every frame was stepped, else "cancelled". Safe to call twice."""
        if self.finished_report is not None:
            return self.finished_report
        report = self.report
        report.status = status or ("complete" if self.position >= len(self.plan) else "cancelled")
        report.wall_s = self.elapsed
        if self.session is not None:
            with contextlib.suppress(Exception):  # a dead runtime must not hide the frames' report
                report.session, report.machine = self.session.stats(), self.runtime.machine()
        else:  # native, or nothing left to render: the machine that rendered
            report.machine = {"platform": platform.platform(), "python": platform.python_version(),
                              "cpu_count": os.cpu_count()}
        data = report.as_dict()
        data["report"] = str(self.report_path)
        self.finished_report = data
        try:
            self._release()
        finally:
            with contextlib.suppress(OSError):  # a full disk must not hide the error that stopped the job
                self.report_path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(self.report_path,
                             lambda tmp: tmp.write_text(json.dumps(data, indent=1, default=str) + "\n"))
        return data


def describe_job(scene, job: RenderJob) -> dict:
    """What ``job`` would do, checked as a render checks it (the file, the scene, the output folder, files in
    the way) but with nothing rendered: a farm's plan and its check of each node."""
    frames = job.frames or range(scene.frame_start, scene.frame_end + 1)
    if len(frames) == 0:
        raise SettingsError("the frame range is empty: use --frames A-B with A <= B")
    with _OutputPath(scene, job.output):
        check_job(scene, job, frames)
        check_output_folder(scene, frames.start)
        done = finished_frames(scene, job, frames)
        first = output_path(scene, frames.start)
        return {"scene": scene.name, "file": bpy.data.filepath or None, "frames": [frames.start, frames.stop - 1],
                "shots": shots(scene, frames), "output": scene.render.filepath, "first_file": str(first),
                "folder": str(first.parent), "finished": done, "size": list(output_size(scene)),
                "blender": bpy.app.version_string}


def render_animation(scene, job: RenderJob, show_progress: bool = True, on_frame=None) -> dict:
    """Render ``job.frames`` of ``scene`` to the end (see the module docstring and :class:`RenderRun`); returns
    the report (also written as JSON). Each written frame prints Blender's ``Saved: '...'`` line, which farm
    managers (Flamenco, Deadline) and :mod:`reframe_core.farm` follow for progress."""
    run = RenderRun(scene, job, on_frame)
    bar = None
    status = None
    try:
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(total=run.total, initial=run.done, unit="frame", desc=f"render {job.mode}")
        while (record := run.step()) is not None:
            if record.written:
                _say(bar, saved_lines(record))
            if bar is not None:
                if record.written:
                    bar.update(1)
                bar.set_postfix_str(f"frame {record.frame}{'' if record.written else ' (warm-up)'}: {record.decision}")
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as exc:
        status = f"failed: {exc}"
        raise
    finally:
        if bar is not None:
            bar.close()
        report = run.finish(status)
    return report


def saved_lines(record: FrameRecord) -> str:
    """Blender's own two lines for a written frame (``Saved: '...'``, `` Time: ...``): what farm managers parse."""
    seconds = record.render_s + (record.capture_s or 0) + (record.network_ms or 0) / 1e3 + (record.write_s or 0)
    return f"Saved: '{record.written}'\n Time: {_clock(seconds)} (Saving: {_clock(record.write_s or 0)})"


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{seconds % 60:05.2f}"  # Blender's "MM:SS.ss"


def _say(bar, text: str) -> None:
    if bar is not None:
        bar.write(text)  # above the bar, which stays at the bottom
    else:
        print(text, flush=True)


def _native_frame(scene, frame: int, key: dict | None) -> FrameRecord:
    scene.frame_set(frame)
    start = time.perf_counter()
    bpy.ops.render.render()
    render_s = time.perf_counter() - start
    path = output_path(scene, frame)
    start = time.perf_counter()
    write_render_result(scene, path, _finishing(path, frame, key))
    return FrameRecord(frame, str(path), "full render (scene settings)", "native", "native render", False,
                       render_s, write_s=time.perf_counter() - start)


def _network_frame(scene, frame, session, scratch, previous, width, height, key, on_frame):
    """Render, capture, step and (when ``key``) write one frame; returns (record, its buffers)."""
    scene.frame_set(frame)  # the frame's active camera (markers) and its matrices
    # Only the cut matters for what to render (FE renders in full at cuts): hints without depth suffice here.
    cam = camera_data(scene, width, height, (0.0, 0.0))
    pre = cam.hints(previous.camera if previous is not None else None)
    request = session.next_render(pre)
    settings = CaptureSettings(resolution=(width, height), scale=request.scale, samples=_samples(scene),
                               jitter=request.jitter, fast=request.cheap)
    with capture_settings(scene, settings):
        buffers, timings = render_buffers(scene, frame, settings, scratch,
                                          previous.camera if previous is not None else None)
    if request.cheap_too:  # a relighting FE network also takes this full frame's cheap pass
        cheap = replace(settings, jitter=False, fast=True)
        with capture_settings(scene, cheap):
            cheap_buffers, cheap_timings = render_buffers(scene, frame, cheap, scratch,
                                                          previous.camera if previous is not None else None)
        buffers = replace(buffers, cheap_color=cheap_buffers.color)
        timings = replace(timings, render_s=timings.render_s + cheap_timings.render_s,
                          save_s=timings.save_s + cheap_timings.save_s, read_s=timings.read_s + cheap_timings.read_s)
    hints = buffers.hints(previous)
    result = session.step(buffers, hints)
    if on_frame is not None:
        on_frame(frame, buffers, result)
    decision = ("fallback" if result.fallback and not result.network_ran else
                "rendered" if not result.network_ran else
                "uncached" if result.refreshed is None else "refresh" if result.refreshed else "hit")
    record = FrameRecord(frame, None, request.describe(), decision, result.reason, hints.cut, timings.render_s,
                         capture_s=timings.save_s + timings.read_s, network_ms=result.network_ms,
                         fallback=result.fallback)
    if key is not None:
        path = output_path(scene, frame)
        start = time.perf_counter()
        # Opaque: write_frame adds alpha 1 to an RGB image. The record goes in before the file moves into place.
        write_frame(scene, result.image, path, _finishing(path, frame, key))
        record.written, record.write_s = str(path), time.perf_counter() - start
    return record, buffers
