"""The command line's processes give large tensors huge pages, so a frame's tensors fault in 512 times fewer pages."""
import os
import subprocess
import sys

import pytest

from reframe_core.runtime.pages import KERNEL_SETTING

# Allocate and fill a 256 MB tensor twice (glibc unmaps it in between); count the page faults of the second time.
PROBE = """
import resource, sys
if sys.argv[1] == "cli":
    import reframe_core.cli  # what `reframe-blender` and the runtime server start with
import torch
from reframe_core.runtime.pages import huge_pages_state
def touch():
    t = torch.empty(64 << 20); t.fill_(1.0); del t
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
for _ in range(3):  # freed 30 MB blocks raise glibc's mapping threshold: the report must not be misled by that
    t = torch.empty(30 << 18); t.fill_(1.0); del t
print(huge_pages_state(), "|", faults)
"""


def probe(entry: str) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    done = subprocess.run([sys.executable, "-c", PROBE, entry], capture_output=True, text=True, timeout=120, env=env,
                          check=True)
    state, faults = done.stdout.strip().splitlines()[-1].split(" | ")
    return state, int(faults)


kernel_thp = KERNEL_SETTING.exists() and "[never]" not in KERNEL_SETTING.read_text()


@pytest.mark.skipif(not kernel_thp, reason="the kernel gives no transparent huge pages")
def test_the_command_line_gives_large_tensors_huge_pages():
    pages = (256 << 20) // 4096
    state, faults = probe("plain")  # a library user's process: untouched
    assert state == "4 kB pages (THP_MEM_ALLOC_ENABLE=unset)" and faults > pages // 2
    state, faults = probe("cli")
    assert state == "huge pages" and faults < pages // 20
