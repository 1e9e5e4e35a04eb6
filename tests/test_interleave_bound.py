"""scripts/interleave_bound.py: four quarter-pixel-shifted half-resolution renders, interleaved, land every sample
on its display pixel, so they match the native render better than bicubic of one half-resolution render does.
With the shift's sign wrong the samples land half a display pixel off and interleaving loses to bicubic by far
(tried once: 0.070 against bicubic's 0.044, so this test fails)."""
import json
import runpy
from pathlib import Path

import pytest

pytest.importorskip("bpy")
pytestmark = pytest.mark.blender

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "interleave_bound.py"


@pytest.mark.parametrize("resolution", ["64", "64x36"])  # square, and 16:9, where the camera shift's unit is the width
def test_interleaving_four_shifted_half_res_renders_beats_bicubic(tmp_path, resolution):
    main = runpy.run_path(str(SCRIPT))["main"]
    out = tmp_path / "bound.json"
    assert main(["slow_pan", "8", "--resolution", resolution, "--samples", "4", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["resolution"] == ("64x64" if resolution == "64" else resolution)
    assert result["flip_interleaved"] < 0.97 * result["flip_bicubic"], result
    assert result["interleaved_below_bicubic"] == pytest.approx(1 - result["flip_interleaved"] / result["flip_bicubic"])
