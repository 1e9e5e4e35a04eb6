"""Core subcommands: demo, cuts, bench-cache."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from reframe_core.errors import SettingsError


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
                                 precision=args.precision, channels_last=args.channels_last, compile_model=args.compile)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2))
    return 0


def _train(args) -> int:
    from reframe_core.training import TrainConfig, train

    config = TrainConfig(workload=args.workload, data=args.data.split(","), out=args.out, steps=args.steps,
                         batch=args.batch, sequence=args.sequence, crop=args.crop, lr=args.lr, seed=args.seed,
                         scale=args.scale, held_out=args.held_out.split(",") if args.held_out else [],
                         stop_after=args.stop_after, loss=args.loss, design=args.design,
                         width=args.width, fe_inputs=args.fe_inputs, fe_residual=args.fe_residual)
    card = train(config, show_progress=not args.quiet)
    if "stopped_at" in card:
        print(f"stopped at step {card['stopped_at']} of {card['steps']} (checkpoint {Path(args.out).with_suffix('.ckpt')}); "
              "run the same command again to continue")
        return 0
    print(f"wrote {args.out}: {card['steps']} steps on {card['train_frames']} frames of {', '.join(card['train_data'])}, "
          f"final loss {card['final_loss_ema']:.4f}, {card['seconds_this_run']:.0f} s this run on {card['device']}")
    return 0


def _evaluate(args) -> int:
    from reframe_core.workloads import get_workload

    workload = get_workload(args.workload, k=args.k)
    model, payload = workload.load(args.weights, args.scale)
    if args.policy:
        from reframe_core.caching.cache import cache_model

        model = cache_model(model, workload.example_inputs(model, (64, 64), scale=args.scale), cut="auto", policy=args.policy)
    roots = args.data.split(",")
    cheap = args.cheap_data.split(",") if args.cheap_data else [None] * len(roots)
    if len(cheap) != len(roots):
        raise SettingsError(f"--cheap-data names {len(cheap)} datasets for {len(roots)} in --data: give one per --data "
                            "dataset, in the same order")
    reports = [workload.evaluate(model, root, args.scale, cheap_root=c) for root, c in zip(roots, cheap)]
    print(workload.format_evaluation(reports))
    if args.json:
        Path(args.json).write_text(json.dumps({"workload": args.workload, "weights": str(args.weights or workload.weights_name(args.scale)),
                                               "policy": args.policy, "card": payload.get("card"), "reports": reports}, indent=2))
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
    bench.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32")
    bench.add_argument("--channels-last", action="store_true", help="run the network in channels-last memory layout")
    bench.add_argument("--compile", action="store_true", help="torch.compile the refresh and hit passes")
    bench.add_argument("--json", help="also write the report as JSON to this file")
    bench.set_defaults(run=_bench_cache)

    train = subparsers.add_parser("train", help="train a workload's network on captured datasets (resumable)")
    train.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    train.add_argument("--data", required=True, help="dataset folders, comma-separated")
    train.add_argument("--out", required=True, help="weights file to write (OUT.ckpt / OUT.log.jsonl beside it)")
    train.add_argument("--steps", type=int, default=3000)
    train.add_argument("--batch", type=int, default=4)
    train.add_argument("--sequence", type=int, default=4, help="frames unrolled per sample (temporal feedback)")
    train.add_argument("--crop", type=int, default=96, help="display-resolution crop side")
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--scale", type=float, default=2.0)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--held-out", default="", help="names of held-out datasets, recorded in the model card")
    train.add_argument("--design", choices=["v1", "v2", "split"], default="v2",
                       help="SS network design: v1; v2 (v1 with a resolve that blends history, clamped history, bicubic, "
                            "bilinear and nearest-sample candidates); split (the slow half of the joint layer cached, thinner hit path)")
    train.add_argument("--width", type=int, default=24,
                       help="SS: channels of the slow (cached) branch's first level; the split design's hit path does not grow with it")
    train.add_argument("--fe-inputs", choices=["shading", "color"], default="shading",
                       help="FE: warp and predict shading (colour / albedo, re-multiplied by the current albedo) or plain colour")
    train.add_argument("--fe-residual", choices=["full", "holes"], default="holes",
                       help="FE: add the network's residual everywhere, or only where the history is invalid (disoccluded, entering the frame)")
    train.add_argument("--loss", choices=["log1p", "tonemap", "tonemap-grad"], default="log1p",
                       help="L1 of log(1 + colour); L1 after the display tonemap FLIP is computed in; the same plus L1 of its pixel differences")
    train.add_argument("--stop-after", type=int, help="run at most this many steps now, then checkpoint and stop")
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(run=_train)

    evaluate = subparsers.add_parser("eval", help="quality vs the native render on held-out datasets")
    evaluate.add_argument("--workload", choices=sorted(WORKLOADS), default="ss")
    evaluate.add_argument("--k", type=int, default=2, help="FE: render every k-th frame in full")
    evaluate.add_argument("--data", required=True, help="dataset folders, comma-separated")
    evaluate.add_argument("--cheap-data", help="FE: cheap-pass datasets (dataset --cheap) of the same frames, one per --data "
                                               "folder: extrapolated frames take their G-buffers and motion from them")
    evaluate.add_argument("--weights", help="weights file (default: the shipped one for --scale)")
    evaluate.add_argument("--scale", type=float, default=2.0)
    evaluate.add_argument("--policy", help="run through the cache with this policy (default: uncached)")
    evaluate.add_argument("--json", help="also write the figures as JSON")
    evaluate.set_defaults(run=_evaluate)
