"""The demo render (and its Blender-free synthetic variant)."""
from __future__ import annotations

import argparse

from scenes import SCENES


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
    from reframe_core.frames.ranges import parse_frames
    from reframe_core.policies import parse_policy

    from blender_addon.render_demo import format_report, run_render_demo

    policy = args.policies or "motion"
    parse_policy(policy)  # fail before any rendering on a bad spec
    frames = parse_frames(args.frames or "1-6")
    size = args.size or 256
    print(f"ReFrame demo: {args.scene} frames {frames.start}-{frames.stop - 1}, EEVEE {args.samples} samples at "
          f"{size // 2}x{size // 2} (jittered) -> cached SS 2x ({policy}) -> {size}x{size}, against the native "
          f"{size}x{size} render")
    report = run_render_demo(args.scene, frames, size, args.samples, args.out, policy, show_progress=not args.quiet)
    print(format_report(report))
    print(f"\nwrote {args.out}/: ss/, bicubic/, native/ frames, side_by_side/ ({report['side_by_side']}), report.json")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="the demo render: a scene rendered with ReFrame SS and natively, side by side")
    demo.add_argument("--scene", default="slow_pan", choices=sorted(SCENES))
    demo.add_argument("--frames", help="A-B (default 1-6)")
    demo.add_argument("--size", type=int, help="display resolution (square), default 256")
    demo.add_argument("--samples", type=int, default=16)
    demo.add_argument("--policies", help="the cache policy (default motion); --synthetic: specs separated by ';'")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--out", default="out/demo")
    demo.add_argument("--synthetic", action="store_true",
                      help="no Blender: the reference U-Net on a synthetic pan (cached vs uncached only)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
