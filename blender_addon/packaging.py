"""Build the installable add-on zip and install it into a Blender. No bpy here (runs from the command line).

The zip holds one folder, ``reframe_blender/``: ``blender_manifest.toml`` (a Blender 4.2+ extension),
``__init__.py`` (:mod:`blender_addon.entry`, with ``bl_info`` for Blender before 4.2) and ``lib/`` with the
project's pure-Python packages and the shipped weights. Neither torch nor numpy is inside: Blender has its own
numpy, and torch lives in the runtime environment the preferences point at.

Install (:func:`install`): Blender 4.2+ gets ``blender --command extension install-file -r user_default -e``; an
older Blender gets the folder copied into its user add-ons folder and enabled. Then the preferences are pointed
at this environment (its Python for the runtime) and saved, so the add-on works at Blender's next start.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from reframe_core.errors import ReframeError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_ID = "reframe_blender"
PACKAGES = ("reframe_core", "bridge", "blender_addon")
DATA_SUFFIXES = (".py", ".pt", ".md", ".toml")  # code, weights and their cards; nothing else goes in
# Blender-side helpers only the project's own tools use (rendering datasets, benchmarks): not shipped.
LEFT_OUT = {"blender_addon/entry.py", "blender_addon/blender_manifest.toml", "blender_addon/dataset_writer.py",
            "blender_addon/render_bench.py", "blender_addon/render_demo.py", "blender_addon/viewport_scenario.py"}


class PackagingError(ReframeError):
    """The add-on could not be built or installed; the message says why and what to do."""


def manifest() -> dict:
    return tomllib.loads((ROOT / "blender_addon" / "blender_manifest.toml").read_text())


def zip_name() -> str:
    return f"{PACKAGE_ID}-{manifest()['version']}.zip"


def package_files() -> list[tuple[Path, str]]:
    """(source, name in the zip) for everything the add-on carries."""
    top = PACKAGE_ID
    files = [(ROOT / "blender_addon" / "blender_manifest.toml", f"{top}/blender_manifest.toml"),
             (ROOT / "blender_addon" / "entry.py", f"{top}/__init__.py")]
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            relative = path.relative_to(ROOT).as_posix()
            if (path.is_file() and path.suffix in DATA_SUFFIXES and "__pycache__" not in path.parts
                    and relative not in LEFT_OUT):
                files.append((path, f"{top}/lib/{relative}"))
    return files


def build(out: str | Path) -> Path:
    """Write the installable zip into folder ``out``; returns its path."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PackagingError(f"cannot create the output folder {out} ({exc}): pass another --out") from exc
    target = out / zip_name()
    tmp = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for source, name in package_files():
            # A fixed timestamp: the same sources give the same zip (reproducible, comparable between builds).
            info = zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, source.read_bytes())
    os.replace(tmp, target)
    return target


# --- installing -----------------------------------------------------------------------------------------------

def blender_version(blender: str, env: dict | None = None) -> tuple[int, int]:
    try:
        done = subprocess.run([blender, "--background", "--factory-startup", "--version"], capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PackagingError(f"cannot run {blender} ({exc}): pass --blender PATH to a Blender executable") from exc
    found = re.search(r"Blender (\d+)\.(\d+)", done.stdout)
    if not found:
        raise PackagingError(f"{blender} --version did not print a Blender version: is it Blender? "
                             f"(output: {done.stdout.strip()[:200]!r})")
    return int(found[1]), int(found[2])


# Run inside the target Blender after the files are in place: enable (legacy), point the preferences at the
# runtime environment, save them. Settings arrive as JSON in argv after "--".
_CONFIGURE = r"""
import json, sys, bpy, addon_utils
settings = json.loads(sys.argv[sys.argv.index("--") + 1])
module = settings.pop("module")
if module not in bpy.context.preferences.addons:
    addon_utils.enable(module, default_set=True, persistent=True)
prefs = bpy.context.preferences.addons[module].preferences
for key, value in settings.items():
    setattr(prefs, key, value)
bpy.ops.wm.save_userpref()
print("REFRAME-CONFIGURED", module, json.dumps({k: getattr(prefs, k) for k in settings}))
"""


def _run_blender(blender: str, args: list[str], what: str, env: dict | None = None) -> str:
    try:
        # Not --factory-startup: the user's own preferences are loaded, changed and saved, never replaced.
        done = subprocess.run([blender, "--background", *args], capture_output=True, text=True,
                              timeout=600, stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired as exc:
        raise PackagingError(f"{what}: {blender} did not finish within 600 s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-12:])
        raise PackagingError(f"{what} failed ({blender} exit code {done.returncode}):\n{tail}")
    return done.stdout


def site_packages(python: str) -> list[str]:
    from blender_addon.environment import site_folders

    try:
        return site_folders(python)[1]
    except ReframeError as exc:
        raise PackagingError(f"{exc}: pass --python with the project environment's python") from exc


def install(blender: str = "blender", runtime_python: str | None = None, runtime: str = "server",
            zip_path: str | Path | None = None, env: dict | None = None) -> dict:
    """Install the add-on into ``blender``'s user configuration and point it at ``runtime_python`` (default:
    this environment's Python); returns what was done. ``env``: the environment Blender runs in (its HOME
    decides whose configuration; default this process's)."""
    blender_path = shutil.which(blender) or blender
    if not Path(blender_path).exists():
        raise PackagingError(f"no Blender at {blender!r}: pass --blender PATH (the blender executable)")
    version = blender_version(blender_path, env)
    python = runtime_python or sys.executable
    with tempfile.TemporaryDirectory(prefix="reframe-addon-") as folder:
        archive = Path(zip_path) if zip_path else build(folder)
        if version >= (4, 2):
            _run_blender(blender_path, ["--command", "extension", "install-file", "-r", "user_default", "-e",
                                        str(archive)], "installing the extension", env)
            module = f"bl_ext.user_default.{PACKAGE_ID}"
            where = "the user_default extensions repository"
        else:
            addons = _run_blender(blender_path, ["--python-expr", "import bpy; print('REFRAME-ADDONS', "
                                                 "bpy.utils.user_resource('SCRIPTS', path='addons', create=True))"],
                                  "finding the add-ons folder", env)
            folder_line = [line for line in addons.splitlines() if line.startswith("REFRAME-ADDONS ")]
            if not folder_line:
                raise PackagingError(f"{blender_path} did not say where its add-ons go")
            addons_dir = Path(folder_line[-1].split(" ", 1)[1])
            target = addons_dir / PACKAGE_ID
            shutil.rmtree(target, ignore_errors=True)
            with zipfile.ZipFile(archive) as z:
                z.extractall(addons_dir)
            # Blender on a system Python may have no numpy: the add-on then takes the runtime environment's.
            (target / "environment.json").write_text(json.dumps({"python": str(python),
                                                                 "site_packages": site_packages(python)}))
            module, where = PACKAGE_ID, str(target)
        settings = {"module": module, "python": str(python), "runtime": runtime}
        out = _run_blender(blender_path, ["--python-expr", _CONFIGURE, "--", json.dumps(settings)],
                           "setting the add-on's preferences", env)
    if "REFRAME-CONFIGURED" not in out:
        raise PackagingError(f"the add-on did not enable in {blender_path}: {out.strip()[-400:]}")
    return {"blender": blender_path, "version": ".".join(map(str, version)), "module": module, "installed": where,
            "runtime": runtime, "python": str(python)}
