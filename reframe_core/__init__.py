"""ReFrame core: layer caching for encoder-decoder networks, refresh policies, networks, metrics.

Pure PyTorch + numpy: never imports bpy.
"""
from .cache import CachedModel, CacheStats, Decision, cache_model
from .cuts import CutError, CutPlan, GraphAnalysis
from .hints import CameraHints
from .policies import PolicySpecError, RefreshPolicy, parse_policy

__version__ = "0.1.0"

__all__ = [
    "CachedModel", "CacheStats", "CameraHints", "CutError", "CutPlan", "Decision", "GraphAnalysis",
    "PolicySpecError", "RefreshPolicy", "cache_model", "parse_policy",
]
