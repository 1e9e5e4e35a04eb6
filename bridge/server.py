"""``reframe-blender serve``: the runtime sessions of :mod:`reframe_core.runtime.session` served to other processes.

One thread per connection; a connection owns its sessions (each with its own cache, policy state and shared
memory segments) and they are closed, segments unlinked and device memory returned when it ends, whether the
client closed them, left, or died. Every request is schema-checked (:mod:`bridge.schema`), then checked
against the session's segment (shapes, sizes, offsets) and the frame (:meth:`FrameBuffers.check`: NaN/Inf)
before use; any failure is an error reply and the server carries on. torch loads with the first session, so the
handshake answers at once.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import stat
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from bridge import protocol, schema, segments
from bridge.protocol import BridgeError, FramingError, receive_body, send_message
from reframe_core.errors import ReframeError
from reframe_core.frames.buffers import CameraData, FrameBuffers, FrameError
from reframe_core.frames.hints import CameraHints


class _Refused(Exception):
    """A request this connection may not make (unknown session, no handshake yet); ``close``: end it too."""

    def __init__(self, message: str, close: bool = False):
        super().__init__(message)
        self.close = close


@dataclass
class _Served:
    """One open session with its segments."""

    session: object
    output: object  # SharedMemory: the display image, (H, W, 3) float32
    input: object | None = None  # SharedMemory: the frame's buffers, grown on request

    def close(self) -> None:
        try:
            self.session.close()
        finally:
            for segment in (self.input, self.output):
                if segment is not None:
                    segment.close()
                    segment.unlink()
            self.input = self.output = None


@dataclass(eq=False)  # identity: a set of live connections
class _Connection:
    sock: socket.socket
    peer: str
    sessions: dict = field(default_factory=dict)
    greeted: bool = False


class Server:
    """Listens at ``address`` (a Unix socket path, or ``"tcp"`` for loopback TCP with a token)."""

    def __init__(self, address: str | None = None, idle_exit: float | None = None, parent_pid: int | None = None,
                 log=None):
        self.address = address or protocol.default_address()
        self.idle_exit = idle_exit
        self.parent_pid = parent_pid
        self.log = log or (lambda text: print(f"reframe-blender serve: {text}", file=sys.stderr, flush=True))
        self.token: str | None = None
        self.connections: set[_Connection] = set()
        self.lock = threading.Lock()
        self.next_id = 0
        self.segment_counter = 0
        self.stopping = threading.Event()
        self.last_active = time.monotonic()
        self.listener: socket.socket | None = None
        self.threads: list[threading.Thread] = []

    # --- listening --------------------------------------------------------------------------------------
    def bind(self) -> str:
        """Create the listening socket; returns what a client needs to find it (printed as the ready line)."""
        removed = segments.remove_stale()
        if removed:
            self.log(f"removed {len(removed)} shared memory segments left by servers that died: {', '.join(removed)}")
        if self.address == "tcp":
            return self._bind_tcp()
        path = Path(self.address)
        if path.parent == protocol.runtime_path():
            protocol.runtime_dir()  # created 0700, or refused when someone else's
        if not path.parent.is_dir():
            raise BridgeError(f"the socket's folder {path.parent} does not exist")
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise BridgeError(f"{path} exists and is not a socket: choose another --address (it is left as is)")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # a socket file left by a server that died
            else:
                raise BridgeError(f"a server is already listening at {path}; connect to it, or stop it first")
            finally:
                probe.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is 0600 from the moment it exists: no window before a chmod
        try:
            listener.bind(str(path))
        finally:
            os.umask(old)
        listener.listen(16)
        self.listener = listener
        return str(path)

    def _bind_tcp(self) -> str:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))  # loopback only, never another interface
        listener.listen(16)
        self.token = secrets.token_hex(32)
        port = listener.getsockname()[1]
        folder = protocol.runtime_dir()
        tmp = folder / f".{protocol.TCP_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"port": port, "token": self.token, "pid": os.getpid()}, f)
        os.replace(tmp, folder / protocol.TCP_FILE)
        self.listener = listener
        return f"tcp 127.0.0.1:{port} (token in {folder / protocol.TCP_FILE})"

    def serve_forever(self) -> None:
        assert self.listener is not None, "bind() first"
        self.listener.settimeout(0.5)
        try:
            while not self.stopping.is_set():
                try:
                    sock, _ = self.listener.accept()
                except socket.timeout:
                    self._housekeeping()
                    continue
                self._accept(sock)
        finally:
            self.shutdown()

    def _housekeeping(self) -> None:
        with self.lock:
            idle = not self.connections
        if self.parent_pid and idle and not segments._pid_alive(self.parent_pid):  # noqa: SLF001
            # Other clients may still use a server their Blender did not start: only an idle one stops here.
            self.log(f"the process that started this server ({self.parent_pid}) is gone and no client is left: stopping")
            self.stopping.set()
        if idle and self.idle_exit is not None and time.monotonic() - self.last_active > self.idle_exit:
            self.log(f"no client for {self.idle_exit:g} s: stopping")
            self.stopping.set()

    def _accept(self, sock: socket.socket) -> None:
        peer = "tcp"
        if sock.family == getattr(socket, "AF_UNIX", None):
            uid = protocol.peer_uid(sock)
            if uid is not None and uid != os.getuid():
                self.log(f"refused a connection from uid {uid} (this server runs as uid {os.getuid()})")
                try:
                    send_message(sock, _error(f"connection refused: your uid {uid} is not this server's uid "
                                              f"{os.getuid()}", "protocol"))
                finally:
                    sock.close()
                return
            peer = f"uid {uid}"
        connection = _Connection(sock, peer)
        with self.lock:
            self.connections.add(connection)
            self.last_active = time.monotonic()
        thread = threading.Thread(target=self._serve_connection, args=(connection,), daemon=True)
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()

    def shutdown(self) -> None:
        """Close every connection (and so every session and segment) and remove the socket."""
        self.stopping.set()
        with self.lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self.threads:
            thread.join(timeout=10)
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            if self.address != "tcp":
                Path(self.address).unlink(missing_ok=True)
            else:
                (protocol.runtime_dir(create=False) / protocol.TCP_FILE).unlink(missing_ok=True)

    # --- one connection ---------------------------------------------------------------------------------
    def _serve_connection(self, connection: _Connection) -> None:
        sock = connection.sock
        sock.settimeout(HELLO_DEADLINE)  # a peer that never says hello does not hold a thread for ever
        try:
            while True:
                try:
                    body = receive_body(sock)
                except FramingError as exc:
                    _send_quietly(sock, _error(f"{exc}; closing this connection", "protocol"))
                    return
                except OSError:
                    return  # the client died, the handshake's deadline passed, or the server is stopping
                if body is None:
                    return
                reply, close = self._answer(connection, body)
                if connection.greeted:
                    sock.settimeout(None)  # a client may wait minutes between frames (an EEVEE render)
                if not _send_quietly(sock, reply) or close:
                    return
        finally:
            for served in connection.sessions.values():
                self._close_quietly(served)
            connection.sessions.clear()
            sock.close()
            with self.lock:
                self.connections.discard(connection)
                self.last_active = time.monotonic()

    def _close_quietly(self, served: _Served) -> None:
        try:
            served.close()
        except Exception:  # noqa: BLE001 -- closing the rest matters more than one failure
            self.log("closing a session failed:\n" + traceback.format_exc())

    def _answer(self, connection: _Connection, body: bytes) -> tuple[dict, bool]:
        """(reply, close the connection after it)."""
        if not connection.greeted:
            version = schema.hello_version(body)
            if version is not None and version != protocol.PROTOCOL_VERSION:  # whatever else a newer hello holds
                return _error(_version_mismatch(version), "protocol"), True
        try:
            request = schema.decode_request(body)
        except (msgspec.MsgspecError, ValueError, RecursionError) as exc:
            # ValueError: invalid UTF-8 in a string; RecursionError: nesting deeper than msgspec follows.
            # Before the handshake nothing else is said: a stranger's garbage ends the connection.
            return _error(f"malformed request: {exc}", "protocol"), not connection.greeted
        try:
            if not connection.greeted and not isinstance(request, schema.Hello):
                raise _Refused("say hello first (the handshake names the protocol version)", close=True)
            return {"ok": True, **self._dispatch(connection, request)}, False
        except _Refused as exc:
            return _error(str(exc), "protocol"), exc.close
        except FrameError as exc:
            return _error(str(exc), "input"), False
        except ReframeError as exc:  # SettingsError and the rest of what the user asked for
            return _error(str(exc), "settings"), False
        except segments.SegmentError as exc:
            return _error(str(exc), "internal"), False
        except MemoryError:
            return _error("the server ran out of memory for this request", "internal"), False
        except Exception as exc:  # noqa: BLE001 -- a bug must not take the server (and other clients) down
            self.log("request failed:\n" + traceback.format_exc())
            return _error(f"the server failed: {type(exc).__name__}: {exc}", "internal"), False

    def _dispatch(self, connection: _Connection, request) -> dict:
        handler = getattr(self, f"_on_{type(request).__name__.lower()}")
        return handler(connection, request)

    def _on_hello(self, connection: _Connection, request: schema.Hello) -> dict:
        if request.version != protocol.PROTOCOL_VERSION:
            raise _Refused(_version_mismatch(request.version), close=True)
        if self.token is not None and not protocol.check_token(request.token, self.token):
            raise _Refused("wrong or missing token for this server", close=True)
        connection.greeted = True
        from reframe_core import __version__

        return {"version": protocol.PROTOCOL_VERSION, "server": __version__, "pid": os.getpid(),
                "python": sys.version.split()[0]}

    def _served(self, connection: _Connection, session_id: int) -> _Served:
        served = connection.sessions.get(session_id)
        if served is None:
            raise _Refused(f"no session {session_id} on this connection (closed, or opened by another client)")
        return served

    def _new_segment(self, size: int):
        with self.lock:
            self.segment_counter += 1
            counter = self.segment_counter
        return segments.create(segments.segment_name(counter), size)

    def _on_open(self, connection: _Connection, request: schema.Open) -> dict:
        from reframe_core.runtime.session import open_session

        settings = schema.to_builtins(request.settings)
        workload = settings.pop("workload")
        session = open_session(workload, **settings)
        height, width = session.settings.display_size
        output = self._new_segment(height * width * 3 * 4)
        with self.lock:
            self.next_id += 1
            session_id = self.next_id
        connection.sessions[session_id] = _Served(session, output)
        fallback = session.fallback_request()
        return {"session": session_id, "output": output.name, "output_size": output.size,
                "fallback_request": {"scale": fallback.scale, "jitter": fallback.jitter, "cheap": fallback.cheap,
                                     "cheap_too": fallback.cheap_too},
                "placement": {"device": str(session.placement.device), "precision": session.settings.precision}}

    def _on_nextrender(self, connection: _Connection, request: schema.NextRender) -> dict:
        served = self._served(connection, request.session)
        request_ = served.session.next_render(_hints(request.hints))
        return {"request": {"scale": request_.scale, "jitter": request_.jitter, "cheap": request_.cheap,
                            "cheap_too": request_.cheap_too}}

    def _on_buffers(self, connection: _Connection, request: schema.Buffers) -> dict:
        served = self._served(connection, request.session)
        if served.input is None or served.input.size < request.nbytes:
            if served.input is not None:
                served.input.close()
                served.input.unlink()
                served.input = None
            served.input = self._new_segment(request.nbytes)
        return {"input": served.input.name, "input_size": served.input.size}

    def _on_step(self, connection: _Connection, request: schema.Step) -> dict:
        start = time.perf_counter()
        served = self._served(connection, request.session)
        if served.input is None:
            raise _Refused("no input segment yet: ask for one with a 'buffers' request first")
        slots = [spec.slot() for spec in request.layout]
        arrays = _read_slots(served.input, slots)
        copy_ms = (time.perf_counter() - start) * 1e3
        camera = CameraData.from_dict(schema.to_builtins(request.camera))
        buffers = FrameBuffers(**arrays, camera=camera, has_vector_pass=request.has_vector_pass)
        result = served.session.step(buffers, _hints(request.hints))
        image = result.image
        height, width = served.session.settings.display_size
        if image.shape != (height, width, 3):
            raise RuntimeError(f"the session returned an image of shape {image.shape}, not {(height, width, 3)}")
        copied = time.perf_counter()
        out = np.ndarray(image.shape, np.float32, buffer=served.output.buf)
        out[...] = image
        del out  # no view may outlive a step: closing the segment needs none exported
        copy_ms += (time.perf_counter() - copied) * 1e3
        return {"network_ran": result.network_ran, "refreshed": result.refreshed, "reason": result.reason,
                "network_ms": result.network_ms, "fallback": result.fallback, "shape": list(image.shape),
                "server_ms": (time.perf_counter() - start) * 1e3, "server_copy_ms": copy_ms}

    def _on_stats(self, connection: _Connection, request: schema.Stats) -> dict:
        return {"stats": self._served(connection, request.session).session.stats()}

    def _on_reset(self, connection: _Connection, request: schema.Reset) -> dict:
        self._served(connection, request.session).session.reset()
        return {}

    def _on_close(self, connection: _Connection, request: schema.Close) -> dict:
        served = connection.sessions.pop(request.session, None)
        if served is not None:
            self._close_quietly(served)
        return {"closed": served is not None}

    def _on_release(self, connection: _Connection, request: schema.Release) -> dict:
        from reframe_core.runtime.session import release_device_memory

        closed = len(connection.sessions)
        for served in connection.sessions.values():
            self._close_quietly(served)
        connection.sessions.clear()
        return {"closed": closed, "cuda_bytes_freed": release_device_memory()}

    def _on_status(self, connection: _Connection, request: schema.Status) -> dict:
        with self.lock:
            connections = list(self.connections)
        return {"pid": os.getpid(), "version": protocol.PROTOCOL_VERSION, "clients": len(connections),
                "sessions": sum(len(c.sessions) for c in connections), "segments": segments.our_segments(os.getpid())}

    def _on_machine(self, connection: _Connection, request: schema.Machine) -> dict:
        from reframe_core.evaluation.bench import machine_info

        placements = [s.session.placement for s in connection.sessions.values()]
        return {"machine": machine_info(placements[0] if placements else None)}


HELLO_DEADLINE = 10.0  # seconds from connecting to the handshake


def _version_mismatch(version) -> str:
    return (f"protocol version mismatch: the client speaks version {version}, this server version "
            f"{protocol.PROTOCOL_VERSION}; install the same reframe-blender for both (update the add-on or the "
            f"runtime environment)")


def _send_quietly(sock: socket.socket, reply: dict) -> bool:
    """Send a reply; False when the connection is gone. A reply that cannot be encoded (over the size limit,
    NaN in a number) becomes an error reply: the thread must never die of it."""
    try:
        try:
            send_message(sock, reply)
        except (BridgeError, ValueError) as exc:
            send_message(sock, _error(f"the server's reply could not be sent: {exc}", "internal"))
        return True
    except OSError:
        return False


MAX_ERROR = 2000  # characters: an error quotes the offending value, which a hostile request makes huge


def _error(message: str, kind: str) -> dict:
    if len(message) > MAX_ERROR:
        message = message[:MAX_ERROR] + f"... ({len(message) - MAX_ERROR} more characters)"
    return {"ok": False, "error": message, "kind": kind}


def _hints(hints: schema.Hints | None) -> CameraHints | None:
    return None if hints is None else CameraHints.from_dict(schema.to_builtins(hints))


def _read_slots(segment, slots: list[segments.Slot]) -> dict[str, np.ndarray]:
    """Copies of the arrays the slots name, after checking each lies inside the segment. Copies: the client
    writes the next frame into the same segment while the session keeps this one as history."""
    seen = set()
    arrays = {}
    for slot in slots:
        if slot.name in seen:
            raise FrameError(f"{slot.name} appears twice in the frame's layout")
        seen.add(slot.name)
        if slot.offset % 4:
            raise FrameError(f"{slot.name} starts at byte {slot.offset}, not a multiple of 4")
        if slot.offset + slot.nbytes > segment.size:
            raise FrameError(f"{slot.name} {slot.shape} at byte {slot.offset} ends at {slot.offset + slot.nbytes}, "
                             f"past the end of the input segment ({segment.size} bytes)")
        arrays[slot.name] = np.array(segments.view(segment, slot))
    missing = set(FrameBuffers.CHANNELS) - seen
    if missing:
        raise FrameError(f"the frame lacks {', '.join(sorted(missing))}")
    return arrays


def run(address: str | None = None, idle_exit: float | None = None, parent_pid: int | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or idle / parent gone); prints one ``listening on ...`` line when ready."""
    server = Server(address, idle_exit, parent_pid)
    where = server.bind()

    def stop(signum, frame):
        server.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"reframe-blender serve: listening on {where} (pid {os.getpid()}, protocol {protocol.PROTOCOL_VERSION})",
          flush=True)
    server.serve_forever()
    return 0
