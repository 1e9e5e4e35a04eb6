"""Which settings wrote which frame: the records a render keeps beside its frames, so a resumed run, a retried farm
chunk or another node knows which files are finished.

Each writing process appends to its own file, ``.reframe-frames/HOST-PID.jsonl`` in the frames' folder, one JSON
line per frame: farm nodes writing into one folder on NFS or SMB never append to the same file (appends from
several hosts to one file are not atomic there, and a lost line would make a finished frame look foreign).
Reading merges them all; for a file recorded more than once the latest record counts. Records of the first
release (one ``.reframe-frames.jsonl`` per folder) are still read.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

FOLDER = ".reframe-frames"
LEGACY = ".reframe-frames.jsonl"


def _writer_file(folder: Path) -> Path:
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "host"
    return folder / FOLDER / f"{host}-{os.getpid()}.jsonl"


def append(path: Path, frame: int, settings: dict) -> None:
    """Record that ``path`` (a frame file) holds ``frame`` written with ``settings``."""
    path = Path(path)
    target = _writer_file(path.parent)
    target.parent.mkdir(exist_ok=True)
    line = json.dumps({"file": path.name, "frame": frame, "settings": settings, "t": time.time()},
                      sort_keys=True) + "\n"
    with open(target, "a") as f:
        f.write(line)


def entries(folder: Path) -> list[dict]:
    """Every record in ``folder``, oldest first (legacy lines first, in file order)."""
    folder = Path(folder)
    found: list[dict] = []
    sources = [folder / LEGACY] + sorted((folder / FOLDER).glob("*.jsonl")) if (folder / FOLDER).is_dir() \
        else [folder / LEGACY]
    for source in sources:
        if not source.is_file():
            continue
        for line in source.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError, AttributeError):
                entry = json.loads(line)
                found.append({"file": entry["file"], "frame": entry.get("frame"), "settings": entry["settings"],
                              "t": float(entry.get("t", 0.0))})
    found.sort(key=lambda e: e["t"])  # stable: legacy lines (t 0) keep their order, first
    return found


def latest(folder: Path) -> dict[str, dict]:
    """file name -> the settings of the latest record of it."""
    return {e["file"]: e["settings"] for e in entries(folder)}


def forget(folder: Path) -> None:
    """Remove every record of ``folder`` (its files then count as written by something else)."""
    folder = Path(folder)
    (folder / LEGACY).unlink(missing_ok=True)
    if (folder / FOLDER).is_dir():
        for source in (folder / FOLDER).glob("*.jsonl"):
            source.unlink()
        with contextlib.suppress(OSError):
            (folder / FOLDER).rmdir()
