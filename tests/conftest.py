import os
import shutil
import subprocess

import pytest
import torch


def pytest_configure(config):
    """In CI every test runs: a missing bpy extra or Blender binary is a broken install there, not a reason to
    skip (locally, tests that need them skip, and -ra lists why)."""
    if not os.environ.get("CI"):
        return
    missing = []
    try:
        import bpy  # noqa: F401
    except ImportError as exc:
        missing.append(f"the bpy module ({exc}): install the package with its extra, pip install -e '.[bpy]'")
    if shutil.which("blender") is None:
        missing.append("a 'blender' executable (Debian's 3.4: apt-get install blender; 'make test' installs it as root)")
    from scenes.sweethome3d import catalog_available

    if not catalog_available():
        missing.append("Sweet Home 3D's furniture catalog (apt-get install sweethome3d-furniture, which 'make test' runs as root, "
                       "or REFRAME_SH3D_CATALOG=FILE.sh3f)")
    if missing:
        raise pytest.UsageError("CI=true runs every test, but the environment lacks " + "; and ".join(missing))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def flops_removed_measured(cached, model, inputs: tuple, frames: int) -> float:
    """Share of the FLOPs that ``cached`` saved over ``frames`` calls against the plain ``model``, counted as
    they really ran (independent of the cut plan's own accounting)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as ran_cached:
        for _ in range(frames):
            cached(*inputs)
    with FlopCounterMode(display=False) as ran_plain, torch.inference_mode():
        for _ in range(frames):
            model(*inputs)
    return 1 - ran_cached.get_total_flops() / ran_plain.get_total_flops()


def devices():
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    return found


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Six frames of the slow pan at 48x48 (scale 1) and 24x24 (scale 2, jittered), 1 sample: real EEVEE."""
    pytest.importorskip("bpy")
    from reframe_core.cli import main

    out = tmp_path_factory.mktemp("tiny") / "slow_pan"
    assert main(["dataset", "--scene", "slow_pan", "--frames", "3-8", "--scales", "1,2", "--resolution", "48",
                 "--samples", "1", "--quiet", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_cheap(tiny_dataset, tmp_path_factory):
    """FE's cheap pass of the same six frames (dataset --cheap), at the tiny set's own 1 sample: what a relighting
    FE network's eval takes as --cheap-data."""
    from reframe_core.cli import main

    out = tmp_path_factory.mktemp("tiny_cheap") / "slow_pan"
    assert main(["dataset", "--scene", "slow_pan", "--frames", "3-8", "--scales", "1", "--resolution", "48",
                 "--samples", "1", "--cheap", "--quiet", "--out", str(out)]) == 0
    return out


@pytest.fixture
def small_disk(tmp_path):
    """A real, nearly full disk: a 64 KiB tmpfs (mounting needs root, as CI and the dev machines run)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (not root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)])
