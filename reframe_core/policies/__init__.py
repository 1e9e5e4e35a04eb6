"""Refresh policies and the one spec-string syntax shared by the CLI, the add-on and reports.

Spec grammar: ``MEMBER[+MEMBER...]``, each member ``name[:arg,...]`` where an arg is a value or
``key=value``. Examples: ``always``, ``every:4``, ``delta:0.1``, ``motion:rot=3``, ``delta:0.1+max-age:8``.
Two such specs joined by ``/`` make a graded refresh (``FULL/PARTIAL``, :mod:`reframe_core.policies.graded`).
A new policy is one file plus one line in ``POLICIES``.
"""
from __future__ import annotations

from reframe_core.policies.always import AlwaysRefresh
from reframe_core.policies.base import AnyOf, FrameContext, PolicySpecError, RefreshPolicy
from reframe_core.policies.delta import DeltaInput, smape
from reframe_core.policies.every import EveryN
from reframe_core.policies.graded import GradedRefresh
from reframe_core.policies.max_age import MaxAge
from reframe_core.policies.motion import CameraMotion
from reframe_core.policies.screen import ScreenMotion

POLICIES: dict[str, type[RefreshPolicy]] = {
    cls.name: cls for cls in (AlwaysRefresh, EveryN, DeltaInput, CameraMotion, ScreenMotion, MaxAge)
}


def policy_forms() -> str:
    """The valid spec forms, one per line (used in error messages and --help)."""
    lines = [f"  {cls.usage:<62} {cls.summary}" for cls in POLICIES.values()]
    lines.append(f"  {AnyOf.usage:<62} {AnyOf.summary}")
    lines.append(f"  {GradedRefresh.usage:<62} {GradedRefresh.summary}")
    return "\n".join(lines)


def _parse_member(text: str) -> RefreshPolicy:
    name, _, rest = text.partition(":")
    name = name.strip()
    if name not in POLICIES:
        raise PolicySpecError(f"unknown policy {name!r} in {text!r}. Valid forms:\n{policy_forms()}")
    positional: list[str] = []
    options: dict[str, str] = {}
    for arg in filter(None, (a.strip() for a in rest.split(","))) if rest else ():
        key, eq, value = arg.partition("=")
        if eq:
            options[key.strip()] = value.strip()
        else:
            positional.append(arg)
    try:
        return POLICIES[name].from_spec(positional, options)
    except (ValueError, TypeError) as exc:
        raise PolicySpecError(f"bad policy {text!r}: {exc}. Valid forms:\n{policy_forms()}") from None


def parse_policy(spec: str | RefreshPolicy) -> RefreshPolicy:
    """Build a policy from a spec string (or return a policy object unchanged).

    >>> parse_policy("delta:0.1+max-age:8").spec
    'delta:0.1+max-age:8'
    """
    if isinstance(spec, RefreshPolicy):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise PolicySpecError(f"a policy spec must be a non-empty string, got {spec!r}. Valid forms:\n{policy_forms()}")
    grades = spec.split("/")
    if len(grades) > 2:
        raise PolicySpecError(f"graded policy {spec!r} has {len(grades)} grades; write FULL/PARTIAL (two specs). "
                              f"Valid forms:\n{policy_forms()}")
    if len(grades) == 2:
        if not all(g.strip() for g in grades):
            raise PolicySpecError(f"graded policy {spec!r} needs a spec on each side of '/', e.g. every:8/every:2")
        return GradedRefresh(parse_policy(grades[0]), parse_policy(grades[1]))
    members = [_parse_member(part) for part in spec.split("+")]
    return members[0] if len(members) == 1 else AnyOf(members)


def split_policy_list(text: str) -> list[str]:
    """Split a comma-separated list of specs, keeping commas that belong to one spec's arguments.

    >>> split_policy_list("every:2,delta:0.2,input=1,motion:trans=0.1,rot=4")
    ['every:2', 'delta:0.2,input=1', 'motion:trans=0.1,rot=4']
    """
    specs: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        head = piece.split("+", 1)[0].split(":", 1)[0].strip()
        if specs and head not in POLICIES and "=" in head:  # a key=value of the spec before it (",rot=4")
            specs[-1] += "," + piece
        else:
            specs.append(piece)
    return specs


__all__ = [
    "AlwaysRefresh", "AnyOf", "CameraMotion", "DeltaInput", "EveryN", "FrameContext", "GradedRefresh", "MaxAge",
    "POLICIES", "PolicySpecError", "RefreshPolicy", "ScreenMotion", "parse_policy", "policy_forms", "smape", "split_policy_list",
]
