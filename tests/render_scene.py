"""A small, quick-to-render animation for the render-path tests (bpy only: runs in bpy 5.0 and Blender 3.4).

A textured ground and boxes lit by a sun, seen by a camera that moves sideways (parallax), 64x48, EEVEE with
4 samples, frames 1-6 (``frames``: another range), PNG output. ``second_camera``: a second camera takes over at
frame 4 (timeline marker). No shadows: EEVEE's shadow maps cost 4 of the 5.5 s a frame takes here with them
(bpy 5.0 on this CPU), and nothing tested depends on them.
"""
import bpy

SIZE = (64, 48)
FRAMES = (1, 6)


def _material():
    material = bpy.data.materials.new("Checker")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = nodes.get("Principled BSDF")
    checker = nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = 4.0
    checker.inputs["Color1"].default_value = (0.9, 0.6, 0.2, 1)
    checker.inputs["Color2"].default_value = (0.1, 0.2, 0.5, 1)
    links.new(checker.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def _camera(scene, name, x0, x1, frames):
    camera = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    scene.collection.objects.link(camera)
    camera.data.lens = 30
    camera.rotation_euler = (1.25, 0, 0)
    first, last = frames
    for frame, x in ((first, x0), (last, x1)):
        camera.location = (x, -4.0, 1.6)
        camera.keyframe_insert("location", frame=frame)
    return camera


def build(path: str, second_camera: bool = False, engine: str | None = None, frames: tuple[int, int] = FRAMES):
    """Build the scene in an empty file and save it to ``path`` (.blend); returns the scene."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    world = bpy.data.worlds.new("World")
    world.color = (0.05, 0.05, 0.08)
    scene.world = world
    material = _material()
    bpy.ops.mesh.primitive_plane_add(size=20, location=(0, 6, 0))
    bpy.context.object.data.materials.append(material)
    for x, y, h in ((-1.6, 1.5, 0.8), (0.9, 4.0, 1.2), (2.6, 8.0, 2.0)):
        bpy.ops.mesh.primitive_cube_add(size=2, location=(x, y, h))
        bpy.context.object.scale = (0.6, 0.6, h)
        bpy.context.object.data.materials.append(material)
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy = 3.0
    sun.data.use_shadow = False
    sun.rotation_euler = (0.6, 0.3, 0.5)
    scene.collection.objects.link(sun)
    scene.camera = _camera(scene, "Camera", -0.3, 0.3, frames)
    if second_camera:
        other = _camera(scene, "Camera.B", 1.5, 1.2, frames)
        other.rotation_euler = (1.2, 0, 0.4)
        scene.timeline_markers.new("A", frame=frames[0]).camera = scene.camera
        scene.timeline_markers.new("B", frame=4).camera = other
    scene.frame_start, scene.frame_end = frames
    render = scene.render
    render.engine = engine or ("BLENDER_EEVEE_NEXT" if (4, 2, 0) <= bpy.app.version < (5, 0, 0) else "BLENDER_EEVEE")
    render.resolution_x, render.resolution_y = SIZE
    render.resolution_percentage = 100
    render.image_settings.file_format = "PNG"
    render.dither_intensity = 0.0  # Blender's dither noise differs between two writes of the same pixels
    render.filepath = "//frames/f_####"
    scene.eevee.taa_render_samples = 4
    if hasattr(scene.eevee, "use_shadows"):  # EEVEE Next (4.2+); EEVEE Legacy has the light's switch only
        scene.eevee.use_shadows = False
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return scene
