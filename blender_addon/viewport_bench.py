"""``reframe-blender bench-viewport``: the viewport overlay measured in a real Blender window (a Blender binary
under Xvfb; here Debian's 3.4). No bpy here: this drives Blender processes.

The add-on is installed into a throw-away HOME, a library scene is built and opened in a window, and
:mod:`blender_addon.viewport_scenario` runs: the overlay converges on the scene camera's view (FLIP of what it
shows against the same view drawn at full resolution, beside bicubic of the same low-res draw), then the view orbits
in 0.5-degree steps with the scene's cache policy and again uncached (seconds from a view change to its result
on screen, the capture and runtime parts, hit rate, dropped frames).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from reframe_core.errors import SettingsError

ROOT = Path(__file__).resolve().parents[1]


def run_viewport_bench(scene: str, frames: int, screen: str, blender: str, out: Path,
                       screenshot: Path | None = None) -> dict:
    from blender_addon.packaging import install

    xvfb = shutil.which("xvfb-run")
    blender_path = shutil.which(blender) or blender
    if xvfb is None or not Path(blender_path).exists():
        raise SettingsError("bench-viewport needs a Blender binary and xvfb-run (Debian: apt-get install blender xvfb)")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reframe-viewport-") as folder:
        home = Path(folder) / "home"
        env = {**os.environ, "HOME": str(home)}
        for name in ("BLENDER_USER_RESOURCES", "BLENDER_USER_CONFIG", "BLENDER_USER_SCRIPTS", "XDG_CONFIG_HOME"):
            env.pop(name, None)  # only the throw-away HOME decides where Blender's configuration is
        installed = install(blender_path, runtime_python=sys.executable, env=env)  # never the user's Blender
        blend = Path(folder) / f"{scene}.blend"
        build = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from scenes import get_scene; import bpy; "
                 f"get_scene({scene!r}).build(0); bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})")
        done = subprocess.run([blender_path, "-b", "--factory-startup", "--python-expr", build], env=env,
                              capture_output=True, text=True, timeout=600)
        if not blend.exists():
            raise SettingsError(f"building scene {scene!r} in {blender_path} failed: {done.stderr[-1500:]}")
        run = subprocess.run([xvfb, "-a", "-s", f"-screen 0 {screen}x24", blender_path, "--enable-event-simulate",
                              str(blend), "-P", str(ROOT / "blender_addon" / "viewport_scenario.py"), "--", str(out),
                              str(frames), "camera"], env=env, capture_output=True, text=True, timeout=3600)
    result = json.loads((out / "viewport.json").read_text()) if (out / "viewport.json").exists() else {}
    if run.returncode != 0 or "error" in result:
        raise SettingsError(f"the viewport scenario failed: {result.get('error') or run.stderr[-2000:]}")
    result["blender"] = installed["version"]
    result["scene"] = scene
    result["quality"] = _quality(out)
    if screenshot is not None and (out / "overlay.png").exists():
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "overlay.png", screenshot)
    (out / "viewport.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def _quality(out: Path) -> dict:
    import torch

    from reframe_core.evaluation.metrics import flip
    from reframe_core.frames.warp import to_image, to_tensor
    from reframe_core.workloads.supersampling import bicubic_upscale

    a = np.load(out / "overlay.npz")
    native, network, low = a["native"], a["network"], a["low"]
    bicubic = to_image(bicubic_upscale(to_tensor(low), native.shape[:2], torch.from_numpy(a["low_jitter"])[None]))
    return {"flip_network": flip(native, network).mean, "flip_bicubic": flip(native, bicubic).mean,
            "display": list(native.shape[1::-1]), "input": list(low.shape[1::-1])}


def format_viewport(result: dict) -> str:
    q, overlay = result["quality"], result["overlay"]
    lines = [f"viewport {q['display'][0]}x{q['display'][1]} drawn at {q['input'][0]}x{q['input'][1]} (2x), "
             f"scene {result['scene']}, Blender {result['blender']} (llvmpipe software OpenGL under Xvfb)",
             f"still view, after {overlay['frames']} frames: FLIP vs a full-resolution draw: overlay "
             f"{q['flip_network']:.4f}, bicubic of the same draw {q['flip_bicubic']:.4f}",
             f"UI timer (every 0.05 s) while the network worked: median gap {overlay['heartbeat']['median_gap_s']:.2f} s, "
             f"longest {overlay['heartbeat']['max_gap_s']:.2f} s",
             f"{'orbit policy':<14} {'frames':>6} {'s/frame':>8} {'capture ms':>10} {'runtime ms':>10} {'hit rate':>8} "
             f"{'dropped':>7}"]
    for policy, o in result.get("orbit", {}).items():
        hit = "-" if o["hit_rate"] is None else f"{o['hit_rate']:.0%}"
        lines.append(f"{policy:<14} {len(o['frame_s']):>6} {np.median(o['frame_s']):>8.2f} "
                     f"{np.median(o['capture_ms']):>10.0f} {np.median(o['runtime_ms']):>10.0f} {hit:>8} "
                     f"{o['dropped']:>7}")
    return "\n".join(lines)
