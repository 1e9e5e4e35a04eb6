"""End-to-end render benchmark (``reframe-blender bench-render``): the render path in each mode against the
native render of the same frames, per scene, timed per frame by the loop's own report.

For each scene: one throw-away frame per mode first (EEVEE compiles its shaders on the first render of a
configuration: that belongs to no frame), then the timed frames. Figures per mode: seconds per written frame
split into render / capture / network / write, the speedup over native, FLIP against the native frames (and
bicubic's, for SS), and the render-only ceiling: native render time / this mode's EEVEE time. The network path
reaches ``speedup / ceiling`` of what a free network would give.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reframe_core.evaluation.metrics import flip, read_display_image
from reframe_core.frames.buffers import atomic_write
from reframe_core.workloads import get_workload

from blender_addon.frame_output import write_frame
from blender_addon.render_loop import MODES, RenderJob, render_animation
from scenes import get_scene


def library_scene(name: str, size: tuple[int, int], samples: int):
    """A library scene built at ``size`` (W, H) with ``samples``, writing PNG without dither (dither noise would
    differ between two writes of the same pixels, and the comparisons here are between writes)."""
    scene = get_scene(name).build(0)
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.eevee.taa_render_samples = samples
    scene.render.image_settings.file_format = "PNG"
    scene.render.dither_intensity = 0.0
    return scene


def baseline_writer(scene, mode: str, folder: Path, frames: range | None = None, k: int = 2):
    """An ``on_frame`` callback for :func:`render_animation` writing what ``mode``'s workload shows without its
    network (SS: bicubic of the jittered low-res frame; FE: the frame's own render) as ``folder/NNNN.png``,
    through the scene's output settings like the frames it is compared with."""
    workload = get_workload(MODES[mode], k=k)

    def write(frame, buffers, result):
        if frames is None or frame in frames:
            write_frame(scene, workload.baseline(buffers, result.image.shape[:2]), folder / f"{frame:04d}.png")
    return write


def _per_frame(report: dict) -> dict:
    written = [f for f in report["frames"] if f["written"]]
    n = len(written)

    def mean(name, scale=1.0):
        return sum((f[name] or 0.0) for f in written) * scale / n

    times = {"render_s": mean("render_s"), "capture_s": mean("capture_s"), "network_s": mean("network_ms", 1e-3),
             "write_s": mean("write_s")}
    times["total_s"] = sum(times.values())
    return times


def bench_scene(name: str, frames: range, size: tuple[int, int], samples: int, out: Path, modes=("ss", "fe"),
                scale: float = 2.0, policy: str = "motion", show_progress: bool = False) -> dict:
    scene = library_scene(name, size, samples)
    warm = range(frames.start - 1, frames.start)
    if warm.start < scene.frame_start:
        raise ValueError(f"bench frames must start after the scene's first frame {scene.frame_start}")
    results = {}
    for mode in ("native", *modes):
        common = dict(mode=mode, scale=scale, policy=policy, overwrite=True, warmup=0)
        render_animation(scene, RenderJob(frames=warm, output=str(out / name / "_warm" / mode / "####"), **common),
                         show_progress=False)
        report = render_animation(scene, RenderJob(frames=frames, output=str(out / name / mode / "####"), **common),
                                  show_progress=show_progress,
                                  on_frame=baseline_writer(scene, mode, out / name / f"{mode}_baseline", frames)
                                  if MODES[mode] else None)
        results[mode] = {"per_frame": _per_frame(report), "report": report["report"],
                         "hit_rate": report["totals"]["hit_rate"], "decisions": [f["decision"] for f in report["frames"]]}
    native = results["native"]["per_frame"]
    for mode in modes:
        entry = results[mode]
        times = entry["per_frame"]
        entry["speedup"] = native["total_s"] / times["total_s"]
        entry["ceiling"] = native["render_s"] / times["render_s"]
        entry["share_of_ceiling"] = entry["speedup"] / entry["ceiling"]
        entry["overhead_share_of_render"] = (times["total_s"] - times["render_s"]) / times["render_s"]
        entry["flip_vs_native"] = float(np.mean([flip(read_display_image(out / name / "native" / f"{f:04d}.png"),
                                                      read_display_image(out / name / mode / f"{f:04d}.png")).mean for f in frames]))
        entry["baseline"] = get_workload(MODES[mode]).fallback_name
        entry["baseline_flip_vs_native"] = float(np.mean([flip(read_display_image(out / name / "native" / f"{f:04d}.png"),
                                                               read_display_image(out / name / f"{mode}_baseline" / f"{f:04d}.png")).mean
                                                          for f in frames]))
    return {"scene": name, "frames": [frames.start, frames.stop - 1], "size": list(size), "samples": samples,
            "scale": scale, "policy": policy, "modes": results}


def run_render_bench(scenes, frames: range, size, samples: int, out, modes=("ss", "fe"), scale: float = 2.0,
                     policy: str = "motion", show_progress: bool = False) -> dict:
    out = Path(out).absolute()
    runs = [bench_scene(name, frames, tuple(size), samples, out, modes, scale, policy, show_progress) for name in scenes]
    import bpy

    from reframe_core.evaluation.bench import machine_info

    result = {"runs": runs, "machine": {**machine_info(), "blender": bpy.app.version_string}}
    atomic_write(out / "bench-render.json", lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))
    return result


def format_bench(result: dict) -> str:
    lines = [f"{'scene':<22} {'mode':<7} {'s/frame':>8} {'render':>8} {'capture':>8} {'network':>8} {'write':>7} "
             f"{'speedup':>8} {'ceiling':>8} {'of ceil':>8} {'FLIP':>7} {'baseline':>8}"]
    for run in result["runs"]:
        for mode, entry in run["modes"].items():
            t = entry["per_frame"]
            row = (f"{run['scene']:<22} {mode:<7} {t['total_s']:8.2f} {t['render_s']:8.2f} {t['capture_s']:8.3f} "
                   f"{t['network_s']:8.3f} {t['write_s']:7.3f}")
            if mode != "native":
                row += (f" {entry['speedup']:7.2f}x {entry['ceiling']:7.2f}x {entry['share_of_ceiling']:8.0%} "
                        f"{entry['flip_vs_native']:7.4f}")
                row += f" {entry['baseline_flip_vs_native']:8.4f} ({entry['baseline']})"
            lines.append(row)
    return "\n".join(lines)


def measure_seam(name: str, frames: range, split: int, warmups=(0, 1, 3), size: int = 256, samples: int = 16,
                 out="out/bench-seam", mode: str = "ss", policy: str = "motion", show_progress: bool = False) -> dict:
    """A farm's chunk seam: ``frames`` rendered in one run, and again as a chunk starting at ``split`` with each
    warm-up; FLIP of the chunk's first frames against the same frames of the continuous run."""
    out = Path(out).absolute()
    scene = library_scene(name, (size, size), samples)
    common = dict(mode=mode, policy=policy, overwrite=True)
    render_animation(scene, RenderJob(frames=frames, warmup=0, output=str(out / "continuous" / "####"), **common),
                     show_progress=show_progress)
    rows = []
    chunk = range(split, frames.stop)
    for warmup in warmups:
        folder = out / f"chunk_warmup_{warmup}"
        render_animation(scene, RenderJob(frames=chunk, warmup=warmup, output=str(folder / "####"), **common),
                         show_progress=show_progress)
        rows.append({"warmup": warmup, "flip": {f: flip(read_display_image(out / "continuous" / f"{f:04d}.png"),
                                                         read_display_image(folder / f"{f:04d}.png")).mean for f in chunk}})
    result = {"scene": name, "frames": [frames.start, frames.stop - 1], "split": split, "size": size,
              "samples": samples, "mode": mode, "policy": policy, "rows": rows}
    atomic_write(out / "bench-seam.json", lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))
    return result


def format_seam(result: dict) -> str:
    frames = list(result["rows"][0]["flip"])
    lines = [f"{'warm-up':>7}  " + " ".join(f"{'frame ' + str(f):>10}" for f in frames)]
    for row in result["rows"]:
        lines.append(f"{row['warmup']:>7}  " + " ".join(f"{row['flip'][f]:10.4f}" for f in frames))
    return "\n".join(lines)
