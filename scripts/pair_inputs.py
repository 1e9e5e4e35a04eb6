"""Pair a dataset's native frames with low-resolution inputs rendered at another sample count.

    python scripts/pair_inputs.py NATIVE_DATASET LOWRES_DATASET OUT [--scale 2]

``NATIVE_DATASET`` holds scale 1 (and the scale, at its sample count), ``LOWRES_DATASET`` only the scale, rendered
with ``reframe-blender dataset --scales 2 --samples N`` over the same frames: the cameras and jitter are the same
(they depend on the frame only, which is checked). ``OUT`` gets the native frames and those inputs, as links,
so that ``reframe-blender eval`` scores SS from N-sample inputs against the native render.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("native")
    parser.add_argument("lowres")
    parser.add_argument("out")
    parser.add_argument("--scale", type=float, default=2.0)
    args = parser.parse_args(argv)
    key = f"scale_{args.scale:g}"
    native, lowres = Path(args.native), Path(args.lowres)
    base = json.loads((native / "metadata.json").read_text())
    other = json.loads((lowres / "metadata.json").read_text())
    if "scale_1" not in base["frames"] or key not in other["frames"]:
        sys.exit(f"{native} needs scale 1 and {lowres} needs {key}: render them with reframe-blender dataset")
    for frame, entry in other["frames"][key].items():
        mine = base["frames"].get(key, {}).get(frame)
        if frame not in base["frames"]["scale_1"] or (mine is not None and mine["jitter"] != entry["jitter"]):
            sys.exit(f"frame {frame} of {lowres} has no native frame with the same camera and jitter in {native}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paired = dict(base, frames={"scale_1": base["frames"]["scale_1"], key: other["frames"][key]})
    (out / "metadata.json").write_text(json.dumps(paired, indent=1))
    for name, source in (("scale_1", native / "scale_1"), (key, lowres / key)):
        if not (out / name).exists():
            os.symlink(source.resolve(), out / name)
    print(f"wrote {out}: native frames of {native}, {key} inputs of {lowres}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
