"""Frames in shared memory: who creates a segment, who unlinks it, and how arrays are laid out in it.

numpy and the standard library only (the Blender-side client imports this).

Ownership, decided once: **the server creates every segment and is the only one that unlinks it** (when the
session closes, when its client's connection ends for any reason, at server exit). Its resource tracker, a
separate process, unlinks whatever a server killed with SIGKILL left behind. A client only attaches, and on
Python < 3.13 removes the segment from its own resource tracker right after attaching: otherwise that tracker
would warn about "leaked" segments at exit and unlink segments the server still uses. Names carry the server's
pid (``rfb<pid>_<n>_<random>``, short enough for macOS's 31 characters), so a starting server can remove the
segments of a server that died without its tracker (:func:`remove_stale`).
"""
from __future__ import annotations

import os
import secrets
import shutil
import sys
import threading
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path

import numpy as np

PREFIX = "rfb"
ALIGN = 64  # every array starts on a cache line
_REGISTRATION = threading.Lock()  # attach() swaps the resource tracker's register function for its call


def segment_name(counter: int) -> str:
    return f"{PREFIX}{os.getpid()}_{counter}_{secrets.token_hex(3)}"


class SegmentError(OSError):
    """No room for a segment (``/dev/shm`` too small or full)."""


def create(name: str, size: int) -> shared_memory.SharedMemory:
    """A new segment owned by the calling process (the server); registered with its resource tracker.

    Its pages are allocated now: a segment is a sparse file, and a write into pages a full ``/dev/shm`` cannot
    back kills the writing process (Blender) with SIGBUS; here it is one error instead."""
    size = max(int(size), 1)
    segment = shared_memory.SharedMemory(name=name, create=True, size=size)
    if hasattr(os, "posix_fallocate") and getattr(segment, "_fd", -1) >= 0:
        try:
            os.posix_fallocate(segment._fd, 0, size)  # noqa: SLF001
        except OSError as exc:
            segment.close()
            segment.unlink()
            free = f"{shutil.disk_usage('/dev/shm').free / 1e6:.0f} MB" if Path("/dev/shm").is_dir() else "?"
            raise SegmentError(exc.errno, f"no room in shared memory for a {size / 1e6:.0f} MB frame segment "
                                          f"({free} free in /dev/shm): enlarge /dev/shm (Docker: --shm-size) "
                                          f"or render smaller frames") from exc
    return segment


def attach(name: str) -> shared_memory.SharedMemory:
    """Attach to a segment the server created, without making this process's resource tracker an owner."""
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)
    if os.name != "posix":  # Windows frees a mapping when the last handle closes: no tracker there
        return shared_memory.SharedMemory(name=name)
    # Before 3.13 every opened segment is registered with the resource tracker, which would unlink the server's
    # segment when this process exits (bpo-39959). It is kept out of the registration rather than told afterwards:
    # registering starts a tracker process inside Blender, and in a Blender whose embedded Python runs another
    # patch release's standard library (Debian's Blender 3.4 on libpython 3.11.2 picks up a pyenv 3.11.7 first on
    # PATH) starting it fails with "'_thread.RLock' object has no attribute '_recursion_count'".
    with _REGISTRATION:
        register = resource_tracker.register
        resource_tracker.register = lambda name, rtype: None
        try:
            return shared_memory.SharedMemory(name=name)
        finally:
            resource_tracker.register = register


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder: str = "/dev/shm") -> list[str]:
    """Unlink this user's bridge segments whose server process is gone; returns their names (Linux only)."""
    root = Path(folder)
    removed = []
    if not root.is_dir() or not hasattr(os, "getuid"):
        return removed
    for path in root.glob(f"{PREFIX}*_*_*"):
        try:
            pid = int(path.name[len(PREFIX):].split("_", 1)[0])
            if path.stat().st_uid == os.getuid() and not _pid_alive(pid):
                path.unlink()
                removed.append(path.name)
        except (ValueError, OSError):
            continue
    return removed


def our_segments(pid: int | None = None, folder: str = "/dev/shm") -> list[str]:
    """Names of the bridge segments of server ``pid`` (any server if None) that exist now (Linux only)."""
    root = Path(folder)
    pattern = f"{PREFIX}{pid}_*" if pid is not None else f"{PREFIX}*_*_*"
    return sorted(p.name for p in root.glob(pattern)) if root.is_dir() else []


# --- layout -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Slot:
    """Where one array lives in a segment."""

    name: str
    shape: tuple[int, ...]
    offset: int
    dtype: str = "float32"

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "offset": self.offset, "dtype": self.dtype}


def plan_layout(arrays: dict[str, np.ndarray]) -> tuple[list[Slot], int]:
    """Slots for ``arrays`` packed one after another (aligned), and the bytes they need."""
    slots, offset = [], 0
    for name, array in arrays.items():
        slot = Slot(name, tuple(int(n) for n in array.shape), offset)
        slots.append(slot)
        offset += -(-slot.nbytes // ALIGN) * ALIGN
    return slots, offset


def view(segment: shared_memory.SharedMemory, slot: Slot) -> np.ndarray:
    """The slot's array inside the segment (no copy); the caller has checked it fits."""
    return np.ndarray(slot.shape, dtype=slot.dtype, buffer=segment.buf, offset=slot.offset)


def write_arrays(segment: shared_memory.SharedMemory, slots: list[Slot], arrays: dict[str, np.ndarray]) -> None:
    for slot in slots:
        np.copyto(view(segment, slot), arrays[slot.name], casting="same_kind")
