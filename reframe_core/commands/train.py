"""Training a workload's network on captured datasets."""
from __future__ import annotations

import argparse
from pathlib import Path


# Architecture options and the keys of a weights file's network configuration they set.
ARCHITECTURE_OPTIONS = {"design": "design", "width": "width", "slow_width": "slow_width", "correction": "correction",
                        "fe_inputs": "inputs", "fe_residual": "residual"}


def _architecture_from_init(args) -> None:
    """With --init, the architecture options left out are the init file's, so that fine-tuning the shipped
    weights needs no knowledge of how they were built; options given must still match it (train says what differs)."""
    if not args.init:
        return
    from reframe_core.training import init_weights_path
    from reframe_core.weights import load_network
    from reframe_core.workloads import get_workload

    workload = get_workload(args.workload)
    stored = load_network(init_weights_path(workload, args.init, args.scale), expected_arch=workload.arch)[1].get("config", {})
    for option, key in ARCHITECTURE_OPTIONS.items():
        if getattr(args, option) is None and key in stored:
            setattr(args, option, stored[key])
    if args.design != "v4" and stored.get("slow_width") == args.slow_width:
        args.slow_width = None  # another design asked for, from a v4 file: that design has no slow width


def _train(args) -> int:
    from reframe_core.errors import SettingsError
    from reframe_core.training import TrainConfig, train

    from reframe_core.networks.supersampling import SupersamplingNet

    _architecture_from_init(args)
    if args.correction not in (None, "free") and (args.design or "v2") not in SupersamplingNet.RESOLVING_DESIGNS:
        raise SettingsError(f"--correction {args.correction} needs --design {', '.join(SupersamplingNet.RESOLVING_DESIGNS)} (design "
                            f"{args.design or 'v2'} adds its correction freely): drop --correction, or choose one of those designs")
    if args.slow_width is not None and args.design != "v4":
        raise SettingsError(f"--slow-width is design v4's (design {args.design or 'v2'} has one width, --width): drop it or add --design v4")
    config = TrainConfig(workload=args.workload, data=args.data.split(","), out=args.out, steps=args.steps,
                         batch=args.batch, sequence=args.sequence, history_burn_in=args.history_burn_in, crop=args.crop, lr=args.lr, seed=args.seed,
                         scale=args.scale, held_out=args.held_out.split(",") if args.held_out else [],
                         stop_after=args.stop_after, loss=args.loss, design=args.design or TrainConfig.design,
                         cache_in_loop=args.cache_in_loop,
                         resolve_kernel=args.resolve_kernel,
                         correction=args.correction or TrainConfig.correction,
                         width=args.width or TrainConfig.width, slow_width=args.slow_width or 0,
                         fe_inputs=args.fe_inputs or TrainConfig.fe_inputs, fe_residual=args.fe_residual or TrainConfig.fe_residual,
                         cheap_data=args.cheap_data.split(",") if args.cheap_data else [],
                         frames=args.frames or "", init=args.init or "")
    card = train(config, show_progress=not args.quiet)
    if "stopped_at" in card:
        print(f"stopped at step {card['stopped_at']} of {card['steps']} (checkpoint {Path(args.out).with_suffix('.ckpt')}); "
              "run the same command again to continue")
        return 0
    print(f"wrote {args.out}: {card['steps']} steps on {card['train_frames']} frames of {', '.join(card['train_data'])}, "
          f"final loss {card['final_loss_ema']:.4f}, {card['seconds_this_run']:.0f} s this run on {card['device']}")
    return 0


def _interpolate(args) -> int:
    from reframe_core.training import interpolate_weights

    card = interpolate_weights(args.workload, args.start, args.end, args.alpha, args.out, scale=args.scale)
    line = card["interpolated"]
    print(f"wrote {args.out}: {1 - args.alpha:g} x {line['start']} + {args.alpha:g} x {line['end']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from reframe_core.workloads import WORKLOADS

    train = subparsers.add_parser("train", help="train a workload's network on captured datasets (resumable)")
    train.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    train.add_argument("--data", required=True, help="dataset folders, comma-separated")
    train.add_argument("--out", required=True, help="weights file to write (OUT.ckpt / OUT.log.jsonl beside it)")
    train.add_argument("--steps", type=int, default=3000)
    train.add_argument("--batch", type=int, default=4)
    train.add_argument("--sequence", type=int, default=4, help="frames unrolled per sample (temporal feedback)")
    train.add_argument("--history-burn-in", type=int, default=0, metavar="N",
                       help="SS: run N frames before each sequence without gradient, so the fed-back history it starts "
                            "from has aged as at inference (costs about a third of a trained frame each)")
    train.add_argument("--crop", type=int, default=96, help="display-resolution crop side")
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--scale", type=float, default=2.0)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--held-out", default="", help="names of held-out datasets, recorded in the model card")
    train.add_argument("--design", choices=["v1", "v2", "split", "v3", "v4"],
                       help="SS network design: v1; v2 (v1 with a resolve that blends history, clamped history, bicubic, "
                            "bilinear and nearest-sample candidates); split (the slow half of the joint layer cached, thinner hit path); "
                            "v3 (v2's candidates with split's cut and a per-pixel resolve: a hit runs about a tenth of the FLOPs); "
                            "v4 (v2 with the slow half of its joint layer cached and a wider cached branch, --slow-width; "
                            "--init a v2 weights file starts from exactly what that v2 computes). Default: v2, or with --init "
                            "the init file's, as for --width, --slow-width, --correction, --fe-inputs and --fe-residual")
    train.add_argument("--resolve-kernel", type=int, choices=(1, 3), default=1,
                       help="SS v3: kernel size of the first display-resolution layer (3: sees neighbours, costs a hit more)")
    train.add_argument("--correction", choices=["free", "range", "bounded"],
                       help="SS designs v2, v3 and v4 (default range; v1 and split only add theirs freely): the resolve's colour correction as predicted (free), or scaled by the current frame's "
                            "local colour range (range, the shipped choice: flat areas, where all candidates agree, keep their colour), and the "
                            "output also kept inside that range (bounded: no fringes beyond the neighbouring samples, but no texture beyond them either)")
    train.add_argument("--cache-in-loop", type=float, default=0.0, metavar="P",
                       help="SS: chance that each later frame of a training sequence reuses the slow (cached) branch's features "
                            "of the last frame that computed them, as a cache hit does (0: never)")
    train.add_argument("--width", type=int,
                       help="SS: channels of the slow (cached) branch's first level; the split design's hit path does not grow with it")
    train.add_argument("--slow-width", type=int, metavar="N",
                       help="SS design v4: channels of the cached branch's first level (default: --width); its hit path does not grow with it")
    train.add_argument("--fe-inputs", choices=["shading", "color"],
                       help="FE: warp and predict shading (colour / albedo, re-multiplied by the current albedo) or plain colour")
    train.add_argument("--fe-residual", choices=["full", "holes", "relight"],
                       help="FE: add the network's residual everywhere, or only where the history is invalid (disoccluded, entering the frame); "
                            "or relight: choose per pixel between the warped history and the relit frame (the last rendered frame's "
                            "ratio to its cheap pass, warped, times this frame's cheap pass; needs --cheap-data)")
    train.add_argument("--cheap-data", metavar="DIR[,DIR]",
                       help="FE --fe-residual relight: the cheap-pass dataset (dataset --cheap, at the full render's samples) of each "
                            "--data folder, in the same order")
    train.add_argument("--loss", choices=["log1p", "tonemap", "tonemap-grad", "flip"], default="log1p",
                       help="L1 of log(1 + colour); L1 after the display tonemap FLIP is computed in; the same plus L1 of "
                            "its pixel differences; the reports' FLIP itself (differentiable) plus the log1p L1")
    train.add_argument("--stop-after", type=int, help="run at most this many steps now, then checkpoint and stop")
    train.add_argument("--frames", help="A-B: train on these frames of each dataset only (e.g. the first part of a "
                                        "shot, keeping the rest to evaluate with 'eval --frames')")
    train.add_argument("--init", metavar="shipped|FILE",
                       help="start from these weights instead of from scratch: 'shipped' (the workload's shipped "
                            "weights for --scale) or a weights file; per-shot fine-tuning")
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(run=_train)

    between = subparsers.add_parser(
        "interpolate-weights", help="weights on the line between a network and one trained on from it (WiSE-FT)",
        description="Write (1 - ALPHA) x START + ALPHA x END, parameter by parameter. END is a network trained on from "
                    "START (train --init); an SS v2 START under a v4 END is first grown into v4, computing what it computed.")
    between.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    between.add_argument("--start", required=True, metavar="shipped|FILE", help="the weights training started from")
    between.add_argument("--end", required=True, metavar="shipped|FILE", help="the weights trained on from START")
    between.add_argument("--alpha", type=float, required=True, help="0: START's weights, 1: END's")
    between.add_argument("--scale", type=float, default=2.0, help="the scale whose shipped file 'shipped' names")
    between.add_argument("--out", required=True, help="weights file to write")
    between.set_defaults(run=_interpolate)
