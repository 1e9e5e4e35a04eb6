"""Frame ranges as the command line writes them."""
from __future__ import annotations

from reframe_core.errors import SettingsError


def parse_frames(text: str) -> range:
    """'A-B' or 'A' -> range(A, B + 1)."""
    first, sep, last = str(text).partition("-")
    try:
        start, stop = int(first), int(last) if sep else int(first)
    except ValueError:
        raise SettingsError(f"bad frame range {text!r}: use A-B, e.g. 1-24, or one frame number") from None
    if stop < start:
        raise SettingsError(f"bad frame range {text!r}: the last frame comes before the first")
    return range(start, stop + 1)
