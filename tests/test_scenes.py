"""The scene library, built with the real bpy module."""
import pytest

bpy = pytest.importorskip("bpy")

from scenes import SCENES, get_scene  # noqa: E402

pytestmark = pytest.mark.blender


def _snapshot():
    return sorted((o.name, tuple(round(v, 5) for v in o.location), o.type) for o in bpy.data.objects)


@pytest.mark.parametrize("name", sorted(SCENES))
def test_each_scene_builds_with_camera_animation_and_materials(name):
    scene = get_scene(name).build(0)
    assert scene.camera is not None and scene.camera.type == "CAMERA"
    assert (scene.frame_start, scene.frame_end) == get_scene(name).frames
    assert len(bpy.data.materials) >= 2 and scene.world is not None
    animated = [o for o in bpy.data.objects if o.animation_data and o.animation_data.action]
    assert animated, "every scene moves something"


def test_builders_are_deterministic_per_seed():
    get_scene("thin_detail").build(3)
    first = _snapshot()
    get_scene("thin_detail").build(3)
    assert _snapshot() == first
    get_scene("thin_detail").build(4)
    assert _snapshot() != first


def test_library_covers_the_required_situations():
    covers = " ".join(e.covers for e in SCENES.values())
    for words in ("static camera, moving objects", "slow pan", "fast orbit", "dolly", "hand-held", "camera cut",
                  "thin geometry", "emissive", "transparent"):
        assert words in covers
    assert len(SCENES) >= 6


def test_camera_cut_scene_switches_cameras_at_its_marker():
    scene = get_scene("camera_cut").build(0)
    names = {}
    for frame in (24, 25):
        scene.frame_set(frame)
        names[frame] = scene.camera.name
    assert names == {24: "CamA", 25: "CamB"}


def test_cli_builds_a_blend(tmp_path, capsys):
    from reframe_core.cli import main

    out = tmp_path / "pan.blend"
    assert main(["scenes", "build", "slow_pan", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    bpy.ops.wm.open_mainfile(filepath=str(out))
    assert bpy.context.scene.camera.name == "Camera"
