"""A session stepped on a worker thread, for a caller that must never wait: Blender's viewport.

``submit(buffers, hints)`` hands a frame over and returns at once; ``poll()`` returns the newest finished
result, if any. There is one slot, never a queue: while the worker is busy a new frame is refused and counted
as dropped, so when the runtime is slower than the viewport the overlay shows the newest frame the runtime could
finish, never a backlog of stale ones. Errors from the worker arrive through ``poll()`` too (raised there, on the
caller's thread). Standard library only (the session's interface is :mod:`bridge.runtime`'s).
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass


@dataclass
class WorkerStats:
    submitted: int = 0
    dropped: int = 0  # frames refused because the worker was busy
    finished: int = 0
    hits: int = 0  # finished frames that reused the cache
    last_ms: float | None = None  # the last frame's wall time on the worker (network + transport)

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.finished if self.finished else None


class SessionWorker:
    def __init__(self, session, name: str = "reframe-session", postprocess=None):
        """``postprocess(image)``, if given, runs on the worker too, on each result's image (the overlay's display
        transform), and its value comes back as the third item of :meth:`poll`'s answer."""
        self.session = session
        self.postprocess = postprocess
        self.stats = WorkerStats()
        self._inbox: queue.Queue = queue.Queue(maxsize=1)
        self._results: queue.Queue = queue.Queue()
        self._busy = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._busy.is_set()

    def submit(self, buffers, hints=None, tag=None) -> bool:
        """Hand a frame to the worker; False (and counted as dropped) when it is still on the previous one."""
        if self._closed:
            raise RuntimeError("the session worker is closed")
        self.stats.submitted += 1
        if self._busy.is_set():
            self.stats.dropped += 1
            return False
        self._busy.set()
        self._inbox.put_nowait((buffers, hints, tag))
        return True

    def poll(self):
        """The newest finished ``(tag, FrameResult, postprocessed image or None)`` since the last poll, or None; older finished ones are
        skipped. A failure on the worker is raised here."""
        newest = None
        while True:
            try:
                item = self._results.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, BaseException):
                raise item
            newest = item
        return newest

    def _run(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            buffers, hints, tag = item
            start = time.perf_counter()
            try:
                result = self.session.step(buffers, hints)
                extra = self.postprocess(result.image) if self.postprocess is not None else None
            except BaseException as exc:  # handed to the caller's thread; the worker stays usable
                self._results.put(exc)
            else:
                self.stats.last_ms = (time.perf_counter() - start) * 1e3
                self.stats.finished += 1
                self.stats.hits += bool(result.refreshed is False)
                self._results.put((tag, result, extra))
            finally:
                self._busy.clear()

    def close(self, timeout: float = 30.0) -> bool:
        """Stop the worker after the frame it is on (if any); False if it did not stop within ``timeout``."""
        if not self._closed:
            self._closed = True
            self._inbox.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()
