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
