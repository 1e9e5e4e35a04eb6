"""Typed schemas of every request the server accepts (server side: msgspec validates before any field is used).

A request is a JSON object tagged by ``op``; unknown fields, wrong types, out-of-range numbers and oversized
lists are rejected by :func:`decode_request` with msgspec's message naming the field (``... at `$.layout[0].shape```).
New optional fields need defaults, so that older clients of the same protocol version still validate.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

import msgspec
from msgspec import Meta, Struct

from bridge.segments import Slot
from reframe_core.frames.buffers import FrameBuffers

ARRAY_NAMES = (*FrameBuffers.CHANNELS, *FrameBuffers.OPTIONAL, "jitter")
MAX_SIDE = 8192  # pixels per image side (8K): a larger display would take the server's memory for minutes
MAX_SEGMENT = 4 << 30  # bytes of one input segment (a 16k frame's buffers fit)

Side = Annotated[int, Meta(ge=1, le=MAX_SIDE)]
Row4 = Annotated[list[float], Meta(min_length=4, max_length=4)]
Matrix4 = Annotated[list[Row4], Meta(min_length=4, max_length=4)]
Name = Annotated[str, Meta(max_length=256)]
SessionId = Annotated[int, Meta(ge=1, le=2**31)]


class _Request(Struct, tag_field="op", forbid_unknown_fields=True):
    pass


class Hello(_Request, tag="hello"):
    version: int
    client: Name = ""
    token: Annotated[str, Meta(max_length=128)] | None = None


class Settings(Struct, forbid_unknown_fields=True):
    """:class:`reframe_core.runtime.session.SessionSettings` on the wire (the session checks the values)."""

    workload: Annotated[str, Meta(max_length=16)] = "ss"
    display_size: Annotated[list[Side], Meta(min_length=2, max_length=2)] = msgspec.field(default_factory=lambda: [1080, 1920])
    scale: Annotated[float, Meta(gt=0, le=16)] = 2.0
    policy: Annotated[str, Meta(max_length=256)] | None = "motion"
    k: Annotated[int, Meta(ge=1, le=1000)] = 2
    device: Annotated[str, Meta(max_length=32)] = "cpu"
    precision: Literal["fp32", "fp16", "bf16", "mixed"] = "mixed"
    channels_last: bool = False
    weights: Annotated[str, Meta(max_length=4096)] | None = None
    cut: Annotated[str, Meta(max_length=64)] = "auto"
    reproject: bool = False


class Open(_Request, tag="open"):
    settings: Settings


class Hints(Struct, forbid_unknown_fields=True):
    frame: int
    world_matrix: Matrix4
    projection: Matrix4
    cut: bool = False
    scene_depth: float | None = None
    camera_name: Name = ""


class NextRender(_Request, tag="next_render"):
    session: SessionId
    hints: Hints | None = None


class Buffers(_Request, tag="buffers"):
    """Make the session's input segment at least ``nbytes`` long (the reply names it)."""

    session: SessionId
    nbytes: Annotated[int, Meta(ge=1, le=MAX_SEGMENT)]


class SlotSpec(Struct, forbid_unknown_fields=True):
    name: Literal[ARRAY_NAMES]
    shape: Annotated[list[Side], Meta(min_length=1, max_length=3)]
    offset: Annotated[int, Meta(ge=0, le=MAX_SEGMENT)]
    dtype: Literal["float32"] = "float32"

    def slot(self) -> Slot:
        return Slot(self.name, tuple(self.shape), self.offset, self.dtype)


class Camera(Struct, forbid_unknown_fields=True):
    """:class:`reframe_core.frames.buffers.CameraData` on the wire."""

    frame: int
    name: Name
    world_matrix: Matrix4
    projection: Matrix4
    lens_mm: float
    fov_x_deg: float
    fov_y_deg: float
    clip_start: float
    clip_end: float
    resolution: Annotated[list[Side], Meta(min_length=2, max_length=2)]
    shift: Annotated[list[float], Meta(min_length=2, max_length=2)] = msgspec.field(default_factory=lambda: [0.0, 0.0])


class Step(_Request, tag="step"):
    session: SessionId
    layout: Annotated[list[SlotSpec], Meta(min_length=1, max_length=len(ARRAY_NAMES))]
    camera: Camera
    has_vector_pass: bool = True
    hints: Hints | None = None


class SessionCall(_Request):
    session: SessionId


class Stats(SessionCall, tag="stats"):
    pass


class Reset(SessionCall, tag="reset"):
    pass


class Close(SessionCall, tag="close"):
    pass


class Release(_Request, tag="release"):
    """Close this client's sessions and return the device memory they held."""


class Status(_Request, tag="status"):
    pass


class Machine(_Request, tag="machine"):
    pass


Request = Union[Hello, Open, NextRender, Buffers, Step, Stats, Reset, Close, Release, Status, Machine]
_decoder = msgspec.json.Decoder(Request)


class _VersionProbe(Struct):
    """Only what every protocol version's hello holds: read leniently, so that a newer client's hello (with
    fields this server does not know) still gets the version mismatch named, not a schema error."""

    op: str = ""
    version: int | None = None


def hello_version(body: bytes) -> int | None:
    """The version a hello announces, or None when ``body`` is not a readable hello."""
    try:
        probe = msgspec.json.decode(body, type=_VersionProbe)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    return probe.version if probe.op == "hello" else None


def decode_request(body: bytes):
    """The typed request in ``body``; raises ``msgspec.ValidationError`` / ``msgspec.DecodeError`` naming the fault."""
    return _decoder.decode(body)


def to_builtins(value) -> dict:
    return msgspec.to_builtins(value)
