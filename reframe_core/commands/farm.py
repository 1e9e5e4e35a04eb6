"""``reframe-blender farm``: one ReFrame render cut into chunks across a Ray cluster, or printed as the chunk
command lines any other farm manager runs (``--print-commands``)."""
from __future__ import annotations

import argparse
import os
import shlex

from reframe_core.commands.render import (AUTO_POLICY, calibrated, job_arguments, job_argv, job_from_args,
                                          library_output, run_resumable)
from reframe_core.errors import SettingsError


def _target(text: str) -> str:
    # Nodes take paths as given: one relative to where this runs means nothing on them.
    return os.path.abspath(text) if text.endswith(".blend") or os.sep in text else text


def _job(args):
    from reframe_core.farm.cluster import FarmJob

    job_from_args(args)  # bad settings fail here, before any node is asked
    if args.overwrite:
        # A retried chunk must keep the frames its killed attempt wrote, which --overwrite would render again
        # (and old frames it had not reached yet would pass for new ones): a farm run only ever adds frames.
        raise SettingsError("a farm run resumes and never overwrites: to render frames again, delete them (with "
                            "the .reframe-frames folder beside them) or pass another --out")
    if not args.scene.endswith(".blend") and os.sep not in args.scene and not args.out:
        args.out = library_output(args.scene, args.mode)  # the render command's default, made absolute below
    if args.out and not os.path.isabs(args.out) and not args.out.startswith("//"):  # "//": beside the .blend
        args.out = os.path.abspath(args.out) + ("/" if args.out.endswith("/") else "")
    for name in ("weights", "report"):
        if getattr(args, name):
            setattr(args, name, os.path.abspath(getattr(args, name)))
    if args.policy == AUTO_POLICY:
        # Resolved here, once: every chunk then runs the same setting, whatever the nodes' working folders hold.
        resolved = calibrated(job_from_args(args), os.path.abspath(args.scene) if args.scene.endswith(".blend") else args.scene)
        args.policy, args.reproject = resolved.policy or "none", resolved.reproject
    words = job_argv(args)
    if args.seed:
        words += ["--seed", str(args.seed)]
    frames = None
    if args.frames:
        from reframe_core.frames.ranges import parse_frames

        frames = parse_frames(args.frames)
    return FarmJob(target=_target(args.scene), render_words=words, frames=frames, chunk=args.chunk,
                   warmup=args.warmup, retries=args.retries, cpus_per_chunk=args.cpus_per_chunk,
                   gpus_per_chunk=args.gpus_per_chunk, report=args.report)


def _print_commands(job) -> int:
    from reframe_core.farm.chunks import plan_chunks
    from reframe_core.farm.node import plan

    here = plan(job.words(), "this machine")
    frames = range(here["frames"][0], here["frames"][1] + 1)
    for chunk in plan_chunks(frames, [tuple(s) for s in here["shots"]], job.chunk, job.warmup):
        print(shlex.join(["reframe-blender", "render", job.target, *job.render_words, *chunk.render_words()]))
    return 0


def summary(report: dict) -> str:
    t = report["totals"]
    lines = [f"{report['status']}: {t['written']} frames written in {t['chunks']} chunks ({t['already_done']} already "
             f"done, {t['warmup']} warm-up frames) on {len(report['nodes'])} node(s) in {report['wall_s']:.1f} s"]
    for row in report["chunks"]:
        if row["attempts"] > 1:
            lines.append(f"chunk {row['label']} took {row['attempts']} attempts (nodes {', '.join(row['nodes'])}); "
                         f"{row.get('skipped', 0)} of its frames were kept from the earlier ones")
    if t["written_twice"]:
        lines.append(f"written more than once: {', '.join(t['written_twice'])}")
    lines.append(f"report: {report['report']}")
    return "\n".join(lines)


def _farm(args) -> int:
    job = _job(args)
    if args.print_commands:
        return _print_commands(job)
    from reframe_core.farm.cluster import connect, run_farm

    connect(args.address, args.num_cpus)
    return run_resumable(lambda: summary(run_farm(job, show_progress=not args.quiet)))


def _bench_farm(args) -> int:
    from pathlib import Path

    from reframe_core.farm.bench import bench_farm, format_bench
    from reframe_core.farm.cluster import connect

    if args.out:
        raise SettingsError("bench-farm writes both renders under --bench-out DIR: leave out --out")
    job = _job(args)
    connect(args.address, args.num_cpus)
    result = bench_farm(job.target, job.render_words, job.frames, job.chunk, job.warmup, Path(args.bench_out).absolute(),
                        show_progress=not args.quiet)
    print(format_bench(result))
    print(f"JSON: {Path(args.bench_out) / 'bench-farm.json'}")
    return 0


def _cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scene", metavar="FILE.blend|SCENE", help="a .blend file on shared storage, or a library scene")
    parser.add_argument("--seed", type=int, default=0, help="seed of a library scene")
    job_arguments(parser)
    parser.add_argument("--chunk", type=int, default=24, help="frames per chunk at most (default 24)")
    parser.add_argument("--address", default="auto",
                        help="the Ray cluster: auto (the one 'ray start' joined this machine to), ray://HOST:10001, "
                             "or local (start one on this machine) (default auto)")
    parser.add_argument("--num-cpus", type=int, help="--address local: CPUs the local cluster offers (default all)")
    parser.add_argument("--cpus-per-chunk", type=float, default=1.0,
                        help="CPUs a chunk reserves on its node (its torch threads; default 1)")
    parser.add_argument("--gpus-per-chunk", type=float, default=0.0,
                        help="GPUs a chunk reserves (with --device cuda; default 0)")
    parser.add_argument("--retries", type=int, default=3,
                        help="times a failed or lost chunk is run again (finished frames kept; default 3)")


def register(subparsers: argparse._SubParsersAction) -> None:
    farm = subparsers.add_parser(
        "farm", help="render across a Ray cluster in chunks (or print the chunks' command lines)",
        description="Cut the frame range into chunks (at camera cuts where possible, each chunk inside a shot warmed "
                    "up on the frames before it) and render each as 'reframe-blender render ... --frames A-B "
                    "--warmup N' in a Ray task; failed or lost chunks are retried without redoing finished frames. "
                    "Every node needs this project installed and must reach the .blend and the output folder at "
                    "the same path.")
    _cluster_arguments(farm)
    farm.add_argument("--print-commands", action="store_true",
                      help="print one 'reframe-blender render' line per chunk (for Flamenco, Deadline, a shell loop) "
                           "and exit; needs no Ray")
    farm.set_defaults(run=_farm)

    bench = subparsers.add_parser(
        "bench-farm", help="time one render continuous vs as farm chunks, and measure the chunk seams (FLIP)",
        description="Render the job once in a single process and once through the farm (chunks on the Ray cluster), "
                    "print both wall times and the FLIP between the continuous and the chunked frames, seams marked.")
    _cluster_arguments(bench)
    bench.add_argument("--bench-out", default="out/bench-farm", help="folder of both renders and the JSON")
    bench.set_defaults(run=_bench_farm)
