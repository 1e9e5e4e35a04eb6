"""The demo render (README's main job): a library scene rendered with ReFrame SS through the render path
(:func:`blender_addon.render_loop.render_animation`: EEVEE at half size, jittered, cached SS to full size,
written through Blender's colour management), the same frames rendered natively, and side by side.

Written to ``OUT``: ``ss/####.png`` (ReFrame), ``bicubic/####.png`` (the same low-res frames upscaled bicubically,
written the same way), ``native/####.png`` (Blender's own render), ``side_by_side/####.png`` (bicubic | ReFrame
| native) and ``report.json`` (both runs' reports, FLIP of ReFrame and bicubic against native per frame).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reframe_core.evaluation.metrics import flip, read_display_image
from reframe_core.frames.buffers import atomic_write

from blender_addon.render_bench import baseline_writer, library_scene
from blender_addon.render_loop import RenderJob, render_animation


def _side_by_side(paths: list[Path], out: Path) -> None:
    from PIL import Image

    images = [read_display_image(p) for p in paths]
    gap = np.ones((images[0].shape[0], 4, 3), np.float32)  # a white bar between the panels
    strip = np.concatenate([x for image in images for x in (image, gap)][:-1], axis=1)
    data = (np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: Image.fromarray(data).save(tmp, format="PNG"))


def run_render_demo(scene_name: str = "slow_pan", frames: range = range(1, 7), size: int = 256, samples: int = 16,
                    out: str | Path = "out/demo", policy: str = "motion", show_progress: bool = True) -> dict:
    out = Path(out).absolute()
    scene = library_scene(scene_name, (size, size), samples)
    common = dict(frames=frames, overwrite=True, warmup=0)
    ss = render_animation(scene, RenderJob(mode="ss", policy=policy, output=str(out / "ss" / "####"),
                                           report=str(out / "ss" / "report.json"), **common),
                          show_progress=show_progress, on_frame=baseline_writer(scene, "ss", out / "bicubic"))
    native = render_animation(scene, RenderJob(mode="native", output=str(out / "native" / "####"),
                                               report=str(out / "native" / "report.json"), **common),
                              show_progress=show_progress)
    rows = []
    for frame in frames:
        paths = [out / "bicubic" / f"{frame:04d}.png", out / "ss" / f"{frame:04d}.png", out / "native" / f"{frame:04d}.png"]
        bicubic, ours, reference = (read_display_image(p) for p in paths)
        _side_by_side(paths, out / "side_by_side" / f"{frame:04d}.png")
        record = next(f for f in ss["frames"] if f["frame"] == frame)
        rows.append({"frame": frame, "decision": record["decision"],
                     "flip_reframe_vs_native": flip(reference, ours).mean,
                     "flip_bicubic_vs_native": flip(reference, bicubic).mean})
    n = len(frames)
    report = {"scene": scene_name, "frames": [frames.start, frames.stop - 1], "size": size, "low_size": size // 2,
              "samples": samples, "policy": policy, "rows": rows,
              "flip_reframe_vs_native": float(np.mean([r["flip_reframe_vs_native"] for r in rows])),
              "flip_bicubic_vs_native": float(np.mean([r["flip_bicubic_vs_native"] for r in rows])),
              "seconds_per_frame": {"reframe": ss["wall_s"] / n, "native": native["wall_s"] / n},
              "reframe_times": {k: ss["totals"][k] / n for k in ("render_s", "capture_s", "network_s", "write_s")},
              "native_render_s": native["totals"]["render_s"] / n, "hit_rate": ss["totals"]["hit_rate"],
              "cut": ss["session"]["cut"], "machine": ss["machine"],
              "side_by_side": "bicubic | ReFrame SS | native", "reports": {"ss": ss["report"], "native": native["report"]}}
    atomic_write(out / "report.json", lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n"))
    return report


def format_report(report: dict) -> str:
    lines = [f"{'frame':>5}  {'cache':<8} {'FLIP ReFrame':>12} {'FLIP bicubic':>12}   (vs native, lower is better)"]
    for r in report["rows"]:
        lines.append(f"{r['frame']:>5}  {r['decision']:<8} {r['flip_reframe_vs_native']:12.4f} {r['flip_bicubic_vs_native']:12.4f}")
    lines.append(f"{'mean':>5}  {'':<8} {report['flip_reframe_vs_native']:12.4f} {report['flip_bicubic_vs_native']:12.4f}")
    t, s = report["reframe_times"], report["seconds_per_frame"]
    lines.append(f"\nseconds per frame: ReFrame {s['reframe']:.2f} (EEVEE {t['render_s']:.2f} at {report['low_size']}x"
                 f"{report['low_size']}, capture {t['capture_s']:.3f}, network {t['network_s']:.3f}, write "
                 f"{t['write_s']:.3f}) vs native {s['native']:.2f} (EEVEE {report['native_render_s']:.2f}); "
                 f"speedup {s['native'] / s['reframe']:.2f}x; cache hit rate {report['hit_rate']:.0%}")
    return "\n".join(lines)
