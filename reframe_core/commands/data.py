"""Scenes and captured datasets (need Blender's bpy, imported only when a command runs)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from scenes import SCENES, get_scene


def _list(args) -> int:
    width = max(map(len, SCENES))
    for name, entry in SCENES.items():
        print(f"{name:<{width}}  {entry.covers:<52} {entry.summary}")
    return 0


def _build(args) -> int:
    from blender_addon.capture import save_scene

    print(save_scene(get_scene(args.name), args.seed, Path(args.out)))
    return 0


def _dataset(args) -> int:
    from blender_addon.capture import CaptureError
    from reframe_core.frames.ranges import parse_frames
    from blender_addon.dataset_writer import DatasetSpec, write_dataset

    try:
        scales = tuple(float(s) for s in args.scales.split(","))
        resolution = tuple(int(v) for v in args.resolution.lower().split("x")) if "x" in args.resolution.lower() \
            else (int(args.resolution),) * 2
    except ValueError:
        raise CaptureError(f"bad --scales {args.scales!r} or --resolution {args.resolution!r}: use e.g. --scales 1,2 --resolution 256 or 320x180") from None
    if any(s <= 0 for s in scales):
        raise CaptureError(f"--scales must be positive numbers, got {args.scales}")
    if args.film_filter is not None and args.film_filter <= 0:
        raise CaptureError(f"--film-filter is a width in pixels and must be positive, got {args.film_filter:g}; "
                           "drop it to keep the scene's filter")
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
                       samples=args.samples, jitter=not args.no_jitter, seed=args.seed, cheap=args.cheap,
                       film_filter=args.film_filter)
    start = time.perf_counter()
    metadata = write_dataset(spec, args.out, show_progress=not args.quiet)
    count = sum(len(v) for v in metadata["frames"].values())
    print(f"dataset {args.out}: {count} frame files ({len(frames)} frames x {len(scales)} scales) "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
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
    dataset.add_argument("--cheap", action="store_true",
                         help="render FE's cheap G-buffer pass (1 sample, shadows and raytracing off): "
                              "eval --workload fe --cheap-data DIR takes the extrapolated frames' buffers from it")
    dataset.add_argument("--film-filter", type=float, metavar="PX",
                         help="EEVEE's film filter width in rendered pixels, for every scale (default: the scene's, "
                              "1.5; at scale 2, 0.75 covers the display footprint of the native render's 1.5)")
    dataset.add_argument("--out", required=True, help="output folder (resumable)")
    dataset.add_argument("--quiet", action="store_true", help="no progress bar")
    dataset.set_defaults(run=_dataset)
