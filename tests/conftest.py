import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


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
