"""Subcommands that need Blender: scenes list/build, dataset. bpy is imported only when they run."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from reframe_core.errors import MissingInputError, SettingsError
from scenes import SCENES, get_scene


def _list(args) -> int:
    width = max(map(len, SCENES))
    for name, entry in SCENES.items():
        print(f"{name:<{width}}  {entry.covers:<52} {entry.summary}")
    return 0


def _build(args) -> int:
    import bpy

    from blender_addon.capture import CaptureError

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
    from blender_addon.capture import CaptureError, parse_frames
    from blender_addon.dataset_writer import DatasetSpec, write_dataset

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
                       samples=args.samples, jitter=not args.no_jitter, seed=args.seed, cheap=args.cheap)
    start = time.perf_counter()
    metadata = write_dataset(spec, args.out, show_progress=not args.quiet)
    count = sum(len(v) for v in metadata["frames"].values())
    print(f"dataset {args.out}: {count} frame files ({len(frames)} frames x {len(scales)} scales) "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def _bench_capture(args) -> int:
    import statistics

    from blender_addon.capture import CaptureSettings, capture, parse_frames

    frames = parse_frames(args.frames)
    resolution = (args.resolution, args.resolution)
    results = {}
    for mode, settings in (("full", CaptureSettings(resolution=resolution, samples=args.samples)),
                           ("cheap G-buffer", CaptureSettings(resolution=resolution, samples=args.cheap_samples, fast=True))):
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
    from reframe_core.evaluation.synthetic_demo import DEFAULT_POLICIES, format_table, run_demo

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

    from blender_addon.capture import parse_frames
    from blender_addon.render_demo import DEFAULT_POLICIES, format_report, run_render_demo

    policies = args.policies.split(";") if args.policies else DEFAULT_POLICIES
    for spec in policies:
        parse_policy(spec)  # fail before any rendering on a bad spec
    frames = parse_frames(args.frames or "1-12")
    report = run_render_demo(args.scene, frames, args.size or 256, policies, args.out, args.samples)
    print(f"ReFrame demo render: {report['scene']} frames {report['frames'][0]}-{report['frames'][1]}, EEVEE at "
          f"{report['low_resolution']}x{report['low_resolution']} (jittered) -> SS 2x -> {report['resolution']}x{report['resolution']}; "
          f"cut {report['cut']['name']} removes {report['cut']['flops_removed_share']:.0%} of a frame's FLOPs on a hit; "
          f"{report['threads']} threads, torch {report['torch']}")
    print(f"speedup: uncached / cached network time per frame, interleaved, medians of {report['repeats']} passes "
          "(see the bench in README; EEVEE's render time is not in it)\n")
    print(format_report(report))
    print(f"\nwrote {args.out}/report.json and PNG strips ({report['strips']})")
    return 0


def _ensure_dataset(scene: str, root: Path, frames: range | None, scales: tuple[float, ...], resolution: int,
                    samples: int) -> Path:
    """The dataset folder for ``scene``, capturing (with Blender) only the frames it lacks."""
    from reframe_core.frames.dataset import Dataset

    if root.joinpath("metadata.json").exists():
        data = Dataset.open(root)
        have = [set(data.frames(s)) for s in scales]
        wanted = set(frames) if frames is not None else set.intersection(*have)
        if wanted and all(wanted <= h for h in have):
            return root
    if "/" in scene:  # a dataset folder named directly: nothing to capture it from
        raise MissingInputError(f"{root} is not a complete dataset for scales {', '.join(f'{s:g}' for s in scales)}; "
                                f"capture it with reframe-blender dataset --scales {','.join(f'{s:g}' for s in scales)} --out {root}")
    try:
        import bpy  # noqa: F401
    except ImportError:
        raise MissingInputError(f"no captured frames of {scene} in {root}, and Blender's bpy module is not installed to "
                                "capture them: pip install 'reframe-blender[bpy]', or run inside Blender") from None
    from blender_addon.dataset_writer import DatasetSpec, write_dataset

    if frames is None:
        first, last = get_scene(scene).frames
        frames = range(first, min(last, first + 15) + 1)
    print(f"capturing {scene} frames {frames.start}-{frames.stop - 1} at {resolution}x{resolution}, {samples} samples -> {root}")
    write_dataset(DatasetSpec(scene=scene, frames=frames, scales=scales, resolution=(resolution, resolution),
                              samples=samples), root)
    return root


def _bench(args) -> int:
    import torch
    from tqdm import tqdm

    from reframe_core.evaluation import bench
    from reframe_core.runtime.placement import Placement
    from reframe_core.policies import parse_policy, split_policy_list
    from reframe_core.workloads import get_workload

    from blender_addon.capture import parse_frames

    if args.repeats < 1 or args.warmup < 0 or args.worst < 0:
        raise SettingsError("--repeats must be >= 1, --warmup and --worst >= 0")
    workloads = [w.strip() for w in args.workload.split(",") if w.strip()]
    units = {w: get_workload(w, k=args.k) for w in workloads}  # an unknown name fails here, before any work
    placement = Placement(args.device, args.precision, args.channels_last)
    if args.precision == "fp16" and not placement.is_cuda:
        raise SettingsError("--precision fp16 needs --device cuda (CPU kernels for fp16 convolutions are slow or missing); use bf16 or fp32 on CPU")
    frames = parse_frames(args.frames) if args.frames else None
    scenes = [s.strip() for s in args.scenes.split(",") if s.strip()]
    if not scenes:
        raise SettingsError("--scenes needs at least one scene name or dataset folder")
    policy_lists = {}
    for w in workloads:
        specs = bench.default_policies(units[w]) if args.policies == "default" else split_policy_list(args.policies)
        for spec in specs:
            parse_policy(spec)  # a bad spec fails before any capture or measuring
        policy_lists[w] = specs
    for path in filter(None, (args.json, args.plot, args.maps and Path(args.maps) / "x")):
        try:  # before any work: a report that cannot be written is found out now, not after the run
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SettingsError(f"cannot create the folder of {path}: {exc.strerror or exc}; choose another path") from None
    if args.weights and len(workloads) > 1:
        raise SettingsError("--weights applies to one workload: run ss and fe separately with their own --weights")
    scales = (1.0, args.scale)
    roots = {}
    for scene in scenes:  # capture first: any capture error stops before minutes of measuring
        root = Path(scene) if "/" in scene else Path(args.data_root) / scene
        roots[scene] = _ensure_dataset(scene, root, frames, scales, args.resolution, args.samples)
    maps_dir = Path(args.maps) if args.maps else (Path(args.json).with_name(Path(args.json).stem + "_maps") if args.json else None)
    results = []
    for w in workloads:
        workload = units[w]
        model, payload = workload.load(args.weights, args.scale)
        model = placement.model(model)
        for scene in scenes:
            sequence = bench.dataset_sequence(roots[scene], workload, args.scale, list(frames) if frames else None)
            with tqdm(total=len(sequence.frames) * args.repeats, desc=f"bench {w} {sequence.name}", unit="frame", disable=args.quiet) as bar:
                result = bench.measure_sequence(workload, sequence, model, policy_lists[w], placement, cut=args.cut,
                                                warmup=args.warmup, worst=args.worst, maps_dir=maps_dir,
                                                compile_model=args.compile, repeats=args.repeats,
                                                progress=lambda: bar.update(1))
            result["weights"] = str(args.weights or workload.weights_name(args.scale))
            results.append(result)
    summary = bench.summarize(results)
    print(bench.format_table(results))
    print()
    print(bench.format_summary(summary))
    report = {"schema": bench.SCHEMA, "command": "reframe-blender " + " ".join(args.argv),
              "machine": bench.machine_info(placement),
              "settings": {"workloads": workloads, "scenes": scenes, "scale": args.scale, "k": args.k,
                           "device": args.device, "precision": args.precision, "channels_last": args.channels_last,
                           "compile": args.compile, "warmup": args.warmup, "repeats": args.repeats, "cut": args.cut,
                           "torch_threads": torch.get_num_threads()},
              "target": bench.TARGET, "results": results, "summary": summary}
    if args.json:
        import json

        from reframe_core.frames.buffers import atomic_write

        text = json.dumps(report, indent=1)
        atomic_write(Path(args.json), lambda tmp: tmp.write_text(text))
        print(f"wrote {args.json}" + (f" and error maps in {maps_dir}" if maps_dir else ""))
    if args.plot:
        bench.plot_pareto(summary, args.plot, title=", ".join(scenes))
        print(f"wrote {args.plot}")
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
    dataset.add_argument("--cheap", action="store_true",
                         help="render FE's cheap G-buffer pass (1 sample, shadows and raytracing off): "
                              "eval --workload fe --cheap-data DIR takes the extrapolated frames' buffers from it")
    dataset.add_argument("--out", required=True, help="output folder (resumable)")
    dataset.add_argument("--quiet", action="store_true", help="no progress bar")
    dataset.set_defaults(run=_dataset)

    bench = subparsers.add_parser("bench", help="speed vs quality of caching per workload, scene and policy (JSON, plot)")
    bench.add_argument("--workload", default="ss", help="ss, fe or ss,fe")
    bench.add_argument("--scenes", default="slow_pan", help="scene names (captured into --data-root if missing) or dataset folders, comma-separated")
    bench.add_argument("--policies", default="default",
                       help="comma-separated policy specs, or 'default': the paper's every:N and delta:T beside ours, as threshold sweeps")
    bench.add_argument("--frames", help="A-B (default: every frame the dataset has; 16 frames when capturing)")
    bench.add_argument("--data-root", default="out/data", help="where scene datasets live (default out/data)")
    bench.add_argument("--resolution", type=int, default=256, help="display resolution when capturing")
    bench.add_argument("--samples", type=int, default=8, help="EEVEE samples when capturing")
    bench.add_argument("--scale", type=float, default=2.0, help="SS scale (per axis)")
    bench.add_argument("--k", type=int, default=2, help="FE: every k-th frame rendered in full")
    bench.add_argument("--weights", help="weights file (default: the shipped one of the workload)")
    bench.add_argument("--cut", default="auto", help="cut point (reframe-blender cuts lists them)")
    bench.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    bench.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    bench.add_argument("--channels-last", action="store_true", help="channels-last memory layout")
    bench.add_argument("--compile", action="store_true", help="torch.compile the uncached net and each cache's passes")
    bench.add_argument("--warmup", type=int, default=3, help="frames run by every runner before measuring")
    bench.add_argument("--repeats", type=int, default=1, help="passes over the sequence (more timing samples)")
    bench.add_argument("--worst", type=int, default=2, help="error-map PNGs of this many worst frames per policy")
    bench.add_argument("--json", help="write the full report here")
    bench.add_argument("--plot", help="write the Pareto plot (speedup vs mean FLIP) here")
    bench.add_argument("--maps", help="folder for error-map PNGs (default: beside --json)")
    bench.add_argument("--quiet", action="store_true")
    bench.set_defaults(run=_bench)

    bench = subparsers.add_parser("bench-capture", help="EEVEE render vs capture overhead; cheap G-buffer vs full frame")
    bench.add_argument("--scene", default="slow_pan", choices=sorted(SCENES))
    bench.add_argument("--frames", default="10-14")
    bench.add_argument("--resolution", type=int, default=256)
    bench.add_argument("--samples", type=int, default=16)
    bench.add_argument("--cheap-samples", type=int, default=1, help="samples of the cheap G-buffer pass")
    bench.set_defaults(run=_bench_capture)
