"""The demo render: a scene rendered at half resolution by EEVEE, brought to full resolution by the shipped
supersampling network with layer caching, against the native full-resolution render.

Frames are captured once into ``OUT/frames`` (a dataset folder: re-running reuses them), then the network
runs uncached and once per policy on the same frames, interleaved frame by frame and timed by the bench's
measuring code (:func:`reframe_core.evaluation.bench.measure_sequence`, three passes for the timing medians). Written: ``OUT/report.json``, and per frame a PNG
strip ``OUT/frame_NNNN.png`` (bicubic | SS uncached | SS cached with the first policy | native).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from reframe_core.frames.buffers import atomic_write
from reframe_core.evaluation.bench import dataset_sequence, measure_sequence
from reframe_core.evaluation.metrics import flip, tonemap_ldr
from reframe_core.workloads.supersampling import bicubic_upscale
from reframe_core.frames.warp import to_image, to_tensor
from reframe_core.workloads import get_workload

from blender_addon.dataset_writer import DatasetSpec, write_dataset

DEFAULT_POLICIES = ("every:2", "delta:0.1", "motion", "motion+max-age:4")


def _png(path: Path, images: list[np.ndarray]) -> None:
    from PIL import Image

    strip = np.concatenate([tonemap_ldr(i) for i in images], axis=1)
    data = (np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8)
    atomic_write(path, lambda tmp: Image.fromarray(data).save(tmp, format="PNG"))


def run_render_demo(scene: str = "slow_pan", frames: range = range(1, 13), resolution: int = 256,
                    policies=DEFAULT_POLICIES, out: str | Path = "out/demo", samples: int = 16, repeats: int = 3) -> dict:
    out = Path(out)
    root = out / "frames"
    write_dataset(DatasetSpec(scene=scene, frames=frames, scales=(1.0, 2.0), resolution=(resolution, resolution),
                              samples=samples), root)
    workload = get_workload("ss")
    sequence = dataset_sequence(root, workload, 2.0, list(frames))
    model, payload = workload.load(None, 2.0)
    shown: dict[int, dict] = {}
    # The bench's measuring code: uncached and cached runs interleaved frame by frame after a warm-up.
    result = measure_sequence(workload, sequence, model, list(policies), warmup=2, repeats=repeats,
                              on_images=lambda frame, images: shown.__setitem__(frame, images))
    native = sequence.truth
    bicubic = [to_image(bicubic_upscale(to_tensor(fb.color), native[0].shape[:2], torch.tensor(fb.jitter)[None]))
               for fb in sequence.inputs]
    uncached_ms = result["uncached"]["time_ms"]["median"]
    rows = [{"method": "bicubic", "flip_vs_native": float(np.mean([flip(n, b).mean for n, b in zip(native, bicubic)]))},
            {"method": "SS uncached", "ms_per_frame": uncached_ms, "flip_vs_native": result["uncached"]["vs_truth"]["flip_mean"]}]
    for p in result["policies"]:
        rows.append({"method": f"SS cached {p['policy']}", "ms_per_frame": uncached_ms / p["speedup"],
                     "speedup": p["speedup"], "hit_rate": p["hit_rate"], "refreshes": p["refreshes"],
                     "flops_removed": p["flops_removed"], "flip_vs_uncached_mean": p["flip_vs_uncached"]["mean"],
                     "flip_vs_uncached_max": p["flip_vs_uncached"]["max"], "flip_vs_native": p["vs_truth"]["flip_mean"]})
    first_policy = policies[0]
    for i, frame in enumerate(frames):
        _png(out / f"frame_{frame:04d}.png", [bicubic[i], shown[frame]["uncached"], shown[frame][first_policy], native[i]])
    report = {"scene": scene, "frames": [frames.start, frames.stop - 1], "resolution": resolution,
              "low_resolution": resolution // 2, "samples": samples, "weights_card": payload.get("card"),
              "cut": result["cut"], "repeats": repeats,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows,
              "strips": "bicubic | SS uncached | SS cached (" + policies[0] + ") | native"}
    atomic_write(out / "report.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
    return report


def format_report(report: dict) -> str:
    lines = [f"{'method':<28} {'ms/frame':>8} {'speedup':>8} {'hit rate':>8} {'FLOPs cut':>9} {'FLIP vs uncached':>17} {'FLIP vs native':>14}",
             "-" * 100]
    for r in report["rows"]:
        ms = f"{r['ms_per_frame']:8.1f}" if "ms_per_frame" in r else f"{'':>8}"
        speed = f"{r['speedup']:7.2f}x" if "speedup" in r else f"{'':>8}"
        hit = f"{r['hit_rate']:8.0%}" if "hit_rate" in r else f"{'':>8}"
        cut = f"{r['flops_removed']:9.0%}" if "flops_removed" in r else f"{'':>9}"
        vs = f"{r['flip_vs_uncached_mean']:.4f} (max {r['flip_vs_uncached_max']:.3f})" if "flip_vs_uncached_mean" in r else ""
        lines.append(f"{r['method']:<28} {ms} {speed} {hit} {cut} {vs:>17} {r['flip_vs_native']:14.4f}")
    return "\n".join(lines)
