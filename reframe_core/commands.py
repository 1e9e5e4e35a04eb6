"""Core subcommands: demo, cuts, bench-cache."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _demo(args) -> int:
    from .demo import DEFAULT_POLICIES, format_table, run_demo

    policies = args.policies.split(";") if args.policies else DEFAULT_POLICIES
    from .policies import parse_policy

    for spec in policies:
        parse_policy(spec)  # fail before any work on a bad spec
    rows, settings = run_demo(policies, frames=args.frames, size=args.size, seed=args.seed)
    print(f"ReFrame demo: {settings['network']}, {settings['frames']} frames at {settings['size']}x{settings['size']}, "
          f"camera cut at frame {settings['frames'] // 2 + 1}; cut {settings['cut']} caches {', '.join(settings['cached'])}; "
          f"uncached {settings['uncached_ms_per_frame']:.1f} ms/frame, {settings['threads']} threads, torch {settings['torch']}")
    print("speedup: uncached time / cached time over the sequence; PSNR and FLIP: cached output vs uncached output\n")
    print(format_table(rows))
    return 0


def _cuts(args) -> int:
    from .cuts import GraphAnalysis
    from .networks import get_network

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
    from .speed import format_report, measure_cache_speed

    report = measure_cache_speed(args.model, args.size, repeats=args.repeats, device=args.device)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from .networks import NETWORKS

    demo = subparsers.add_parser("demo", help="cached vs uncached inference, one table row per policy")
    demo.add_argument("--policies", help="policy specs separated by ';' (default: a representative set)")
    demo.add_argument("--frames", type=int, default=32)
    demo.add_argument("--size", type=int, default=256)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    cuts = subparsers.add_parser("cuts", help="list a network's candidate cut points with the FLOPs a hit keeps")
    cuts.add_argument("--model", choices=sorted(NETWORKS), default="unet")
    cuts.add_argument("--size", type=int, default=256, help="square input size used to count FLOPs")
    cuts.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cuts.set_defaults(run=_cuts)

    bench = subparsers.add_parser("bench-cache", help="median full vs hit pass time and policy overhead")
    bench.add_argument("--model", choices=sorted(NETWORKS), default="unet")
    bench.add_argument("--size", type=int, default=256)
    bench.add_argument("--repeats", type=int, default=30)
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--json", help="also write the report as JSON to this file")
    bench.set_defaults(run=_bench_cache)
