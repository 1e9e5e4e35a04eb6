"""Network output written like Blender writes its own render (blender_addon.frame_output), with the real bpy.

A tiny EEVEE scene (64x36, 2 samples, AgX/Filmic with a look, exposure and gamma, transparent film) is rendered
natively as PNG, JPEG and 32-bit OpenEXR; the linear EXR frames written back through ``write_frame`` must give
Blender's own files. Renders are the slow part (~3.5 s a frame on two CPU cores): five frames in all.
"""
import errno
import os

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from PIL import Image  # noqa: E402

from blender_addon.frame_output import OutputError, output_path, output_size, write_frame  # noqa: E402
from reframe_core.blender_compat import eevee_engine_id  # noqa: E402

pytestmark = pytest.mark.blender
W, H = 64, 36
LOOKS = ("AgX - Punchy", "Filmic - High Contrast", "High Contrast")  # 4.0+ AgX, 3.x Filmic


def _read_exr(path) -> np.ndarray:
    """(H, W, 4) float32 RGBA; EXR scanlines (and so these rows) run top to bottom."""
    import OpenEXR

    with OpenEXR.File(str(path), separate_channels=True) as exr:
        channels = exr.channels()
        return np.stack([np.asarray(channels[c].pixels, np.float32) for c in "RGBA"], axis=-1)


def _pixels(path) -> tuple[np.ndarray, str, tuple[int, int]]:
    with Image.open(path) as im:
        return np.asarray(im).astype(np.int16), im.mode, im.size


def _output_settings(scene, view: dict, file_format: str, depth: str = "8") -> None:
    """Everything that decides how a frame is written; the same for the rendering and the writing scene."""
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = W, H, 100
    r.dither_intensity = 0.0  # with the default dither both files carry different noise (DESIGN.md §5)
    r.use_file_extension = True
    scene.display_settings.display_device = view["display"]
    scene.view_settings.view_transform = view["transform"]
    scene.view_settings.look = view["look"]
    scene.view_settings.exposure = view["exposure"]
    scene.view_settings.gamma = view["gamma"]
    settings = r.image_settings
    settings.file_format = file_format
    settings.color_mode = "RGB" if file_format == "JPEG" else "RGBA"
    settings.color_depth = depth
    if file_format == "JPEG":
        settings.quality = 90


def _mesh(op, material, **kwargs):
    op(**kwargs)
    obj = bpy.context.active_object
    obj.data.materials.append(material)
    return obj


def _material(name, color, emission=0.0):
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:  # 5.0 gives every new material its node tree ('use_nodes' is deprecated)
        mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*color, 1)
    if emission:
        bsdf.inputs["Emission Color"].default_value = (*color, 1)
        bsdf.inputs["Emission Strength"].default_value = emission
    return mat


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """Blender's own PNG (frames 1-2), JPEG (frame 1) and linear 32-bit EXR (frames 1-2) of a tiny scene."""
    import math

    out = tmp_path_factory.mktemp("native")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = eevee_engine_id(bpy.app.version)
    scene.eevee.taa_render_samples = 2  # 1 sample gives no partial alpha at edges
    scene.render.film_transparent = True  # transparent sky: exercises premultiplied alpha
    scene.frame_start, scene.frame_end = 1, 2
    world = bpy.data.worlds.new("World")
    world.color = (0.2, 0.25, 0.35)
    scene.world = world
    view = {"display": scene.display_settings.display_device, "transform": scene.view_settings.view_transform,
            "exposure": 0.6, "gamma": 1.15}
    for look in LOOKS:
        try:
            scene.view_settings.look = look
            break
        except TypeError:
            continue
    view["look"] = scene.view_settings.look
    assert view["look"] != "None", "no look of the default view transform found"

    _mesh(bpy.ops.mesh.primitive_plane_add, _material("ground", (0.5, 0.45, 0.4)), size=20, location=(0, 0, 0))
    _mesh(bpy.ops.mesh.primitive_uv_sphere_add, _material("neon", (1.0, 0.3, 0.05), emission=12.0),
          radius=0.6, location=(-1.2, 0, 0.8))
    cube = _mesh(bpy.ops.mesh.primitive_cube_add, _material("blue", (0.1, 0.3, 0.9)), size=1.2, location=(1, 0, 0.6))
    cube.keyframe_insert("location", frame=1)
    cube.location.x = 1.6
    cube.rotation_euler.z = 0.5
    cube.keyframe_insert("location", frame=2)
    cube.keyframe_insert("rotation_euler", frame=2)
    light = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    light.data.energy = 4.0
    light.rotation_euler = (math.radians(50), 0, math.radians(30))
    scene.collection.objects.link(light)
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.location, camera.rotation_euler = (0, -6, 1.2), (math.radians(84), 0, 0)
    scene.collection.objects.link(camera)
    scene.camera = camera

    files = {}
    for name, file_format, depth, last in (("png", "PNG", "8", 2), ("jpg", "JPEG", "8", 1), ("exr", "OPEN_EXR", "32", 2)):
        _output_settings(scene, view, file_format, depth)
        scene.frame_end = last
        scene.render.filepath = str(out / name / "f_##")
        bpy.ops.render.render(animation=True)
        files[name] = {f: out / name / f"f_{f:02d}.{name}" for f in range(1, last + 1)}
    linear = {f: _read_exr(p) for f, p in files["exr"].items()}
    return {"view": view, "files": files, "linear": linear}


def _writer_scene(native, file_format, depth="8"):
    """A fresh scene holding only the output settings: nothing of the rendered scene is needed to write."""
    scene = bpy.data.scenes.new(f"writer_{file_format}_{depth}")
    _output_settings(scene, native["view"], file_format, depth)
    return scene


def test_native_frames_are_what_the_comparison_needs(native):
    linear = native["linear"][1]
    assert linear.shape == (H, W, 4)
    alpha = linear[..., 3]
    assert alpha.min() == 0 and alpha.max() == 1 and ((alpha > 0) & (alpha < 1)).any(), "sky, objects, edges"
    assert linear[..., :3].max() > 2, "the emitter is brighter than 1: the view transform has work to do"
    assert not np.array_equal(native["linear"][1], native["linear"][2]), "the frames differ"
    png, mode, size = _pixels(native["files"]["png"][1])
    assert mode == "RGBA" and size == (W, H)
    # A hand-written sRGB encoding of the linear frame is far from Blender's file: its colour management (AgX or
    # Filmic, a look, exposure, gamma) must be applied for the equality below to hold.
    opaque = alpha == 1
    rgb = np.clip(linear[..., :3], 0, 1)
    srgb = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * np.power(rgb, 1 / 2.4) - 0.055)
    naive = np.round(srgb * 255)
    gap = np.abs(naive[opaque] - png[..., :3][opaque])
    assert gap.mean() > 4 and gap.max() > 20  # measured: mean 8.6/255 (the match below: under 0.1/255)


@pytest.mark.parametrize("frame", [1, 2])
def test_png_matches_blenders_own(native, tmp_path, frame):
    scene = _writer_scene(native, "PNG")
    path = write_frame(scene, native["linear"][frame], tmp_path / f"f_{frame:02d}.png")
    ours, mode, size = _pixels(path)
    theirs, their_mode, their_size = _pixels(native["files"]["png"][frame])
    assert (mode, size) == (their_mode, their_size) == ("RGBA", (W, H))
    diff = np.abs(ours - theirs)
    assert diff.max() <= 1, f"max {diff.max()}/255, mean {diff.mean():.2f}/255"
    assert not list(tmp_path.glob(".*partial*")), "no temporary file left"


def test_jpeg_matches_blenders_own(native, tmp_path):
    scene = _writer_scene(native, "JPEG")
    path = write_frame(scene, native["linear"][1], tmp_path / "f_01.jpg")
    ours, mode, size = _pixels(path)
    theirs, their_mode, their_size = _pixels(native["files"]["jpg"][1])
    assert (mode, size) == (their_mode, their_size) == ("RGB", (W, H))
    assert np.abs(ours - theirs).max() <= 1


@pytest.mark.parametrize("depth", ["32", "16"])
def test_exr_stays_linear_like_blenders_own(native, tmp_path, depth):
    scene = _writer_scene(native, "OPEN_EXR", depth)
    linear = native["linear"][2]
    path = write_frame(scene, linear, tmp_path / "f_02.exr")
    ours = _read_exr(path)
    assert ours.shape == linear.shape
    if depth == "32":  # Blender's own 32-bit file holds exactly these floats: no view transform in EXR
        assert np.array_equal(ours, _read_exr(native["files"]["exr"][2]))
    else:  # half floats: only the rounding to float16
        assert np.array_equal(ours, linear.astype(np.float16).astype(np.float32))


def test_output_path_is_the_file_blender_writes(tmp_path, monkeypatch):
    # Rendering checked by hand that frame_path is where a render writes (saved and unsaved .blend files).
    bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        scene = bpy.context.scene
        scene.render.image_settings.file_format = "PNG"
        bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
        scene.render.filepath = "//out/f_####"
        assert output_path(scene, 7) == tmp_path / "out" / "f_0007.png"
        assert output_path(scene, 12345) == tmp_path / "out" / "f_12345.png"
        scene.render.filepath = "//out/f_#_take_###"  # only the last run of '#' is the frame number
        assert output_path(scene, 7) == tmp_path / "out" / "f_#_take_007.png"
        monkeypatch.chdir(tmp_path)
        scene.render.filepath = "out/frame"  # no '#': four digits appended; relative to the working directory
        assert output_path(scene, 7) == tmp_path / "out" / "frame0007.png"
        scene.render.image_settings.file_format = "JPEG"
        assert output_path(scene, 7).name == "frame0007.jpg"
        scene.render.image_settings.file_format = "OPEN_EXR"
        assert output_path(scene, 7).name == "frame0007.exr"
        scene.render.use_file_extension = False
        assert output_path(scene, 7).name == "frame0007"
    finally:
        bpy.ops.wm.read_factory_settings(use_empty=True)  # forget the saved file for later tests


def test_movie_and_multilayer_formats_are_refused(tmp_path):
    scene = bpy.data.scenes.new("movie")
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # 5.0+
        settings.media_type = "VIDEO"
    else:
        settings.file_format = "FFMPEG"
    with pytest.raises(OutputError, match="movie"):
        output_path(scene, 1)
    if hasattr(settings, "media_type"):
        settings.media_type = "MULTI_LAYER_IMAGE"
    else:
        settings.file_format = "OPEN_EXR_MULTILAYER"
    with pytest.raises(OutputError, match="multilayer"):
        write_frame(scene, np.zeros((*output_size(scene)[::-1], 4), np.float32), tmp_path / "x.exr")
    assert not list(tmp_path.iterdir())


def test_written_size_is_the_render_size(tmp_path):
    scene = bpy.data.scenes.new("size")
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = 199, 113, 33
    assert output_size(scene) == (65, 37)  # truncated, as a render of it measured
    r.use_border = True
    r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y = 0.13, 0.71, 0.27, 0.83
    assert output_size(scene) == (65, 37), "a render region without cropping keeps the full size"
    r.use_crop_to_border = True
    assert output_size(scene) == (38, 21)  # measured: Blender wrote a 38x21 file
    r.use_border = False
    frame = np.zeros((37, 65, 4), np.float32)
    with Image.open(write_frame(scene, frame, tmp_path / "a.png")) as im:
        assert im.size == (65, 37)
    with pytest.raises(OutputError, match="65x37"):
        write_frame(scene, np.zeros((36, 64, 4), np.float32), tmp_path / "b.png")
    assert not (tmp_path / "b.png").exists()


def test_unwritable_folder_names_the_folder(tmp_path):
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("x")
    scene = bpy.data.scenes.new("blocked")
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 8, 4, 100
    frame = np.zeros((4, 8, 4), np.float32)
    with pytest.raises(OutputError) as info:
        write_frame(scene, frame, blocker / "x.png")
    assert str(blocker) in str(info.value) and "not a folder" in str(info.value) and "Output Properties" in str(info.value)
    if os.path.isdir("/proc/self"):
        with pytest.raises(OutputError, match="/proc/self"):
            write_frame(scene, frame, "/proc/self/x.png")


@pytest.mark.parametrize("file_format", ["PNG", "OPEN_EXR"])  # Blender's PNG writer ignores the error; EXR raises
def test_full_disk_keeps_the_old_file_and_leaves_nothing(small_disk, file_format):
    mount = small_disk
    scene = bpy.data.scenes.new(f"full_{file_format}")
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 256, 256, 100
    scene.render.image_settings.file_format = file_format
    noise = np.random.default_rng(0).random((256, 256, 4), dtype=np.float32)  # ~260 KB: does not fit
    path = mount / "shot" / f"f_0001{'.png' if file_format == 'PNG' else '.exr'}"
    path.parent.mkdir()
    path.write_bytes(b"previous frame")
    with pytest.raises(OutputError) as info:
        write_frame(scene, noise, path)
    assert info.value.errno == errno.ENOSPC and "disk is full" in str(info.value) and str(path.parent) in str(info.value)
    assert path.read_bytes() == b"previous frame", "the old file is untouched"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "no partial file left"
    path.unlink()
    with pytest.raises(OutputError):
        write_frame(scene, noise, path)
    assert not list(path.parent.iterdir()), "a failed write leaves no file at the path"


@pytest.mark.parametrize("view", [{"view_transform": "AgX", "look": "AgX - Punchy", "exposure": 0.5},
                                  {"view_transform": "Standard", "look": "None", "exposure": 0.0}])
def test_display_lut_is_blenders_own_colour_management(tmp_path, view):
    """The viewport overlay's view transform: the LUT applied to linear colours gives what Blender saves for them."""
    from blender_addon.frame_output import display_lut

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    for key, value in view.items():
        setattr(scene.view_settings, key, value)
    lut = display_lut(scene)
    assert lut.separable == (view["view_transform"] == "Standard")  # AgX mixes channels
    rng = np.random.default_rng(1)
    linear = (rng.random((32, 48, 3)) ** 3 * 6).astype(np.float32)
    linear[:4] *= np.array([1.0, 0.05, 0.01], np.float32)  # saturated colours, where a per-channel table fails
    image = bpy.data.images.new("colours", 48, 32, alpha=True, float_buffer=True)
    rgba = np.ones((32, 48, 4), np.float32)
    rgba[..., :3] = linear[::-1]
    image.pixels.foreach_set(rgba.ravel())
    settings = scene.render.image_settings
    settings.file_format, settings.color_mode, settings.color_depth = "PNG", "RGB", "8"
    scene.render.dither_intensity = 0.0
    image.save_render(str(tmp_path / "saved.png"), scene=scene)
    saved, _, _ = _pixels(tmp_path / "saved.png")
    error = np.abs(lut.apply(linear) * 255 - saved)
    assert error.mean() < 0.6 and np.percentile(error, 99) < 3.0 and error.max() < 8.0, (error.mean(), error.max())
