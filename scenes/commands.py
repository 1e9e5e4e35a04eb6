"""Subcommands that need Blender: scenes list/build, dataset. bpy is imported only when they run."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import SCENES, get_scene


def _list(args) -> int:
    width = max(map(len, SCENES))
    for name, entry in SCENES.items():
        print(f"{name:<{width}}  {entry.covers:<52} {entry.summary}")
    return 0


def _build(args) -> int:
    import bpy

    from .capture import CaptureError

    entry = get_scene(args.name)
    out = Path(args.out)
    if out.suffix != ".blend":
        raise CaptureError(f"--out must end in .blend, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    scene = entry.build(args.seed)
    bpy.ops.wm.save_as_mainfile(filepath=str(out.resolve()), compress=False)
    print(f"wrote {out}: scene {args.name} (seed {args.seed}), frames {scene.frame_start}-{scene.frame_end}, "
          f"{len(bpy.data.objects)} objects, camera {scene.camera.name}")
    return 0


def _dataset(args) -> int:
    from .capture import CaptureError, parse_frames
    from .dataset import DatasetSpec, write_dataset

    try:
        scales = tuple(float(s) for s in args.scales.split(","))
        resolution = tuple(int(v) for v in args.resolution.lower().split("x")) if "x" in args.resolution.lower() \
            else (int(args.resolution),) * 2
    except ValueError:
        raise CaptureError(f"bad --scales {args.scales!r} or --resolution {args.resolution!r}: use e.g. --scales 1,2 --resolution 256 or 320x180") from None
    if any(s <= 0 for s in scales):
        raise CaptureError(f"--scales must be positive numbers, got {args.scales}")
    is_file = args.scene.endswith(".blend") or "/" in args.scene
    if not is_file:
        get_scene(args.scene)  # unknown names fail here, before any work
    if args.frames is None:
        if is_file:
            raise CaptureError("--frames is required for a .blend file (e.g. --frames 1-24)")
        first, last = get_scene(args.scene).frames
        frames = range(first, last + 1)
    else:
        frames = parse_frames(args.frames)
    spec = DatasetSpec(scene=args.scene, frames=frames, scales=scales, resolution=resolution,
                       samples=args.samples, jitter=not args.no_jitter, seed=args.seed)
    start = time.perf_counter()
    metadata = write_dataset(spec, args.out, show_progress=not args.quiet)
    count = sum(len(v) for v in metadata["frames"].values())
    print(f"dataset {args.out}: {count} frame files ({len(frames)} frames x {len(scales)} scales) "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def _bench_capture(args) -> int:
    import statistics

    from .capture import CaptureSettings, capture, parse_frames

    frames = parse_frames(args.frames)
    resolution = (args.resolution, args.resolution)
    results = {}
    for mode, settings in (("full", CaptureSettings(resolution=resolution, samples=args.samples)),
                           ("cheap G-buffer", CaptureSettings(resolution=resolution, fast=True))):
        scene = get_scene(args.scene).build(0)
        timings = [t for _, t in capture(scene, frames, settings)]
        results[mode] = timings
        render = statistics.median(t.render_s for t in timings)
        overhead = statistics.median(t.overhead for t in timings)
        print(f"{mode:<15} {args.scene} {args.resolution}x{args.resolution}: render median {render:.2f} s, "
              f"EXR save {statistics.median(t.save_s for t in timings) * 1e3:.1f} ms, read+convert "
              f"{statistics.median(t.read_s for t in timings) * 1e3:.1f} ms, capture overhead {overhead:.2%} of render (max "
              f"{max(t.overhead for t in timings):.2%}), n={len(timings)}")
    ratio = statistics.median(t.render_s for t in results["cheap G-buffer"]) / statistics.median(t.render_s for t in results["full"])
    print(f"cheap G-buffer pass / full frame: {ratio:.0%}")
    return 0


def _demo_synthetic(args) -> int:
    from reframe_core.demo import DEFAULT_POLICIES, format_table, run_demo

    policies = args.policies.split(";") if args.policies else DEFAULT_POLICIES
    from reframe_core.policies import parse_policy

    for spec in policies:
        parse_policy(spec)  # fail before any work on a bad spec
    rows, settings = run_demo(policies, frames=int(args.frames or 32), size=args.size or 256, seed=args.seed)
    print(f"ReFrame demo: {settings['network']}, {settings['frames']} frames at {settings['size']}x{settings['size']}, "
          f"camera cut at frame {settings['frames'] // 2 + 1}; cut {settings['cut']} caches {', '.join(settings['cached'])}; "
          f"uncached {settings['uncached_ms_per_frame']:.1f} ms/frame, {settings['threads']} threads, torch {settings['torch']}")
    print("speedup: uncached time / cached time over the sequence; PSNR and FLIP: cached output vs uncached output\n")
    print(format_table(rows))
    return 0


def _demo(args) -> int:
    if args.synthetic:
        return _demo_synthetic(args)
    from reframe_core.policies import parse_policy

    from .capture import parse_frames
    from .demo import DEFAULT_POLICIES, format_report, run_render_demo

    policies = args.policies.split(";") if args.policies else DEFAULT_POLICIES
    for spec in policies:
        parse_policy(spec)  # fail before any rendering on a bad spec
    frames = parse_frames(args.frames or "1-12")
    report = run_render_demo(args.scene, frames, args.size or 256, policies, args.out, args.samples)
    print(f"ReFrame demo render: {report['scene']} frames {report['frames'][0]}-{report['frames'][1]}, EEVEE at "
          f"{report['low_resolution']}x{report['low_resolution']} (jittered) -> SS 2x -> {report['resolution']}x{report['resolution']}; "
          f"cut {report['cut']['name']} removes {report['cut']['flops_removed_share']:.0%} of a frame's FLOPs on a hit; "
          f"{report['threads']} threads, torch {report['torch']}")
    print("speedup: uncached SS time / cached SS time over the sequence (network only; EEVEE's render time is not in it)\n")
    print(format_report(report))
    print(f"\nwrote {args.out}/report.json and PNG strips ({report['strips']})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="the demo render: EEVEE at half resolution + cached SS vs native")
    demo.add_argument("--scene", default="slow_pan", choices=sorted(SCENES))
    demo.add_argument("--frames", help="A-B (default 1-12)")
    demo.add_argument("--size", type=int, help="display resolution (square), default 256")
    demo.add_argument("--samples", type=int, default=16)
    demo.add_argument("--policies", help="policy specs separated by ';'")
    demo.add_argument("--out", default="out/demo")
    demo.add_argument("--synthetic", action="store_true",
                      help="no Blender: the reference U-Net on a synthetic pan (cached vs uncached only)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    scenes = subparsers.add_parser("scenes", help="the procedural scene library")
    sub = scenes.add_subparsers(dest="scenes_command", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="list scenes and what each covers")
    listing.set_defaults(run=_list)
    build = sub.add_parser("build", help="build a scene and save it as a .blend")
    build.add_argument("name", choices=sorted(SCENES))
    build.add_argument("--out", required=True, help="FILE.blend to write")
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(run=_build)

    dataset = subparsers.add_parser("dataset", help="render frame buffers (EXR) + metadata of a scene at several scales")
    dataset.add_argument("--scene", required=True, help="a scene name (reframe-blender scenes list) or FILE.blend")
    dataset.add_argument("--frames", help="A-B (default: the scene's range)")
    dataset.add_argument("--scales", default="1", help="comma-separated divisors of the resolution, e.g. 1,2")
    dataset.add_argument("--resolution", default="256", help="scale-1 size: N (square) or WxH")
    dataset.add_argument("--samples", type=int, default=16, help="EEVEE render samples")
    dataset.add_argument("--no-jitter", action="store_true", help="no Halton sub-pixel jitter on scales > 1")
    dataset.add_argument("--seed", type=int, default=0)
    dataset.add_argument("--out", required=True, help="output folder (resumable)")
    dataset.add_argument("--quiet", action="store_true", help="no progress bar")
    dataset.set_defaults(run=_dataset)

    bench = subparsers.add_parser("bench-capture", help="EEVEE render vs capture overhead; cheap G-buffer vs full frame")
    bench.add_argument("--scene", default="slow_pan", choices=sorted(SCENES))
    bench.add_argument("--frames", default="10-14")
    bench.add_argument("--resolution", type=int, default=256)
    bench.add_argument("--samples", type=int, default=16)
    bench.set_defaults(run=_bench_capture)
