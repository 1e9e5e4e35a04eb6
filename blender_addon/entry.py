"""The installed extension's ``__init__.py`` (``reframe-blender addon build`` writes this file there).

The extension carries the project's pure-Python packages (``reframe_core``, ``bridge``, ``blender_addon``) in
its ``lib`` folder; they import each other by those names, so ``lib`` goes on ``sys.path`` while the add-on is
enabled. ``bl_info`` is for Blender before 4.2 (legacy add-ons); 4.2+ reads ``blender_manifest.toml``.
"""
import sys
from pathlib import Path

bl_info = {
    "name": "ReFrame",
    "description": "Cached neural supersampling and frame extrapolation for EEVEE",
    "author": "ReFrame for Blender developers",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "Render Properties > ReFrame; Render menu; 3D View sidebar > ReFrame",
    "category": "Render",
}

HERE = Path(__file__).resolve().parent
LIB = str(HERE / "lib")


def _numpy():
    """Blender 2.8+ bundles numpy; a distribution's Blender on the system Python may not (Debian's 3.4). There,
    ``reframe-blender addon install`` leaves ``environment.json`` naming the runtime environment's site-packages,
    which are appended (after Blender's own modules)."""
    try:
        import numpy  # noqa: F401
        return
    except ImportError:
        pass
    import json

    try:
        folders = json.loads((HERE / "environment.json").read_text())["site_packages"]
    except (OSError, ValueError, KeyError):
        folders = []
    sys.path.extend(f for f in folders if f not in sys.path)
    try:
        import numpy  # noqa: F401,F811
    except ImportError as exc:
        raise ImportError("ReFrame needs numpy in Blender's Python, which this Blender lacks: install it (Debian: "
                          "apt-get install python3-numpy), or run 'reframe-blender addon install --blender "
                          f"{sys.executable}' from the project, which points Blender at its environment") from exc


def register():
    _numpy()
    if LIB not in sys.path:
        sys.path.insert(0, LIB)
    from blender_addon import addon

    addon.register(__name__)


def unregister():
    from blender_addon import addon

    addon.unregister()
    if LIB in sys.path:
        sys.path.remove(LIB)
    # Forget the modules loaded from here, so an upgrade (or re-enabling) imports the new files, not the old ones.
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(LIB):
            del sys.modules[name]
