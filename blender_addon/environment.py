"""The runtime environment the add-on runs the network with: a Python that has torch and the other
dependencies (the project's ``.venv``, or one the add-on set up). No bpy here: this is testable alone.

The add-on's own code (``reframe_core``, ``bridge``, this package) travels inside the extension; the environment
supplies only third-party packages. The runtime server is started from the environment's Python with the
extension's code on ``PYTHONPATH`` (:mod:`bridge.client`), so Blender side and server are always one version.
In-process, the environment's site-packages are appended to ``sys.path`` (after Blender's own modules, so
Blender's numpy stays first); that needs the environment's Python to be Blender's minor version.

Nothing here waits without a deadline: probing an environment runs in a subprocess with a timeout, and setting
one up is a sequence of subprocesses the caller polls (the add-on from a modal timer, with progress).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from reframe_core.errors import ReframeError

CODE_ROOT = Path(__file__).resolve().parents[1]  # the folder holding reframe_core, bridge and blender_addon
# What a runtime environment needs (pyproject.toml's dependencies; a test keeps the two in step). torch is pinned:
# the range alone would fetch a multi-GB CUDA build where a CPU one is wanted.
REQUIREMENTS = ("torch==2.13.0", "numpy>=1.24", "flip-evaluator>=1.6", "OpenEXR>=3.2", "tqdm>=4.60", "pillow>=9",
                "matplotlib>=3.7", "msgspec>=0.18", "psutil>=5.9")
PROBE_TIMEOUT = 120.0  # first torch import on a cold disk can take a while; never longer than this


class RuntimeEnvironmentError(ReframeError):
    """The runtime environment is missing or unusable; the message says what to do."""


def venv_python(folder: str | Path) -> Path:
    folder = Path(folder)
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _child_env() -> dict:
    env = {**os.environ, "PYTHONPATH": str(CODE_ROOT)}
    env.pop("PYTHONHOME", None)  # Blender sets it for its own Python; the environment's is another
    return env


def check_python(python: str | None) -> Path:
    if not python:
        raise RuntimeEnvironmentError("no runtime Python is set: set one in Preferences > Add-ons > ReFrame (the project's "
                                ".venv/bin/python), or press 'Set up runtime'")
    path = Path(python).expanduser()
    if not path.exists():
        raise RuntimeEnvironmentError(f"the runtime Python {path} does not exist: point Preferences > ReFrame at the "
                                f"environment's python (the project's .venv/bin/python), or press 'Set up runtime'")
    return path


def probe(python: str | None, device: str = "auto", weights_folder: str | None = None,
          timeout: float = PROBE_TIMEOUT) -> dict:
    """What ``python`` can run (:mod:`reframe_core.runtime.probe`): ``ok``, ``torch``, ``device``, ``weights``,
    or ``reason``. Runs in a subprocess with a deadline: a broken install cannot hang or crash the caller."""
    path = check_python(python)
    command = [str(path), "-m", "reframe_core.runtime.probe", "--device", device]
    if weights_folder:
        command += ["--weights-folder", str(weights_folder)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_child_env(),
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": f"{path} did not answer within {timeout:g} s (importing torch hangs?)"}
    except OSError as exc:
        return {"ok": False, "reason": f"{path} cannot run: {exc}"}
    for line in reversed(done.stdout.splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
    return {"ok": False, "reason": f"{path} exited with code {done.returncode}: {tail or '(no output)'}"}


def site_folders(python: str | None, timeout: float = 30.0) -> tuple[str, list[str]]:
    """(the Python's ``major.minor``, its site-packages folders)."""
    path = check_python(python)
    script = ("import json, site, sys, sysconfig; p = sysconfig.get_paths(); "
              "print(json.dumps(['%d.%d' % sys.version_info[:2], [p['purelib'], p['platlib']]]))")
    try:
        done = subprocess.run([str(path), "-c", script], capture_output=True, text=True, timeout=timeout,
                              env=_child_env(), stdin=subprocess.DEVNULL)
        version, folders = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, OSError, ValueError, IndexError) as exc:
        raise RuntimeEnvironmentError(f"cannot ask {path} for its site-packages ({exc})") from exc
    return version, list(dict.fromkeys(folders))


def use_in_process(python: str | None) -> list[str]:
    """Append the environment's site-packages to this process's ``sys.path`` (torch in Blender's Python);
    returns the folders added. Refuses another Python minor version, whose compiled modules would not load."""
    version, folders = site_folders(python)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version != here:
        raise RuntimeEnvironmentError(f"the runtime Python {python} is {version}, Blender's is {here}: in-process needs the "
                                f"same version; choose Runtime 'Server' in Preferences > ReFrame (any version works)")
    added = [f for f in folders if f not in sys.path and Path(f).is_dir()]
    sys.path.extend(added)
    return added


@dataclass
class SetupJob:
    """Create a virtual environment at ``folder`` with the runtime's requirements, step by step without
    blocking: call :meth:`poll` until it returns False (a modal timer does). ``progress`` is 0..1, ``line`` the
    last thing pip said; a failed step raises :class:`RuntimeEnvironmentError` with the end of its output."""

    folder: Path
    base_python: str = sys.executable
    requirements: tuple[str, ...] = REQUIREMENTS
    pip_args: tuple[str, ...] = ()  # e.g. ("--index-url", URL) for a studio mirror
    steps: list[tuple[str, list[str]]] = field(init=False)
    index: int = field(init=False, default=0)
    process: subprocess.Popen | None = field(init=False, default=None)
    line: str = field(init=False, default="")
    tail: deque = field(init=False, default_factory=lambda: deque(maxlen=20))
    log_path: Path = field(init=False)

    def __post_init__(self):
        self.folder = Path(self.folder).expanduser()
        python = str(venv_python(self.folder))
        pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
               *self.pip_args]
        torch = [r for r in self.requirements if r.startswith("torch")]
        rest = [r for r in self.requirements if not r.startswith("torch")]
        self.steps = [("creating the environment", [self.base_python, "-m", "venv", str(self.folder)])]
        if torch:  # first and alone: the biggest download, and the pin must not be overridden by a range
            self.steps.append(("installing torch", pip + torch))
        if rest:
            self.steps.append(("installing the other requirements", pip + rest))
        self.log_path = self.folder.parent / f"{self.folder.name}-setup.log"

    @property
    def python(self) -> Path:
        return venv_python(self.folder)

    @property
    def progress(self) -> float:
        return self.index / len(self.steps)

    @property
    def title(self) -> str:
        return self.steps[min(self.index, len(self.steps) - 1)][0]

    def poll(self) -> bool:
        """Advance; True while work remains."""
        if self.index >= len(self.steps):
            return False
        if self.process is None:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a")
            self._log.write(f"$ {' '.join(self.steps[self.index][1])}\n")
            env = {**os.environ}
            env.pop("PYTHONHOME", None)
            env.pop("PYTHONPATH", None)
            try:
                self.process = subprocess.Popen(self.steps[self.index][1], stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                                env=env, bufsize=1)
            except OSError as exc:
                raise RuntimeEnvironmentError(f"{self.title} failed: cannot run {self.steps[self.index][1][0]} ({exc})")
            os.set_blocking(self.process.stdout.fileno(), False)
        self._read()
        code = self.process.poll()
        if code is None:
            return True
        self._read()
        self._log.close()
        self.process = None
        if code != 0:
            raise RuntimeEnvironmentError(f"{self.title} failed (exit code {code}); the log {self.log_path} ends:\n"
                                    + "\n".join(self.tail))
        self.index += 1
        return self.index < len(self.steps)

    def _read(self) -> None:
        while True:
            try:
                text = self.process.stdout.readline()
            except (BlockingIOError, ValueError):
                return
            if not text:
                return
            self._log.write(text)
            if text.strip():
                self.line = text.strip()
                self.tail.append(self.line)

    def cancel(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
            self._log.close()
        self.process = None

    def run(self, interval: float = 0.2) -> Path:
        """Every step, blocking (the command line; the add-on polls instead)."""
        while self.poll():
            time.sleep(interval)
        return self.python
