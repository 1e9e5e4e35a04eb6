"""Property-based fuzzing of the bridge's runtime server (``reframe-blender serve``, :mod:`bridge.server`).

What this proves, against one real server process started for the module:

* Every malformed or hostile control message gets an error reply ``{"ok": false, "error": str, "kind": str}``
  and the server keeps serving (more than 10 000 messages, counted): random bytes, JSON that is not an object,
  arbitrary JSON values (with and without a real ``op``), and valid-looking requests of every op with one field
  replaced by a hostile value (wrong types, huge or negative numbers, 100 000-character strings, huge lists,
  deeply nested arrays, raw ``NaN``/``Infinity`` tokens, invalid UTF-8, unknown fields, missing fields, other
  connections' sessions, path-like strings, absurd session settings). The server's own schema is the oracle:
  a schema-invalid request (undecodable bytes, invalid UTF-8 and nesting too deep included) must be a
  ``protocol`` error ("malformed request: ..."), a session op for a session this connection does not own is a
  ``protocol`` error, an "open" (always generated with a setting the server refuses before it builds a network)
  is a ``settings`` error; the few random messages that happen to be valid (status, machine, release, a hello
  of this version, a close, which is idempotent by design) succeed. No error message is over ``MAX_ERROR``
  characters (plus the note of how many were cut), so no reply ever exceeds ``MAX_MESSAGE``.
* Framing attacks on fresh connections: a length prefix over ``MAX_MESSAGE`` is an error reply and then the
  connection closes; truncated bodies and half headers close quietly; requests before ``hello``, malformed
  ones included, are refused and the connection closes; a wrong protocol version is refused naming both
  versions.
* A real session rejects frames holding NaN/Inf (kind ``input``, naming the array and how many values),
  frames of another size than the session renders, and layouts that point outside the input segment, overlap
  names, miss arrays or disagree in shape, and still works afterwards. Settings the network cannot run
  (rendered frames under 8 pixels per side, devices other than cpu/cuda/cuda:N/auto) are refused at open
  (kind ``settings``); sizes over ``schema.MAX_SIDE`` by the schema (kind ``protocol``).
* After all of it a well-behaved client (:class:`bridge.client.ServerRuntime`) gets exactly the images of the
  in-process runtime, no session or shared-memory segment of the closed fuzz connections is left, and the
  server's log holds no traceback at all (each test also checks that it left none).

Runs in well under a minute on two CPU cores; hypothesis is derandomized (no example database), so CI replays
exactly the same messages.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import protocol, schema, segments
from bridge.protocol import MAX_MESSAGE, PROTOCOL_VERSION
from reframe_core.frames.buffers import CameraData, FrameBuffers

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0  # seconds for any reply: a hang fails the test instead of blocking it
HEADER = struct.Struct(">I")
BATCH = 10  # messages per hypothesis example on the greeted connection (generation is the slow part)
SANE_SETTINGS = {"workload": "ss", "display_size": [16, 16], "scale": 2.0, "policy": "every:2"}
FRAME_SIZE = (8, 8)  # the render size of SANE_SETTINGS (16x16 display, scale 2)

# Messages sent by the fuzz tests, and error replies received for them (the module must reach 10 000 errors).
COUNT = {"sent": 0, "errors": 0}
OUTCOMES: Counter = Counter()  # what the fuzz connection's messages were, by the oracle's verdict and reply kind
FUZZ_TESTS = {"random_bodies", "arbitrary_json", "hostile_fields", "framing", "nan_frames", "step_layouts"}
RAN: set[str] = set()
MIN_ERRORS = 10_000

# What the server's decoder raises for a body it cannot read (besides msgspec's errors): invalid UTF-8 inside a
# string (UnicodeDecodeError, a ValueError) and nesting deeper than the interpreter's recursion limit.
UNDECODABLE = (msgspec.MsgspecError, ValueError, RecursionError)
MAX_ERROR = 2000  # characters of an error message, plus "... (N more characters)" when cut
MIN_RENDER = 8  # pixels per side of a rendered frame: a session that would render less is refused at open


def fuzz_settings(examples: int):
    return settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example,
                                           HealthCheck.filter_too_much])


# --- the server and raw connections ---------------------------------------------------------------------------

class Conn:
    """A raw Unix-socket connection speaking the framing of :mod:`bridge.protocol` by hand."""

    def __init__(self, address: str, greet: bool = True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(address)
        if greet:
            reply = self.request({"op": "hello", "version": PROTOCOL_VERSION, "client": "fuzz"})
            assert reply["ok"] is True, reply

    def send_body(self, body: bytes) -> None:
        self.sock.sendall(HEADER.pack(len(body)) + body)

    def exchange(self, body: bytes) -> dict:
        self.send_body(body)
        return protocol.receive_reply(self.sock)

    def request(self, message: dict) -> dict:
        return self.exchange(json.dumps(message, separators=(",", ":")).encode())

    def closed_by_peer(self) -> bool:
        """True once the server has closed its end (EOF), False if it keeps the connection open."""
        self.sock.settimeout(5.0)  # EOF comes at once; waiting out the timeout means "still open"
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(TIMEOUT)

    def close(self) -> None:
        self.sock.close()


class Server:
    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="rfb-fuzz-", dir="/tmp")
        self.address = f"{self.folder}/s.sock"
        assert len(self.address) < 100
        self.log: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "reframe_core.cli", "serve", "--address", self.address],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        # Drain stderr all along: a server logging many tracebacks must not block on a full pipe.
        self._drain = threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True)
        self._drain.start()
        ready = self.proc.stdout.readline()
        if "listening on" not in ready:
            self.stop()
            pytest.fail(f"the server did not start: {ready!r}; its log:\n{self.log_text()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return "".join(self.log)

    def tracebacks(self) -> list[str]:
        """The last line (the exception) of every traceback the server logged."""
        lines = self.log_text().splitlines()
        found = []
        for i, line in enumerate(lines):
            if line.startswith("Traceback (most recent call last):"):
                j = i + 1
                while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
                    j += 1
                found.append(lines[j] if j < len(lines) else "(truncated traceback)")
        return found

    def connect(self, greet: bool = True) -> Conn:
        return Conn(self.address, greet)

    def status(self) -> dict:
        conn = self.connect()
        try:
            reply = conn.request({"op": "status"})
        finally:
            conn.close()
        assert reply["ok"] is True, reply
        return reply

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._drain.join(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    srv = Server()
    alive = None
    try:
        yield srv
        alive = srv.alive()
    finally:
        srv.stop()
    assert alive, (f"the server died during the fuzz tests (exit {srv.proc.returncode}); its log:\n"
                   f"{srv.log_text()[-4000:]}")


def clean_frame(size=FRAME_SIZE, seed: int = 0) -> dict[str, np.ndarray]:
    h, w = size
    rng = np.random.default_rng(seed)
    return {"color": rng.random((h, w, 3), np.float32), "alpha": np.ones((h, w), np.float32),
            "depth": (1 + 9 * rng.random((h, w))).astype(np.float32),
            "normal": rng.random((h, w, 3), np.float32), "albedo": rng.random((h, w, 3), np.float32),
            "motion_prev": rng.normal(0, 0.5, (h, w, 2)).astype(np.float32),
            "motion_next": rng.normal(0, 0.5, (h, w, 2)).astype(np.float32),
            # optional (FE's relighting reads it on rendered frames): checked like the others where it comes
            "cheap_color": rng.random((h, w, 3), np.float32),
            "jitter": rng.uniform(-0.5, 0.5, 2).astype(np.float32)}


def camera(frame: int = 1, name: str = "Camera") -> CameraData:
    world = [[1.0, 0.0, 0.0, 0.05 * frame], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 5.0], [0.0, 0.0, 0.0, 1.0]]
    projection = [[2.7, 0.0, 0.0, 0.0], [0.0, 2.7, 0.0, 0.0], [0.0, 0.0, -1.002, -0.2002], [0.0, 0.0, -1.0, 0.0]]
    return CameraData(frame=frame, name=name, world_matrix=world, projection=projection, lens_mm=50.0,
                      fov_x_deg=39.6, fov_y_deg=39.6, clip_start=0.1, clip_end=100.0, resolution=(16, 16))


class RealSession:
    """A real SS session opened once on its own greeted raw connection, with its input segment attached."""

    def __init__(self, server: Server):
        self.conn = server.connect()
        reply = self.conn.request({"op": "open", "settings": SANE_SETTINGS})
        assert reply["ok"] is True, reply
        self.id, self.output_name = reply["session"], reply["output"]
        self.arrays = clean_frame()
        self.slots, self.nbytes = segments.plan_layout(self.arrays)
        reply = self.conn.request({"op": "buffers", "session": self.id, "nbytes": self.nbytes})
        assert reply["ok"] is True, reply
        self.input_name = reply["input"]
        self.segment = segments.attach(self.input_name)
        self.layout = [slot.to_dict() for slot in self.slots]

    def step_message(self, layout=None, camera_dict=None, **extra) -> dict:
        return {"op": "step", "session": self.id, "layout": self.layout if layout is None else layout,
                "camera": camera().to_dict() if camera_dict is None else camera_dict, **extra}

    def grow(self, nbytes: int) -> None:
        """Ask for an input segment of at least ``nbytes`` (the server replaces a smaller one) and attach it."""
        reply = self.conn.request({"op": "buffers", "session": self.id, "nbytes": nbytes})
        assert reply["ok"] is True and reply["input_size"] >= nbytes, reply
        self.segment.close()
        self.input_name = reply["input"]
        self.segment = segments.attach(self.input_name)

    def write(self, arrays, slots=None) -> None:
        segments.write_arrays(self.segment, self.slots if slots is None else slots, arrays)

    def close(self) -> None:
        if self.segment is not None:
            self.segment.close()  # never unlink: the server owns its segments
            self.segment = None
        self.conn.close()


@pytest.fixture(scope="module")
def real_session(server):
    session = RealSession(server)
    yield session
    session.close()


# --- checking replies -----------------------------------------------------------------------------------------

def assert_error(reply: dict, kind: str | tuple | None = None, contains=()) -> None:
    assert reply.get("ok") is False, f"expected an error reply, got {reply}"
    assert set(reply) == {"ok", "error", "kind"}, reply
    assert isinstance(reply["error"], str) and reply["error"], reply
    assert isinstance(reply["kind"], str), reply
    error = reply["error"]
    if len(error) > MAX_ERROR:  # a long message (quoting a hostile value) is cut, saying how much was left out
        assert error[MAX_ERROR:].startswith("... (") and error.endswith(" more characters)"), error[-200:]
        assert len(error) <= MAX_ERROR + 40, len(error)
    if kind is not None:
        kinds = (kind,) if isinstance(kind, str) else kind
        assert reply["kind"] in kinds, f"expected kind {kinds}, got {reply}"
    for text in contains:
        assert text in reply["error"], f"{text!r} not in {reply['error']!r}"
    COUNT["errors"] += 1


def classify(body: bytes):
    """("malformed" | "valid", request): what the server's own schema makes of ``body``."""
    try:
        return "valid", schema.decode_request(body)
    except UNDECODABLE:
        return "malformed", None


def usable_device(device: str) -> bool:
    """cpu, cuda, cuda:N (N below the GPU count) or auto: the devices a session may ask for."""
    kind, colon, index = device.partition(":")
    if device == "auto" or device == "cpu":
        return True
    if kind != "cuda" or not torch.cuda.is_available():
        return False
    return not colon or (index.isdigit() and int(index) < torch.cuda.device_count())


def cheaply_invalid(settings_: schema.Settings) -> bool:
    """Whether the server refuses these settings before it builds a network (opening a sane session per fuzz
    message would load and trace a network every time; one at MAX_SIDE x MAX_SIDE takes GBs and minutes)."""
    from reframe_core.policies import parse_policy

    s = settings_
    if min(s.display_size) < 8 or s.workload not in ("ss", "fe"):
        return True
    if s.policy is not None:
        try:
            parse_policy(s.policy)
        except Exception:  # noqa: BLE001 -- any refusal of the spec
            return True
    render_scale = s.scale if s.workload == "ss" else 1.0  # FE renders at display size
    if min(max(1, round(side / render_scale)) for side in s.display_size) < MIN_RENDER:
        return True
    if s.workload == "ss" and not 1.0 < s.scale <= 4.0:
        return True
    if not usable_device(s.device):
        return True
    return bool(s.weights) and (not Path(s.weights).is_file() or s.weights in NOT_WEIGHTS_FILES)


NOT_WEIGHTS_FILES = {"/etc/shadow", "/etc/passwd", "/../../etc/passwd", "/proc/self/environ", "/proc/self/mem"}


class Fuzzer:
    """The greeted connection the fuzz tests share, and the oracle that says what each reply must be."""

    def __init__(self, server: Server, foreign_session: int):
        self.server = server
        self.foreign_session = foreign_session
        self.conn = server.connect()
        self.reconnects = 0

    def send(self, body: bytes, sane_open_ok: bool = False) -> dict | None:
        """Send one framed body and check the reply; ``sane_open_ok``: a generated sane "open" is skipped (not
        sent) instead of being a bug of the generator."""
        assert len(body) <= MAX_MESSAGE, len(body)
        verdict, request = classify(body)
        if isinstance(request, schema.Open) and not cheaply_invalid(request.settings):
            assert sane_open_ok, f"the generator made a sane open (it would load a network): {body[:300]!r}"
            return None
        COUNT["sent"] += 1
        try:
            reply = self.conn.exchange(body)
        except (OSError, protocol.BridgeError) as exc:
            alive = self.server.alive()
            raise AssertionError(f"no reply to {body[:300]!r} ({type(exc).__name__}: {exc}); server alive: "
                                 f"{alive}; its log:\n{self.server.log_text()[-3000:]}") from exc
        context = f"message {body[:300]!r} -> {reply}"
        OUTCOMES[f"{type(request).__name__ if request is not None else verdict}: "
                 f"{reply.get('kind', 'ok') if isinstance(reply, dict) else '?'}"] += 1
        if verdict == "malformed":
            # Long hostile values (a 100 000-character op) are quoted cut: the reply is an error all the same,
            # and the connection stays open (the next message is answered on it).
            assert_error(reply, "protocol", ["malformed request"])
        elif isinstance(request, schema.Open):
            assert_error(reply, "settings")  # schema-valid: the session refuses the setting, before any network
        elif isinstance(request, schema.Hello):
            if request.version == PROTOCOL_VERSION:
                assert reply["ok"] is True, context  # a second hello with the right version is harmless
            else:
                assert_error(reply, "protocol", [str(request.version), str(PROTOCOL_VERSION)])
                assert self.conn.closed_by_peer(), f"the connection stayed open after {context}"
                self.reconnect()
        elif isinstance(request, (schema.NextRender, schema.Buffers, schema.Step, schema.Stats, schema.Reset)):
            # This connection never owns a session: every session op is refused, foreign ids included.
            assert_error(reply, "protocol", [f"no session {request.session} on this connection"])
        elif isinstance(request, schema.Close):
            # Not an error by design: close is idempotent (the client's close never raises). It must not close
            # another connection's session: test_real_session_survives_the_fuzz checks that one still works.
            assert reply == {"ok": True, "closed": False}, context
        else:
            assert isinstance(request, (schema.Status, schema.Machine, schema.Release)), context
            assert reply["ok"] is True, context
        return reply

    def reconnect(self) -> None:
        self.conn.close()
        self.conn = self.server.connect()
        self.reconnects += 1

    def close(self) -> None:
        self.conn.close()


@pytest.fixture(scope="module")
def fuzzer(server, real_session):
    f = Fuzzer(server, real_session.id)
    yield f
    f.close()


@pytest.fixture(autouse=True)
def _server_alive_after(request):
    yield
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        assert srv.alive(), f"the server died (exit {srv.proc.returncode}); its log:\n{srv.log_text()[-4000:]}"
        # The server logs a traceback before it replies: by now the stderr reader has it, or has it within
        # milliseconds (then the next test, or test_good_client_after_fuzz, reports it).
        assert not srv.tracebacks(), f"the server logged tracebacks: {srv.tracebacks()}\n{srv.log_text()[-6000:]}"


# --- hostile values -----------------------------------------------------------------------------------------

class Raw:
    """A JSON fragment written verbatim into a message (tokens json.dumps would not write, or big ones)."""

    def __init__(self, body: bytes | str, label: str | None = None):
        self.body = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        self.label = label or self.body[:40].decode("utf-8", "replace")

    def __repr__(self):
        return f"Raw({self.label!r}, {len(self.body)} bytes)"

    # Hypothesis labels a sampled_from strategy by hash() of its elements: the default (the object's address)
    # changes from run to run and, with it, the messages generated after the first few thousand. A hash of the
    # bytes, the same in every process (whatever PYTHONHASHSEED), keeps the run replayable.
    def __eq__(self, other):
        return isinstance(other, Raw) and self.body == other.body

    def __hash__(self):
        return int.from_bytes(hashlib.sha256(self.body).digest()[:8], "big")


def raw_json(value, label=None) -> Raw:
    return Raw(json.dumps(value, allow_nan=True, ensure_ascii=False, separators=(",", ":")), label)


DEEP_LIST = Raw("[" * 100_000 + "]" * 100_000, "100000 nested lists")
DEEP_LIST_SHORT = Raw("[" * 10_000 + "]" * 10_000, "10000 nested lists")
DEEP_OBJECT = Raw('{"a":' * 20_000 + "1" + "}" * 20_000, "20000 nested objects")
HOSTILE_STRINGS = ["A" * 100_000, "\u00e9" * 50_000, "/../../etc/passwd", "../x", "/etc/shadow", "",
                   "rfb1_1_000000", "/dev/shm/rfb1_1_000000", "\x00", "nonsense:::", "cuda:99", "\u202e\ufeff",
                   "%s%n%x", "'; DROP TABLE sessions; --"]
HOSTILE = [raw_json(v) for v in (
    None, True, False, 0, -1, 1, 2**31, 2**31 + 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**30), 1.5, -0.0,
    1e308, 5e-324, [], [1], [[1.0] * 4] * 4, {}, {"a": 1}, [0] * 50_000, ["x"] * 20_000)] + [
    raw_json(s, f"string {s[:20]!r} ({len(s)} chars)") for s in HOSTILE_STRINGS] + [
    raw_json(math.nan), raw_json(math.inf), raw_json(-math.inf),  # NaN, Infinity, -Infinity tokens
    Raw("1e400"), Raw("-1e400"), Raw("1" * 400, "400-digit integer"), Raw("0x10"), Raw("01"), Raw("+1"),
    Raw(b'"\xff\xfe"', "invalid UTF-8 string"), Raw('"\\ud800"', "escaped lone surrogate"),
    Raw("\"\ud800\"", "raw lone surrogate (invalid UTF-8)"), Raw("tru", "truncated token"),
    DEEP_LIST, DEEP_LIST_SHORT, DEEP_OBJECT]
OPS = ["hello", "open", "next_render", "buffers", "step", "stats", "reset", "close", "release", "status", "machine"]
SESSION_VALUES = [raw_json(v) for v in (0, -1, 2**31 + 1, 2**63, 12345, 2**31, "1", 1.0, [1], None)]
NBYTES_VALUES = [raw_json(v) for v in (0, -1, schema.MAX_SEGMENT + 1, 2**63, 10**30, 4.5, "4608")]
OFFSET_VALUES = [raw_json(v) for v in (-4, 1, 10**9, schema.MAX_SEGMENT, schema.MAX_SEGMENT + 4, 2**63)]
MAX_SIDE = schema.MAX_SIDE
SHAPE_VALUES = [raw_json(v) for v in ([MAX_SIDE, MAX_SIDE, MAX_SIDE], [0, 8], [8, 8, 3, 1], [-8, 8], [],
                                      [MAX_SIDE + 1], [8, MAX_SIDE + 1, 3], [16384, 16384, 16384])]
KEYED = {"session": SESSION_VALUES, "nbytes": NBYTES_VALUES, "offset": OFFSET_VALUES, "shape": SHAPE_VALUES,
         "op": [raw_json(op) for op in OPS + ["", "Status", "hello ", "__class__"]],
         "name": [raw_json(v) for v in ("beauty", "../../etc/passwd", "color\x00", "COLOR")],
         "dtype": [raw_json(v) for v in ("float64", "uint8", "object", "float16")]}
EXTRA_KEYS = ["evil", "__proto__", "constructor", "op", "session", "", "A" * 1000, "\u00e9t\u00e9"]


def encode(message) -> bytes:
    """JSON bytes of ``message``, with every :class:`Raw` written verbatim."""
    raws: list[bytes] = []

    def sub(value):
        if isinstance(value, Raw):
            raws.append(value.body)
            return f"\x00RAW{len(raws) - 1}\x00"
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v) for v in value]
        return value

    text = json.dumps(sub(message), allow_nan=True, ensure_ascii=False, separators=(",", ":"))
    body = text.encode("utf-8", "surrogatepass")
    for i, fragment in enumerate(raws):
        body = body.replace(json.dumps(f"\x00RAW{i}\x00").encode(), fragment, 1)
    return body


def templates(session: int, hints: dict, step_layout: list, camera_dict: dict) -> dict[str, dict]:
    """A valid-looking request of every op (the fuzz connection owns no session: ``session`` is foreign)."""
    return {
        "hello": {"op": "hello", "version": PROTOCOL_VERSION, "client": "fuzz", "token": None},
        "open": {"op": "open", "settings": dict(SANE_SETTINGS)},
        "next_render": {"op": "next_render", "session": session, "hints": hints},
        "buffers": {"op": "buffers", "session": session, "nbytes": 4608},
        "step": {"op": "step", "session": session, "layout": step_layout, "camera": camera_dict,
                 "has_vector_pass": True, "hints": hints},
        "stats": {"op": "stats", "session": session}, "reset": {"op": "reset", "session": session},
        "close": {"op": "close", "session": session}, "release": {"op": "release"}, "status": {"op": "status"},
        "machine": {"op": "machine"}}


# "open" settings: absurd values the schema accepts (up to MAX_SIDE x MAX_SIDE), and poisons the server refuses
# before it builds a network (every generated open carries at least one poison, applied last: a valid open at
# MAX_SIDE x MAX_SIDE would load and trace a network for minutes; see cheaply_invalid).
ABSURD_VALID = {"display_size": [[MAX_SIDE, MAX_SIDE], [8, MAX_SIDE], [MAX_SIDE, 8], [64, MAX_SIDE]],
                "scale": [1.5, 3.0, 4.0], "k": [1, 1000], "precision": ["fp16", "bf16"], "channels_last": [True],
                "policy": [None, "always"], "cut": ["auto", "/../../etc/passwd"], "weights": [None],
                "device": ["cpu", "auto"]}
POISONS = [((key, raw_json(value)),) for key, values in {
    "display_size": [[0, 0], [4, 4], [7, 100], [1, 1], [MAX_SIDE + 1, 16], [16, MAX_SIDE + 1], [16385, 16385],
                     [-1, 16], [8], [8, 8, 8], "16x16", None],
    "scale": [16, 16.0, 0, -1, 1e308, 17, "2", 1.0, 4.5],
    "policy": ["nonsense:::", "every:0", "every:-1", "", "../x", "A" * 300, "every:2+", 7],
    "workload": ["../x", "", "SS", "fe ", "/etc/passwd", "x" * 17, None],
    # Devices torch.device() parses but the sessions do not run on, malformed ones, out-of-range GPUs.
    "device": ["cuda:99", "tpu", "", "../../dev/null", "cuda:-1", "x" * 33, 0, "mps", "xla", "vulkan", "meta",
               "cpu:1", "cpu:0", "CPU", "cuda:", "cuda:1x", "hip", "ipu", " cpu"],
    "weights": ["/etc/shadow", "/../../etc/passwd", "/nonexistent/w.pt", "/dev/zero", "/proc/self/environ",
                "/proc/self/mem", "/tmp", ".", "x" * 5000, 1],
    "precision": ["fp64", "FP32", None, ""],
    "k": [0, -1, 1001, 10**30, 2**63, 2.5],
    "channels_last": ["yes", 1, None],
    "cut": ["x" * 65, None, 3],
}.items() for value in values] + [
    (("scale", raw_json(math.nan)),), (("scale", raw_json(math.inf)),), (("k", Raw("1e400")),),
    (("evil", raw_json(1)),), (("workload", Raw(b'"\xff"', "invalid UTF-8")),)] + [
    # Valid each on its own, together a session rendering frames under MIN_RENDER pixels per side.
    (("workload", raw_json("ss")), ("display_size", raw_json(display)), ("scale", raw_json(scale)))
    for display, scale in [([8, 8], 1.5), ([14, 14], 2.0), ([16, MAX_SIDE], 3.0), ([MAX_SIDE, 29], 4.0),
                           ([11, 11], 1.5)]]


def hostile_for(key) -> st.SearchStrategy:
    generic = st.sampled_from(HOSTILE)
    return st.one_of(st.sampled_from(KEYED[key]), generic) if key in KEYED else generic


@st.composite
def draw_path(draw, node) -> list:
    """A path from the root into ``node`` (never empty): descend, stopping at each level with probability 1/2."""
    path = []
    while isinstance(node, (dict, list)) and len(node):
        if path and draw(st.booleans()):
            break
        key = draw(st.sampled_from(list(node.keys()) if isinstance(node, dict) else list(range(len(node)))))
        path.append(key)
        node = node[key]
    return path


def dict_paths(node, path=()) -> list[tuple]:
    found = [path] if isinstance(node, dict) else []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        found += dict_paths(child, (*path, key))
    return found


def get_at(node, path):
    for key in path:
        node = node[key]
    return node


@st.composite
def mutate(draw, message: dict, keep: str | None = None) -> dict:
    """One hostile change to ``message``: replace a field (at any depth), delete one, or add an unknown one;
    ``keep``: a top-level dict that is changed inside but never replaced or deleted as a whole (the open's
    settings, which get their poison after)."""
    message = copy.deepcopy(message)
    how = draw(st.sampled_from(["replace", "replace", "replace", "delete", "extra"]))
    if how == "extra":
        path = draw(st.sampled_from(dict_paths(message)))
        key = draw(st.sampled_from(EXTRA_KEYS))
        target = get_at(message, path)
        if key not in target:
            target[key] = draw(st.one_of(st.sampled_from(HOSTILE), st.just(raw_json(1))))
        else:
            target["evil"] = raw_json(1)
        return message
    path = draw(draw_path(message))
    if not path:  # nothing left to change (an earlier change deleted the only field)
        message["evil"] = raw_json(1)
        return message
    if keep is not None and path == [keep]:
        path.append(draw(st.sampled_from(list(message[keep]))))
    parent = get_at(message, path[:-1])
    if how == "delete":
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    else:
        parent[path[-1]] = draw(hostile_for(path[-1]))
    return message


@st.composite
def hostile_request(draw, foreign_session: int) -> bytes:
    """A valid-looking request of a random op with one field made hostile (opens: with a poison too)."""
    op = draw(st.sampled_from(OPS))
    session = draw(st.sampled_from([foreign_session, 12345, 1, 2, 2**31]))
    base = templates(session, HINTS, STEP_LAYOUT, CAMERA)[op]
    if op == "open":
        message = base
        # sorted: a set of strings iterates in an order that changes with PYTHONHASHSEED (CI must replay)
        for key in sorted(draw(st.sets(st.sampled_from(sorted(ABSURD_VALID)), max_size=3))):
            message["settings"][key] = draw(st.sampled_from(ABSURD_VALID[key]))
        if draw(st.booleans()):
            message = draw(mutate(message, keep="settings"))
        if isinstance(message.get("settings"), dict):
            for poison in draw(st.lists(st.sampled_from(POISONS), min_size=1, max_size=2)):
                message["settings"].update(poison)  # the last poison is whole: each setting of it is applied
    else:
        message = draw(mutate(base))
        if draw(st.integers(0, 3)) == 0:  # a second change now and then
            message = draw(mutate(message))
    if "op" in message and draw(st.integers(0, 4)) == 0:
        message = {**{k: v for k, v in message.items() if k != "op"}, "op": message["op"]}  # tag last
    return encode(message)


STEP_LAYOUT = [slot.to_dict() for slot in segments.plan_layout(clean_frame())[0]]
CAMERA = camera().to_dict()
HINTS = camera(3).hints(camera(2), 5.0).to_dict()

JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=16))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)), max_leaves=10)
FIELD_NAMES = ["session", "settings", "nbytes", "layout", "camera", "hints", "version", "client", "token",
               "has_vector_pass", "workload", "display_size", "frame", "world_matrix"]


@st.composite
def arbitrary_json(draw):
    """Any JSON value; objects often carry a real op name (first or last) and real field names."""
    which = draw(st.integers(0, 3))
    if which == 0:
        value = draw(JSON_VALUES)
    else:
        op = draw(st.sampled_from(OPS + ["", "HELLO", "open "]))
        fields = draw(st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8)), JSON_VALUES,
                                      max_size=4))
        fields.pop("op", None)
        value = {"op": op, **fields} if which != 3 else {**fields, "op": op}
    return value


def json_body(value, ascii_only: bool = True) -> bytes:
    return json.dumps(value, allow_nan=True, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def json_variants(value) -> list[bytes]:
    """The value as generated (ASCII and UTF-8 text), and three certainly malformed variants of it: wrapped in
    an array, an unknown field added first, the text cut by one byte."""
    body = json_body(value)
    variants = [body, json_body(value, ascii_only=False), json_body([value]), body[:-1]]
    if isinstance(value, dict):
        variants.append(json_body({"\u0000evil": 1, **value}))
    return variants


SPECIAL_BODIES = [b"", b"null", b"{", b"}", b'{"op":', b"\x00" * 1000, b"[" * 100_000, DEEP_LIST.body,
                  DEEP_OBJECT.body, b"\xef\xbb\xbf" + b'{"op":"status"}', b'{"op":"status"}\x00',
                  b'{"op":"status"} {"op":"status"}', b' \n{"op" : "status"}\t', b'{"op":"status",}',
                  b"{'op':'status'}", b'{"op":"status","op":"stats","session":1}', b"NaN", b"Infinity",
                  b'"' + b"A" * 200_000 + b'"', b"1" * 100_000, b'{"op":"\xff"}', b"\xff\xfe\x00{",
                  b'{"op":"hello","version":' + b"9" * 5000 + b"}"]
# Bodies the decoder cannot even read: invalid UTF-8 in a string, nesting past the recursion limit (before and
# after the tag), and a long hostile op quoted in the error.
UNDECODABLE_BODIES = [b'{"op":"hello","version":1,"client":"\xff"}', b'{"op":"\xc3"}', b'{"\xff":1,"op":"status"}',
                      b'{"x":' + b"[" * 2000 + b"]" * 2000 + b',"op":"status"}',
                      b'{"op":"status","x":' + b"[" * 2000 + b"]" * 2000 + b"}",
                      json.dumps({"op": "\u00e9" * 50_000}, ensure_ascii=False).encode()]
NOT_OBJECTS = JSON_VALUES.filter(lambda v: not isinstance(v, dict)).map(json_body)
RANDOM_BODIES = st.one_of(st.binary(max_size=300), NOT_OBJECTS, st.sampled_from(SPECIAL_BODIES),
                          st.binary(min_size=1, max_size=40).map(lambda b: b * 2000))


# --- the fuzz tests on one greeted connection ----------------------------------------------------------------

@fuzz_settings(300)
@given(bodies=st.lists(RANDOM_BODIES, min_size=BATCH, max_size=BATCH))
def test_fuzz_random_bodies(fuzzer, bodies):
    """Random bytes and JSON that is not an object: each a protocol error (or a harmless status, by chance)."""
    for body in bodies:
        fuzzer.send(body[:MAX_MESSAGE])
    RAN.add("random_bodies")


@fuzz_settings(150)
@given(values=st.lists(arbitrary_json(), min_size=6, max_size=6))
def test_fuzz_arbitrary_json(fuzzer, values):
    """Arbitrary JSON values built with st.recursive, objects often with a real op, each sent as generated and
    in malformed variants: answered as the schema says (a random valid request is answered as such; a sane
    open, which would load a network, is not sent)."""
    for value in values:
        for body in json_variants(value):
            fuzzer.send(body, sane_open_ok=True)
    RAN.add("arbitrary_json")


@fuzz_settings(400)
@given(data=st.data())
def test_fuzz_hostile_fields(fuzzer, data):
    """Requests of every op with one field hostile (type, range, size, nesting, NaN tokens, invalid UTF-8,
    unknown fields, foreign sessions, path-like strings, absurd settings): each refused, naming the fault."""
    bodies = data.draw(st.lists(hostile_request(fuzzer.foreign_session), min_size=BATCH, max_size=BATCH))
    for body in bodies:
        fuzzer.send(body)
    RAN.add("hostile_fields")


def test_real_session_survives_the_fuzz(real_session):
    """Closes and steps naming this session's id from the fuzz connection did not touch it."""
    reply = real_session.conn.request({"op": "stats", "session": real_session.id})
    assert reply["ok"] is True, reply
    real_session.write(real_session.arrays)
    reply = real_session.conn.request(real_session.step_message())
    assert reply["ok"] is True and reply["shape"] == [16, 16, 3], reply


# --- framing attacks on fresh connections --------------------------------------------------------------------

@st.composite
def framing_attack(draw) -> tuple:
    kind = draw(st.sampled_from(["oversize", "truncated", "half_header", "before_hello", "malformed_before_hello",
                                 "wrong_version", "open_close", "misframed"]))
    greet = draw(st.booleans())
    if kind == "oversize":
        return kind, greet, draw(st.integers(MAX_MESSAGE + 1, 2**32 - 1))
    if kind == "truncated":
        length = draw(st.integers(1, MAX_MESSAGE))
        return kind, greet, (length, draw(st.integers(0, min(length - 1, 4096))))
    if kind == "half_header":
        return kind, greet, draw(st.binary(min_size=1, max_size=3))
    if kind == "before_hello":
        op = draw(st.sampled_from(["status", "machine", "release", "open", "stats", "close", "reset"]))
        message = {"op": op}
        if op == "open":
            message["settings"] = SANE_SETTINGS  # refused before any network loads
        elif op in ("stats", "close", "reset"):
            message["session"] = draw(st.integers(1, 2**31))
        return kind, False, message
    if kind == "malformed_before_hello":
        return kind, False, draw(st.one_of(st.binary(max_size=100), arbitrary_json().map(json_body),
                                           st.sampled_from(UNDECODABLE_BODIES)))
    if kind == "wrong_version":
        return kind, False, draw(st.integers(-(2**63), 2**64 - 1).filter(lambda v: v != PROTOCOL_VERSION))
    if kind == "misframed":
        body = json.dumps({"op": "stats", "session": draw(st.integers(1, 2**31)), "pad": "x" * draw(
            st.integers(0, 64))}).encode()
        return kind, greet, (body, draw(st.integers(1, len(body) - 1)))
    return kind, False, None


@fuzz_settings(300)
@given(attack=framing_attack())
def test_fuzz_framing(server, attack):
    """Framing attacks, each on a fresh connection: the server answers or closes as documented, and lives."""
    kind, greet, arg = attack
    conn = server.connect(greet=greet)
    try:
        COUNT["sent"] += 1
        if kind == "oversize":
            conn.sock.sendall(HEADER.pack(arg))
            assert_error(protocol.receive_reply(conn.sock), "protocol", [f"message length {arg}", "closing"])
            assert conn.closed_by_peer()
        elif kind == "truncated":
            length, sent = arg
            conn.sock.sendall(HEADER.pack(length) + b"{" * sent)
            conn.sock.shutdown(socket.SHUT_WR)
            assert conn.closed_by_peer(), "the server must close a connection whose body never came, silently"
        elif kind == "half_header":
            conn.sock.sendall(arg)
            conn.sock.shutdown(socket.SHUT_WR)
            assert conn.closed_by_peer()
        elif kind == "before_hello":
            assert_error(conn.request(arg), "protocol", ["say hello first"])
            assert conn.closed_by_peer()
        elif kind == "malformed_before_hello":
            verdict, request = classify(arg)
            reply = conn.exchange(arg)
            if verdict == "valid" and isinstance(request, schema.Hello) and request.version == PROTOCOL_VERSION:
                assert reply["ok"] is True, reply  # a random body that is a valid hello greets
            elif verdict == "valid":
                assert_error(reply, "protocol")  # any other valid request: refused before hello
                assert conn.closed_by_peer()
            else:
                # Malformed (invalid UTF-8 and deep nesting included): refused, then closed (a stranger's
                # garbage ends the connection before the handshake).
                assert_error(reply, "protocol", ["malformed request"])
                assert conn.closed_by_peer(), "the connection stayed open after a malformed message before hello"
        elif kind == "wrong_version":
            reply = conn.request({"op": "hello", "version": arg})
            assert_error(reply, "protocol", ["version mismatch", str(arg), f"version {PROTOCOL_VERSION}"])
            assert conn.closed_by_peer()
        elif kind == "misframed":
            body, declared = arg  # a length prefix shorter than the body: the rest is read as the next frame
            conn.sock.sendall(HEADER.pack(declared) + body)
            conn.sock.shutdown(socket.SHUT_WR)
            replies = []
            try:
                while (reply_body := protocol.receive_body(conn.sock)) is not None:
                    replies.append(json.loads(reply_body))
            except ConnectionResetError:
                # The server closed after a framing error with our surplus bytes unread: Linux reports that
                # to the peer as a reset instead of EOF, after the replies already sent.
                pass
            assert replies, "the first (cut) frame must get an error reply"
            for reply in replies:
                assert_error(reply, "protocol")
        # "open_close": nothing to send
    except (OSError, protocol.BridgeError) as exc:
        raise AssertionError(f"{kind} attack: {type(exc).__name__}: {exc}; server alive: {server.alive()}; "
                             f"its log:\n{server.log_text()[-3000:]}") from exc
    finally:
        conn.close()
    assert server.alive()
    RAN.add("framing")


# --- a real session: NaN frames and hostile layouts ----------------------------------------------------------

@fuzz_settings(200)
@given(name=st.sampled_from(schema.ARRAY_NAMES), value=st.sampled_from([math.nan, math.inf, -math.inf]),
       data=st.data())
def test_fuzz_nan_frames(real_session, name, value, data):
    """A frame with NaN/Inf at chosen positions of one array: kind "input", naming the array and the count."""
    arrays = {key: array.copy() for key, array in real_session.arrays.items()}
    flat = arrays[name].reshape(-1)
    positions = data.draw(st.lists(st.integers(0, flat.size - 1), min_size=1, max_size=6, unique=True))
    flat[positions] = value
    real_session.write(arrays)
    COUNT["sent"] += 1
    reply = real_session.conn.request(real_session.step_message())
    assert_error(reply, "input", [f": {name} holds {len(positions)} NaN or infinite values"])
    RAN.add("nan_frames")


def _fits(slot: dict, size: int) -> bool:
    return slot["offset"] + int(np.prod(slot["shape"])) * 4 <= size


@st.composite
def hostile_step(draw, session: RealSession) -> tuple[dict, str, list]:
    """(step message, expected kind, texts the error must contain) for a certainly invalid step."""
    layout = copy.deepcopy(session.layout)
    size = session.segment.size
    i = draw(st.integers(0, len(layout) - 1))
    slot = layout[i]
    how = draw(st.sampled_from(["offset_past", "shape_past", "misaligned", "duplicate", "missing", "shape",
                                "dtype", "name", "camera", "hints", "session", "too_many", "empty", "nbytes"]))
    if how == "offset_past":
        slot["offset"] = 4 * draw(st.integers((size - int(np.prod(slot["shape"])) * 4) // 4 + 1,
                                              schema.MAX_SEGMENT // 4))
        return session.step_message(layout), "input", [slot["name"], "past the end of the input segment"]
    if how == "shape_past":
        shape = draw(st.lists(st.integers(1, schema.MAX_SIDE), min_size=1, max_size=3))
        if _fits({"offset": slot["offset"], "shape": shape}, size):
            shape[0] = schema.MAX_SIDE  # 64 KiB at least: past the end of this small segment
        assert not _fits({"offset": slot["offset"], "shape": shape}, size)
        slot["shape"] = shape
        return session.step_message(layout), "input", [slot["name"], "past the end of the input segment"]
    if how == "misaligned":
        slot["offset"] = draw(st.integers(0, size).filter(lambda o: o % 4))
        return session.step_message(layout), "input", [slot["name"], "not a multiple of 4"]
    if how == "duplicate":
        j = draw(st.integers(0, len(layout) - 1).filter(lambda j: j != i))
        layout[j]["name"] = slot["name"]
        return session.step_message(layout), "input", [f"{slot['name']} appears twice"]
    if how == "missing":
        required = [k for k, s in enumerate(layout) if s["name"] not in ("jitter", *FrameBuffers.OPTIONAL)]
        drop = draw(st.sets(st.sampled_from(required), min_size=1, max_size=len(required) - 1))
        names = sorted(layout[k]["name"] for k in drop)
        layout = [s for k, s in enumerate(layout) if k not in drop]
        return session.step_message(layout), "input", ["the frame lacks", ", ".join(names)]
    if how == "shape":
        # Another shape of at most as many values (still inside the segment): the arrays no longer agree.
        count = int(np.prod(slot["shape"]))
        shape = []
        for _ in range(draw(st.integers(1, 3))):
            shape.append(draw(st.integers(1, count // int(np.prod(shape or [1])))))
        if shape == slot["shape"]:
            shape = [count - 1] if count > 1 else [1, 1]
        slot["shape"] = shape
        return session.step_message(layout), "input", ["has shape", "expected"]
    if how == "dtype":
        slot["dtype"] = draw(st.sampled_from(["float64", "uint8", "float16", "object", ""]))
        return session.step_message(layout), "protocol", ["malformed request", "dtype"]
    if how == "name":
        slot["name"] = draw(st.sampled_from(["beauty", "/../../etc/passwd", "Color", "", session.input_name]))
        return session.step_message(layout), "protocol", ["malformed request", "name"]
    if how == "camera":
        field, value = draw(st.sampled_from([
            ("resolution", [0, 0]), ("resolution", [schema.MAX_SIDE + 1, 16]), ("resolution", [16]),
            ("world_matrix", [[1.0] * 4] * 3), ("projection", [[1.0] * 3] * 4), ("lens_mm", "50"),
            ("frame", 1.5), ("name", "x" * 257), ("shift", [0.0]), ("evil", 1), ("clip_end", None)]))
        cam = camera().to_dict()
        cam[field] = value
        return session.step_message(layout, cam), "protocol", ["malformed request", "camera"]
    if how == "hints":
        field, value, kind = draw(st.sampled_from([
            ("scene_depth", -1.0, "settings"), ("scene_depth", 0.0, "settings"), ("frame", "x", "protocol"),
            ("world_matrix", [[1.0] * 4] * 5, "protocol"), ("cut", "yes", "protocol"), ("extra", 1, "protocol")]))
        hints = camera(2).hints(camera(1), 5.0).to_dict()
        hints[field] = value
        return session.step_message(layout, hints=hints), kind, []
    if how == "session":
        other = draw(st.sampled_from([session.id + 1000, 2**31, 12345]))
        return {**session.step_message(layout), "session": other}, "protocol", [f"no session {other}"]
    if how == "nbytes":  # a buffers request for this session over the limit (or not a size at all)
        nbytes = draw(st.sampled_from([0, -1, schema.MAX_SEGMENT + 1, 2**63, 10**30]))
        return {"op": "buffers", "session": session.id, "nbytes": nbytes}, "protocol", ["malformed", "nbytes"]
    if how == "too_many":
        return session.step_message(layout + [dict(slot)]), "protocol", ["malformed request", "layout"]
    return session.step_message([]), "protocol", ["malformed request", "layout"]


@fuzz_settings(300)
@given(data=st.data())
def test_fuzz_step_layouts(real_session, data):
    """Steps of a real session whose layout points past the input segment (offsets up to 4 GiB, shapes up to
    MAX_SIDE^3), is misaligned, repeats or misses arrays, disagrees in shape, or carries a broken camera/hints:
    each refused (kind "input" for the frame, naming the array), before any value is read out of bounds."""
    message, kind, texts = data.draw(hostile_step(real_session))
    real_session.write(real_session.arrays)
    COUNT["sent"] += 1
    assert_error(real_session.conn.request(message), kind, texts)
    RAN.add("step_layouts")


@pytest.mark.parametrize("size", [(1, 1), (4, 4), (7, 7), (8, 16), (16, 8), (16, 16), (9, 8)],
                         ids=lambda size: f"{size[1]}x{size[0]}")
def test_frame_of_wrong_size_is_an_input_error(server, real_session, size):
    """A consistent frame of another size than the session renders (16x16 display at scale 2: 8x8), smaller
    than the network's pooling or not: kind "input", naming both sizes; nothing logged."""
    before = log_length(server, 0)
    arrays = clean_frame(size)
    slots, nbytes = segments.plan_layout(arrays)
    if nbytes > real_session.segment.size:
        real_session.grow(nbytes)
    real_session.write(arrays, slots)
    COUNT["sent"] += 1
    reply = real_session.conn.request(real_session.step_message([slot.to_dict() for slot in slots]))
    h, w = size
    assert_error(reply, "input", [f"the buffers are {w}x{h}, but this session takes 8x8"])
    assert log_length(server) == before, server.log_text()[before:]


def test_real_session_still_works_after_hostile_frames(real_session):
    real_session.write(real_session.arrays)
    reply = real_session.conn.request(real_session.step_message())
    assert reply["ok"] is True and reply["shape"] == [16, 16, 3] and reply["fallback"] is False, reply
    output = segments.attach(real_session.output_name)
    try:
        assert np.isfinite(np.ndarray((16, 16, 3), np.float32, buffer=output.buf)).all()
    finally:
        output.close()


# --- what the server answers to messages it cannot decode, and to settings it cannot run ---------------------

def log_length(server: Server, settle: float = 0.02) -> int:
    """The length of the server's log so far (the server logs before it replies; ``settle``: let the stderr
    reader catch up)."""
    time.sleep(settle)
    return len(server.log_text())


@pytest.mark.parametrize("body", [
    b'{"x":' + b"[" * 2000 + b"]" * 2000 + b',"op":"status"}',  # past the recursion limit, before the tag
    b'{"op":"status","x":' + b"[" * 2000 + b"]" * 2000 + b"}",  # ... after it
    b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 20_000 + b"1" + b"}" * 20_000],
    ids=["before_op", "after_op", "bare_lists", "objects"])
def test_deep_nesting_is_a_protocol_error(server, fuzzer, body):
    """Nesting deeper than the decoder follows: kind "protocol", nothing logged, the connection stays open."""
    before = log_length(server, 0)
    assert_error(fuzzer.conn.exchange(body), "protocol", ["malformed request"])
    assert fuzzer.conn.request({"op": "status"})["ok"] is True
    assert log_length(server) == before, server.log_text()[before:]


@pytest.mark.parametrize("greet", [False, True], ids=["before_hello", "after_hello"])
@pytest.mark.parametrize("body", [b'{"op":"hello","version":1,"client":"\xff"}', b'{"op":"sta\xfftus"}',
                                  b'{"\xc3\x28":1,"op":"status"}',
                                  b'{"op":"hello","version":1,"client":"\xed\xa0\x80"}'],  # encoded surrogate
                         ids=["in_value", "in_tag", "in_key", "surrogate"])
def test_invalid_utf8_is_a_protocol_error(server, greet, body):
    """Invalid UTF-8 inside a JSON string: kind "protocol", nothing logged; before hello the connection closes
    after the reply, after hello it stays open."""
    before = log_length(server, 0)
    conn = server.connect(greet=greet)
    try:
        assert_error(conn.exchange(body), "protocol", ["malformed request"])
        if greet:
            assert conn.request({"op": "status"})["ok"] is True
        else:
            assert conn.closed_by_peer(), "a malformed message before hello must close the connection"
    finally:
        conn.close()
    assert log_length(server) == before, server.log_text()[before:]


@pytest.mark.parametrize("message", [
    {"op": "\u00e9" * 50_000},  # 100 KB sent; JSON-escaped in the error (6 bytes a character) it was 300 KB
    {"op": "A" * 200_000},
    {"op": "open", "settings": {"precision": "\u00e9" * 40_000}},  # a Literal field quotes its value too
    {"op": "step", "session": 1, "layout": [{"name": "\u00e9" * 40_000, "shape": [8], "offset": 0}],
     "camera": CAMERA}],
    ids=["op_utf8", "op_ascii", "precision", "slot_name"])
def test_long_hostile_value_gets_a_short_protocol_error(server, message):
    """A long invalid value quoted by the decoder: an ordinary "protocol" error, cut to MAX_ERROR characters
    (saying how many more there were), far under MAX_MESSAGE; the connection stays open."""
    before = log_length(server, 0)
    conn = server.connect()
    try:
        body = json.dumps(message, ensure_ascii=False).encode()
        assert len(body) <= MAX_MESSAGE
        reply = conn.exchange(body)
        assert_error(reply, "protocol", ["malformed request", "more characters)"])
        assert MAX_ERROR < len(reply["error"]) <= MAX_ERROR + 40, len(reply["error"])
        assert conn.request({"op": "status"})["ok"] is True
    finally:
        conn.close()
    assert log_length(server) == before, server.log_text()[before:]


UNUSABLE_DEVICES = ["mps", "xla", "vulkan", "meta", "cpu:1", "cpu:0", "CPU", "cuda:", "cuda:x", "cuda:99", "hip",
                    "ipu", "opengl", "ve", "lazy", "privateuseone"]


@pytest.mark.parametrize("device", UNUSABLE_DEVICES + ([] if torch.cuda.is_available() else ["cuda", "cuda:0"]))
def test_unusable_device_is_a_settings_error(server, fuzzer, device):
    """A device torch.device() may parse but the sessions do not run on (or a GPU this machine lacks): refused
    at open, kind "settings", naming the device, before any network loads."""
    before = log_length(server, 0)
    reply = fuzzer.conn.request({"op": "open", "settings": {**SANE_SETTINGS, "device": device}})
    assert_error(reply, "settings", [repr(device)])
    if not device.startswith("cuda") or device in ("cuda:", "cuda:x"):
        assert "unknown device" in reply["error"], reply
    assert log_length(server) == before, server.log_text()[before:]


@pytest.mark.parametrize("display,scale", [([8, 8], 2.0), ([14, 64], 2.0), ([64, 29], 4.0), ([11, 11], 1.5),
                                           ([MAX_SIDE, 8], 1.5), ([8, MAX_SIDE], 3.0)])
def test_session_rendering_under_8_pixels_is_a_settings_error(fuzzer, display, scale):
    """Display / scale (rounded) under MIN_RENDER pixels on a side: refused at open, kind "settings", before
    any network loads (a frame that small would reach the network's pooling and fail there)."""
    settings_ = {**SANE_SETTINGS, "display_size": display, "scale": scale}
    assert cheaply_invalid(schema.decode_request(json.dumps({"op": "open", "settings": settings_}).encode()).settings)
    assert_error(fuzzer.conn.request({"op": "open", "settings": settings_}), "settings",
                 [f"at least {MIN_RENDER} pixels per side"])


@pytest.mark.parametrize("where,value", [
    ("display_size", [MAX_SIDE + 1, 16]), ("display_size", [16, MAX_SIDE + 1]), ("display_size", [16384, 16384]),
    ("camera", [MAX_SIDE + 1, 16]), ("slot", [MAX_SIDE + 1]), ("slot", [8, MAX_SIDE + 1, 3])])
def test_sizes_over_max_side_are_protocol_errors(fuzzer, where, value):
    """Display sizes, camera resolutions and array shapes over schema.MAX_SIDE: refused by the schema."""
    if where == "display_size":
        message = {"op": "open", "settings": {**SANE_SETTINGS, "display_size": value}}
    else:
        layout = copy.deepcopy(STEP_LAYOUT)
        cam = dict(CAMERA)
        if where == "camera":
            cam["resolution"] = value
        else:
            layout[0]["shape"] = value
        message = {"op": "step", "session": 1, "layout": layout, "camera": cam}
    assert_error(fuzzer.conn.request(message), "protocol", ["malformed request", str(MAX_SIDE)])


# --- afterwards: a good client, no leftovers, a clean log ----------------------------------------------------

def test_good_client_after_fuzz(server, fuzzer, real_session):
    """The real client still gets exactly the in-process images; the fuzz connections leave nothing behind."""
    from bridge.client import ServerRuntime
    from bridge.runtime import connect

    # Close the raw connections, then the server must drop their sessions and segments (within 5 s).
    fuzzer.close()
    real_session.close()
    deadline = time.monotonic() + 5
    while True:
        status = server.status()
        if (status["sessions"], status["clients"], status["segments"]) == (0, 1, []) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (status["sessions"], status["clients"], status["segments"]) == (0, 1, []), status

    remote_runtime = ServerRuntime(address=server.address, start=False, timeout=30)
    local_runtime = connect("inprocess")
    try:
        remote = remote_runtime.open_session("ss", display_size=(16, 16), scale=2.0, policy="every:2")
        local = local_runtime.open_session("ss", display_size=(16, 16), scale=2.0, policy="every:2")
        previous = None
        for i in range(3):
            arrays = clean_frame(seed=100 + i)
            buffers = FrameBuffers(**arrays, camera=camera(i + 1))
            hints = buffers.hints(previous)
            assert remote.next_render(hints) == local.next_render(hints)
            got, want = remote.step(buffers, hints), local.step(buffers, hints)
            assert not got.fallback and not want.fallback
            assert got.image.shape == (16, 16, 3)
            assert np.array_equal(got.image, want.image), f"frame {i}: max diff {np.abs(got.image - want.image).max()}"
            assert got.refreshed == want.refreshed and got.network_ran == want.network_ran
            previous = buffers
        assert remote.stats()["frames"] == 3
    finally:
        remote_runtime.close()
        local_runtime.close()

    deadline = time.monotonic() + 5
    while (status := server.status())["sessions"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status["sessions"] == 0 and status["segments"] == [], status

    time.sleep(0.2)  # let the stderr reader catch up
    log = server.log_text()
    assert not server.tracebacks(), f"the server logged tracebacks: {server.tracebacks()}\n{log[-6000:]}"
    for text in ("Traceback", "request failed", "closing a session failed"):
        assert text not in log, log[-6000:]

    if FUZZ_TESTS <= RAN:  # the whole module ran (not a -k selection)
        assert COUNT["errors"] >= MIN_ERRORS, COUNT
    print(f"\nfuzz messages sent: {COUNT['sent']}, error replies checked: {COUNT['errors']}, reconnects of the "
          f"fuzz connection (after a wrong-version hello): {fuzzer.reconnects}; on the fuzz connection, "
          f"verdict: reply kind -> count: {dict(sorted(OUTCOMES.items()))}")
