"""The bridge's commands: ``serve`` (the runtime server, :mod:`bridge.server`) and ``bench-bridge`` (what the
server transport costs per frame, and a soak: :mod:`bridge.bench`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _serve(args) -> int:
    from bridge.server import run

    return run(args.address, args.idle_exit, args.parent_pid)


def _bench_bridge(args) -> int:
    from tqdm import tqdm

    from bridge import bench
    from reframe_core.frames.buffers import atomic_write

    report = {"command": "reframe-blender " + " ".join(args.argv)}
    h, w = (int(v) for v in args.size.split("x"))
    if args.frames:
        report["round_trip"] = bench.round_trip((h, w), args.scale, args.frames, address=args.address,
                                                python=args.server_python, device=args.device)
        print(bench.format_report({"round_trip": report["round_trip"]}), flush=True)
    if args.soak:
        side = args.soak_size
        with tqdm(total=args.soak, unit="frame", desc="soak", disable=args.quiet) as bar:
            report["soak"] = bench.soak(args.soak, (side, side), address=args.address, python=args.server_python,
                                        progress=lambda n: bar.update(n - bar.n))
        print(bench.format_report({"soak": report["soak"]}))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n"))
    print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the network for Blender (or several clients) in this process, over a local socket",
        description="Serve runtime sessions over a Unix socket in a private per-user folder (0700, socket 0600, "
                    "peer uid checked); frames travel through shared memory. Clients (the add-on, render "
                    "--runtime server) connect, or start this themselves.")
    serve.add_argument("--address", help="socket path, or 'tcp' for loopback TCP with a token (default: "
                                         "server.sock in the per-user runtime folder; tcp where Unix sockets are missing)")
    serve.add_argument("--idle-exit", type=float, metavar="SECONDS",
                       help="stop after this long without any client (default: run until stopped)")
    serve.add_argument("--parent-pid", type=int, metavar="PID", help="stop when this process exits (the client "
                                                                    "that started the server)")
    serve.set_defaults(run=_serve)

    bench = subparsers.add_parser("bench-bridge", help="the server transport's cost per frame, and a soak for leaks",
                                  description="Round trip of SS buffers through a runtime server this command starts, "
                                              "against the in-process step; then a soak of many frames through one "
                                              "server session (resident memory, segments left).")
    bench.add_argument("--size", default="1080x1920", help="display HxW of the round trip (default 1080x1920)")
    bench.add_argument("--scale", type=float, default=2.0, help="SS scale: the buffers are display / scale (default 2)")
    bench.add_argument("--frames", type=int, default=8, help="timed frames of the round trip, 0 to skip (default 8)")
    bench.add_argument("--soak", type=int, default=1000, help="frames of the soak, 0 to skip (default 1000)")
    bench.add_argument("--soak-size", type=int, default=256, help="display side of the soak's frames (default 256)")
    bench.add_argument("--device", default="cpu", help="where the network runs (default cpu)")
    bench.add_argument("--address", help="the server's socket (default: a server started for the bench)")
    bench.add_argument("--server-python", help="the Python that starts the server (default: this one)")
    bench.add_argument("--out", default="out/bench-bridge.json", help="the JSON report (default out/bench-bridge.json)")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(run=_bench_bridge)
