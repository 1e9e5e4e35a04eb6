"""The bridge's wire: where the server listens, who may connect, and how one control message travels.

Standard library only: the Blender-side client imports this. Frames never travel here (they go through shared
memory, :mod:`bridge.segments`); a message is a 4-byte big-endian length and a JSON object of at most
:data:`MAX_MESSAGE` bytes. The server checks each request against typed schemas (:mod:`bridge.schema`) before
using any field; the client checks the few fields it reads in a reply.

Security (a local service that runs a network on frames of the user's files):

* Unix socket ``server.sock`` in a per-user runtime directory created 0700 (``$XDG_RUNTIME_DIR/reframe-blender``
  or ``/tmp/reframe-blender-UID``); a directory there that someone else owns or that others can enter is refused.
  The socket is bound under a 0177 umask, so it is 0600 from the moment it exists, and nobody else could reach it
  through the directory anyway. The server checks the peer's uid (``SO_PEERCRED``) on every connection.
* Where Unix sockets are missing (Windows' Python), loopback TCP on a random port with a random token in a 0600
  file of that directory; the token is the first thing the server checks.
"""
from __future__ import annotations

import hmac
import json
import os
import socket
import stat
import struct
import sys
import tempfile
from pathlib import Path

from reframe_core.errors import ReframeError

# Bumped on any change a peer of the other version would misread; the handshake names both on a mismatch.
PROTOCOL_VERSION = 1
MAX_MESSAGE = 256 * 1024  # control messages only: hints and settings are a few KB
SOCKET_NAME = "server.sock"
TCP_FILE = "server-tcp.json"  # {"port": N, "token": "...", "pid": N} where Unix sockets are unavailable
HAS_UNIX_SOCKETS = hasattr(socket, "AF_UNIX") and sys.platform != "win32"
_HEADER = struct.Struct(">I")


class BridgeError(ReframeError):
    """The runtime server could not be reached, refused the request or broke the protocol."""


class ServerUnavailable(BridgeError):
    """The server is not running, died, or did not answer within the timeout (the client may fall back)."""


class RemoteError(BridgeError):
    """The server answered a request with an error; ``kind`` says whose fault: settings, input, protocol, internal."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


class InputError(RemoteError, ValueError):
    """The frame sent was unusable (shape, size, NaN/Inf): the message names the array."""


def runtime_path() -> Path:
    """Where this user's private folder for the socket is (unchecked: see :func:`runtime_dir`)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(base) / "reframe-blender" if base else Path(tempfile.gettempdir()) / f"reframe-blender-{uid}"


def runtime_dir(create: bool = True) -> Path:
    """This user's private folder for the socket: 0700 and owned by us, or an error saying why not. (On Windows,
    which has no uids, the folder is the user's temp folder's, private by its ACL.)"""
    uid = os.getuid() if hasattr(os, "getuid") else None
    path = runtime_path()
    if create:
        try:
            path.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise BridgeError(f"cannot create the runtime folder {path}: {exc}") from exc
    if path.exists() and uid is not None:
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o077:
            raise BridgeError(f"{path} is not a private folder of this user (owner uid {info.st_uid}, mode "
                              f"{stat.S_IMODE(info.st_mode):o}): another user may have created it to intercept "
                              f"frames; remove it, or set XDG_RUNTIME_DIR to a folder only you can enter")
    return path


def default_address() -> str:
    """Where a server listens unless told otherwise: the Unix socket path, or ``tcp`` (see :data:`TCP_FILE`)."""
    return str(runtime_dir() / SOCKET_NAME) if HAS_UNIX_SOCKETS else "tcp"


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (Linux SO_PEERCRED; BSD/macOS getpeereid)."""
    if hasattr(socket, "SO_PEERCRED"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    if hasattr(socket.socket, "getpeereid"):  # not in CPython today; kept for forks that add it
        return sock.getpeereid()[0]
    return None


def check_token(given, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def encode_message(message: dict) -> bytes:
    """The framed bytes of ``message``; ValueError for NaN/Inf in it (not JSON: a value to report, not to send),
    :class:`BridgeError` over the size limit."""
    body = json.dumps(message, allow_nan=False, separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE:
        raise BridgeError(f"message {message.get('op', '?')!r} is {len(body)} bytes, over the {MAX_MESSAGE}-byte limit")
    return _HEADER.pack(len(body)) + body


def send_message(sock: socket.socket, message: dict) -> None:
    sock.sendall(encode_message(message))


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 16))
        if not chunk:
            raise ConnectionResetError("the other end closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class FramingError(BridgeError):
    """A length prefix over the limit: the stream cannot be trusted after it, so the connection is closed."""


def receive_body(sock: socket.socket) -> bytes | None:
    """One message's bytes, or None when the peer closed the connection cleanly between messages."""
    first = sock.recv(_HEADER.size)
    if not first:
        return None
    header = first if len(first) == _HEADER.size else first + _read_exactly(sock, _HEADER.size - len(first))
    (length,) = _HEADER.unpack(header)
    if length > MAX_MESSAGE:
        raise FramingError(f"message length {length} is over the {MAX_MESSAGE}-byte limit")
    return _read_exactly(sock, length)


def receive_reply(sock: socket.socket) -> dict:
    """A reply as a dict (the client's side); ConnectionResetError when the server closed the connection,
    :class:`BridgeError` for a reply that is not one."""
    body = receive_body(sock)
    if body is None:
        raise ConnectionResetError("the server closed the connection")
    try:
        reply = json.loads(body)
    except ValueError:
        reply = None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise BridgeError(f"malformed reply from the server: {body[:200]!r}")
    return reply
