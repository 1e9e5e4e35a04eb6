"""Render a dataset's low-resolution inputs with EEVEE's film filter narrowed (a measurement, not the render path).

    python scripts/narrow_filter_inputs.py SCENE FRAMES WxH SAMPLES FILTER OUT [--scale 2]

The SS inputs are rendered at 1/scale of the display with the scene's film filter (1.5 px by default), measured in
*rendered* pixels: at half resolution it spans 3 display pixels, twice the native render's, so each jittered
sample is blurrier than the native render's pixels and no accumulation can take that blur back. ``FILTER`` is the
filter width in rendered pixels (0.75 at 2x matches the native footprint). OUT gets a dataset of the ``scale``
inputs only, with the jitter and cameras of ``reframe-blender dataset`` for the same frames, so that
``scripts/pair_inputs.py NATIVE OUT PAIRED`` pairs them with the native frames (README, "Quality status").
"""
from __future__ import annotations

import argparse


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scene")
    parser.add_argument("frames", help="A-B")
    parser.add_argument("resolution", help="WxH of the display (scale 1)")
    parser.add_argument("samples", type=int)
    parser.add_argument("filter", type=float, help="film filter width in rendered pixels (Blender's default 1.5)")
    parser.add_argument("out")
    parser.add_argument("--scale", type=float, default=2.0)
    args = parser.parse_args(argv)

    import blender_addon.dataset_writer as writer
    from reframe_core.frames.ranges import parse_frames

    prepare, changed = writer._prepare_scene, []

    def narrowed(spec):
        scene, source = prepare(spec)
        changed.append((scene.render, scene.render.filter_size))
        scene.render.filter_size = args.filter
        return scene, {**source, "filter_size": args.filter}

    writer._prepare_scene = narrowed
    width, height = (int(v) for v in args.resolution.lower().split("x"))
    try:
        writer.write_dataset(writer.DatasetSpec(scene=args.scene, frames=parse_frames(args.frames), scales=(args.scale,),
                                                resolution=(width, height), samples=args.samples), args.out)
    finally:  # a scene built again in this process (the builders keep the render settings) renders as before
        writer._prepare_scene = prepare
        for render, size in changed:
            render.filter_size = size
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
