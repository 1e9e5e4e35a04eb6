"""The demo render end to end on a tiny frame range: real EEVEE frames, the shipped SS weights, the render path."""
import json

import numpy as np
import pytest

pytest.importorskip("bpy")

from reframe_core.cli import main  # noqa: E402


def test_demo_writes_frames_side_by_side_images_and_report(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "demo"
    assert main(["demo", "--frames", "3-4", "--size", "48", "--samples", "1", "--out", str(out), "--quiet"]) == 0
    for folder in ("ss", "bicubic", "native"):
        assert sorted(p.name for p in (out / folder).glob("*.png")) == ["0003.png", "0004.png"]
    with Image.open(out / "side_by_side" / "0004.png") as strip:
        assert strip.size == (3 * 48 + 2 * 4, 48)  # bicubic | ReFrame | native with 4-pixel bars
        panels = np.asarray(strip.convert("RGB"))
    with Image.open(out / "native" / "0004.png") as native:
        assert np.array_equal(panels[:, -48:], np.asarray(native.convert("RGB"))), "the right panel is the native frame"
    report = json.loads((out / "report.json").read_text())
    assert [r["frame"] for r in report["rows"]] == [3, 4]
    assert 0 < report["flip_reframe_vs_native"] < 1 and 0 < report["flip_bicubic_vs_native"] < 1
    assert report["reframe_times"]["network_s"] > 0 and report["native_render_s"] > 0
    printed = capsys.readouterr().out
    assert "FLIP ReFrame" in printed and "speedup" in printed
