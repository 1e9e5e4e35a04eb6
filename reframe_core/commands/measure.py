"""Measuring: quality against native renders (eval), speed vs quality of caching (bench), a network's cut points
(cuts) and pass times (bench-cache), EEVEE render vs capture cost (bench-capture)."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from reframe_core.commands import PRECISION_CHOICES, PRECISION_HELP
from reframe_core.errors import MissingInputError, SettingsError
from scenes import SCENES, get_scene


def _cuts(args) -> int:
    from reframe_core.caching.cuts import GraphAnalysis
    from reframe_core.networks import get_network

    entry = get_network(args.model)
    model = entry.build().eval()
    analysis = GraphAnalysis.of(model, entry.example_inputs(args.size, args.size))
    candidates = analysis.candidates()
    chosen = analysis.resolve("auto").name
    if args.json:
        print(json.dumps({"model": args.model, "size": args.size, "auto": chosen,
                          "candidates": [c.describe() for c in candidates]}, indent=2))
        return 0
    print(f"{args.model} at {args.size}x{args.size}: {analysis.total_flops / 1e9:.2f} GFLOPs per full pass; auto picks {chosen}")
    print(f"{'cut':<18} {'hit FLOPs':>9} {'removed':>8} {'valid':>5}  cached tensors")
    for c in candidates:
        shapes = ", ".join(f"{n} {'x'.join(map(str, s)) if s else ''}" for n, s in zip(c.cached_labels, c.cached_shapes))
        mark = "*" if c.name == chosen else " "
        print(f"{mark}{c.name:<17} {c.hit_share:>9.1%} {c.removed_share:>8.1%} {'yes' if c.valid else 'no':>5}  {shapes}"
              + (f"  ({c.note})" if not c.valid else ""))
    return 0


def _bench_cache(args) -> int:
    from reframe_core.evaluation.speed import format_report, measure_cache_speed

    report = measure_cache_speed(args.model, args.size, repeats=args.repeats, device=args.device,
                                 precision=args.precision, channels_last=args.channels_last, compile_model=args.compile,
                                 weights=args.weights)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2))
    return 0


def _one_per_dataset(option: str, value: str | None, roots: list[str]) -> list:
    """``value`` (comma-separated) as one entry per ``--data`` dataset, or None for each when not given."""
    given = value.split(",") if value else [None] * len(roots)
    if len(given) != len(roots):
        raise SettingsError(f"{option} names {len(given)} datasets for {len(roots)} in --data: give one per --data "
                            "dataset, in the same order")
    return given


def _evaluate(args) -> int:
    from reframe_core.workloads import get_workload

    if args.reset_history and args.workload != "ss":
        raise SettingsError("--reset-history is for --workload ss (the SS network's fed-back output); drop it for fe")
    workload = get_workload(args.workload, k=args.k)
    model, payload = workload.load(args.weights, args.scale)
    from reframe_core.runtime.placement import Placement, reduced_in

    placement = Placement("cpu", args.precision)
    model = placement.model(model)
    if reduced_in(model):
        print(f"precision: {placement.describe(model)}")  # the figures below are of a network partly in bf16
    if args.policy:
        from reframe_core.caching.cache import cache_model

        model = cache_model(model, workload.example_inputs(model, (64, 64), scale=args.scale), cut="auto", policy=args.policy)
    roots = args.data.split(",")
    cheap, references = _one_per_dataset("--cheap-data", args.cheap_data, roots), _one_per_dataset("--reference", args.reference, roots)
    from reframe_core.frames.ranges import parse_frames

    frames = parse_frames(args.frames) if args.frames else None
    reports = [workload.evaluate(model, root, args.scale, cheap_root=c, frames=frames, crops=args.crops,
                                 reset_history=args.reset_history, reference=r)
               for root, c, r in zip(roots, cheap, references)]
    print(workload.format_evaluation(reports))
    if args.json:
        Path(args.json).write_text(json.dumps({"workload": args.workload, "weights": str(args.weights or workload.weights_name(args.scale)),
                                               "policy": args.policy, "precision": placement.describe(model), "card": payload.get("card"),
                                               "reports": reports}, indent=2))
    return 0


def _bench_capture(args) -> int:
    import statistics

    from blender_addon.capture import CaptureSettings, capture
    from reframe_core.frames.ranges import parse_frames

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


def _ensure_dataset(scene: str, root: Path, frames: range | None, scales: tuple[float, ...], resolution: int,
                    samples: int, cheap: bool = False) -> Path:
    """The dataset folder for ``scene``, capturing (with Blender) only the frames it lacks (``cheap``: FE's cheap
    pass of them)."""
    from reframe_core.frames.dataset import Dataset

    if root.joinpath("metadata.json").exists():
        data = Dataset.open(root)
        have = [set(data.frames(s)) for s in scales]
        wanted = set(frames) if frames is not None else set.intersection(*have)
        if wanted and all(wanted <= h for h in have):
            return root
    if "/" in scene and not scene.endswith(".blend"):  # a dataset folder named directly: nothing to capture it from
        raise MissingInputError(f"{root} is not a complete dataset for scales {', '.join(f'{s:g}' for s in scales)}; "
                                f"capture it with reframe-blender dataset --scales {','.join(f'{s:g}' for s in scales)} --out {root}")
    if importlib.util.find_spec("bpy") is None:
        raise MissingInputError(f"no captured frames of {scene} in {root}, and Blender's bpy module is not installed to "
                                "capture them: pip install 'reframe-blender[bpy]', or run inside Blender")
    from blender_addon.dataset_writer import DatasetSpec, write_dataset

    if frames is None:
        first, last = get_scene(scene).frames
        frames = range(first, min(last, first + 15) + 1)
    print(f"capturing {scene} frames {frames.start}-{frames.stop - 1} at {resolution}x{resolution}, {samples} samples"
          f"{', cheap pass' if cheap else ''} -> {root}")
    write_dataset(DatasetSpec(scene=scene, frames=frames, scales=scales, resolution=(resolution, resolution),
                              samples=samples, cheap=cheap), root)
    return root


def _bench(args) -> int:
    import torch
    from tqdm import tqdm

    from reframe_core.evaluation import bench
    from reframe_core.runtime.placement import Placement
    from reframe_core.policies import split_policy_list
    from reframe_core.workloads import get_workload

    from reframe_core.frames.ranges import parse_frames

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
            bench.bench_entry(spec)  # a bad spec fails before any capture or measuring
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
        cheap_root = Path(args.cheap_root) if args.cheap_root and workload.cheap_pass else None
        lost = None if cheap_root else workload.without_cheap_pass(model)
        if lost:
            print(f"bench {w}: {lost}; give --cheap-root (dataset --cheap of each scene) to bench what Blender renders",
                  file=sys.stderr)
        for scene in scenes:
            sequence = bench.dataset_sequence(roots[scene], workload, args.scale, list(frames) if frames else None,
                                              cheap_root=cheap_root / Path(roots[scene]).name if cheap_root else None)
            with tqdm(total=len(sequence.frames) * args.repeats, desc=f"bench {w} {sequence.name}", unit="frame", disable=args.quiet) as bar:
                result = bench.measure_sequence(workload, sequence, model, policy_lists[w], placement, cut=args.cut,
                                                warmup=args.warmup, worst=args.worst, maps_dir=maps_dir,
                                                compile_model=args.compile, repeats=args.repeats,
                                                progress=lambda: bar.update(1))
            result["weights"] = str(args.weights or workload.weights_name(args.scale))
            results.append(result)
    summary = bench.summarize(results)
    ceilings = bench.summarize_ceilings(summary, results)
    print(bench.format_table(results))
    print()
    print(bench.format_summary(summary, ceilings))
    report = {"schema": bench.SCHEMA, "command": "reframe-blender " + " ".join(args.argv),
              "machine": bench.machine_info(placement),
              "settings": {"workloads": workloads, "scenes": scenes, "scale": args.scale, "k": args.k,
                           "device": args.device, "precision": args.precision, "channels_last": args.channels_last,
                           "compile": args.compile, "warmup": args.warmup, "repeats": args.repeats, "cut": args.cut,
                           "torch_threads": torch.get_num_threads()},
              "target": bench.TARGET, "results": results, "summary": summary, "ceilings": ceilings}
    if args.json:
        import json

        from reframe_core.frames.buffers import atomic_write

        text = json.dumps(report, indent=1)
        atomic_write(Path(args.json), lambda tmp: tmp.write_text(text))
        print(f"wrote {args.json}" + (f" and error maps in {maps_dir}" if maps_dir else ""))
    if args.plot:
        bench.plot_pareto(summary, args.plot, title=", ".join(scenes), ceilings=ceilings)
        print(f"wrote {args.plot}")
    return 0


def _bench_render(args) -> int:
    from reframe_core.frames.ranges import parse_frames
    from reframe_core.policies import parse_policy

    from blender_addon.render_bench import format_bench, run_render_bench

    parse_policy(args.policy)
    try:
        size = tuple(int(v) for v in args.size.lower().split("x"))
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 16:
        raise SettingsError(f"bad --size {args.size!r}: use WxH, e.g. 1920x1080")
    result = run_render_bench(args.scenes.split(","), parse_frames(args.frames), size, args.samples, args.out,
                              tuple(m for m in args.modes.split(",") if m), args.scale, args.policy,
                              show_progress=not args.quiet)
    print(f"bench-render: {', '.join(args.scenes.split(','))} frames {args.frames} at {size[0]}x{size[1]}, "
          f"{args.samples} samples; seconds per written frame from the loop's reports (EEVEE's first render of each "
          f"mode not timed); ceiling = native render / this mode's render")
    m = result["machine"]
    print(f"machine: {m['cpu_count']} CPUs, Blender {m['blender']}, torch {m['torch']} ({m['torch_threads']} threads)")
    print(format_bench(result))
    print(f"wrote {args.out}/bench-render.json")
    return 0


def _bench_seam(args) -> int:
    from reframe_core.frames.ranges import parse_frames

    from blender_addon.render_bench import format_seam, measure_seam

    frames = parse_frames(args.frames)
    if not frames.start < args.split <= frames.stop - 1:
        raise SettingsError(f"--split {args.split} must fall after the first frame of --frames {args.frames} and inside it")
    warmups = tuple(int(w) for w in args.warmups.split(","))
    from reframe_core.commands.render import AUTO_POLICY, FALLBACK_POLICY, policy_or_none

    policy = policy_or_none(args.policy)
    if policy == AUTO_POLICY:  # a library scene's clip: no calibration of its own
        policy = FALLBACK_POLICY
    result = measure_seam(args.scene, frames, args.split, warmups, args.size, args.samples, args.out, args.mode,
                          policy, show_progress=not args.quiet)
    print(f"bench-seam: {args.scene} frames {args.frames} ({args.mode}, {args.policy}, {args.size}x{args.size}, "
          f"{args.samples} samples) in one run vs a chunk from frame {args.split}: FLIP of the chunk's frames "
          f"against the one-run frames, per warm-up")
    print(format_seam(result))
    return 0


def _bench_viewport(args) -> int:
    from blender_addon.viewport_bench import format_viewport, run_viewport_bench

    result = run_viewport_bench(args.scene, args.frames, args.screen, args.blender, Path(args.out),
                                Path(args.screenshot) if args.screenshot else None)
    print(format_viewport(result))
    print(f"wrote {args.out}/viewport.json" + (f" and {args.screenshot}" if args.screenshot else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from reframe_core.networks import NETWORKS
    from reframe_core.workloads import WORKLOADS

    cuts = subparsers.add_parser("cuts", help="list a network's candidate cut points with the FLOPs a hit keeps")
    cuts.add_argument("--model", choices=sorted(NETWORKS), default="unet")
    cuts.add_argument("--size", type=int, default=256, help="square input size used to count FLOPs")
    cuts.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cuts.set_defaults(run=_cuts)

    bench = subparsers.add_parser("bench-cache", help="median full vs hit pass time and policy overhead")
    bench.add_argument("--model", choices=sorted(NETWORKS), default="unet")
    bench.add_argument("--size", default="256", help="display size: N (square) or WIDTHxHEIGHT, e.g. 1920x1080 "
                                                     "(the SS network's input is this divided by its scale)")
    bench.add_argument("--repeats", type=int, default=30)
    bench.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    bench.add_argument("--precision", choices=PRECISION_CHOICES, default="mixed", help=PRECISION_HELP)
    bench.add_argument("--channels-last", action="store_true", help="run the network in channels-last memory layout")
    bench.add_argument("--compile", action="store_true", help="torch.compile the refresh and hit passes")
    bench.add_argument("--weights", help="a weights file for the model's workload (default: the shipped one)")
    bench.add_argument("--json", help="also write the report as JSON to this file")
    bench.set_defaults(run=_bench_cache)

    evaluate = subparsers.add_parser("eval", help="quality vs the native render on held-out datasets")
    evaluate.add_argument("--workload", choices=sorted(WORKLOADS), default="ss")
    evaluate.add_argument("--k", type=int, default=2, help="FE: render every k-th frame in full")
    evaluate.add_argument("--data", required=True, help="dataset folders, comma-separated")
    evaluate.add_argument("--cheap-data", help="FE: cheap-pass datasets (dataset --cheap) of the same frames, one per --data "
                                               "folder: extrapolated frames take their G-buffers and motion from them")
    evaluate.add_argument("--weights", help="weights file (default: the shipped one for --scale)")
    evaluate.add_argument("--scale", type=float, default=2.0)
    evaluate.add_argument("--policy", help="run through the cache with this policy (default: uncached)")
    evaluate.add_argument("--frames", help="A-B: evaluate these frames of each dataset only (default: all)")
    evaluate.add_argument("--crops", metavar="DIR", help="SS: write side-by-side crops (bicubic | network | native) of "
                                                         "the middle and last frame of each dataset to DIR, cut where "
                                                         "bicubic is worst")
    evaluate.add_argument("--reset-history", action="store_true",
                          help="SS: start the network afresh on every frame (no fed-back history): what the temporal feedback is worth")
    evaluate.add_argument("--reference", metavar="DIR[,DIR]",
                          help="datasets of the same frames rendered with more samples (dataset --scales 1 --samples N), "
                               "one per --data folder: score against them instead of the native render, and score the "
                               "native render itself (its noise is the floor FLIP against it can show)")
    evaluate.add_argument("--precision", choices=["fp32", "mixed"], default="mixed",
                          help="mixed: the SS resolve's layers in bfloat16 where the CPU has bf16 arithmetic (as "
                               "render --precision mixed runs them); the rest, and FE, in float32")
    evaluate.add_argument("--json", help="also write the figures as JSON")
    evaluate.set_defaults(run=_evaluate)

    bench = subparsers.add_parser("bench", help="speed vs quality of caching per workload, scene and policy (JSON, plot)")
    bench.add_argument("--workload", default="ss", help="ss, fe or ss,fe")
    bench.add_argument("--scenes", default="slow_pan", help="scene names (captured into --data-root if missing) or dataset folders, comma-separated")
    bench.add_argument("--policies", default="default",
                       help="comma-separated policy specs, each optionally followed by @reproject (that cache moves its "
                            "features to the current camera on hits), or 'default': the paper's every:N and delta:T "
                            "beside ours, as threshold sweeps")
    bench.add_argument("--frames", help="A-B (default: every frame the dataset has; 16 frames when capturing)")
    bench.add_argument("--data-root", default="out/data", help="where scene datasets live (default out/data)")
    bench.add_argument("--cheap-root", metavar="DIR",
                       help="FE: where each scene's cheap pass lives (DIR/NAME, written with dataset --cheap at the scene's "
                            "samples): the shipped FE relights with it, as in Blender")
    bench.add_argument("--resolution", type=int, default=256, help="display resolution when capturing")
    bench.add_argument("--samples", type=int, default=8, help="EEVEE samples when capturing")
    bench.add_argument("--scale", type=float, default=2.0, help="SS scale (per axis)")
    bench.add_argument("--k", type=int, default=2, help="FE: every k-th frame rendered in full")
    bench.add_argument("--weights", help="weights file (default: the shipped one of the workload)")
    bench.add_argument("--cut", default="auto", help="cut point (reframe-blender cuts lists them)")
    bench.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    bench.add_argument("--precision", choices=PRECISION_CHOICES, default="mixed", help=PRECISION_HELP)
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

    render = subparsers.add_parser("bench-render", help="the render path end to end (ss, fe) against native renders")
    render.add_argument("--scenes", default="slow_pan,emissive_transparent", help="library scenes, comma-separated")
    render.add_argument("--frames", default="2-3", help="timed frames A-B (frame A-1 warms EEVEE up, untimed)")
    render.add_argument("--size", default="1920x1080", help="output size WxH")
    render.add_argument("--samples", type=int, default=16)
    render.add_argument("--modes", default="ss,fe")
    render.add_argument("--scale", type=float, default=2.0)
    render.add_argument("--policy", default="motion")
    render.add_argument("--out", default="out/bench-render")
    render.add_argument("--quiet", action="store_true")
    render.set_defaults(run=_bench_render)

    seam = subparsers.add_parser("bench-seam", help="a farm chunk's seam: chunked vs one-run frames, per warm-up")
    seam.add_argument("--scene", default="slow_pan")
    seam.add_argument("--frames", default="1-10")
    seam.add_argument("--split", type=int, default=6, help="the chunk's first frame")
    seam.add_argument("--warmups", default="0,1,3")
    seam.add_argument("--size", type=int, default=256)
    seam.add_argument("--samples", type=int, default=16)
    seam.add_argument("--mode", choices=("ss", "fe"), default="ss")
    seam.add_argument("--policy", default="motion", help="a policy spec, or none (uncached)")
    seam.add_argument("--out", default="out/bench-seam")
    seam.add_argument("--quiet", action="store_true")
    seam.set_defaults(run=_bench_seam)

    viewport = subparsers.add_parser("bench-viewport", help="the viewport overlay in a real Blender window (Xvfb)")
    viewport.add_argument("--scene", default="slow_pan", help="library scene, seen from its camera")
    viewport.add_argument("--frames", type=int, default=12, help="orbit steps per policy (cached, then uncached)")
    viewport.add_argument("--screen", default="960x600", help="the virtual screen, WxH (the window fills it)")
    viewport.add_argument("--blender", default="blender", help="a Blender binary with a window (default: on PATH)")
    viewport.add_argument("--out", default="out/bench-viewport")
    viewport.add_argument("--screenshot", help="copy the screenshot with the overlay here (README's)")
    viewport.set_defaults(run=_bench_viewport)

    bench = subparsers.add_parser("bench-capture", help="EEVEE render vs capture overhead; cheap G-buffer vs full frame")
    bench.add_argument("--scene", default="slow_pan", choices=sorted(SCENES))
    bench.add_argument("--frames", default="10-14")
    bench.add_argument("--resolution", type=int, default=256)
    bench.add_argument("--samples", type=int, default=16)
    bench.add_argument("--cheap-samples", type=int, default=1, help="samples of the cheap G-buffer pass")
    bench.set_defaults(run=_bench_capture)
