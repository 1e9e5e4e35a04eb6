"""The Blender-side client of ``reframe-blender serve``: numpy and the standard library only (no torch, no msgspec).

It connects to the server at the per-user socket, or starts one from a configured Python executable (the
project's environment) and waits for it with a deadline, showing the server's own log when it fails to start
("stuck on Starting..." never happens silently). Every call has a timeout. A server that dies is noticed at the
next call (the connection closes, the process handle reports its exit); one that hangs, when the call times
out. Then the call raises :class:`~bridge.protocol.ServerUnavailable`, or, with ``fallback=True``, the session
returns the baseline flagged as a fallback (:mod:`bridge.runtime`); the next call restarts a server this client
started (at most ``max_restarts`` times) and opens its sessions again, their history and cache starting over.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bridge import protocol, segments
from bridge.protocol import BridgeError, RemoteError, ServerUnavailable
from bridge.runtime import ClientSession
from reframe_core.errors import SettingsError
from reframe_core.frames.buffers import FrameError
from reframe_core.runtime.session import FrameResult, SessionSettings
from reframe_core.workloads.base import RenderRequest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT = 120.0  # seconds for one call: a 1080p CPU step is ~3 s, a first CUDA step compiles kernels
START_TIMEOUT = 120.0  # seconds for a server to start and a session to open (torch import, weights, tracing)


class ServerRuntime:
    """Sessions served by a ``reframe-blender serve`` process (see the module docstring)."""

    transport = "server"

    def __init__(self, address: str | None = None, python: str | None = None, start: bool = True,
                 timeout: float = DEFAULT_TIMEOUT, start_timeout: float = START_TIMEOUT, fallback: bool = False,
                 max_restarts: int = 2, idle_exit: float = 600.0):
        self.address = address or protocol.default_address()
        self.python = python or sys.executable
        self.start = start
        self.timeout = float(timeout)
        self.start_timeout = float(start_timeout)
        self.fallback = fallback
        self.max_restarts = max_restarts
        self.idle_exit = idle_exit
        self.process: subprocess.Popen | None = None  # the server, when this client started it
        self.log_path: Path | None = None
        self.sock: socket.socket | None = None
        self.broken: str | None = None  # why the connection is unusable (until a restart)
        self.restarts = 0
        self.generation = 0  # bumped by every (re)connection: sessions of an older one must open again
        self.sessions: list[RemoteSession] = []
        self.server: dict = {}
        self._lock = threading.Lock()
        self._connect()

    # --- connection ------------------------------------------------------------------------------------
    def _dial(self) -> tuple[socket.socket, str | None]:
        if self.address == "tcp" or not protocol.HAS_UNIX_SOCKETS:
            path = protocol.runtime_dir(create=False) / protocol.TCP_FILE
            try:
                found = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise FileNotFoundError(f"no running server ({path}: {exc})") from exc
            sock = socket.create_connection(("127.0.0.1", int(found["port"])), timeout=self.timeout)
            return sock, found.get("token")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.address)
        except OSError:
            sock.close()
            raise
        return sock, None

    def _connect(self) -> None:
        try:
            sock, token = self._dial()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            if not self.start:
                raise ServerUnavailable(f"no runtime server at {self.address} ({exc}): start one with "
                                        f"'reframe-blender serve', or let the client start it") from exc
            sock, token = self._start_server()
        except PermissionError as exc:
            raise BridgeError(f"not allowed to connect to {self.address} ({exc}): it belongs to another user") from exc
        except OSError as exc:  # a connect that timed out (a full backlog), an unreachable port
            raise ServerUnavailable(f"cannot connect to the runtime server at {self.address}: {exc}") from exc
        if sock.family == getattr(socket, "AF_UNIX", None) and hasattr(os, "getuid"):
            uid = protocol.peer_uid(sock)
            if uid is not None and uid != os.getuid():  # frames are the user's: never hand them to another user
                sock.close()
                raise BridgeError(f"the server at {self.address} runs as uid {uid}, not as this user "
                                  f"({os.getuid()}): refusing to send it frames")
        self.sock, self.broken = sock, None
        self.generation += 1
        try:
            self.server = self._call({"op": "hello", "version": protocol.PROTOCOL_VERSION,
                                      "client": f"python {sys.version.split()[0]} pid {os.getpid()}", "token": token},
                                     self.timeout)
        except BaseException:
            self._kill()  # a server started for this client must not linger after a failed handshake
            raise

    def _start_server(self) -> tuple[socket.socket, str | None]:
        if not Path(self.python).exists():
            raise ServerUnavailable(f"cannot start the runtime server: the Python executable {self.python} does not "
                                    f"exist; point the runtime at the project environment's python "
                                    f"(for example {PROJECT_ROOT / '.venv/bin/python'})")
        self.log_path = protocol.runtime_dir() / "server.log"
        if self.log_path.exists() and self.log_path.stat().st_size > 1 << 20:
            self.log_path.unlink()  # keep one short log, not one per Blender session
        command = [self.python, "-m", "reframe_core.cli", "serve", "--address", self.address,
                   "--parent-pid", str(os.getpid()), "--idle-exit", str(self.idle_exit)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                                         os.environ.get("PYTHONPATH")]))}
        env.pop("PYTHONHOME", None)  # Blender sets it for its own Python; the server's is another
        with open(self.log_path, "ab") as log:
            # A new session: Ctrl-C in Blender's terminal must not kill the server under a running render.
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                return self._dial()
            except (FileNotFoundError, ConnectionRefusedError):
                pass
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise ServerUnavailable(f"the runtime server exited with code {code} while starting "
                                        f"({' '.join(command)}); its log says:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self._kill()
                raise ServerUnavailable(f"the runtime server did not start within {self.start_timeout:g} s; "
                                        f"its log says:\n{self._log_tail()}")
            time.sleep(0.05)

    def _log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:]) or "(empty)"
        except (OSError, AttributeError):
            return "(no log)"

    def _kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:  # stuck in the GPU driver: the OS reaps it when it can
                pass
            self.process = None

    def _why_down(self) -> str:
        if self.process is not None:
            try:  # the connection drops a moment before the process can be reaped
                code = self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                return "closed the connection (its process is still running)"
            return f"died ({'killed by signal ' + str(-code) if code < 0 else 'exit code ' + str(code)})"
        return "closed the connection"

    def _call(self, message: dict, timeout: float) -> dict:
        op = message["op"]
        try:
            data = protocol.encode_message(message)
        except ValueError as exc:  # NaN/Inf in the camera or hints: this frame's fault, the server is fine
            raise FrameError(f"'{op}' carries a NaN or infinite number (camera matrices, hints): {exc}") from exc
        with self._lock:
            if self.broken:
                raise ServerUnavailable(self.broken)
            try:
                self.sock.settimeout(timeout)
                self.sock.sendall(data)
                reply = protocol.receive_reply(self.sock)
            except socket.timeout:
                self._broke(f"the runtime server did not answer '{op}' within {timeout:g} s (hung or overloaded)")
            except OSError as exc:
                self._broke(f"the runtime server {self._why_down()} during '{op}' ({exc})")
            except BridgeError as exc:  # a reply that is not one: the stream is out of step for good
                self._broke(f"the runtime server broke the protocol during '{op}': {exc}")
        if not reply["ok"]:
            raise _remote_error(reply)
        return reply

    def _broke(self, why: str):
        # The stream may still deliver a late reply: it can never be trusted again.
        self.broken = why
        if self.sock is not None:
            self.sock.close()
        raise ServerUnavailable(why)

    def restart(self) -> None:
        """Stop the server this client started (if any, whatever its state) and connect to a new one; sessions
        open again on their next call."""
        self.restarts += 1
        self._kill()
        if self.sock is not None:
            self.sock.close()
        self._connect()

    def _recover(self) -> None:
        """After a failure, one restart per call while restarts are left (fallback frames in between)."""
        if self.broken and self.start and self.restarts < self.max_restarts:
            try:
                self.restart()
            except (BridgeError, OSError, subprocess.SubprocessError) as exc:
                self.broken = f"restart failed: {exc}"

    # --- API ----------------------------------------------------------------------------------------------
    def open_session(self, workload: str = "ss", **settings) -> RemoteSession:
        unknown = set(settings) - set(SessionSettings.__dataclass_fields__) - {"workload"}
        if unknown:
            raise SettingsError(f"unknown session settings {', '.join(sorted(unknown))}")
        if "display_size" in settings:
            settings["display_size"] = [int(v) for v in settings["display_size"]]
        self.ensure_connected()
        session = RemoteSession(self, {"workload": workload, **settings})
        self.sessions.append(session)
        return session

    def info(self) -> dict:
        return {"transport": self.transport, "address": self.address, "server_pid": self.server.get("pid"),
                "started_here": self.process is not None, "restarts": self.restarts}

    def status(self) -> dict:
        self.ensure_connected()
        return self._call({"op": "status"}, self.timeout)

    def machine(self) -> dict:
        try:
            self.ensure_connected()
            return {**self._call({"op": "machine"}, self.timeout)["machine"], "runtime": "server"}
        except BridgeError as exc:
            return {"unavailable": str(exc)}

    def release(self) -> dict:
        """Give back the device memory: a server this client started stops (every byte returns to the device,
        the CUDA context too) and starts again on the next call; a shared server closes this client's sessions
        and empties its cache."""
        if self.process is not None and not self._others_connected():
            for session in self.sessions:
                session._forget()  # noqa: SLF001
            self._stop_own_server()
            self.broken = "released"
            return {"closed": len(self.sessions), "server_stopped": True}
        reply = self._call({"op": "release"}, self.timeout)
        for session in self.sessions:
            session._forget()  # noqa: SLF001
        return {"closed": reply["closed"], "cuda_bytes_freed": reply["cuda_bytes_freed"]}

    def ensure_connected(self) -> None:
        """Reconnect after :meth:`release` (a new server if this client had started one), or after a failure
        (:meth:`_recover`)."""
        if self.broken == "released":
            if self.sock is not None:
                self.sock.close()
            try:
                self._connect()
            except (BridgeError, OSError, subprocess.SubprocessError) as exc:
                self.restarts += 1  # a start that fails counts as a failed restart: no retry on every frame
                self.broken = f"restart failed: {exc}"
                raise ServerUnavailable(self.broken) from exc
        else:
            self._recover()

    def _others_connected(self) -> bool:
        if self.broken:
            return False
        try:
            return self._call({"op": "status"}, self.timeout)["clients"] > 1
        except BridgeError:
            return False

    def _stop_own_server(self) -> None:
        if self.process is None:
            return
        if self.sock is not None:
            self.sock.close()
        self.process.terminate()  # the server closes every session and unlinks every segment
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._kill()
        self.process = None

    def close(self) -> None:
        """Close the sessions; stop the server if this client started it and nobody else uses it (else its
        idle timeout stops it later)."""
        for session in list(self.sessions):
            session.close()
        if self.process is not None and not self._others_connected():
            self._stop_own_server()
        if self.sock is not None:
            self.sock.close()
        self.broken = "closed"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _remote_error(reply: dict) -> Exception:
    message, kind = str(reply.get("error", "unknown error")), str(reply.get("kind", "internal"))
    if kind == "input":
        return FrameError(message)
    if kind == "settings":
        return SettingsError(message)
    return RemoteError(f"runtime server: {message}", kind)


def _attach(name: str):
    try:
        return segments.attach(name)
    except FileNotFoundError as exc:  # unlinked between the reply and now: the server went away
        raise ServerUnavailable(f"the runtime server's shared memory segment {name} is gone ({exc})") from exc


class RemoteSession(ClientSession):
    """A session in the server process; its frames travel through two shared memory segments the server owns."""

    def __init__(self, runtime: ServerRuntime, settings: dict):
        super().__init__(runtime, settings.get("display_size", SessionSettings().display_size))
        self.settings = settings
        self.id: int | None = None
        self.output = self.input = None
        self.generation = -1
        self._open()

    def _open(self) -> None:
        runtime = self.runtime
        reply = runtime._call({"op": "open", "settings": self.settings}, runtime.start_timeout)  # noqa: SLF001
        self.id, self.generation = int(reply["session"]), runtime.generation
        self.output = _attach(reply["output"])
        self.fallback_request = RenderRequest(**reply["fallback_request"])
        self.placement_info = reply.get("placement")

    def _ensure(self) -> None:
        runtime = self.runtime
        runtime.ensure_connected()
        if self.generation != runtime.generation:  # a new server (restart, release): a fresh session there
            self._forget()
            self._open()

    def _forget(self) -> None:
        for segment in (self.input, self.output):
            if segment is not None:
                segment.close()
        self.input = self.output = None
        self.id = None
        self.generation = -1

    def _next_render(self, hints):
        self._ensure()
        reply = self.runtime._call({"op": "next_render", "session": self.id,  # noqa: SLF001
                                    "hints": hints.to_dict() if hints is not None else None}, self.runtime.timeout)
        return RenderRequest(**reply["request"])

    def _step(self, buffers, hints) -> FrameResult:
        self._ensure()
        runtime = self.runtime
        arrays = {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in buffers.arrays().items()}
        slots, nbytes = segments.plan_layout(arrays)
        if self.input is None or self.input.size < nbytes:
            reply = runtime._call({"op": "buffers", "session": self.id, "nbytes": nbytes}, runtime.timeout)  # noqa: SLF001
            if self.input is not None:
                self.input.close()
                self.input = None
            self.input = _attach(reply["input"])
        segments.write_arrays(self.input, slots, arrays)
        reply = runtime._call({"op": "step", "session": self.id, "layout": [s.to_dict() for s in slots],  # noqa: SLF001
                               "camera": buffers.camera.to_dict(), "has_vector_pass": bool(buffers.has_vector_pass),
                               "hints": hints.to_dict() if hints is not None else None}, runtime.timeout)
        # The server's share of the call, and of that its copies from and to shared memory (benchmarks).
        self.last_server_ms, self.last_server_copy_ms = reply.get("server_ms"), reply.get("server_copy_ms")
        shape = tuple(int(v) for v in reply["shape"])
        if shape != (*self.display_size, 3) or np.prod(shape) * 4 > self.output.size:
            raise BridgeError(f"the server returned an image of shape {shape}, expected {(*self.display_size, 3)}")
        image = np.array(np.ndarray(shape, np.float32, buffer=self.output.buf))  # a copy: the next step overwrites
        return FrameResult(image, bool(reply["network_ran"]), reply["refreshed"], str(reply["reason"]),
                           reply["network_ms"], bool(reply["fallback"]))

    def _stats(self) -> dict:
        if self.id is None or self.generation != self.runtime.generation:
            raise ServerUnavailable(self.runtime.broken or "the session is not open on the current server")
        return self.runtime._call({"op": "stats", "session": self.id}, self.runtime.timeout)["stats"]  # noqa: SLF001

    def reset(self) -> None:
        try:
            self._ensure()
            self.runtime._call({"op": "reset", "session": self.id}, self.runtime.timeout)  # noqa: SLF001
        except ServerUnavailable:
            if not self.runtime.fallback:
                raise

    def close(self) -> None:
        """Close the session on the server (its segments go with it); never raises once the server is gone."""
        runtime = self.runtime
        if self.id is not None and self.generation == runtime.generation and not runtime.broken:
            try:
                runtime._call({"op": "close", "session": self.id}, runtime.timeout)  # noqa: SLF001
            except BridgeError:
                pass
        self._forget()
        if self in runtime.sessions:
            runtime.sessions.remove(self)
