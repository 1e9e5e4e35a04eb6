"""What pixel interleaving alone can give SS 2x on one frame of a scene: a bound to report beside the network.

    python scripts/interleave_bound.py SCENE FRAME [--resolution 256|640x360] [--samples 16] [--json OUT.json]

Renders the frame natively, then four times at half resolution with the camera shifted by a quarter of a
low-res pixel in x and y (-1/4 or +1/4 each), so that every low-res sample lands on a display pixel centre.
Interleaving the four renders is a perfect static accumulation of four frames: no motion, no resampling. FLIP
of it against the native render, beside bicubic of one unshifted half-resolution render, says how much of
bicubic's error interleaving alone removes; the rest is EEVEE's low-res film filter, effects computed at the
lower resolution, and noise. Needs bpy (pip install -e '.[bpy]').
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def render_color(scene, width: int, height: int, shift: tuple[float, float], path: Path):
    import bpy
    import numpy as np
    import OpenEXR

    scene.render.resolution_x, scene.render.resolution_y = width, height
    camera = scene.camera.data
    base = (camera.shift_x, camera.shift_y)
    camera.shift_x, camera.shift_y = base[0] + shift[0], base[1] + shift[1]
    try:
        scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)
    finally:
        camera.shift_x, camera.shift_y = base
    with OpenEXR.File(str(path)) as exr:
        channels = exr.channels()
        rgb = channels["RGBA"].pixels if "RGBA" in channels else channels["RGB"].pixels
    return np.ascontiguousarray(rgb[..., :3], dtype=np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scene")
    parser.add_argument("frame", type=int)
    parser.add_argument("--resolution", default="256", help="display size: N (square) or WxH, both even")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    from reframe_core.errors import SettingsError
    from reframe_core.evaluation.speed import parse_size

    try:
        height, width = parse_size(args.resolution)
    except SettingsError as exc:
        parser.error(f"--resolution: {exc}")
    if width % 2 or height % 2:
        parser.error(f"--resolution {args.resolution} must have even sides (2x2 display pixels per low-res pixel)")

    import numpy as np
    import torch

    from reframe_core.evaluation.metrics import flip
    from reframe_core.workloads.supersampling import bicubic_upscale
    from reframe_core.frames.warp import to_image, to_tensor
    from scenes import get_scene

    scene = get_scene(args.scene).build(0)
    scene.eevee.taa_render_samples = args.samples
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    scene.render.film_transparent = False
    scene.frame_set(args.frame)
    low_w, low_h = width // 2, height // 2
    side = max(low_w, low_h)  # Blender's camera shift is in units of the larger image side, on both axes
    with tempfile.TemporaryDirectory() as tmp:
        native = render_color(scene, width, height, (0.0, 0.0), Path(tmp) / "native.exr")
        half = render_color(scene, low_w, low_h, (0.0, 0.0), Path(tmp) / "half.exr")
        interleaved = np.zeros_like(native)
        for by in (0, 1):
            for bx in (0, 1):
                jx, jy = bx / 2 - 0.25, by / 2 - 0.25  # low-res pixels; our y points down
                # +y shift moves the view up.
                shifted = render_color(scene, low_w, low_h, (jx / side, -jy / side), Path(tmp) / f"q{bx}{by}.exr")
                interleaved[by::2, bx::2] = shifted
    bicubic = to_image(bicubic_upscale(to_tensor(half), (height, width), torch.zeros(1, 2)))
    result = {"scene": args.scene, "frame": args.frame, "resolution": f"{width}x{height}", "samples": args.samples,
              "flip_bicubic": float(flip(native, bicubic).mean), "flip_interleaved": float(flip(native, interleaved).mean)}
    result["interleaved_below_bicubic"] = 1 - result["flip_interleaved"] / result["flip_bicubic"]
    print(f"{args.scene} frame {args.frame} {width}x{height} {args.samples} samples: bicubic {result['flip_bicubic']:.4f}, "
          f"4 frames interleaved {result['flip_interleaved']:.4f} ({result['interleaved_below_bicubic']:.1%} below bicubic)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
