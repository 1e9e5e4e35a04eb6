"""What a farm node does (no Ray here): run ``reframe-blender render`` as a child process and read what it says.

A chunk runs in its own process, not in the Ray worker: Blender-as-a-module holds one file and its GPU state
per process, a crash in Blender must not take the worker's bookkeeping with it, and the child dies with its
parent (``PR_SET_PDEATHSIG`` on Linux, :func:`die_with_parent`), so a killed or lost task never leaves a render writing frames behind the
retry's back.
"""
from __future__ import annotations

import collections
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile

from reframe_core.errors import ReframeError

SAVED = "Saved: '"  # Blender's line for a written frame; the render command prints it too
REPORT = "report: "  # the render command's last summary line


class NodeError(ReframeError):
    """A node cannot do its part (the file or output folder it cannot reach, the project missing there)."""


class ChunkRefused(ReframeError):
    """The render command refused the chunk (exit status 2: the file, the options, the output): a retry would
    fail the same way."""


class ChunkCrashed(Exception):
    """The render died (a signal, an exception, memory): worth retrying; finished frames are kept."""


def render_command(words: list[str]) -> list[str]:
    """``reframe-blender render ...`` with this node's Python (the one Ray runs, which has the project)."""
    return [sys.executable, "-m", "reframe_core.cli", *words]


PARENT = "REFRAME_DIE_WITH_PARENT"  # set for a chunk's render: the pid it must not outlive


def die_with_parent() -> None:
    """Called first thing by the command line: a render started by a farm task is killed when the task's
    process dies (Linux; elsewhere Ray's own cleanup is all there is). Done in the child at start rather than
    between fork and exec, where a multithreaded Ray worker must not load libraries."""
    parent = os.environ.pop(PARENT, None)
    if not parent or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != int(parent):  # the task died before the line above: nobody is waiting for this render
        os._exit(1)


def _child_env() -> dict:
    return {**os.environ, PARENT: str(os.getpid())}


def _last_error(stderr_tail: list[str]) -> str:
    """The render command's one-line error, else the end of what it printed."""
    for line in reversed(stderr_tail):
        if "error:" in line:
            return line.strip()
    return " | ".join(line.strip() for line in stderr_tail[-5:] if line.strip()) or "(nothing on stderr)"


def plan(words: list[str], node: str, timeout: float = 600) -> dict:
    """The render's plan on this node (``--plan-only``): checks that the node reaches the file and the output
    folder; raises :class:`NodeError` naming the node and the render command's reason."""
    try:
        done = subprocess.run(render_command([*words, "--plan-only"]), capture_output=True, text=True,
                              timeout=timeout, env=_child_env())
    except subprocess.TimeoutExpired:
        raise NodeError(f"node {node}: checking the render took over {timeout:.0f} s (is the storage reachable?)") \
            from None
    if done.returncode != 0:
        raise NodeError(f"node {node} cannot render this job: {_last_error(done.stderr.splitlines())}")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            found = json.loads(line)
            # Which .blend this node sees: nodes must render the same file, not one of the same name.
            stat = os.stat(found["file"]) if found.get("file") else None
            return {**found, "node": node, "file_stat": [stat.st_size, stat.st_mtime_ns] if stat else None}
    raise NodeError(f"node {node}: the render command printed no plan (stdout ended: {done.stdout[-300:]!r})")


def render_chunk(words: list[str], label: str, node: str, on_saved=None) -> dict:
    """Run one chunk's render to the end; returns its report (the JSON the render command wrote). ``on_saved(path)``
    is called for every frame written. Raises :class:`ChunkRefused` (exit status 2) or :class:`ChunkCrashed`."""
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(render_command([*words, "--quiet"]), stdout=subprocess.PIPE, stderr=stderr,
                                   text=True, bufsize=1, env=_child_env())
        report_path = None
        try:
            for line in process.stdout:
                if line.startswith(SAVED) and on_saved is not None:
                    on_saved(line[len(SAVED):].rstrip().rstrip("'"))
                elif line.startswith(REPORT):
                    report_path = line[len(REPORT):].strip()
            code = process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        stderr.seek(0)
        tail = list(collections.deque(stderr, maxlen=40))
    if code == 2:
        raise ChunkRefused(f"chunk {label} on node {node}: {_last_error(tail)}")
    if code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        raise ChunkCrashed(f"chunk {label} on node {node}: the render {how}: {_last_error(tail)}")
    if report_path is None:
        raise ChunkCrashed(f"chunk {label} on node {node}: the render printed no report line")
    with open(report_path) as f:
        return json.load(f)
