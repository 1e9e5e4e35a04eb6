"""``reframe-blender bench-farm``: the same render once in one process and once as farm chunks, timed, and the
chunked frames compared with the continuous ones (FLIP per frame, seams marked).

Chunks start their temporal state over (SS history, cached features), warmed up on ``--warmup`` frames before
their first one, so their first frames can differ from an uninterrupted render: that is the seam this measures.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from reframe_core.errors import SettingsError
from reframe_core.farm.chunks import Chunk, plan_chunks
from reframe_core.farm.cluster import FarmJob, run_farm
from reframe_core.farm.node import plan, render_command
from reframe_core.frames import records


@dataclass
class FrameDifference:
    frame: int
    chunk: str
    seam: bool  # the chunk's first frame, after a warm-up instead of the whole history
    flip: float  # FLIP between the continuous and the chunked frame (display-referred, as written)
    max_abs: int  # largest difference of one 8-bit channel value


def compare_frames(reference: dict[int, str], test: dict[int, str], chunks: list[Chunk]) -> list[FrameDifference]:
    """Per frame: FLIP and the largest channel difference between ``reference`` and ``test`` (frame -> file)."""
    from reframe_core.evaluation.metrics import flip, read_display_image

    rows = []
    for chunk in chunks:
        for frame in chunk.frames:
            a, b = read_display_image(reference[frame]), read_display_image(test[frame])
            max_abs = int(np.abs(np.rint(a * 255) - np.rint(b * 255)).max())
            seam = frame == chunk.first and chunk is not chunks[0] and not chunk.at_cut  # a cut resets both runs
            rows.append(FrameDifference(frame, chunk.label, seam,
                                        0.0 if max_abs == 0 else flip(a, b, linear=False).mean, max_abs))
    return rows


def _files(folder: Path, frames: range) -> dict[int, str]:
    found = {e["frame"]: str(folder / e["file"]) for e in records.entries(folder)}
    missing = [f for f in frames if f not in found]
    if missing:
        raise SettingsError(f"{folder} has no recorded file for frames {missing[0]}..{missing[-1]}: the render stopped "
                            "early (see its report)")
    return found


def bench_farm(target: str, render_words: list[str], frames: range | None, chunk: int, warmup: int,
               out: Path, show_progress: bool = False) -> dict:
    """Render ``target`` continuously (one process, this machine's ``reframe-blender render``) and as a farm job
    (the connected Ray cluster) into ``out/single`` and ``out/farm``; returns timings and per-frame differences."""
    single, chunked = out / "single", out / "farm"
    for folder in (single, chunked):  # both renders from scratch (a farm never overwrites: see commands/farm.py)
        shutil.rmtree(folder, ignore_errors=True)
    frame_words = [] if frames is None else ["--frames", f"{frames.start}-{frames.stop - 1}"]
    base = ["render", target, *render_words, *frame_words]
    start = time.perf_counter()
    done = subprocess.run(render_command([*base, "--out", f"{single}/f_####", "--quiet"]), capture_output=True,
                          text=True)
    single_s = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
        raise SettingsError(f"the single-process render failed: {last}")
    job = FarmJob(target=target, render_words=[*render_words, "--out", f"{chunked}/f_####"],
                  frames=frames, chunk=chunk, warmup=warmup)
    start = time.perf_counter()
    report = run_farm(job, show_progress=show_progress, echo_saved=False)
    farm_s = time.perf_counter() - start
    here = plan(["render", target, *render_words, *frame_words, "--out", f"{single}/f_####"], "this machine")
    span = range(here["frames"][0], here["frames"][1] + 1)
    chunks = plan_chunks(span, [tuple(s) for s in here["shots"]], chunk, warmup)
    rows = compare_frames(_files(single, span), _files(chunked, span), chunks)
    seams = [r.flip for r in rows if r.seam]
    result = {"target": target, "render_words": render_words, "frames": [span.start, span.stop - 1], "chunk": chunk,
              "warmup": warmup, "single_s": single_s, "farm_s": farm_s, "nodes": report["nodes"],
              "chunks": [c.label for c in chunks], "seam_flip_max": max(seams, default=0.0),
              "seam_flip_mean": float(np.mean(seams)) if seams else 0.0,
              "flip_mean": float(np.mean([r.flip for r in rows])), "frames_compared": [asdict(r) for r in rows],
              "farm_report": report["report"]}
    (out / "bench-farm.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def format_bench(result: dict) -> str:
    lines = [f"{result['target']} frames {result['frames'][0]}-{result['frames'][1]}, chunks "
             f"{', '.join(result['chunks'])} (warm-up {result['warmup']}) on {len(result['nodes'])} node(s)",
             f"single process: {result['single_s']:.1f} s   farm: {result['farm_s']:.1f} s (node checks, chunk "
             f"starts and renders)",
             "frame  chunk      seam  FLIP vs continuous  max |diff| (8-bit)"]
    for r in result["frames_compared"]:
        lines.append(f"{r['frame']:>5}  {r['chunk']}  {'yes ' if r['seam'] else '    '}  {r['flip']:>18.4f}  "
                     f"{r['max_abs']:>18}")
    lines.append(f"seam FLIP: max {result['seam_flip_max']:.4f}, mean {result['seam_flip_mean']:.4f}; all frames: "
                 f"mean {result['flip_mean']:.4f}")
    return "\n".join(lines)
