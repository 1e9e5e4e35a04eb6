"""reframe-blender calibrate: the fastest setting within the FLIP target, stored beside the scene and used by render."""
import json
import re

import pytest

from reframe_core.cli import main
from reframe_core.errors import SettingsError
from reframe_core.evaluation.calibration import (Calibration, calibration_path, candidate_settings, choose, read_calibration,
                                                 write_calibration)


def _row(policy, speedup, flip_mean, flip_max, reproject=False):
    return {"policy": policy, "reproject": reproject, "speedup": speedup, "flip_mean": flip_mean, "flip_max": flip_max,
            "hit_rate": 0.5}


def test_choose_takes_the_fastest_setting_within_the_target():
    rows = [_row("every:8", 3.0, 0.03, 0.04), _row("screen:px=64", 2.5, 0.015, 0.06),  # mean, then one frame over
            _row("screen:px=24", 2.2, 0.012, 0.03, True), _row("every:2", 1.3, 0.004, 0.006)]
    assert choose(rows, 0.02, "ss")["policy"] == "screen:px=24"
    assert choose(rows, 0.005, "ss")["policy"] == "every:2"
    with pytest.raises(SettingsError, match=r"no ss setting keeps mean FLIP <= 0.001.*closest is every:2 at 0.0040"):
        choose(rows, 0.001, "ss")


def test_calibration_files_sit_beside_the_blend_and_keep_other_workloads(tmp_path):
    blend = tmp_path / "shot.blend"
    assert calibration_path(str(blend)) == tmp_path / "shot.reframe-calibration.json"
    common = dict(target_flip=0.02, speedup=2.1, flip_mean=0.01, flip_max=0.02, hit_rate=0.8, frames=[1, 12], measured_on="x")
    write_calibration(str(blend), Calibration(workload="ss", policy="screen:px=24", reproject=True, **common))
    write_calibration(str(blend), Calibration(workload="fe", policy="every:4", reproject=False, **common))
    assert read_calibration(str(blend), "ss").policy == "screen:px=24" and read_calibration(str(blend), "ss").reproject
    assert read_calibration(str(blend), "fe").policy == "every:4"
    assert read_calibration(str(tmp_path / "other.blend"), "ss") is None
    calibration_path(str(blend)).write_text("{not json")
    with pytest.raises(SettingsError, match="shot.reframe-calibration.json is not a readable calibration"):
        read_calibration(str(blend), "ss")


def test_calibrate_stores_the_fastest_measured_setting_and_render_uses_it(tiny_dataset, tmp_path, monkeypatch, capsys):
    from blender_addon.render_loop import RenderJob
    from reframe_core.commands.render import calibrated

    monkeypatch.chdir(tmp_path)  # library scenes' calibrations go to out/calibration/ under the working folder
    assert main(["calibrate", "slow_pan", "--workload", "ss", "--data", str(tiny_dataset), "--frames", "3-8",
                 "--target-flip", "0.01", "--quiet"]) == 0
    printed = capsys.readouterr().out
    rows = []
    for line in printed.splitlines():
        found = re.match(r"(\S+)( \+reproject)?\s+([\d.]+)x\s+\d+%\s+([\d.]+)\s+([\d.]+)$", line)
        if found:
            rows.append((float(found[3]), float(found[4]), float(found[5]), found[1], bool(found[2])))
    assert len(rows) == len(candidate_settings(None)) == 31
    fitting = [r for r in rows if r[1] <= 0.01 and r[2] <= 0.025]
    fastest = max(fitting, key=lambda r: (r[0], -r[1]))  # ties (2 decimals) to the lower FLIP, as choose does
    stored = json.loads((tmp_path / "out/calibration/slow_pan.reframe-calibration.json").read_text())["workloads"]["ss"]
    assert (stored["policy"], stored["reproject"]) == (fastest[3], fastest[4])
    assert stored["speedup"] == pytest.approx(fastest[0], abs=0.006) and stored["flip_mean"] <= 0.01
    # render --policy auto (the default) takes it; an explicit policy or another workload does not.
    job = calibrated(RenderJob(mode="ss", policy="auto"), "slow_pan")
    assert (job.policy, job.reproject) == (fastest[3], fastest[4])
    assert calibrated(RenderJob(mode="fe", policy="auto"), "slow_pan").policy == "motion"
    assert calibrated(RenderJob(mode="ss", policy="every:2"), "slow_pan").policy == "every:2"
    assert calibrated(RenderJob(mode="ss", policy="auto"), "fast_orbit").policy == "motion"
