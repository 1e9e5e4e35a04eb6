"""Real furniture for scenes: the CC0 Blend Swap catalog that Sweet Home 3D's furniture package ships.

The models and their textures are made by people, not by our code, which is why a scene built from them can
stand for "content we did not make". Debian and Ubuntu package the catalog (``apt-get install
sweethome3d-furniture``, 120 MB) as a zip (``.sh3f``) of OBJ/MTL files, textures and a properties file that gives
each model's real size in centimetres. Models are extracted once into a cache folder and imported through
Blender's own OBJ importer, so their materials are the image textures the authors painted.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reframe_core.errors import SettingsError

CATALOG_ENV = "REFRAME_SH3D_CATALOG"
CATALOG_PATHS = ("/usr/share/sweethome3d/furniture/BlendSwap-CC-0.sh3f",)
INSTALL_HINT = (f"install Sweet Home 3D's furniture catalog (Debian/Ubuntu: `sudo apt-get install sweethome3d-furniture`) "
                f"or set {CATALOG_ENV} to a BlendSwap-CC-0.sh3f file")


@dataclass(frozen=True)
class CatalogModel:
    name: str  # the model's folder in the catalog, e.g. "couch"
    obj_path: str  # inside the zip
    size_cm: tuple[float, float, float]  # width (x), depth (y), height (z) as Sweet Home 3D places it
    elevation_cm: float
    creator: str
    rotated: bool = False  # the catalog turns the OBJ with a modelRotation matrix (not supported: refused)


def catalog_path() -> Path:
    candidates = [os.environ[CATALOG_ENV]] if os.environ.get(CATALOG_ENV) else list(CATALOG_PATHS)
    for candidate in candidates:
        if Path(candidate).is_file():
            return Path(candidate)
    raise SettingsError(f"this scene is built from real furniture models and none were found at {', '.join(candidates)}: "
                        f"{INSTALL_HINT}")


def read_catalog(path: Path) -> dict[str, CatalogModel]:
    entries: dict[int, dict[str, str]] = {}
    with zipfile.ZipFile(path) as archive:
        text = archive.read("PluginFurnitureCatalog.properties").decode("latin-1")
    for line in text.splitlines():
        match = re.match(r"(\w+)#(\d+)=(.*)", line.strip())
        if match:
            entries.setdefault(int(match[2]), {})[match[1]] = match[3]
    models = {}
    for entry in entries.values():
        if "model" not in entry:
            continue
        obj_path = entry["model"].lstrip("/")
        name = obj_path.split("/")[-2]
        models[name] = CatalogModel(name, obj_path, (float(entry["width"]), float(entry["depth"]), float(entry["height"])),
                                    float(entry.get("elevation", 0)), entry.get("creator", ""), "modelRotation" in entry)
    return models


def catalog_available() -> bool:
    """Whether :func:`catalog_path` finds a catalog (the tests' and CI's check)."""
    try:
        catalog_path()
    except SettingsError:
        return False
    return True


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "reframe-blender" / "sweethome3d"


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    """One file of the catalog into the cache, unless a complete copy is there: written to a temporary name and
    renamed, so a killed run or a second build extracting at the same time never leaves a cut-short file."""
    path = target / info.filename
    if path.is_file() and path.stat().st_size == info.file_size:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out, archive.open(info) as source:
            shutil.copyfileobj(source, out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FurnitureCatalog:
    """Opens the catalog once; ``place`` imports a model at its real size, standing on the floor at ``location``."""

    # bpy is imported where a model is placed, so the catalog can be found and read (and tests can check for it)
    # without Blender.
    def __init__(self, path: Path | None = None):
        self.path = path or catalog_path()
        self.models = read_catalog(self.path)
        self._imported: dict[str, "bpy.types.Object"] = {}

    def extract(self, name: str) -> Path:
        if name not in self.models:
            raise SettingsError(f"no model {name!r} in {self.path}; it has {len(self.models)} models, e.g. "
                                f"{', '.join(sorted(self.models)[:8])}")
        if self.models[name].rotated:
            raise SettingsError(f"model {name!r} of {self.path} needs the catalog's modelRotation, which this importer "
                                f"does not apply; choose another model")
        folder = self.models[name].obj_path.rsplit("/", 1)[0] + "/"
        stat = self.path.stat()
        # Keyed by the catalog's size and time too: another catalog file of the same name gets its own copy.
        target = cache_dir() / f"{self.path.stem}-{stat.st_size}-{int(stat.st_mtime)}"
        with zipfile.ZipFile(self.path) as archive:
            for info in archive.infolist():
                if info.filename.startswith(folder) and not info.is_dir():
                    _extract_member(archive, info, target)
        return target / self.models[name].obj_path

    def place(self, name: str, location, rotation_deg: float = 0.0, elevation_cm: float | None = None) -> "bpy.types.Object":
        """A copy of the model (imported once, then linked duplicates) at ``location`` (x, y on the floor, metres)."""
        import bpy

        if name in self._imported:
            obj = self._imported[name].copy()  # a linked duplicate: the mesh and textures are shared
            bpy.context.scene.collection.objects.link(obj)
        else:
            obj = self._imported[name] = self._import(name)
        model = self.models[name]
        elevation = model.elevation_cm if elevation_cm is None else elevation_cm
        obj.location = (location[0], location[1], (location[2] if len(location) > 2 else 0.0) + elevation / 100.0)
        obj.rotation_euler = (0.0, 0.0, math.radians(rotation_deg))
        return obj

    def _import(self, name: str) -> "bpy.types.Object":
        import bpy

        obj_file = self.extract(name)
        before = set(bpy.data.objects)
        # Sweet Home 3D models are Y-up OBJ like most; the importer turns them Z-up.
        bpy.ops.wm.obj_import(filepath=str(obj_file), forward_axis="NEGATIVE_Z", up_axis="Y")
        parts = [o for o in bpy.data.objects if o not in before and o.type == "MESH"]
        if not parts:
            raise SettingsError(f"{obj_file} imported no mesh; the catalog file may be damaged: {INSTALL_HINT}")
        # One object per model: join the parts, then centre it and scale it to the catalog's real size.
        for o in bpy.context.selected_objects:
            o.select_set(False)
        for o in parts:
            o.select_set(True)
        bpy.context.view_layer.objects.active = parts[0]
        if len(parts) > 1:
            bpy.ops.object.join()
        obj = bpy.context.view_layer.objects.active
        obj.name = name
        bpy.ops.object.transform_apply(location=True, rotation=True, scale=True)
        count = len(obj.data.vertices)
        coords = np.empty(count * 3, np.float64)
        obj.data.vertices.foreach_get("co", coords)
        coords = coords.reshape(count, 3)
        low, high = coords.min(axis=0), coords.max(axis=0)
        scale = np.asarray(self.models[name].size_cm) / 100.0 / np.maximum(high - low, 1e-6)
        centre = np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]])
        obj.data.vertices.foreach_set("co", ((coords - centre) * scale).astype(np.float32).ravel())
        obj.data.update()
        # Kept for checking: one model in the right axes needs about the same factor on every axis.
        obj["catalog_scale"] = [float(v) for v in scale]
        obj.select_set(False)
        return obj
