"""One client API for both transports: :func:`connect` gives a runtime, ``runtime.open_session(...)`` a session
with the interface of :class:`reframe_core.runtime.session.Session` (``next_render``, ``step``, ``stats``,
``reset``, ``close``), whether the network runs in this process or in a server process.

    runtime = connect("server", python="/path/to/.venv/bin/python", fallback=True)
    session = runtime.open_session("ss", display_size=(1080, 1920), scale=2.0, policy="motion")
    result = session.step(buffers, hints)      # FrameResult; result.fallback when the runtime could not answer
    runtime.release()                          # device memory back, Blender keeps running
    runtime.close()

numpy and the standard library only at import (the in-process transport imports torch when it opens a session).

Fallback: with ``fallback=True`` a frame the runtime cannot produce (server dead or hung, frame refused) is the
baseline computed here without torch (:mod:`bridge.fallback`: the bicubic upscale for SS; FE asks for a full
render while the runtime is down and shows it), flagged ``fallback=True`` with the reason; without it the same
failure is one :class:`~bridge.protocol.BridgeError` (or :class:`FrameError`) naming the cause.
"""
from __future__ import annotations

import importlib

import numpy as np

from bridge import fallback as baseline
from bridge.protocol import BridgeError, RemoteError, ServerUnavailable
from reframe_core.errors import SettingsError
from reframe_core.frames.buffers import FrameBuffers, FrameError
from reframe_core.frames.hints import CameraHints
from reframe_core.runtime.session import FrameResult, release_device_memory
from reframe_core.workloads.base import RenderRequest

TRANSPORTS = ("inprocess", "server")


class ClientSession:
    """What both transports share: the fallback around ``_step`` / ``_next_render`` and its bookkeeping."""

    def __init__(self, runtime, display_size: tuple[int, int]):
        self.runtime = runtime
        self.display_size = tuple(int(v) for v in display_size)
        self.fallback_request: RenderRequest | None = None
        self.fallbacks = 0
        self.last_failure: str | None = None

    # subclasses implement these five
    def _next_render(self, hints): raise NotImplementedError
    def _step(self, buffers, hints) -> FrameResult: raise NotImplementedError
    def _stats(self) -> dict: raise NotImplementedError
    def reset(self) -> None: raise NotImplementedError
    def close(self) -> None: raise NotImplementedError

    def next_render(self, hints: CameraHints | None = None) -> RenderRequest:
        """What the loop must render next; while the runtime is down (and fallback was asked for), the frame
        the fallback can show best: SS the low-res frame, FE the full frame."""
        try:
            return self._next_render(hints)
        except ServerUnavailable as exc:
            if not self.runtime.fallback or self.fallback_request is None:
                raise
            self.last_failure = str(exc)
            return self.fallback_request

    def step(self, buffers: FrameBuffers, hints: CameraHints | None = None) -> FrameResult:
        try:
            return self._step(buffers, hints)
        except FrameError as exc:
            if not self.runtime.fallback:
                raise
            return self._fallback(buffers, f"frame refused: {exc}")
        except (ServerUnavailable, RemoteError, MemoryError) as exc:  # down, hung, or failed inside (out of memory)
            if not self.runtime.fallback:
                raise
            return self._fallback(buffers, f"runtime could not answer: {exc}")

    def _fallback(self, buffers: FrameBuffers, why: str) -> FrameResult:
        self.fallbacks += 1
        self.last_failure = why
        image = baseline.upscale(buffers.color, self.display_size, np.asarray(buffers.jitter).reshape(-1)[:2])
        return FrameResult(image, False, None, f"fallback ({why})", None, fallback=True)

    def stats(self) -> dict:
        """The session's counters; never raises (a report is written even after the runtime died)."""
        try:
            stats = self._stats()
        except BridgeError as exc:
            stats = {"unavailable": str(exc)}
        return {**stats, "client_fallbacks": self.fallbacks, "last_failure": self.last_failure,
                "runtime": self.runtime.info()}


class LocalSession(ClientSession):
    """A :class:`~reframe_core.runtime.session.Session` in this process."""

    def __init__(self, runtime, session):
        super().__init__(runtime, session.settings.display_size)
        self.session = session
        self.fallback_request = session.fallback_request()

    def _next_render(self, hints):
        return self.session.next_render(hints)

    def _step(self, buffers, hints):
        try:
            return self.session.step(buffers, hints)
        except RuntimeError as exc:
            if "out of memory" not in str(exc):  # torch.OutOfMemoryError (CUDA) is a RuntimeError
                raise
            raise RemoteError(f"the network ran out of device memory: {exc}", "internal") from exc

    def _stats(self):
        return self.session.stats()

    @property
    def placement(self):
        return self.session.placement

    def reset(self):
        self.session.reset()

    def close(self):
        self.session.close()
        if self in self.runtime.sessions:
            self.runtime.sessions.remove(self)


class InProcessRuntime:
    """The network in this process (torch must be importable here)."""

    transport = "inprocess"

    def __init__(self, fallback: bool = False):
        self.fallback = fallback
        self.sessions: list[LocalSession] = []

    def open_session(self, workload: str = "ss", **settings) -> LocalSession:
        try:
            importlib.import_module("torch")
        except ImportError as exc:
            raise BridgeError(f"torch cannot be imported in this Python ({exc}): run the network in the runtime "
                              f"server instead (runtime 'server' with the project environment's Python)") from exc
        from reframe_core.runtime.session import open_session

        session = LocalSession(self, open_session(workload, **settings))
        self.sessions.append(session)
        return session

    def info(self) -> dict:
        return {"transport": self.transport}

    def machine(self) -> dict:
        from reframe_core.evaluation.bench import machine_info

        return machine_info(self.sessions[0].placement if self.sessions else None)

    def release(self) -> dict:
        """Close every session and return the device memory torch caches (the CUDA context itself stays until
        this process exits: use the server transport to get all of it back)."""
        closed = len(self.sessions)
        for session in list(self.sessions):
            session.close()
        return {"closed": closed, "cuda_bytes_freed": release_device_memory()}

    def close(self) -> None:
        self.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect(runtime: str = "inprocess", *, fallback: bool = False, **options):
    """A runtime of transport ``runtime`` ("inprocess" or "server"); ``options`` go to
    :class:`bridge.client.ServerRuntime` (address, python, start, timeout, start_timeout, max_restarts)."""
    if runtime == "inprocess":
        if options:
            raise SettingsError(f"the in-process runtime takes no {', '.join(sorted(options))}")
        return InProcessRuntime(fallback=fallback)
    if runtime == "server":
        from bridge.client import ServerRuntime

        return ServerRuntime(fallback=fallback, **options)
    raise SettingsError(f"unknown runtime {runtime!r}: use one of {', '.join(TRANSPORTS)}")
