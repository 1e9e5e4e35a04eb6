"""Render with ReFrame inside a real Blender, headless (a farm worker, a script):

    blender -b FILE.blend -P /path/to/blender_addon/render_in_blender.py -- --mode ss --frames 1-48

Everything after ``--`` is ``reframe-blender render``'s options (``--help`` lists them); the open file is the
scene (``--scene NAME`` builds a library scene instead). The exit status is 0 when done, 2 for a problem with
the file or the options (one line says what), 130 when interrupted: complete frames stay, re-running resumes.

Blender runs its own Python, so this script puts the project on ``sys.path``: the folder holding
``blender_addon`` and, for torch and the other dependencies, ``REFRAME_SITE_PACKAGES`` (a site-packages folder,
``os.pathsep``-separated for several) or else the project's ``.venv`` built by ``make install``. They are
appended, so Blender's own modules (its numpy) come first; Blender's Python must be the same minor version as
that environment's (3.11 for Blender 4.1 - 5.0 and Debian's 3.4).

With ``--runtime server`` the network runs in a server process started from ``--server-python`` (default:
``REFRAME_PYTHON``, else the project's ``.venv/bin/python``), and torch is never imported inside Blender.
"""
import glob
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _add_project_paths() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    extra = os.environ.get("REFRAME_SITE_PACKAGES")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    folders = extra.split(os.pathsep) if extra else glob.glob(str(ROOT / ".venv" / "lib" / version / "site-packages"))
    for folder in folders:
        if folder and folder not in sys.path:
            sys.path.append(folder)


def main(argv: list[str] | None = None) -> int:
    _add_project_paths()
    import argparse

    import bpy

    from reframe_core.commands.render import build_library_scene, job_arguments, run_job
    from reframe_core.errors import ReframeError

    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="blender -b FILE.blend -P render_in_blender.py --",
                                     description="Render the open .blend with ReFrame (options as 'reframe-blender render').")
    parser.add_argument("--scene", help="build this library scene instead of using the open file")
    parser.add_argument("--seed", type=int, default=0)
    job_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a bad option: argparse has printed why
        return int(exc.code or 0)
    if args.runtime == "server" and not args.server_python:
        # Blender's own Python has no torch: the server starts from the project's environment.
        args.server_python = os.environ.get("REFRAME_PYTHON") or str(ROOT / ".venv" / "bin" / "python")
    try:
        if args.scene:
            scene = build_library_scene(args.scene, args)
        else:
            if not bpy.data.filepath:
                raise ReframeError("no .blend file is open: run 'blender -b FILE.blend -P render_in_blender.py -- ...' "
                                   "or pass --scene NAME")
            scene = bpy.context.scene
        return run_job(scene, args, args.scene or bpy.data.filepath)
    except ReframeError as exc:
        print(f"reframe render: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.stdout.flush()
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Blender keeps running after a -P script; leave with the job's status (os._exit: Blender's atexit handlers
    # may crash in background mode after a render on some builds, which would hide the status).
    os._exit(code)
