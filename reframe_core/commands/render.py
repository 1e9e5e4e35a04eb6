"""``reframe-blender render``: render an animation with cached SS / FE (or natively) through bpy.

The same arguments work inside Blender: ``blender -b FILE.blend -P blender_addon/render_in_blender.py -- ARGS``
(there the open file is the scene, so the FILE/SCENE argument is left out).
"""
from __future__ import annotations

import argparse
import json
import sys

from reframe_core.commands import PRECISION_CHOICES, PRECISION_HELP
from reframe_core.frames.ranges import parse_frames
from reframe_core.runtime.session import DEFAULT_WARMUP as WARMUP


AUTO_POLICY = "auto"  # the scene's calibration when there is one, else FALLBACK_POLICY
FALLBACK_POLICY = "motion"


def policy_or_none(text: str) -> str | None:
    """A policy spec checked, or None for 'none' / 'uncached' (the network runs uncached); 'auto' stays 'auto'
    until the scene is known (:func:`calibrated`)."""
    if text.lower() in ("none", "uncached"):
        return None
    if text.lower() == AUTO_POLICY:
        return AUTO_POLICY
    from reframe_core.policies import parse_policy

    parse_policy(text)  # a bad spec fails before Blender opens anything
    return text


def job_arguments(parser: argparse.ArgumentParser) -> None:
    """The job's options (shared with blender_addon.render_in_blender)."""
    parser.add_argument("--mode", choices=("ss", "fe", "native"), default="ss",
                        help="ss: EEVEE at 1/scale + cached supersampling; fe: every k-th frame in full, the others "
                             "extrapolated from a cheap G-buffer pass; native: the plain render (default ss)")
    parser.add_argument("--scale", type=float, default=2.0, help="ss: display / rendered size per axis (default 2)")
    parser.add_argument("--policy", default=AUTO_POLICY,
                        help="cache refresh policy spec (reframe-blender bench --help lists them), 'none' to run the "
                             "network uncached, or 'auto' (default): the setting 'reframe-blender calibrate' stored "
                             "beside the scene, else camera motion")
    parser.add_argument("--reproject", action="store_true",
                        help="on a cache hit, move the cached features to the current camera (from the depth pass and "
                             "the two cameras), so that a moving camera needs fewer refreshes")
    parser.add_argument("--k", type=int, default=2, help="fe: every k-th frame rendered in full (default 2)")
    parser.add_argument("--frames", help="A-B (default: the scene's frame range)")
    parser.add_argument("--warmup", type=int, default=WARMUP,
                        help=f"frames rendered and stepped but not written before the first frame to render, so "
                             f"history and cache are warm in a resumed run or a farm chunk (default {WARMUP})")
    parser.add_argument("--out", help="output path as in Blender ('#' = frame digits), default the scene's own")
    parser.add_argument("--overwrite", action="store_true",
                        help="render every frame again (default: frames this command already wrote are skipped)")
    parser.add_argument("--report", help="report JSON (default: reframe-MODE-A-B.json beside the frames)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument("--precision", default="mixed", choices=PRECISION_CHOICES, help=PRECISION_HELP)
    parser.add_argument("--weights", help="a weights file (default: the shipped weights for the mode and scale)")
    parser.add_argument("--runtime", choices=("inprocess", "server"), default="inprocess",
                        help="where the network runs: in this process, or in a runtime server (reframe-blender "
                             "serve; started here from --server-python when none is running) -- same frames either "
                             "way (default inprocess)")
    parser.add_argument("--server-python", metavar="PYTHON",
                        help="the Python executable that starts the server: the project environment's, with torch "
                             "(default: this Python)")
    parser.add_argument("--server", metavar="ADDRESS", help="a running server's socket (default: the per-user one)")
    parser.add_argument("--fallback", action="store_true",
                        help="when the runtime cannot produce a frame (server died or hung, broken input), write the "
                             "baseline (bicubic / the full render) and mark it in the report, instead of stopping")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="how long one runtime call may take before the server counts as hung (default 120)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--plan-only", action="store_true",
                        help="check the file, scene and output folder and print what would be rendered (frames, "
                             "camera shots, finished frames) as one JSON line; render nothing")


def job_from_args(args):
    from blender_addon.render_loop import RenderJob

    return RenderJob(mode=args.mode, scale=args.scale, policy=policy_or_none(args.policy), k=args.k,
                     frames=parse_frames(args.frames) if args.frames else None, warmup=args.warmup, output=args.out,
                     overwrite=args.overwrite, report=args.report, device=args.device, precision=args.precision,
                     weights=args.weights, runtime=args.runtime, server_python=args.server_python,
                     server_address=args.server, fallback=args.fallback, timeout=args.timeout,
                     reproject=args.reproject)


def summary(report: dict) -> str:
    t, job = report["totals"], report["job"]
    lines = [f"{report['status']}: {t['written']} frames written, {t['skipped']} already done, {t['warmup']} warm-up "
             f"frames ({job['mode']}, {report['scene']['size'][0]}x{report['scene']['size'][1]}) in {report['wall_s']:.1f} s"]
    if t["written"]:
        n = len(report["frames"])
        lines.append(f"per frame stepped: render {t['render_s'] / n:.2f} s, capture {t['capture_s'] / n:.3f} s, "
                     f"network {t['network_s'] / n:.3f} s, write {t['write_s'] / max(t['written'], 1):.3f} s per written frame")
    if t["hit_rate"] is not None:
        lines.append(f"network ran on {t['network_frames']} frames, cache hit rate {t['hit_rate']:.0%}")
    if t["fallbacks"]:
        lines.append(f"{t['fallbacks']} frames show the baseline instead of the network (frames "
                     f"{_ranges(t['fallback_frames'])}): see the reasons in the report")
    lines.append(f"report: {report['report']}")
    return "\n".join(lines)


def _ranges(frames: list[int]) -> str:
    parts, start = [], None
    for i, f in enumerate(frames):
        start = f if start is None else start
        if i + 1 == len(frames) or frames[i + 1] != f + 1:
            parts.append(str(start) if start == f else f"{start}-{f}")
            start = None
    return ", ".join(parts)


def job_argv(args) -> list[str]:
    """The job options of parsed ``args`` as command-line words (those set away from their defaults), so a farm
    hands each chunk the same job."""
    reference = argparse.ArgumentParser(add_help=False)
    job_arguments(reference)
    words: list[str] = []
    for action in reference._actions:
        value = getattr(args, action.dest, action.default)
        if action.dest in ("frames", "warmup", "report", "quiet", "plan_only") or value == action.default or value is None:
            continue
        option = action.option_strings[0]
        words += [option] if isinstance(action, argparse._StoreTrueAction) else [option, str(value)]
    return words


def calibrated(job, scene_source: str | None):
    """``job`` with policy 'auto' resolved: the calibration stored for ``scene_source`` (a .blend path or a library
    scene name) and this workload when there is one (its policy and reprojection), else camera motion."""
    import dataclasses

    if job.policy != AUTO_POLICY:
        return job
    from reframe_core.evaluation.calibration import read_calibration

    found = read_calibration(scene_source, job.workload) if scene_source and job.workload else None
    if found is None:
        return dataclasses.replace(job, policy=FALLBACK_POLICY)
    return dataclasses.replace(job, policy=found.policy, reproject=found.reproject)


def run_job(scene, args, source: str | None = None) -> int:
    """Render ``scene`` with the job in ``args``; ``source`` (the .blend path or library scene name) is where a
    stored calibration is looked up for ``--policy auto``."""
    from blender_addon.render_loop import describe_job, render_animation

    job = calibrated(job_from_args(args), source)
    if args.plan_only:
        print(json.dumps(describe_job(scene, job)))  # one line: farm nodes read it
        return 0
    return run_resumable(lambda: summary(render_animation(scene, job, show_progress=not args.quiet)))


def run_resumable(work) -> int:
    """Run ``work()`` and print the summary it returns; Ctrl-C ends with status 130 and says how to go on (every
    frame written is complete, and the same command resumes)."""
    try:
        text = work()
    except KeyboardInterrupt:
        print("interrupted: the frames written so far are complete; run the same command again to render the rest",
              file=sys.stderr)
        return 130
    print(text)
    return 0


def _render(args) -> int:
    job_from_args(args)  # bad settings fail before Blender loads anything
    from blender_addon.capture import open_blend

    if args.scene.endswith(".blend") or "/" in args.scene:
        return run_job(open_blend(args.scene), args, args.scene)
    return run_job(build_library_scene(args.scene, args), args, args.scene)


def build_library_scene(name: str, args):
    """Build library scene ``name``; with no --out, its frames go to out/render/NAME/MODE/ (a built scene has no
    output path of its own)."""
    from scenes import get_scene

    scene = get_scene(name).build(args.seed)
    if args.out is None:
        args.out = library_output(name, args.mode)
    return scene


def library_output(name: str, mode: str) -> str:
    """Where a library scene's frames go by default (a built scene has no output path of its own)."""
    return f"out/render/{name}/{mode}/####"


def register(subparsers: argparse._SubParsersAction) -> None:
    render = subparsers.add_parser("render", help="render an animation with cached SS / FE, or natively",
                                   description="Render FILE.blend (or a library scene) frame by frame with EEVEE and "
                                               "the cached network, writing frames like Blender's animation render.")
    render.add_argument("scene", metavar="FILE.blend|SCENE", help="a .blend file or a library scene name")
    render.add_argument("--seed", type=int, default=0, help="seed of a library scene")
    job_arguments(render)
    render.set_defaults(run=_render)
