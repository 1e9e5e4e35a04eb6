"""The scene library, built with the real bpy module: each scene does what the README's scene table says."""
import math

import pytest

bpy = pytest.importorskip("bpy")

from mathutils import Vector  # noqa: E402

from reframe_core.blender_compat import action_fcurves  # noqa: E402
from scenes import SCENES, get_scene  # noqa: E402
from scenes.sweethome3d import catalog_available  # noqa: E402

pytestmark = pytest.mark.blender
# Locally a missing Debian package skips (CI fails instead: conftest).
needs_catalog = pytest.mark.skipif(not catalog_available(),
                                   reason="no furniture catalog (apt-get install sweethome3d-furniture)")
REAL_ASSET_SCENES = {"furnished_room", "sunlit_kitchen", "bedroom_study"}


def _snapshot():
    return sorted((o.name, tuple(round(v, 5) for v in o.location), o.type) for o in bpy.data.objects)


def _camera(scene, frame):
    """(active camera name, position, unit view direction) at ``frame``, evaluated by Blender."""
    scene.frame_set(frame)
    matrix = scene.camera.matrix_world
    return scene.camera.name, matrix.translation.copy(), (matrix.to_3x3() @ Vector((0, 0, -1))).normalized()


def _degrees(a, b):
    return math.degrees(a.angle(b, 0.0))


def _mean_turn_per_frame(scene):
    views = [_camera(scene, f)[2] for f in range(scene.frame_start, scene.frame_end + 1)]
    return sum(_degrees(a, b) for a, b in zip(views, views[1:])) / (len(views) - 1)


def _matrices(scene, frame):
    scene.frame_set(frame)
    return {o.name: [list(row) for row in o.matrix_world] for o in scene.objects if o.type == "MESH"}


def _principled(obj):
    mat = obj.active_material
    return mat.node_tree.nodes.get("Principled BSDF") if mat is not None and mat.node_tree else None


def _emissive(obj):
    bsdf = _principled(obj)
    return bsdf is not None and bsdf.inputs["Emission Strength"].default_value > 1.0


def _see_through(obj):
    bsdf = _principled(obj)
    return bsdf is not None and (bsdf.inputs["Alpha"].is_linked or bsdf.inputs["Alpha"].default_value < 1.0)


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs_catalog) if n in REAL_ASSET_SCENES else n for n in sorted(SCENES)])
def test_each_scene_builds_with_a_camera_materials_and_motion(name):
    scene = get_scene(name).build(0)
    assert scene.camera is not None and scene.camera.type == "CAMERA"
    assert scene.frame_end - scene.frame_start >= 24 and scene.world is not None
    meshes = [o for o in scene.objects if o.type == "MESH"]
    assert meshes and all(o.active_material is not None for o in meshes), "every surface has a material"
    first = (_camera(scene, scene.frame_start)[1:], _matrices(scene, scene.frame_start))
    last = (_camera(scene, scene.frame_end)[1:], _matrices(scene, scene.frame_end))
    assert first != last, "every scene moves something between its first and last frame"


def test_builders_are_deterministic_per_seed():
    get_scene("thin_detail").build(3)
    first = _snapshot()
    get_scene("thin_detail").build(3)
    assert _snapshot() == first
    get_scene("thin_detail").build(4)
    assert _snapshot() != first


def test_static_objects_keeps_the_camera_still_while_objects_move():
    scene = get_scene("static_objects").build(0)
    cameras = [_camera(scene, f) for f in (1, 24, 48)]
    assert all(c[1] == cameras[0][1] and c[2] == cameras[0][2] for c in cameras)
    start, middle = _matrices(scene, 1), _matrices(scene, 24)
    moving = [name for name in start if start[name] != middle[name]]
    assert len(moving) >= 3, moving  # turntable (with what stands on it), rolling ball, swinging sign


def test_slow_pan_turns_a_fixed_camera_slowly_and_fast_orbit_much_faster():
    pan = get_scene("slow_pan").build(0)
    positions = {tuple(_camera(pan, f)[1]) for f in (1, 24, 48)}
    assert len(positions) == 1, "a pan turns the camera in place"
    pan_turn = _mean_turn_per_frame(pan)
    assert 0.1 < pan_turn < 1.0

    orbit = get_scene("fast_orbit").build(0)
    orbit_turn = _mean_turn_per_frame(orbit)
    assert orbit_turn > 5 * pan_turn
    # Half a turn around the garden's centre from the first to the last frame (48 frames at 24 fps: 2 s) ...
    _, start, _ = _camera(orbit, 1)
    _, end, _ = _camera(orbit, 48)
    assert orbit.render.fps == 24
    assert _degrees(start.to_2d(), end.to_2d()) == pytest.approx(180, abs=1)
    # ... always looking at it.
    for frame in (1, 12, 30, 48):
        _, position, view = _camera(orbit, frame)
        assert _degrees(view, Vector((0, 0, 1.0)) - position) < 1


def test_dolly_moves_forward_along_the_view_through_a_lit_corridor():
    scene = get_scene("dolly_interior").build(0)
    _, start, view = _camera(scene, 1)
    _, end, view_end = _camera(scene, 48)
    assert _degrees(view, view_end) < 0.01 and (end - start).length > 5
    assert _degrees(end - start, view) < 1, "the camera travels where it looks"
    walls = [o for o in scene.objects if o.type == "MESH" and o.dimensions.y > 20 and o.dimensions.z > 2]
    sides = sorted(o.location.x - start.x for o in walls)
    assert sides[0] < 0 < sides[-1], "walls on both sides of the camera"
    assert any(o.location.z > start.z + 1 and o.dimensions.x > 4 for o in scene.objects if o.type == "MESH"), "a ceiling"
    assert sum(_emissive(o) for o in scene.objects) >= 4, "emissive lamps"


def test_handheld_camera_shakes_with_seeded_noise():
    scene = get_scene("handheld").build(0)
    fcurves = action_fcurves(scene.camera.animation_data.action)
    shaken = {(fc.data_path, fc.array_index) for fc in fcurves if any(m.type == "NOISE" for m in fc.modifiers)}
    assert shaken == {(path, i) for path in ("location", "rotation_euler") for i in range(3)}
    # The keys alone hold the rotation constant and move in a straight line; the camera does neither.
    views = [_camera(scene, f)[2] for f in range(1, 49)]
    assert max(_degrees(a, b) for a, b in zip(views, views[1:])) > 0.1
    _, a, _ = _camera(scene, 1)
    _, b, _ = _camera(scene, 48)
    line = (b - a).normalized()
    off_line = max(((p - a) - line * (p - a).dot(line)).length for p in (_camera(scene, f)[1] for f in range(1, 49)))
    assert off_line > 0.01
    path0 = [tuple(_camera(scene, f)[1]) for f in (5, 20)]
    get_scene("handheld").build(1)
    assert [tuple(_camera(bpy.context.scene, f)[1]) for f in (5, 20)] != path0, "the shake depends on the seed"


def test_camera_cut_switches_cameras_at_frame_25_by_timeline_markers():
    from blender_addon.capture import camera_data

    scene = get_scene("camera_cut").build(0)
    assert {m.frame: m.camera.name for m in scene.timeline_markers} == {1: "CamA", 25: "CamB"}
    shots = {f: _camera(scene, f) for f in (23, 24, 25, 26)}
    assert [shots[f][0] for f in (23, 24, 25, 26)] == ["CamA", "CamA", "CamB", "CamB"]
    assert (shots[25][1] - shots[24][1]).length > 5 and _degrees(shots[24][2], shots[25][2]) > 45
    # What the capture records: a cut at 25 only.
    data = {}
    for f in (23, 24, 25, 26):
        scene.frame_set(f)
        data[f] = camera_data(scene, 32, 32, (0.0, 0.0))
    assert [data[f].hints(data[f - 1]).cut for f in (24, 25, 26)] == [False, True, False]


def test_thin_detail_has_thin_geometry_and_alpha_cut_out_cards():
    scene = get_scene("thin_detail").build(0)
    meshes = [o for o in scene.objects if o.type == "MESH"]
    solids = [o for o in meshes if min(o.dimensions) > 0]  # (planes and cards have no thickness)
    thin = [o for o in solids if min(o.dimensions) < 0.05 and max(o.dimensions) / min(o.dimensions) > 20]
    assert len(thin) >= 50, "fence pickets and wires"
    cards = [o for o in meshes if _principled(o).inputs["Alpha"].is_linked]
    assert len(cards) >= 10, "foliage cards with a texture-driven alpha"


def test_emissive_transparent_shows_glowing_lanterns_through_tinted_panes():
    scene = get_scene("emissive_transparent").build(0)
    meshes = [o for o in scene.objects if o.type == "MESH"]
    lanterns = [o for o in meshes if _emissive(o)]
    panes = [o for o in meshes if _see_through(o)]
    assert len(lanterns) >= 4 and len(panes) >= 3
    _, eye, _ = _camera(scene, 1)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    behind_glass = 0
    for lantern in lanterns:
        direction = (lantern.location - eye).normalized()
        hit, _, _, _, first, _ = scene.ray_cast(depsgraph, eye, direction)
        behind_glass += hit and first.name in {p.name for p in panes}
    assert behind_glass >= 1, "at least one lantern is seen through a pane"


def test_night_market_trucks_sideways_past_neon_and_glass():
    scene = get_scene("night_market").build(0)
    meshes = [o for o in scene.objects if o.type == "MESH"]
    assert sum(_emissive(o) for o in meshes) >= 20 and sum(_see_through(o) for o in meshes) >= 4
    _, start, view = _camera(scene, 1)
    _, end, _ = _camera(scene, 48)
    travel = end - start
    assert travel.length > 3 and abs(_degrees(travel, view) - 90) < 15, "trucking: moving across the view"


# Sizes in cm (width, depth, height) as Sweet Home 3D's catalog file lists them: the real objects' size.
CATALOG_SIZES = {"couch": (207.4, 87.6, 85.6), "oakTable": (124, 124, 74.1), "bookcase": (91.9, 36.5, 147.2),
                 "armchair2": (95.3, 83.3, 78.3), "cuckooClock": (26.6, 17.7, 73.8)}


@needs_catalog
def test_furnished_room_places_real_textured_furniture_at_its_catalog_size(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # extracted afresh from the catalog, not from an old cache
    scene = get_scene("furnished_room").build(0)
    objects = {o.name: o for o in scene.objects if o.type == "MESH"}
    for name, size in CATALOG_SIZES.items():
        assert tuple(objects[name].dimensions) == pytest.approx([v / 100 for v in size], abs=1e-3), name
        assert min(v.co.z for v in objects[name].data.vertices) == pytest.approx(0, abs=1e-4), "stands on its base"
    for obj in objects.values():
        if "catalog_scale" in obj:  # imported in the right axes: one factor fits all three (catalog sizes are rounded)
            factors = list(obj["catalog_scale"])
            assert max(factors) / min(factors) < 1.1, (obj.name, factors)
    assert sum(o.name.startswith("oakChair") for o in objects.values()) == 2
    # The authors' painted textures, loaded from the extracted catalog.
    textures = [i for i in bpy.data.images if i.filepath and str(tmp_path) in bpy.path.abspath(i.filepath)]
    assert len(textures) >= 10 and all(i.size[0] > 0 for i in textures)
    _, start, _ = _camera(scene, 1)
    _, end, _ = _camera(scene, 48)
    assert 1.5 < (end - start).length < 3 and _mean_turn_per_frame(scene) < 0.5, "a slow walkthrough dolly"


def test_a_real_asset_scene_without_its_catalog_names_the_package_and_leaves_the_open_scene(monkeypatch, tmp_path):
    from reframe_core.errors import SettingsError

    get_scene("slow_pan").build(0)
    before = _snapshot()
    monkeypatch.setenv("REFRAME_SH3D_CATALOG", str(tmp_path / "absent.sh3f"))
    with pytest.raises(SettingsError, match=r"absent\.sh3f.*apt-get install sweethome3d-furniture"):
        get_scene("furnished_room").build(0)
    assert _snapshot() == before


def test_cli_builds_a_blend(tmp_path, capsys):
    from reframe_core.cli import main

    out = tmp_path / "pan.blend"
    assert main(["scenes", "build", "slow_pan", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    bpy.ops.wm.open_mainfile(filepath=str(out))
    assert bpy.context.scene.camera.name == "Camera"
