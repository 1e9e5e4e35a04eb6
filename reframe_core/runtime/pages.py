"""Huge pages for PyTorch's large CPU tensors, in the processes the command line owns.

At 1920x1080 a frame's tensors are hundreds of megabytes each. glibc serves every allocation above 32 MB with a
fresh ``mmap`` and unmaps it when the tensor is freed, so each frame the kernel faults in and zeroes every 4 kB
page again: measured on this project's 2-core CPU, a cached SS frame took 404,710 page faults and 1.46 s of
system time (1.86 s wall). PyTorch's own switch ``THP_MEM_ALLOC_ENABLE=1`` (``c10/core/alloc_cpu.cpp``) aligns
allocations of 2 MB and more to 2 MB and asks the kernel for transparent huge pages there: 512 times fewer
faults. Measured the same way: 16,179 faults, 0.48 s system time, 1.26 s wall; a full frame 5.9 -> 4.1 s.
Memory is still given back when a tensor is freed.

(Keeping freed memory in the heap instead, glibc's ``M_MMAP_MAX=0``, was faster still, 0.97 s. A first probe
saw the heap grow by a block's size whenever PyTorch's 64-byte-aligned request did not fit the block it had just
freed; a later 40-frame render loop levelled off at twice the resident memory, and with the display size
changing it gained almost nothing (README, "Channels-last where it pays"). So memory is given back.)

PyTorch reads the variable once, at its first allocation, so :func:`use_huge_pages` is called by the command
line before anything imports torch. Inside Blender nothing is changed: that process and its environment are
the artist's. ``THP_MEM_ALLOC_ENABLE=0`` turns it off; a kernel with transparent huge pages ``never`` ignores it.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV = "THP_MEM_ALLOC_ENABLE"
KERNEL_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def use_huge_pages() -> None:
    """Ask PyTorch for huge pages, unless the environment already says (call before torch is imported)."""
    os.environ.setdefault(ENV, "1")


def huge_pages_state() -> str:
    """What PyTorch's large CPU tensors get in this process, for reports: ``"huge pages"``, or ``"4 kB pages (why)"``.

    Read from what the kernel did, not from the variable (set after torch's first allocation, it does nothing):
    the ``AnonHugePages`` of the mapping that holds a freshly written 64 MB tensor (``/proc/self/smaps``). 64 MB:
    glibc serves smaller blocks from its heap once freed large blocks have raised its mapping threshold (up to
    32 MB), where they reuse pages already faulted in, huge or not."""
    import torch

    try:
        kernel = KERNEL_SETTING.read_text().split("[", 1)[1].split("]", 1)[0]
    except (OSError, IndexError):
        kernel = None
    if kernel not in ("always", "madvise"):
        return f"4 kB pages (kernel transparent huge pages: {kernel or 'absent'})"
    if kernel == "madvise" and os.environ.get(ENV, "") in ("", "0"):  # "always": the kernel does it unasked
        return f"4 kB pages ({ENV}={os.environ.get(ENV) or 'unset'})"
    probe = torch.ones(16 << 20)
    address, huge = probe.data_ptr(), None
    try:
        with open("/proc/self/smaps") as smaps:
            inside = False
            for line in smaps:
                head = line.split(" ", 1)[0]
                if "-" in head and ":" not in head:  # a mapping's first line: start-end perms ...
                    start, end = (int(x, 16) for x in head.split("-"))
                    inside = start <= address < end
                elif inside and head == "AnonHugePages:":
                    huge = int(line.split()[1])
                    break
    except OSError:
        return "4 kB pages (cannot read /proc/self/smaps)"
    del probe
    if not huge:
        return f"4 kB pages ({ENV}=1 set after torch's first allocation)"
    return "huge pages"
