"""scripts/pair_inputs.py: native frames of one dataset with the low-res inputs of another (rendered at another
sample count, or with a narrower film filter: dataset --film-filter), so eval scores SS from those inputs;
inputs whose camera jitter differs are refused."""
import json
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest

from reframe_core.cli import main

pytestmark = pytest.mark.blender
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pair_inputs.py"


def _lowres(tmp_path, name, *extra, frames="3-8"):
    out = tmp_path / name
    assert main(["dataset", "--scene", "slow_pan", "--frames", frames, "--scales", "2", "--resolution", "48",
                 "--samples", "2", "--quiet", "--out", str(out), *extra]) == 0
    return out


def test_pairs_native_frames_with_inputs_of_another_sample_count(tiny_dataset, tmp_path, capsys):
    from reframe_core.frames.dataset import Dataset

    pair = runpy.run_path(str(SCRIPT))["main"]
    lowres = _lowres(tmp_path, "two_samples")
    assert pair([str(tiny_dataset), str(lowres), str(tmp_path / "paired")]) == 0
    paired, native, inputs = (Dataset.open(p) for p in (tmp_path / "paired", tiny_dataset, lowres))
    for frame in range(3, 9):
        assert np.array_equal(paired.load(frame, 1.0).color, native.load(frame, 1.0).color)
        assert np.array_equal(paired.load(frame, 2.0).color, inputs.load(frame, 2.0).color)
    # The 1-sample and 2-sample inputs differ: the pairing really swapped them.
    assert not np.array_equal(paired.load(5, 2.0).color, native.load(5, 2.0).color)
    assert main(["eval", "--data", str(tmp_path / "paired")]) == 0

    # Inputs rendered with another jitter (as --no-jitter would give) do not belong to these native frames.
    other = tmp_path / "other_jitter"
    shutil.copytree(lowres, other)
    metadata = json.loads((other / "metadata.json").read_text())
    metadata["frames"]["scale_2"]["4"]["jitter"] = [0.0, 0.0]
    (other / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(SystemExit, match="frame 4 of .*other_jitter has no native frame with the same camera and jitter"):
        pair([str(tiny_dataset), str(other), str(tmp_path / "refused")])


def _detail(image: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels: what a wider reconstruction filter smooths away."""
    return float(np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean())


def test_inputs_with_a_narrowed_film_filter_are_sharper_and_pair_with_the_native_frames(tiny_dataset, tmp_path, capsys):
    from reframe_core.frames.dataset import Dataset

    out = _lowres(tmp_path, "narrow", "--film-filter", "0.5", frames="3-5")
    usual = Dataset.open(_lowres(tmp_path, "usual", frames="3-5"))  # the same, with the scene's 1.5 px filter
    inputs = Dataset.open(out)
    assert json.loads((out / "metadata.json").read_text())["settings"]["film_filter"] == 0.5
    for frame in range(3, 6):  # the same camera and jitter, and more detail between neighbouring pixels
        assert np.array_equal(inputs.load(frame, 2.0).jitter, usual.load(frame, 2.0).jitter)
        assert _detail(inputs.load(frame, 2.0).color) > 1.1 * _detail(usual.load(frame, 2.0).color)
    pair = runpy.run_path(str(SCRIPT))["main"]
    assert pair([str(tiny_dataset), str(out), str(tmp_path / "paired")]) == 0
    assert main(["dataset", "--scene", "slow_pan", "--frames", "3-3", "--scales", "2", "--resolution", "48",
                 "--film-filter", "-1", "--out", str(tmp_path / "refused")]) == 2
    assert "--film-filter is a width in pixels and must be positive, got -1" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()  # refused before any work
