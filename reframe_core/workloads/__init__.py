"""The workloads (SS, FE): one file each, and this registry. A new workload is a file with a
:class:`~reframe_core.workloads.base.Workload` subclass plus one line in ``WORKLOADS`` and one in ``FACTS``
(what Blender's side, which has no torch, needs to know of it).

Every front end (``render``, ``bench``, ``eval``, ``train``, the demo, the runtime session) asks this registry
for the workload by name and calls only its methods.
"""
from __future__ import annotations

import importlib
import inspect

from reframe_core.errors import SettingsError
from reframe_core.workloads.base import RenderRequest, StepResult, Workload, WorkloadFacts

# name -> "module:class" (imported on first use: the modules need torch)
WORKLOADS = {
    "ss": "reframe_core.workloads.supersampling:SupersamplingWorkload",
    "fe": "reframe_core.workloads.extrapolation:ExtrapolationWorkload",
}

# name -> what torch-free front ends need (no import of the workload's module)
FACTS = {
    "ss": WorkloadFacts(weights="ss_x{scale:g}", renders_scaled=True, period_is_k=False),
    "fe": WorkloadFacts(weights="fe_extranet", renders_scaled=False, period_is_k=True),
}

__all__ = ["FACTS", "WORKLOADS", "RenderRequest", "StepResult", "Workload", "WorkloadFacts", "get_workload",
           "workload_facts", "workload_for_network"]


def workload_facts(name: str) -> WorkloadFacts:
    """The torch-free facts of workload ``name`` (weights file, render scale, period)."""
    if name not in FACTS:
        raise SettingsError(f"unknown workload {name!r}: use one of {', '.join(FACTS)}")
    return FACTS[name]


def get_workload(name: str, **options) -> Workload:
    """The workload called ``name`` (``ss``, ``fe``); ``options`` go to its constructor (FE: ``k``)."""
    if name not in WORKLOADS:
        raise SettingsError(f"unknown workload {name!r}: use one of {', '.join(WORKLOADS)}")
    module, cls = WORKLOADS[name].split(":")
    workload_cls = getattr(importlib.import_module(module), cls)
    takes = inspect.signature(workload_cls).parameters
    accepted = {k: v for k, v in options.items() if k in takes}
    return workload_cls(**accepted)


def workload_for_network(arch: str) -> Workload | None:
    """The workload that runs network ``arch`` (``ss``, ``extranet``), or None for the reference nets."""
    for name in WORKLOADS:
        workload = get_workload(name)
        if workload.arch == arch:
            return workload
    return None
