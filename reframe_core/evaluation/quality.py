"""Quality of a workload against the native render, on held-out captured sequences (a benchmark).

For SS at scale s: the network's display-resolution output and the bicubic up-sampling of the same
jittered low-res frame are both compared with the native scale-1 render: FLIP (LDR, after
``metrics.tonemap_ldr``), PSNR of the tonemapped images, and temporal instability: the mean absolute
frame-to-frame change of the tonemapped image that the native render does not have,
``mean |(o_t - warp(o_{t-1})) - (g_t - warp(g_{t-1}))|``.
"""
from __future__ import annotations

import numpy as np
import torch

from reframe_core.frames.dataset import Dataset
from reframe_core.evaluation.metrics import flip, psnr, tonemap_ldr
from reframe_core.workloads.supersampling import Supersampler, bicubic_upscale, upscale_motion
from reframe_core.frames.warp import backward_warp, to_image, to_tensor


def _instability(frames: list[np.ndarray], truth: list[np.ndarray], motions: list[torch.Tensor]) -> float:
    values = []
    for t in range(1, len(frames)):
        if motions[t] is None:
            continue
        warp = lambda img: to_image(backward_warp(to_tensor(img), motions[t]))  # noqa: E731
        values.append(np.abs((frames[t] - warp(frames[t - 1])) - (truth[t] - warp(truth[t - 1]))).mean())
    return float(np.mean(values)) if values else float("nan")


def evaluate_ss(model, root: str, scale: float = 2.0) -> dict:
    """Run ``model`` (a SupersamplingNet or a CachedModel of one) over a dataset; figures per method."""
    data = Dataset.open(root)
    frames = data.frames(scale)
    per_method = {"network": [], "bicubic": []}
    truth_tm, motions = [], []
    runner = None
    previous = None
    for frame in frames:
        low, high = data.load(frame, scale), data.load(frame, 1.0)
        size = high.color.shape[:2]
        if runner is None:
            runner = Supersampler(model, size)
            runner.reset()
        hints = low.hints(previous)
        out = runner.step(low, hints).image
        jitter = torch.from_numpy(np.asarray(low.jitter, np.float32))[None]
        bicubic = to_image(bicubic_upscale(to_tensor(low.color), size, jitter))
        truth_tm.append(tonemap_ldr(high.color))
        motions.append(None if hints.cut else upscale_motion(to_tensor(low.motion_prev), size))
        for name, image in (("network", out), ("bicubic", bicubic)):
            per_method[name].append((flip(high.color, image).mean, psnr(tonemap_ldr(high.color), tonemap_ldr(image)), tonemap_ldr(image)))
        previous = low
    report = {"dataset": str(root), "frames": len(frames), "scale": scale}
    for name, rows in per_method.items():
        flips = [r[0] for r in rows]
        report[name] = {"flip_mean": float(np.mean(flips)), "flip_p95": float(np.percentile(flips, 95)),
                        "psnr_mean": float(np.mean([r[1] for r in rows])),
                        "instability": _instability([r[2] for r in rows], truth_tm, motions)}
    report["flip_reduction_vs_bicubic"] = 1 - report["network"]["flip_mean"] / report["bicubic"]["flip_mean"]
    return report


def evaluate_fe(model, root: str, k: int = 2, cheap_root: str | None = None) -> dict:
    """Every k-th frame rendered, the rest extrapolated by ``model``; extrapolated frames are compared with
    their native render, against plain reprojection (the last rendered frame warped by motion).

    ``cheap_root``: a dataset of the same frames written with ``reframe-blender dataset --cheap``; the
    extrapolated frames then get their G-buffers and motion from that cheap pass (1 sample: aliased), as
    they would in Blender, instead of from the full render's (anti-aliased) passes.
    """
    from reframe_core.workloads.extrapolation import Extrapolator

    data = Dataset.open(root)
    cheap = Dataset.open(cheap_root) if cheap_root else None
    if cheap is not None:
        missing = sorted(set(data.frames(1.0)) - set(cheap.frames(1.0)))
        if missing:
            raise ValueError(f"cheap-pass dataset {cheap_root} lacks frames {missing[0]}..{missing[-1]} of {root}; "
                             f"render them with reframe-blender dataset --cheap --frames A-B --out {cheap_root}")
    runner = Extrapolator(model, k)
    rows = {"network": [], "reprojection": []}
    previous = None
    last_full = None
    for frame in data.frames(1.0):
        fb = data.load(frame, 1.0)
        hints = fb.hints(previous)
        given = fb if cheap is None or runner.is_full_frame(hints) else cheap.load(frame, 1.0)
        shown, rendered = runner.step(given, hints)
        if rendered:
            last_full, since = to_tensor(fb.color), []
        else:
            since.append(to_tensor(given.motion_prev))
            reprojected = last_full
            for motion in since:  # chain the motions since the last rendered frame
                reprojected = backward_warp(reprojected, motion)
            for name, image in (("network", shown), ("reprojection", to_image(reprojected))):
                rows[name].append((flip(fb.color, image).mean, psnr(tonemap_ldr(fb.color), tonemap_ldr(image))))
        previous = fb
    report = {"dataset": str(root), "k": k, "extrapolated_frames": len(rows["network"]),
              "gbuffers": "cheap pass" if cheap is not None else "full render"}
    for name, values in rows.items():
        flips = [v[0] for v in values]
        report[name] = {"flip_mean": float(np.mean(flips)) if flips else float("nan"),
                        "flip_p95": float(np.percentile(flips, 95)) if flips else float("nan"),
                        "psnr_mean": float(np.mean([v[1] for v in values])) if values else float("nan")}
    report["flip_reduction_vs_reprojection"] = 1 - report["network"]["flip_mean"] / report["reprojection"]["flip_mean"]
    return report
