"""The dataset command: layout, resume, same bytes on a re-run, and its errors."""
import hashlib
import json

import numpy as np
import pytest

pytest.importorskip("bpy")

from reframe_core.cli import main  # noqa: E402
from reframe_core.frames.dataset import Dataset  # noqa: E402

pytestmark = pytest.mark.blender
ARGS = ["dataset", "--scene", "slow_pan", "--frames", "3-4", "--scales", "1,2", "--resolution", "48", "--samples", "1", "--quiet"]


def _digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "timings.jsonl"}


def _renders(root):
    return len((root / "timings.jsonl").read_text().splitlines())


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "pan"
    assert main(ARGS + ["--out", str(out)]) == 0
    return out


def test_layout_and_reading_back(dataset_dir):
    assert sorted(p.name for p in (dataset_dir / "scale_1").iterdir()) == ["frame_0003.exr", "frame_0004.exr"]
    data = Dataset.open(dataset_dir)
    assert data.scales == [1.0, 2.0] and data.frames(2.0) == [3, 4]
    full, low = data.load(4, 1.0), data.load(4, 2.0)
    assert full.color.shape == (48, 48, 3) and low.color.shape == (24, 24, 3)
    assert np.allclose(full.jitter, 0) and not np.allclose(low.jitter, 0), "jitter on the low-res scale only"
    meta = json.loads((dataset_dir / "metadata.json").read_text())
    assert meta["schema_version"] == 1 and meta["settings"]["scales"] == [1.0, 2.0]
    assert meta["frames"]["scale_2"]["4"]["camera"]["resolution"] == [24, 24]


def test_rerun_skips_finished_frames_and_resumes_missing_ones(dataset_dir):
    before = _digests(dataset_dir)
    renders = _renders(dataset_dir)
    assert main(ARGS + ["--out", str(dataset_dir)]) == 0
    assert _renders(dataset_dir) == renders, "nothing re-rendered"
    (dataset_dir / "scale_2" / "frame_0004.exr").unlink()
    assert main(ARGS + ["--out", str(dataset_dir)]) == 0
    assert _renders(dataset_dir) == renders + 1, "only the missing frame re-rendered"
    assert _digests(dataset_dir) == before, "and it has the same bytes"


def test_same_bytes_in_a_fresh_folder(dataset_dir, tmp_path):
    again = tmp_path / "again"
    assert main(ARGS + ["--out", str(again)]) == 0
    assert _digests(again) == _digests(dataset_dir)


def test_another_scale_is_added_beside_the_same_targets(dataset_dir, tmp_path):
    """A quality mode's inputs (here 3x) go into an existing dataset: only they are rendered, the frames already
    there keep their bytes, and the settings list every scale."""
    import shutil

    root = tmp_path / "more"
    shutil.copytree(dataset_dir, root)
    before, renders = _digests(root), _renders(root)
    args = [("3" if previous == "--scales" else a) for previous, a in zip([None] + ARGS, ARGS)]
    assert main(args + ["--out", str(root)]) == 0
    assert _renders(root) == renders + 2, "two frames at the new scale, nothing else"
    after = _digests(root)
    assert {k: v for k, v in after.items() if k in before and k != "metadata.json"} == \
        {k: v for k, v in before.items() if k != "metadata.json"}
    data = Dataset.open(root)
    assert data.scales == [1.0, 2.0, 3.0] and data.load(4, 3.0).color.shape == (16, 16, 3)
    assert json.loads((root / "metadata.json").read_text())["settings"]["scales"] == [1.0, 2.0, 3.0]


def test_other_settings_in_the_same_folder_are_refused(dataset_dir, capsys):
    args = [("4" if previous == "--samples" else a) for previous, a in zip([None] + ARGS, ARGS)]
    assert main(args + ["--out", str(dataset_dir)]) == 2
    assert "other settings" in capsys.readouterr().err


def test_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(ARGS + ["--out", str(blocker / "sub")]) == 2
    assert "cannot write to output folder" in capsys.readouterr().err


def test_disk_full_keeps_finished_frames(small_disk, capsys):
    mount = small_disk
    assert main(ARGS + ["--out", str(mount / "ds")]) == 2
    assert "disk full" in capsys.readouterr().err
    data = Dataset.open(mount / "ds")
    done = [(s, f) for s in data.scales for f in data.frames(s)]
    assert done, "at least one frame fitted"
    for scale, frame in done:
        assert data.load(frame, scale).color.shape[0] > 0
    assert not list((mount / "ds").rglob("*.partial")), "no half-written files left"
