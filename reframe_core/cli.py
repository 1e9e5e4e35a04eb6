"""``reframe-blender``: one command line for every job. Subcommands live next to the code they run."""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from reframe_core.runtime.pages import use_huge_pages

use_huge_pages()  # before anything imports torch, which reads it once (runtime/pages.py); this process is ours
from reframe_core.errors import ReframeError  # noqa: E402

# Each module exposes register(subparsers); bpy-dependent ones import bpy only when their command runs.
COMMAND_MODULES = ("reframe_core.commands.render", "reframe_core.commands.demo", "reframe_core.commands.data",
                   "reframe_core.commands.train", "reframe_core.commands.bridge",
                   "reframe_core.commands.measure", "reframe_core.commands.addon",
                   "reframe_core.commands.farm", "reframe_core.commands.calibrate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reframe-blender", description="ReFrame layer caching for Blender renders")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def main(argv: list[str] | None = None) -> int:
    from reframe_core.farm.node import die_with_parent

    die_with_parent()  # a farm chunk's render (no-op otherwise)
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv  # reports record the command that produced them
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:  # output piped into `head`: not an error
        return 0
    except ReframeError as exc:  # what the user asked for or gave: one line; anything else keeps its traceback
        print(f"reframe-blender {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
