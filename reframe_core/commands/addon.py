"""``reframe-blender addon build|install``: the Blender add-on as an installable zip, and one line that puts it
into the user's Blender pointed at this environment's runtime (:mod:`blender_addon.packaging`)."""
from __future__ import annotations

import argparse
import sys


def _build(args) -> int:
    from blender_addon.packaging import build

    print(f"wrote {build(args.out)}")
    return 0


def _install(args) -> int:
    from blender_addon.packaging import install

    done = install(args.blender, runtime_python=args.python, runtime=args.runtime, zip_path=args.zip)
    print(f"installed ReFrame into Blender {done['version']} ({done['blender']}) as {done['module']} in "
          f"{done['installed']}; runtime: {done['runtime']} with {done['python']}")
    print("If that Blender is running, quit it without saving preferences (or restart it): it would write its own "
          "preferences over these when it quits.")
    print("In Blender: Render Properties > ReFrame, or Render > Render Animation (ReFrame). Headless: "
          "blender -b FILE.blend --python-expr \"import bpy; bpy.ops.reframe.render_animation()\"")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    addon = subparsers.add_parser("addon", help="build the Blender add-on zip, or install it into a Blender",
                                  description="The Blender add-on (a 4.2+ extension that also loads in older Blender).")
    commands = addon.add_subparsers(dest="addon_command", required=True, metavar="ACTION")
    build = commands.add_parser("build", help="write the installable zip (Preferences > Get Extensions > Install "
                                              "from Disk, or Add-ons > Install before 4.2)")
    build.add_argument("--out", default="dist", help="folder for the zip (default dist)")
    build.set_defaults(run=_build)
    install = commands.add_parser("install", help="install into a Blender and point it at this environment's runtime")
    install.add_argument("--blender", default="blender", help="the Blender executable (default: blender on PATH)")
    install.add_argument("--python", default=sys.executable,
                         help="the runtime environment's Python, with torch (default: this one)")
    install.add_argument("--runtime", choices=("server", "inprocess"), default="server",
                         help="where Blender runs the network (default server: a separate process)")
    install.add_argument("--zip", help="install this zip instead of building one")
    install.set_defaults(run=_install)
