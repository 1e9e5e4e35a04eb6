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
