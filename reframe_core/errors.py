"""The project's error types: one base class, caught at the CLI edge (one line, exit status 2) and by the
add-on's operators (a report). Anything else is a bug and keeps its traceback."""
from __future__ import annotations


class ReframeError(Exception):
    """A problem with what the user asked for or gave; the message says what was wrong and how to fix it."""


class SettingsError(ReframeError, ValueError):
    """A bad setting or combination of settings (a value out of range, an unknown name)."""


class MissingInputError(ReframeError, FileNotFoundError):
    """A file or folder the job needs is not there."""
