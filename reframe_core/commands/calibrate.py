"""``reframe-blender calibrate``: find and store the fastest cache setting that keeps a FLIP target on a scene."""
from __future__ import annotations

import argparse
from pathlib import Path

from reframe_core.errors import SettingsError


def _default_frames(scene: str) -> range:
    """The first 12 frames of the scene's range (a .blend is opened to read it)."""
    if scene.endswith(".blend") or "/" in scene:
        from blender_addon.capture import open_blend

        opened = open_blend(scene)
        first, last = opened.frame_start, opened.frame_end
    else:
        from scenes import get_scene

        first, last = get_scene(scene).frames
    return range(first, min(last, first + 11) + 1)


def _calibrate(args) -> int:
    from tqdm import tqdm

    from reframe_core.commands.measure import _ensure_dataset
    from reframe_core.evaluation import bench
    from reframe_core.evaluation.calibration import Calibration, candidate_settings, choose, write_calibration
    from reframe_core.frames.ranges import parse_frames
    from reframe_core.runtime.placement import Placement
    from reframe_core.workloads import get_workload

    if not args.target_flip > 0:
        raise SettingsError(f"--target-flip must be > 0 (mean FLIP of cached vs uncached output), got {args.target_flip}")
    workload = get_workload(args.workload, k=args.k)
    scale = workload.input_scale(args.scale)
    if args.scene.endswith(".blend") and not Path(args.scene).exists():
        raise SettingsError(f"{args.scene} does not exist: give an existing .blend or a library scene name")
    frames = parse_frames(args.frames) if args.frames else _default_frames(args.scene)
    if len(frames) < 4:
        raise SettingsError(f"--frames {args.frames} has {len(frames)} frames: calibrate needs at least 4 (12 or more "
                            "give a setting that holds over the shot)")
    stem = Path(args.scene).stem if args.scene.endswith(".blend") else args.scene
    root = Path(args.data) if args.data else Path("out/calibration") / f"{stem}-{args.resolution}"
    _ensure_dataset(args.scene, root, frames, (1.0, scale), args.resolution, args.samples)
    # Measured where and as it will render (render's default precision): hit and refresh costs differ by device.
    placement = Placement(args.device, "mixed")
    model, _ = workload.load(args.weights, args.scale)
    cheap_root = None
    if workload.without_cheap_pass(model):  # as render runs it, with each rendered frame's cheap pass
        cheap_root = _ensure_dataset(args.scene, root.with_name(root.name + "-cheap"), frames, (1.0,), args.resolution,
                                     args.samples, cheap=True)
    sequence = bench.dataset_sequence(root, workload, args.scale, list(frames), cheap_root=cheap_root)
    model = placement.model(model)
    entries = [spec + (bench.REPROJECT if reproject else "") for spec, reproject in candidate_settings(workload)]
    with tqdm(total=len(sequence.frames), desc=f"calibrate {args.workload}", unit="frame", disable=args.quiet) as bar:
        result = bench.measure_sequence(workload, sequence, model, entries, placement, warmup=2, worst=0,
                                        progress=lambda: bar.update(1))
    rows = []
    for p in result["policies"]:
        spec, reproject = bench.bench_entry(p["policy"])
        rows.append({"policy": spec, "reproject": reproject, "speedup": p["speedup"], "flip_mean": p["flip_vs_uncached"]["mean"],
                     "flip_max": p["flip_vs_uncached"]["max"], "hit_rate": p["hit_rate"]})
    rows.sort(key=lambda r: -r["speedup"])
    print(f"{'setting':<44} {'speedup':>7} {'hits':>5} {'FLIP mean':>9} {'FLIP max':>9}")
    for r in rows:
        label = r["policy"] + (" +reproject" if r["reproject"] else "")
        print(f"{label:<44} {r['speedup']:>6.2f}x {r['hit_rate']:>5.0%} {r['flip_mean']:>9.4f} {r['flip_max']:>9.4f}")
    best = choose(rows, args.target_flip, args.workload)
    h, w = sequence.display_size
    calibration = Calibration(workload=args.workload, policy=best["policy"], reproject=best["reproject"],
                              target_flip=args.target_flip, speedup=round(best["speedup"], 3),
                              flip_mean=round(best["flip_mean"], 5), flip_max=round(best["flip_max"], 5),
                              hit_rate=round(best["hit_rate"], 3), frames=[frames.start, frames.stop - 1],
                              measured_on=f"{stem} {w}x{h}, {args.samples} samples, {len(frames)} frames, {root}",
                              command="reframe-blender " + " ".join(args.argv))
    path = write_calibration(args.scene, calibration)
    print(f"chosen for {args.workload}: {calibration.describe()}")
    print(f"wrote {path} (reframe-blender render and the add-on use it when their policy is 'auto')")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    cal = subparsers.add_parser("calibrate", help="find the fastest cache setting that keeps a FLIP target on a scene, "
                                                  "and store it beside the scene",
                                description="Render a short clip of the scene, measure every candidate refresh "
                                            "setting (the screen policy's limits, with and without feature "
                                            "reprojection, and fixed schedules) against the uncached network, and "
                                            "store the fastest one that keeps --target-flip beside the scene "
                                            "(FILE.reframe-calibration.json next to FILE.blend).")
    cal.add_argument("scene", metavar="FILE.blend|SCENE", help="a .blend file or a library scene name")
    cal.add_argument("--workload", choices=("ss", "fe"), required=True)
    cal.add_argument("--target-flip", type=float, default=0.02,
                     help="mean FLIP of the cached output against the uncached one to stay within (default 0.02; "
                          "no frame may exceed 2.5 times it)")
    cal.add_argument("--frames", help="A-B: the clip to measure (default: the first 12 frames of the scene's range)")
    cal.add_argument("--resolution", type=int, default=256, help="display resolution of the clip (default 256)")
    cal.add_argument("--samples", type=int, default=8, help="EEVEE samples of the clip (default 8)")
    cal.add_argument("--scale", type=float, default=2.0, help="SS scale per axis (default 2)")
    cal.add_argument("--k", type=int, default=2, help="FE: every k-th frame rendered in full (default 2)")
    cal.add_argument("--weights", help="weights file (default: the shipped one)")
    cal.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: the device the renders will use (default cpu)")
    cal.add_argument("--data", help="dataset folder for the clip (default out/calibration/NAME-RESOLUTION; resumable); FE "
                                    "also renders the clip's cheap pass beside it (DIR-cheap), which the shipped FE relights with")
    cal.add_argument("--quiet", action="store_true")
    cal.set_defaults(run=_calibrate)
