"""What a runtime environment can do, as one JSON line: ``python -m reframe_core.runtime.probe --device auto``.

The add-on's "Check runtime" runs this with the configured Python (in a subprocess with a deadline, so a broken
torch install cannot hang or crash Blender) and shows the answer: torch's version, the device a session would
use, the weights found, or the exact reason one of them is missing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SHIPPED_NAMES = ("ss_x2", "fe_extranet")  # what the workloads load by default


def weights_found(folder: str | None) -> dict[str, str]:
    """name -> file of every weights file a session could load: the user's folder first, then the shipped ones."""
    found: dict[str, str] = {}
    here = Path(__file__).resolve().parents[1] / "weights"
    for base in ([Path(folder)] if folder else []) + [here]:
        if base.is_dir():
            for path in sorted(base.glob("*.pt")):
                found.setdefault(path.stem, str(path))
    return found


def probe(device: str = "auto", weights_folder: str | None = None) -> dict:
    answer: dict = {"python": sys.version.split()[0], "executable": sys.executable, "ok": False,
                    "weights": weights_found(weights_folder)}
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install raising anything at import
        answer["reason"] = (f"torch cannot be imported by {sys.executable} ({type(exc).__name__}: {exc}): install it "
                            f"there with '{sys.executable} -m pip install torch==2.13.0', or use Preferences > Set up runtime")
        return answer
    answer["torch"] = torch.__version__
    answer["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    try:
        from reframe_core.runtime.placement import Placement

        answer["device"] = Placement(device=device).describe()
    except Exception as exc:
        answer["reason"] = f"device {device!r} is not usable here: {exc}"
        return answer
    missing = [name for name in SHIPPED_NAMES if name not in answer["weights"]]
    if missing:
        answer["reason"] = f"no weights {', '.join(missing)} in {weights_folder or 'the package'}"
        return answer
    for module in ("flip_evaluator", "msgspec"):
        try:
            __import__(module)
        except ImportError as exc:
            answer["reason"] = f"{module} is missing in {sys.executable} ({exc}): install the runtime's requirements"
            return answer
    answer["ok"] = True
    return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--weights-folder")
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.device, args.weights_folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
