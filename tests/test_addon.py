"""The add-on as an artist gets it: the built zip, installed offline into a throw-away Blender configuration
(``BLENDER_USER_RESOURCES``), its preferences, its operator rendering the 6-frame test scene, a render killed
mid-way (only complete frames stay) and the same render run again (it resumes)."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blender_addon import packaging

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "tests" / "addon_scenario.py"
MODULE = "bl_ext.user_default.reframe_blender"


@pytest.fixture(scope="module")
def addon_zip(tmp_path_factory):
    return packaging.build(tmp_path_factory.mktemp("dist"))


def test_zip_is_a_valid_extension_without_torch_or_numpy(addon_zip):
    names = zipfile.ZipFile(addon_zip).namelist()
    manifest = tomllib.loads(zipfile.ZipFile(addon_zip).read("reframe_blender/blender_manifest.toml").decode())
    for field in ("schema_version", "id", "name", "tagline", "version", "type", "maintainer", "license",
                  "blender_version_min"):
        assert manifest.get(field), field
    assert manifest["id"] == "reframe_blender" and manifest["type"] == "add-on"
    assert "wheels" not in manifest
    # Neither bundled packages nor wheels of torch / numpy: only our three packages under lib/.
    tops = {n.split("/")[2] for n in names if n.startswith("reframe_blender/lib/")}
    assert tops == {"reframe_core", "bridge", "blender_addon"}
    assert not [n for n in names if n.endswith((".whl", ".so", ".pyd")) or "__pycache__" in n]
    assert "reframe_blender/lib/reframe_core/weights/ss_x2.pt" in names
    entry = zipfile.ZipFile(addon_zip).read("reframe_blender/__init__.py").decode()
    assert "bl_info" in entry and "def register" in entry  # the legacy (pre-4.2) path
    # Blender's own validator (what `blender --command extension validate` runs), from the bpy module.
    bpy_spec = __import__("importlib.util").util.find_spec("bpy")
    if bpy_spec is None:
        pytest.skip("the bpy module is not installed (pip install -e '.[bpy]'): its extension validator is not here")
    validator = next(Path(bpy_spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    done = subprocess.run([sys.executable, str(validator), "validate", str(addon_zip)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_zip_is_reproducible(addon_zip, tmp_path):
    assert packaging.build(tmp_path).read_bytes() == addon_zip.read_bytes()


def test_requirements_match_pyproject():
    from blender_addon.environment import REQUIREMENTS

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = lambda reqs: {r.split("=")[0].split(">")[0].split("<")[0].strip().lower() for r in reqs}  # noqa: E731
    assert names(REQUIREMENTS) == names(declared)
    assert "torch==2.13.0" in REQUIREMENTS  # pinned: a range would pull a CUDA build


def _run(step, *args, env, timeout=600):
    done = subprocess.run([sys.executable, str(SCENARIO), step, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def _frames(folder: Path) -> list[Path]:
    return sorted(folder.glob("frame_*.png"))


@pytest.mark.blender
def test_install_render_kill_and_resume(addon_zip, tmp_path):
    pytest.importorskip("bpy")
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender-user")}
    blend, out = tmp_path / "scene.blend", tmp_path / "frames"
    installed = _run("install", addon_zip, blend, out, env=env)
    assert installed["install"] == ["FINISHED"] and installed["enabled"]
    assert installed["preferences"] == {"runtime": "server", "python": "", "device": "auto", "precision": "mixed",
                                        "weights_folder": ""}
    # per-user and outside the extension folder, which an upgrade replaces
    assert Path(installed["weights_folder"]).is_relative_to(tmp_path / "blender-user")
    assert "reframe_blender/weights" in installed["weights_folder"] and "/.user/" in installed["weights_folder"]
    assert all(installed["operators"]), installed["operators"]
    assert installed["check"].startswith("OK: torch"), installed["check"]
    # the add-on runs from the installed extension, not from this checkout
    assert Path(installed["module"]).is_relative_to(tmp_path / "blender-user")

    errors = _run("errors", blend, env=env)
    # the render path's message, in Blender's words (no command-line options)
    assert "renders with Cycles; Supersampling needs EEVEE" in errors["cycles"] and "--" not in errors["cycles"]
    assert "Blender's own F12 / Ctrl F12" in errors["cycles"]
    assert "/nonexistent/python does not exist" in errors["python"] and "Preferences" in errors["python"]
    assert errors["check"].startswith("Not ready: ") and "/nonexistent/python" in errors["check"]
    assert not out.exists() or not _frames(out)
    assert "ReFrame is enabled on this scene, but this is Blender's own render" in errors["plain_render"]
    assert errors["online_access"] is False  # the bpy module's default: nothing may download
    assert "may not go online" in errors["setup"] and "Allow Online Access" in errors["setup"]
    assert errors["render_frame"] == ["FINISHED"] and errors["frame_after"] == 3
    assert errors["image"] == {"size": [64, 48], "packed": True}

    # A render killed after its second frame: what is on disk is complete frames only.
    process = subprocess.Popen([sys.executable, str(SCENARIO), "render", str(blend)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while len(_frames(out)) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(60)
    early = _frames(out)
    assert 2 <= len(early) < 6, [p.name for p in early]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") and "tmp" in p.name) == []
    for path in early:
        with Image.open(path) as image:
            image.load()  # a truncated file raises here
            assert image.size == (64, 48) and image.format == "PNG"

    # The killed render's temporary EXR (in /dev/shm) is removed by the next render.
    scratch = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    leaked = list(scratch.glob(f"reframe-capture-{process.pid}-*.exr"))
    assert leaked, "the killed render had a scratch file (else this test checks nothing)"

    # Run again: the finished frames are kept, the rest is rendered.
    before = {p.name: p.stat().st_mtime_ns for p in early}
    resumed = _run("render", blend, env=env)
    assert resumed["result"] == ["FINISHED"] and resumed["torch_imported"] is False
    assert resumed["summary"] == f"complete: {6 - len(early)} written, {len(early)} already done", resumed
    frames = _frames(out)
    assert [p.name for p in frames] == [f"frame_{i:04d}.png" for i in range(1, 7)]
    assert {p.name: p.stat().st_mtime_ns for p in frames if p.name in before} == before
    for path in frames:
        with Image.open(path) as image:
            assert image.size == (64, 48) and image.format == "PNG" and image.mode == "RGBA"
            assert np.asarray(image)[..., :3].std() > 5  # a rendered picture, not a flat fill
    assert not [p for p in leaked if p.exists()], "a dead render's scratch file is removed"
    report = json.loads((out / "reframe-ss-0001-0006.json").read_text())
    assert report["status"] == "complete" and report["totals"]["skipped"] == len(early)
    assert report["session"]["runtime"]["transport"] == "server"  # torch only in the server process
    assert report["job"]["precision"] == "fp32" and report["session"]["placement"] == "cpu fp32"  # the preference
    assert 0.0 <= resumed["hit_rate"] <= 1.0 and resumed["ms_per_frame"] > 0
