"""``reframe-blender``: one command line for every job. Subcommands live next to the code they run."""
from __future__ import annotations

import argparse
import importlib
import json
import sys

# Each module exposes register(subparsers); bpy-dependent ones import bpy only when their command runs.
COMMAND_MODULES = ("reframe_core.commands.core", "reframe_core.commands.blender")


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reframe-blender", description="ReFrame layer caching for Blender renders")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _is_user_error(exc: Exception) -> bool:
    """Errors about the user's input get one line; anything else is a bug and keeps its traceback."""
    if isinstance(exc, (UserError, ValueError, KeyError, FileNotFoundError, PermissionError, NotADirectoryError)):
        return True
    return type(exc).__name__ in ("CaptureError", "ExrError", "CutError", "PolicySpecError")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv  # reports record the command that produced them
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:  # output piped into `head`: not an error
        return 0
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"reframe-blender {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
