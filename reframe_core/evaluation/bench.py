"""Speed vs quality of layer caching, per workload, scene and policy, measured on the same frames.

Two halves, kept apart so that any frame source can be measured the same way:

* a frame source: :class:`FrameSequence` (the workload's per-frame inputs and the native renders);
  :func:`dataset_sequence` reads one from a captured dataset, a live render can build one too;
* the measurement: :func:`measure_sequence` runs the uncached network and one cached copy per policy
  over the sequence, interleaved frame by frame (the order rotates every frame, so no runner always goes
  first), after a warm-up, and reports time, hit rate, FLOPs removed, policy overhead and quality.

Speed figures are per frame that runs the network (every frame for SS, the extrapolated ones for FE):

* ``time_ms``: the network call, including the policy's decision for cached runs;
* ``speedup``: uncached median / cached per-frame time, where the cached time is the mix of the median
  refresh frame and the median hit frame (and the median partial refresh, for graded policies) in the
  proportion the policy chose them. Per-frame times of a
  cached run are bimodal: a plain median reports the hit time alone once more than half the frames hit.
  ``speedup_median`` (plain medians) and ``speedup_total`` (summed times) are reported beside it;
* ``speedup_step``: the same for the whole workload step (warping, input building, network);
* ``speedup_ceiling``: the policy's speedup had it refreshed only on the frames every policy refreshed (first
  frames, camera cuts), from its own refresh and hit medians: what a better refresh decision could add to it on
  that sequence (:func:`refresh_ceiling`); the summary prints it for the paper's ``delta``, and the most
  that ceiling could lead ``delta`` by had the hit path any other cost (:func:`lead_at_any_hit_cost`).

Quality: FLIP (LDR, after :func:`metrics.tonemap_ldr`) of the cached output against the uncached output
(mean, p95, max per frame), and FLIP and PSNR of both against the native render.
"""
from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from reframe_core.frames.buffers import FrameBuffers, atomic_write
from reframe_core.caching.cache import cache_model
from reframe_core.frames.dataset import Dataset, cheap_pass_for
from reframe_core.evaluation.metrics import flip, psnr, tonemap_ldr
from reframe_core.runtime.pages import huge_pages_state
from reframe_core.runtime.placement import Placement
from reframe_core.errors import SettingsError
from reframe_core.policies import parse_policy
from reframe_core.workloads import Workload

SCHEMA = "reframe-bench/1"



def default_policies(workload: Workload) -> list[str]:
    """A threshold sweep of every policy family. The paper's policies (reframe_core/README.md, "The method")
    are always among them as peers: every:N (DeepCache's schedule) and delta at the reference code's threshold
    for the kind of network (``workload.paper_delta``: FBSR 0.25 for SS, ExtraNet 0.20 for FE)."""
    # Each family reaches settings coarse enough that the quality budget (BUDGET_MEAN) can bind: the cached output
    # of the FE net stays far inside it even at every:8, so a sweep that stopped there would hide its ceiling.
    deltas = sorted({0.05, 0.1, workload.paper_delta, 0.4, 0.8})
    screen = ["screen:px=8,holes=0.05", "screen:px=24,holes=0.15", "screen:px=64,holes=0.3", "screen:px=128,holes=0.3"]
    return (["always", "every:2", "every:3", "every:4", "every:8", "every:16"] + [f"delta:{d:g}" for d in deltas]
            + ["motion", "motion:trans=0.2,rot=8"] + screen + [s + REPROJECT for s in screen]
            + ["every:4" + REPROJECT, "every:8" + REPROJECT] + GRADED)
# Graded refresh (FULL/PARTIAL): a full refresh as rarely as the fastest single-grade entries, partial ones between.
GRADED = ["every:8/every:2", "every:8/every:4", "every:16/every:4", "screen:px=64,holes=0.3/screen:px=16,holes=0.1"]
# The product's target (issue 5): mean speedup >= 2x at mean FLIP <= 0.02 vs uncached, no frame above 0.05.
TARGET = {"speedup": 2.0, "flip_mean": 0.02, "flip_max": 0.05}


REPROJECT = "@reproject"  # a bench entry's suffix: that cache moves its features to the current camera on hits


def bench_entry(entry: str) -> tuple[str, bool]:
    """``screen:px=24@reproject`` -> (``screen:px=24``, True); the spec is checked."""
    spec, at, flag = entry.partition("@")
    if at and "@" + flag != REPROJECT:
        raise SettingsError(f"bad bench entry {entry!r}: a policy spec, optionally followed by {REPROJECT}")
    parse_policy(spec)
    return spec, bool(at)


def policy_family(entry: str) -> str:
    """``motion:trans=0.1,rot=4+max-age:8`` -> ``motion+max-age``: the curve a spec belongs to (with
    ``@reproject`` kept: reprojected caches are their own curve; graded ``A/B`` keeps both grades' families)."""
    spec, at, _ = entry.partition("@")
    return "/".join("+".join(member.split(":", 1)[0] for member in grade.split("+"))
                    for grade in spec.split("/")) + (REPROJECT if at else "")


def is_paper_peer(spec: str, workload: Workload) -> bool:
    if "+" in spec or "@" in spec or "/" in spec:  # compositions, reprojection and graded refresh are ours
        return False
    name, _, arg = spec.partition(":")
    return name == "every" or (name == "delta" and bool(arg) and float(arg.split(",")[0]) == workload.paper_delta)


# --- frame sources --------------------------------------------------------------------------------------

@dataclass
class FrameSequence:
    """What a workload consumes frame by frame, and the native render of each frame.

    ``inputs``: SS: the low-res jittered frames; FE: the full-res frames (their colour is used only on
    the frames the workload renders in full). ``truth``: (H, W, 3) native renders at display resolution.
    ``cheap``: FE: each frame's cheap pass (``dataset --cheap``), or None. A relighting FE network needs it: with it
    an extrapolated frame is that cheap pass and a rendered one carries its colour (:meth:`given`), as in Blender.
    """

    name: str
    frames: list[int]
    inputs: list[FrameBuffers]
    truth: list[np.ndarray]
    source: str = ""
    cheap: list[FrameBuffers] | None = None

    def given(self, index: int, runner, hints) -> FrameBuffers:
        """What ``runner`` is given for frame ``index``: the input, or with cheap passes what Blender renders."""
        if self.cheap is None:
            return self.inputs[index]
        if getattr(runner, "is_full_frame", lambda h: True)(hints):
            return replace(self.inputs[index], cheap_color=self.cheap[index].color)
        return self.cheap[index]

    def __post_init__(self):
        if not self.inputs:
            raise SettingsError(f"sequence {self.name!r} has no frames")
        if not (len(self.frames) == len(self.inputs) == len(self.truth) == len(self.cheap or self.inputs)):
            raise SettingsError(f"sequence {self.name!r}: {len(self.frames)} frames, {len(self.inputs)} inputs, "
                             f"{len(self.truth)} native renders"
                             f"{f', {len(self.cheap)} cheap passes' if self.cheap is not None else ''}; they must match")

    @property
    def display_size(self) -> tuple[int, int]:
        return tuple(self.truth[0].shape[:2])


def dataset_sequence(root: str | Path, workload: Workload, scale: float = 2.0, frames: list[int] | None = None,
                     cheap_root: str | Path | None = None) -> FrameSequence:
    """Read a sequence from a dataset folder written by ``reframe-blender dataset`` (and FE: the cheap passes of the
    same frames from ``cheap_root``, written with ``dataset --cheap``)."""
    data = Dataset.open(root)
    input_scale = workload.input_scale(scale)
    have = set(data.frames(1.0)) & set(data.frames(input_scale))
    wanted = sorted(have) if frames is None else list(frames)
    missing = [f for f in wanted if f not in have]
    if missing or not wanted:
        raise SettingsError(f"{root} lacks frames {missing or wanted} at scales 1 and {input_scale:g}; capture them with "
                         f"reframe-blender dataset --scales 1,{input_scale:g} --out {root}")
    inputs = [data.load(f, input_scale) for f in wanted]
    truth = inputs if input_scale == 1.0 else [data.load(f, 1.0) for f in wanted]
    cheap = None
    if cheap_root is not None:
        cheap_data = cheap_pass_for(root, cheap_root, wanted)
        cheap = [cheap_data.load(f, 1.0) for f in wanted]
    return FrameSequence(Path(root).name, wanted, inputs, [t.color for t in truth], source=str(root), cheap=cheap)


class _Timed:
    """Wraps a model (or CachedModel) and records the wall time of each call, synchronising CUDA."""

    def __init__(self, model, placement: Placement):
        self.__dict__.update(_model=model, _placement=placement, times=[])

    def __getattr__(self, name):  # plan, decisions, reset... of the wrapped model
        return getattr(self._model, name)

    def __call__(self, *args, **kwargs):
        self._placement.synchronize()
        start = time.perf_counter()
        out = self._model(*args, **kwargs)
        self._placement.synchronize()
        self.times.append((time.perf_counter() - start) * 1e3)
        return out


# --- measuring --------------------------------------------------------------------------------------------

def _spread(values: list[float]) -> dict:
    if not values:
        return {"median": None, "p10": None, "p90": None, "mean": None, "n": 0}
    return {"median": statistics.median(values), "p10": float(np.percentile(values, 10)),
            "p90": float(np.percentile(values, 90)), "mean": float(np.mean(values)), "n": len(values)}


@dataclass
class _Run:
    """One runner (uncached, or cached with a policy) and what it recorded frame by frame."""

    label: str
    timed: _Timed
    runner: object
    net_ms: list = field(default_factory=list)
    step_ms: list = field(default_factory=list)
    grades: list = field(default_factory=list)  # "full", "partial" or "hit" per network frame
    reasons: list = field(default_factory=list)
    frames: list = field(default_factory=list)
    flip_uncached: list = field(default_factory=list)
    flip_truth: list = field(default_factory=list)
    psnr_truth: list = field(default_factory=list)
    worst: list = field(default_factory=list)  # (flip, frame, cached image, uncached image, error map)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")


def _save_error_map(path: Path, uncached: np.ndarray, cached: np.ndarray, error: np.ndarray) -> None:
    import matplotlib
    from PIL import Image

    magma = matplotlib.colormaps["magma"](np.clip(error, 0, 1))[..., :3]
    strip = np.concatenate([tonemap_ldr(uncached), tonemap_ldr(cached), magma], axis=1)
    data = (np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Image.fromarray(data).save(tmp, format="PNG"))


def measure_sequence(workload: Workload, seq: FrameSequence, model, policies: list[str],
                     placement: Placement | None = None, cut: str = "auto", warmup: int = 3, worst: int = 2,
                     maps_dir: str | Path | None = None, compile_model: bool = False, repeats: int = 1,
                     progress=None, on_images=None) -> dict:
    """Measure ``model`` uncached and cached with each policy over ``seq`` (see the module docstring).

    ``policies``: policy specs, each optionally followed by ``@reproject`` (:func:`bench_entry`).
    ``repeats``: passes over the sequence; each adds one timing sample per frame and runner.
    ``on_images(frame, {label: image})``: called on the first pass for each frame the network ran on
    (labels: ``uncached`` and the policy specs), for callers that show the pictures.
    ``model`` must already sit on ``placement`` (``placement.model(model)``). Returns a JSON-ready dict.
    """
    placement = placement or Placement()
    entries = [bench_entry(entry) for entry in policies]  # every spec is checked before any work
    example = placement.inputs(workload.example_inputs(model, seq.display_size, seq.inputs[0]))
    uncached_model = torch.compile(model) if compile_model else model
    runs = [_Run("uncached", _Timed(uncached_model, placement), None)]
    first = None
    for entry, (spec, reproject) in zip(policies, entries):
        # One trace of the network for every policy: the cut and passes are the same, only the policy differs.
        cached = (first.with_policy(spec, reproject=reproject) if first is not None
                  else cache_model(model, example, cut=cut, policy=spec, reproject=reproject))
        if compile_model and first is None:
            cached.compile()  # the twins share these compiled passes
        first = first or cached
        runs.append(_Run(entry, _Timed(cached, placement), None))
    for run in runs:
        run.runner = workload.runner(run.timed, seq.display_size, placement)

    # Warm-up: a few frames through every runner, and a refresh and a hit on every cache (some policies
    # never hit in the first frames), so that allocators, kernels and compiled graphs are ready.
    previous = None
    for index, frame in enumerate(seq.inputs[:max(warmup, 1)]):
        hints = frame.hints(previous)
        for run in runs:
            run.runner.step(seq.given(index, run.runner, hints), hints)
        previous = frame
    with torch.inference_mode():
        for run in runs[1:]:
            grades = (True, False, "partial", False, True, False) if run.timed._model.graded is not None else (True, False, True, False)
            for refresh in grades:
                run.timed._model(*example, refresh=refresh)
    for run in runs:
        run.runner.reset()
        run.timed.times.clear()
        if run.label != "uncached":
            run.timed._model.clear_stats()

    for repeat in range(repeats):
        # Later repeats only add timing samples: the runs are deterministic, their images and decisions
        # are those of the first pass.
        first = repeat == 0
        if not first:
            for run in runs:
                run.runner.reset()
        previous = None
        for t, (frame_no, frame, truth) in enumerate(zip(seq.frames, seq.inputs, seq.truth)):
            hints = frame.hints(previous)
            previous = frame
            shift = (t + repeat) % len(runs)
            order = runs[shift:] + runs[:shift]
            images = {}
            for run in order:
                calls = len(run.timed.times)
                placement.synchronize()
                start = time.perf_counter()
                shown = run.runner.step(seq.given(t, run.runner, hints), hints)
                image, ran = shown.image, shown.network_ran
                placement.synchronize()
                step_ms = (time.perf_counter() - start) * 1e3
                if ran:
                    images[run.label] = image
                    run.step_ms.append(step_ms)
                    run.net_ms.append(sum(run.timed.times[calls:]))
                    if run.label != "uncached":
                        decision = run.timed._model.decisions[-1]
                        run.grades.append(decision.grade)
                        if first:
                            run.reasons.append(decision.reason)
                    if first:
                        run.frames.append(frame_no)
            if images and first:  # (FE: no image on frames rendered in full, nothing to compare)
                if on_images is not None:
                    on_images(frame_no, images)
                reference = images["uncached"]
                for run in runs:
                    image = images[run.label]
                    run.flip_truth.append(flip(truth, image).mean)
                    run.psnr_truth.append(psnr(tonemap_ldr(truth), tonemap_ldr(image)))
                    if run.label == "uncached":
                        continue
                    result = flip(reference, image)
                    run.flip_uncached.append(result.mean)
                    run.worst.append((result.mean, frame_no, image, reference, result.error_map))
                    run.worst = sorted(run.worst, key=lambda w: -w[0])[:worst]
            if progress is not None:
                progress()

    uncached = runs[0]
    if not uncached.net_ms:
        raise SettingsError(f"sequence {seq.name!r}: the network ran on no frame (FE needs more than k frames)")
    base_net = statistics.median(uncached.net_ms)
    forced = forced_refreshes([(run.frames, run.grades) for run in runs[1:]])
    result = {
        "workload": workload.name, "scene": seq.name, "source": seq.source,
        "frames": seq.frames, "network_frames": len(uncached.frames), "repeats": repeats,
        "display_size": list(seq.display_size), "input_size": list(seq.inputs[0].size),
        "cut": runs[1].timed._model.plan.describe() if len(runs) > 1 else None,
        "uncached": {"time_ms": _spread(uncached.net_ms), "step_ms": _spread(uncached.step_ms),
                     "vs_truth": {"flip_mean": float(np.mean(uncached.flip_truth)),
                                  "psnr_mean": float(np.mean(uncached.psnr_truth))}},
        "policies": [],
        "forced_refreshes": forced,
    }
    for run in runs[1:]:
        cached = run.timed._model
        stats = cached.stats  # pooled over repeats: only its median overhead is used
        n = len(run.frames)
        grades = run.grades[:n]
        refreshes = sum(g != "hit" for g in grades)
        partials = sum(g == "partial" for g in grades)
        hit_rate = 1 - refreshes / n
        by_grade = {g: [ms for ms, r in zip(run.net_ms, run.grades) if r == g] for g in ("full", "partial", "hit")}
        net = speedups(uncached.net_ms, run.net_ms, run.grades)
        step = speedups(uncached.step_ms, run.step_ms, run.grades)
        removed = hit_rate * cached.plan.removed_share
        if cached.graded is not None:
            removed += partials / n * (1 - cached.graded.partial_share)
        maps = []
        if maps_dir is not None:
            for value, frame_no, image, reference, error in run.worst:
                if value == 0:
                    continue  # identical to uncached: nothing to show
                path = Path(maps_dir) / f"{workload.name}_{_safe_name(seq.name)}_{_safe_name(run.label)}_frame{frame_no:04d}.png"
                _save_error_map(path, reference, image, error)
                maps.append({"frame": frame_no, "flip": value, "png": str(path)})
        result["policies"].append({
            "policy": run.label, "family": policy_family(run.label), "paper_peer": is_paper_peer(run.label, workload),
            "network_frames": n, "refreshes": refreshes, "partial_refreshes": partials, "hit_rate": hit_rate,
            "flops_removed": removed, "flops_removed_per_hit": cached.plan.removed_share,
            "graded_cut": cached.graded.describe() if cached.graded is not None else None,
            "policy_overhead_ms": stats.overhead_ms,
            "policy_overhead_share": stats.overhead_ms / base_net if stats.overhead_ms is not None else None,
            "time_ms": {**_spread(run.net_ms),
                        **{f"{'refresh' if g == 'full' else g}_median": statistics.median(v) if v else None
                           for g, v in by_grade.items()}},
            "step_ms": _spread(run.step_ms),
            "speedup": net["speedup"],
            "speedup_median": net["speedup_median"],
            "speedup_total": net["speedup_total"],
            "speedup_step": step["speedup"],
            "speedup_ceiling": refresh_ceiling(uncached.net_ms, by_grade["full"], by_grade["hit"], n, len(forced)),
            "flip_vs_uncached": {"mean": float(np.mean(run.flip_uncached)), "p95": float(np.percentile(run.flip_uncached, 95)),
                                 "max": float(np.max(run.flip_uncached)), "per_frame": [float(v) for v in run.flip_uncached]},
            "vs_truth": {"flip_mean": float(np.mean(run.flip_truth)), "psnr_mean": float(np.mean(run.psnr_truth))},
            "decisions": [{"frame": f, "refresh": g != "hit", "grade": g, "reason": why}
                          for f, g, why in zip(run.frames, run.grades, run.reasons)],
            "worst_frames": maps or [{"frame": f, "flip": v} for v, f, *_ in run.worst],
        })
    return result


def speedups(uncached_ms: list[float], cached_ms: list[float], grades: list) -> dict:
    """Speedup of a cached run over the uncached one, from per-frame times of the same frames.

    ``grades``: per frame ``"full"``, ``"partial"`` or ``"hit"`` (or True/False: refreshed or not).
    ``speedup``: uncached median / (the median time of each grade mixed in the proportion the policy chose
    them); per-frame times of a cached run are multimodal, so a plain median would report the hit time alone
    once more than half the frames hit. ``speedup_median`` (plain medians) and ``speedup_total`` (summed
    times) are the other two readings.
    """
    grades = [g if isinstance(g, str) else ("full" if bool(g) else "hit") for g in grades]
    unknown = sorted({g for g in grades if g not in ("full", "partial", "hit")})
    if unknown:
        raise SettingsError(f"unknown frame grades {unknown}: each frame is 'full', 'partial' or 'hit' (or True/False)")
    groups = [[ms for ms, g in zip(cached_ms, grades) if g == grade] for grade in ("full", "partial", "hit")]
    mixed = sum(statistics.median(v) * len(v) for v in groups if v) / sum(len(v) for v in groups)
    base = statistics.median(uncached_ms)
    return {"speedup": base / mixed, "speedup_median": base / statistics.median(cached_ms),
            "speedup_total": sum(uncached_ms) / sum(cached_ms)}


def forced_refreshes(runs: list[tuple[list, list]]) -> list:
    """The network frames every cached run refreshed (the first one, camera cuts): no policy can hit there.
    ``runs``: per cached run, (network frames of the first pass, grade per timed frame)."""
    if not runs:
        return []
    forced = set(runs[0][0])
    for frames, grades in runs:
        forced &= {f for f, g in zip(frames, grades) if g != "hit"}
    return sorted(forced)


def refresh_ceiling(uncached_ms: list[float], refresh_ms: list[float], hit_ms: list[float], frames: int,
                    forced: int) -> float | None:
    """A cached run's speedup had it refreshed on ``forced`` of its ``frames`` network frames alone and hit on
    the others, at the median of its refresh times ``refresh_ms`` and hit times ``hit_ms`` (None when it never
    hit: no hit time to go by).

    Why: on a sequence, a policy can only gain over another by refreshing less, and no policy refreshes less
    than on the frames every policy refreshed; this is the most a better decision could add to this run, free of
    the timing noise between runs (the same run's pass times on both sides). A bound on speed alone: refreshing
    that rarely may break the quality budget."""
    if not refresh_ms or not hit_ms:
        return None
    mixed = (forced * statistics.median(refresh_ms) + (frames - forced) * statistics.median(hit_ms)) / frames
    return statistics.median(uncached_ms) / mixed


def lead_at_any_hit_cost(results: list[dict], workload: str, policy: str) -> dict | None:
    """The most a policy refreshing only on the forced frames could lead ``policy`` by over ``workload``'s
    scenes (mean speedup over mean speedup, minus 1), with both runs' hits costing ``hit_scale`` times what
    ``policy``'s hits cost in the run, maximised over that scale: {"gain", "hit_scale"}; None where ``policy``
    is missing on a scene or never hit there.

    Why: a cheaper hit path speeds up every policy's hits, ``policy``'s too, so a faster network does not by
    itself put one policy ahead of another; this is how far ahead any refresh decision could get, whatever the
    hit costs (at ``hit_scale`` 1 it is :func:`refresh_ceiling`'s gain)."""
    scenes = []
    for r in results:
        if r["workload"] != workload:
            continue
        p = next((p for p in r["policies"] if p["policy"] == policy), None)
        t = p["time_ms"] if p else {}
        if not t.get("hit_median") or not t.get("refresh_median"):
            return None
        scenes.append((p["network_frames"], p["refreshes"], p.get("partial_refreshes") or 0, t.get("partial_median") or 0.0,
                       len(r.get("forced_refreshes") or [None]), r["uncached"]["time_ms"]["median"],
                       t["refresh_median"], t["hit_median"]))
    if not scenes:
        return None

    def gain(scale: float) -> float:
        ceiling = sum(u * n / (f * full + (n - f) * scale * hit) for n, _, _, _, f, u, full, hit in scenes)
        own = sum(u * n / (d * full + k * partial + (n - d - k) * scale * hit) for n, d, k, partial, _, u, full, hit in scenes)
        return ceiling / own - 1

    best = max([0.0, *np.logspace(-3, 1, 801)], key=gain)
    return {"gain": gain(best), "hit_scale": float(best)}


def summarize(results: list[dict]) -> dict:
    """Per workload and policy, over scenes: mean speedup, mean/max FLIP vs uncached, target met or not."""
    summary: dict = {}
    for r in results:
        for p in r["policies"]:
            entry = summary.setdefault(r["workload"], {}).setdefault(p["policy"], {
                "family": p["family"], "paper_peer": p["paper_peer"], "speedups": [], "flips": [], "hit_rates": [],
                "ceilings": []})
            entry["speedups"].append(p["speedup"])
            entry["ceilings"].append(p.get("speedup_ceiling"))
            entry["flips"].extend(p["flip_vs_uncached"]["per_frame"])
            entry["hit_rates"].append(p["hit_rate"])
    out: dict = {}
    for workload, policies in summary.items():
        for spec, e in policies.items():
            speedup, flip_mean, flip_max = float(np.mean(e["speedups"])), float(np.mean(e["flips"])), float(np.max(e["flips"]))
            out.setdefault(workload, {})[spec] = {
                "family": e["family"], "paper_peer": e["paper_peer"], "scenes": len(e["speedups"]),
                "mean_speedup": speedup, "mean_hit_rate": float(np.mean(e["hit_rates"])),
                "mean_speedup_ceiling": (float(np.mean(e["ceilings"])) if all(c is not None for c in e["ceilings"])
                                         else None),
                "mean_flip_vs_uncached": flip_mean, "max_flip_vs_uncached": flip_max,
                "meets_target": bool(speedup >= TARGET["speedup"] and flip_mean <= TARGET["flip_mean"]
                                     and flip_max <= TARGET["flip_max"]),
            }
    return out


def machine_info(placement: Placement | None = None) -> dict:
    from importlib import metadata

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__, "cuda_available": torch.cuda.is_available(), "memory_pages": huge_pages_state(),
    }
    for package in ("flip-evaluator", "reframe-blender"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = None
    if placement is not None:
        info["placement"] = placement.describe()
        if placement.is_cuda:
            index = torch.device(placement.device).index or 0
            props = torch.cuda.get_device_properties(index)
            info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                           "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda}
    return info


# --- reporting --------------------------------------------------------------------------------------------

def _name_width(names) -> int:
    return max([34, *(len(n) for n in names)])


def format_table(results: list[dict]) -> str:
    lines = []
    for r in results:
        width = _name_width(p["policy"] + (" (paper)" if p["paper_peer"] else "") for p in r["policies"])
        u = r["uncached"]
        lines.append(f"{r['workload']} {r['scene']}: {r['network_frames']} network frames at "
                     f"{r['display_size'][1]}x{r['display_size'][0]}, uncached {u['time_ms']['median']:.1f} ms/frame "
                     f"(p10 {u['time_ms']['p10']:.1f}, p90 {u['time_ms']['p90']:.1f}), FLIP vs native {u['vs_truth']['flip_mean']:.4f}")
        lines.append(f"  {'policy':<{width}} {'speedup':>7} {'step':>6} {'hits':>5} {'part.':>5} {'FLOPs-':>6} {'ovh ms':>6} "
                     f"{'FLIP/unc mean':>13} {'p95':>6} {'max':>6} {'FLIP/native':>11}")
        for p in r["policies"]:
            name = p["policy"] + (" (paper)" if p["paper_peer"] else "")
            f = p["flip_vs_uncached"]
            overhead = f"{p['policy_overhead_ms']:6.2f}" if p["policy_overhead_ms"] is not None else f"{'':>6}"
            partial = p.get("partial_refreshes", 0) / p["network_frames"] if p["network_frames"] else 0.0
            lines.append(f"  {name:<{width}} {p['speedup']:6.2f}x {p['speedup_step']:5.2f}x {p['hit_rate']:5.0%} {partial:5.0%} "
                         f"{p['flops_removed']:6.0%} {overhead} {f['mean']:13.4f} {f['p95']:6.4f} {f['max']:6.4f} "
                         f"{p['vs_truth']['flip_mean']:11.4f}")
        forced = r.get("forced_refreshes")
        paper = [p for p in r["policies"] if p["paper_peer"] and p["family"] == "delta" and p.get("speedup_ceiling")]
        if forced and paper:
            lines.append(f"  every policy refreshed frame{'s' if len(forced) > 1 else ''} {', '.join(map(str, forced))}; "
                         + "; ".join(f"{p['policy']} (paper) refreshing there alone: {p['speedup_ceiling']:.2f}x" for p in paper))
    return "\n".join(lines)


def summarize_ceilings(summary: dict, results: list[dict] | None = None) -> dict:
    """Per workload, for the paper's ``delta`` policy: its mean speedup over scenes, its mean
    :func:`refresh_ceiling` and the gain between them, the most any refresh decision could add to it on these
    sequences; with ``results``, also ``any_hit_cost``: :func:`lead_at_any_hit_cost`. Workloads without the
    paper's ``delta`` among their policies, or where it never hit, are left out."""
    out: dict = {}
    for workload, policies in summary.items():
        for spec, s in policies.items():
            if s["paper_peer"] and s["family"] == "delta" and s.get("mean_speedup_ceiling") is not None:
                out[workload] = {"policy": spec, "mean_speedup": s["mean_speedup"], "ceiling": s["mean_speedup_ceiling"],
                                 "gain": s["mean_speedup_ceiling"] / s["mean_speedup"] - 1}
                if results is not None:
                    out[workload]["any_hit_cost"] = lead_at_any_hit_cost(results, workload, spec)
    return out


def format_summary(summary: dict, ceilings: dict | None = None) -> str:
    lines = [f"target: mean speedup >= {TARGET['speedup']}x at mean FLIP <= {TARGET['flip_mean']} "
             f"and no frame > {TARGET['flip_max']} vs uncached"]
    for workload, policies in summary.items():
        width = _name_width(spec + (" (paper)" if s["paper_peer"] else "") for spec, s in policies.items())
        lines.append(f"{workload}: {'policy':<{width}} {'speedup':>7} {'hits':>5} {'FLIP mean':>9} {'FLIP max':>8}  target")
        for spec, s in sorted(policies.items(), key=lambda kv: -kv[1]["mean_speedup"]):
            name = spec + (" (paper)" if s["paper_peer"] else "")
            lines.append(f"{'':<{len(workload) + 2}}{name:<{width}} {s['mean_speedup']:6.2f}x {s['mean_hit_rate']:5.0%} "
                         f"{s['mean_flip_vs_uncached']:9.4f} {s['max_flip_vs_uncached']:8.4f}  {'met' if s['meets_target'] else 'not met'}")
        ceiling = (ceilings or {}).get(workload)
        if ceiling:
            lines.append(f"{'':<{len(workload) + 2}}ceiling: {ceiling['policy']} (paper) refreshing only where every policy "
                         f"did (first frames, cuts) {ceiling['ceiling']:.2f}x, {ceiling['gain']:+.1%} over its "
                         f"{ceiling['mean_speedup']:.2f}x: the most a refresh decision can add to it on these scenes")
            bound = ceiling.get("any_hit_cost")
            if bound:
                lines.append(f"{'':<{len(workload) + 11}}whatever a hit costs (a cheaper hit speeds up its hits too): at most "
                             f"{bound['gain']:+.1%}, with hits at {bound['hit_scale']:.2f}x its")
    return "\n".join(lines)


def plot_pareto(summary: dict, path: str | Path, title: str = "", ceilings: dict | None = None) -> None:
    """Speedup vs mean FLIP (vs uncached) per workload: one curve per policy family, one point per spec; the
    paper's ``delta`` refreshing only where every policy did (:func:`summarize_ceilings`) dotted, where given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(summary)
    fig, axes = plt.subplots(1, len(workloads), figsize=(6.5 * len(workloads), 5), squeeze=False)
    for ax, workload in zip(axes[0], workloads):
        families: dict[str, list] = {}
        for spec, s in summary[workload].items():
            families.setdefault(s["family"], []).append((s["mean_flip_vs_uncached"], s["mean_speedup"], spec, s["paper_peer"]))
        for family, points in sorted(families.items()):
            points.sort()
            peer = any(p[3] for p in points) and family in ("every", "delta")
            label = family + (" (paper)" if peer else "")
            ax.plot([p[0] for p in points], [p[1] for p in points], "--o" if peer else "-o", label=label, ms=5)
            for x, y, spec, _ in points:
                arg = spec.split(":", 1)[1] if ":" in spec and "+" not in spec else spec
                ax.annotate(arg, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=6)
        ceiling = (ceilings or {}).get(workload)
        if ceiling:
            ax.axhline(ceiling["ceiling"], color="grey", ls=":", lw=1,
                       label=f"{ceiling['policy']} refreshing only where every policy did: {ceiling['ceiling']:.2f}x")
        top = max(ax.get_ylim()[1], TARGET["speedup"] + 0.2)
        ax.fill_between([0, TARGET["flip_mean"]], TARGET["speedup"], top, color="green", alpha=0.08,
                        label=f"target (>= {TARGET['speedup']:g}x, FLIP <= {TARGET['flip_mean']:g})")
        ax.set_xlim(left=0)
        ax.set_ylim(top=top)
        ax.set_xlabel("mean FLIP, cached vs uncached (lower is better)")
        ax.set_ylabel("speedup of the network (uncached / cached)")
        ax.set_title(f"{workload.upper()}" + (f" - {title}" if title else ""), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
