"""The demo render: a scene rendered at half resolution by EEVEE, brought to full resolution by the shipped
supersampling network with layer caching, against the native full-resolution render.

Frames are captured once into ``OUT/frames`` (a dataset folder: re-running reuses them), then the network
runs uncached and once per policy on the same frames. Written: ``OUT/report.json``, and per frame a PNG
strip ``OUT/frame_NNNN.png`` (bicubic | SS uncached | SS cached with the first policy | native).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from reframe_core.buffers import atomic_write
from reframe_core.cache import cache_model
from reframe_core.dataset import Dataset
from reframe_core.metrics import flip, tonemap_ldr
from reframe_core.networks import get_network
from reframe_core.supersampling import Supersampler, bicubic_upscale
from reframe_core.warp import to_image, to_tensor
from reframe_core.weights import load_network, shipped

from .dataset import DatasetSpec, write_dataset

DEFAULT_POLICIES = ("every:2", "delta:0.1", "motion", "motion+max-age:4")


def _run(model, frames, size):
    runner = Supersampler(model, size)
    runner.reset()
    outputs, times, previous = [], [], None
    for low in frames:
        start = time.perf_counter()
        outputs.append(runner.step(low, low.hints(previous)).image)
        times.append(time.perf_counter() - start)
        previous = low
    return outputs, times


def _png(path: Path, images: list[np.ndarray]) -> None:
    from PIL import Image

    strip = np.concatenate([tonemap_ldr(i) for i in images], axis=1)
    data = (np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8)
    atomic_write(path, lambda tmp: Image.fromarray(data).save(tmp, format="PNG"))


def run_render_demo(scene: str = "slow_pan", frames: range = range(1, 13), resolution: int = 256,
                    policies=DEFAULT_POLICIES, out: str | Path = "out/demo", samples: int = 16) -> dict:
    out = Path(out)
    root = out / "frames"
    write_dataset(DatasetSpec(scene=scene, frames=frames, scales=(1.0, 2.0), resolution=(resolution, resolution),
                              samples=samples), root)
    data = Dataset.open(root)
    low = [data.load(f, 2.0) for f in frames]
    native = [data.load(f, 1.0).color for f in frames]
    size = native[0].shape[:2]
    model, payload = load_network(shipped("ss_x2"), expected_arch="ss")
    _run(model, low[:2], size)  # warm-up
    uncached, uncached_times = _run(model, low, size)
    bicubic = [to_image(bicubic_upscale(to_tensor(fb.color), size, torch.tensor(fb.jitter)[None])) for fb in low]
    rows = [{"method": "bicubic", "flip_vs_native": float(np.mean([flip(n, b).mean for n, b in zip(native, bicubic)]))},
            {"method": "SS uncached", "ms_per_frame": 1e3 * float(np.mean(uncached_times)),
             "flip_vs_native": float(np.mean([flip(n, o).mean for n, o in zip(native, uncached)]))}]
    first_cached = None
    example = get_network("ss").example_inputs(size[0], size[1])
    for spec in policies:
        cached = cache_model(model, example, cut="auto", policy=spec)
        outputs, times = _run(cached, low, size)
        first_cached = first_cached or outputs
        stats = cached.stats
        flips = [flip(u, o).mean for u, o in zip(uncached, outputs)]
        rows.append({"method": f"SS cached {spec}", "ms_per_frame": 1e3 * float(np.mean(times)),
                     "speedup": float(np.sum(uncached_times) / np.sum(times)), "hit_rate": stats.hit_rate,
                     "refreshes": stats.refreshes, "flops_removed": stats.flops_removed,
                     "flip_vs_uncached_mean": float(np.mean(flips)), "flip_vs_uncached_max": float(np.max(flips)),
                     "flip_vs_native": float(np.mean([flip(n, o).mean for n, o in zip(native, outputs)]))})
    for i, frame in enumerate(frames):
        _png(out / f"frame_{frame:04d}.png", [bicubic[i], uncached[i], first_cached[i], native[i]])
    report = {"scene": scene, "frames": [frames.start, frames.stop - 1], "resolution": resolution,
              "low_resolution": resolution // 2, "samples": samples, "weights_card": payload.get("card"),
              "cut": cached.plan.describe(),  # the same cut for every policy
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
