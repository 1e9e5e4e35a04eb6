"""ReFrame core: layer caching for encoder-decoder networks, refresh policies, networks, metrics.

Pure PyTorch + numpy: never imports bpy. Names are imported on first use, so that torch-free parts
(``reframe_core.frames.hints``, ``reframe_core.frames.buffers``, ``reframe_core.blender_compat``) load without torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "CachedModel": "caching.cache", "CacheStats": "caching.cache", "Decision": "caching.cache",
    "cache_model": "caching.cache",
    "CutError": "caching.cuts", "CutPlan": "caching.cuts", "GraphAnalysis": "caching.cuts",
    "CameraHints": "frames.hints",
    "PolicySpecError": "policies", "RefreshPolicy": "policies", "parse_policy": "policies",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'reframe_core' has no attribute {name!r}")
