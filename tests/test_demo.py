"""The demo render end to end on a tiny frame range, with the shipped SS weights and real EEVEE frames."""
import json

import pytest

pytest.importorskip("bpy")

from reframe_core.cli import main  # noqa: E402

pytestmark = pytest.mark.blender


def test_demo_render_writes_report_and_strips(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--frames", "3-5", "--size", "48", "--samples", "1", "--policies", "every:2;motion",
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    methods = [r["method"] for r in report["rows"]]
    assert methods == ["bicubic", "SS uncached", "SS cached every:2", "SS cached motion"]
    every2 = report["rows"][2]
    assert every2["refreshes"] == 2 and 0 < every2["flip_vs_native"] < 1
    assert sorted(p.name for p in out.glob("frame_*.png")) == ["frame_0003.png", "frame_0004.png", "frame_0005.png"]
    assert "SS cached every:2" in capsys.readouterr().out
