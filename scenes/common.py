"""Helpers shared by the scene builders: a clean scene, procedural EEVEE materials, primitives, cameras.

Everything here touches bpy and is deterministic for a given seed (``random.Random(seed)``, no global RNG).
"""
from __future__ import annotations

import math
import os
import random
from typing import Callable, Iterable

import bpy

from reframe_core.blender_compat import action_fcurves, eevee_engine_id


def new_scene(frames: tuple[int, int] = (1, 48), resolution: tuple[int, int] = (256, 256)) -> bpy.types.Scene:
    """An empty scene (factory settings, nothing from the user's startup file) set up for EEVEE."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = eevee_engine_id(bpy.app.version)
    scene.frame_start, scene.frame_end = frames
    scene.render.fps = 24
    scene.render.resolution_x, scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100
    scene.eevee.taa_render_samples = 16
    scene.view_settings.view_transform = "Standard"
    return scene


def world(color=(0.05, 0.07, 0.12), strength: float = 1.0, horizon=(0.45, 0.55, 0.7)) -> None:
    """A vertical gradient sky (horizon to zenith), so the background has some structure to track."""
    w = bpy.data.worlds.new("World")
    bpy.context.scene.world = w
    w.use_nodes = True
    nodes, links = w.node_tree.nodes, w.node_tree.links
    background = nodes["Background"]
    coords = nodes.new("ShaderNodeTexCoord")
    separate = nodes.new("ShaderNodeSeparateXYZ")
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = (*horizon, 1)
    ramp.color_ramp.elements[1].color = (*color, 1)
    links.new(coords.outputs["Generated"], separate.inputs[0])
    links.new(separate.outputs["Z"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], background.inputs["Color"])
    background.inputs["Strength"].default_value = strength


def hdri_world(name: str, strength: float = 1.0) -> None:
    """One of the HDRI world maps Blender ships (``datafiles/studiolights/world/``: city, courtyard, forest,
    interior, night, studio, sunrise, sunset), as the sky and the light it casts."""
    w = bpy.data.worlds.new("World")
    bpy.context.scene.world = w
    w.use_nodes = True
    nodes, links = w.node_tree.nodes, w.node_tree.links
    image = nodes.new("ShaderNodeTexEnvironment")
    image.image = bpy.data.images.load(os.path.join(bpy.utils.system_resource("DATAFILES"), "studiolights", "world", name))
    links.new(image.outputs["Color"], nodes["Background"].inputs["Color"])
    nodes["Background"].inputs["Strength"].default_value = strength


def material(name: str, build: Callable | None = None, **principled) -> bpy.types.Material:
    """A Principled BSDF material; ``build(nodes, links, bsdf)`` adds texture nodes."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    for key, value in principled.items():
        bsdf.inputs[key].default_value = value
    if build is not None:
        build(nodes, links, bsdf)
    return mat


def _ramp(nodes, colors: Iterable) -> bpy.types.Node:
    ramp = nodes.new("ShaderNodeValToRGB")
    colors = list(colors)
    ramp.color_ramp.elements[0].color = (*colors[0], 1)
    ramp.color_ramp.elements[1].color = (*colors[-1], 1)
    return ramp


def noise_material(name: str, low, high, scale: float = 6.0, detail: float = 8.0, roughness: float = 0.6) -> bpy.types.Material:
    def build(nodes, links, bsdf):
        noise = nodes.new("ShaderNodeTexNoise")
        noise.inputs["Scale"].default_value = scale
        noise.inputs["Detail"].default_value = detail
        ramp = _ramp(nodes, (low, high))
        links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
        links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    return material(name, build, Roughness=roughness)


def brick_material(name: str, color1=(0.5, 0.16, 0.08), color2=(0.35, 0.12, 0.07), mortar=(0.7, 0.7, 0.68), scale: float = 4.0) -> bpy.types.Material:
    def build(nodes, links, bsdf):
        brick = nodes.new("ShaderNodeTexBrick")
        brick.inputs["Color1"].default_value = (*color1, 1)
        brick.inputs["Color2"].default_value = (*color2, 1)
        brick.inputs["Mortar"].default_value = (*mortar, 1)
        brick.inputs["Scale"].default_value = scale
        links.new(brick.outputs["Color"], bsdf.inputs["Base Color"])
    return material(name, build, Roughness=0.8)


def checker_material(name: str, color1=(0.8, 0.8, 0.8), color2=(0.1, 0.1, 0.1), scale: float = 8.0) -> bpy.types.Material:
    def build(nodes, links, bsdf):
        checker = nodes.new("ShaderNodeTexChecker")
        checker.inputs["Color1"].default_value = (*color1, 1)
        checker.inputs["Color2"].default_value = (*color2, 1)
        checker.inputs["Scale"].default_value = scale
        links.new(checker.outputs["Color"], bsdf.inputs["Base Color"])
    return material(name, build, Roughness=0.4)


def wood_material(name: str, scale: float = 3.0) -> bpy.types.Material:
    def build(nodes, links, bsdf):
        wave = nodes.new("ShaderNodeTexWave")
        wave.wave_type = "RINGS"
        wave.inputs["Scale"].default_value = scale
        wave.inputs["Distortion"].default_value = 6.0
        wave.inputs["Detail"].default_value = 3.0
        ramp = _ramp(nodes, ((0.25, 0.12, 0.05), (0.6, 0.36, 0.17)))
        links.new(wave.outputs["Fac"], ramp.inputs["Fac"])
        links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    return material(name, build, Roughness=0.5)


def emission_material(name: str, color, strength: float = 8.0) -> bpy.types.Material:
    return material(name, None, **{"Base Color": (*color, 1), "Emission Color": (*color, 1), "Emission Strength": strength})


def transparent_material(name: str, color, alpha: float = 0.35) -> bpy.types.Material:
    return material(name, None, **{"Base Color": (*color, 1), "Alpha": alpha, "Roughness": 0.05})


def cutout_material(name: str, color, scale: float = 9.0, seed: float = 0.0) -> bpy.types.Material:
    """Leaf-like cards: a thresholded noise drives alpha (hard edges, like foliage atlases)."""
    def build(nodes, links, bsdf):
        noise = nodes.new("ShaderNodeTexNoise")
        noise.noise_dimensions = "4D"  # before touching W: the socket exists only in 4D
        noise.inputs["Scale"].default_value = scale
        noise.inputs["W"].default_value = seed
        ramp = nodes.new("ShaderNodeValToRGB")
        ramp.color_ramp.interpolation = "CONSTANT"
        ramp.color_ramp.elements[1].position = 0.52
        links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
        links.new(ramp.outputs["Color"], bsdf.inputs["Alpha"])
    return material(name, build, **{"Base Color": (*color, 1), "Roughness": 0.7})


def _add(op: Callable, mat: bpy.types.Material | None, name: str | None, **kwargs) -> bpy.types.Object:
    op(**kwargs)
    obj = bpy.context.active_object
    if name:
        obj.name = name
    if mat is not None:
        obj.data.materials.append(mat)
    return obj


def cube(location, scale=(1, 1, 1), mat=None, name=None, rotation=(0, 0, 0)) -> bpy.types.Object:
    obj = _add(bpy.ops.mesh.primitive_cube_add, mat, name, size=1, location=location, rotation=rotation)
    obj.scale = scale
    return obj


def plane(location, size=1.0, mat=None, name=None, rotation=(0, 0, 0)) -> bpy.types.Object:
    return _add(bpy.ops.mesh.primitive_plane_add, mat, name, size=size, location=location, rotation=rotation)


def sphere(location, radius=1.0, mat=None, name=None, segments=32) -> bpy.types.Object:
    obj = _add(bpy.ops.mesh.primitive_uv_sphere_add, mat, name, radius=radius, location=location,
               segments=segments, ring_count=segments // 2)
    bpy.ops.object.shade_smooth()
    return obj


def cylinder(location, radius=0.5, depth=1.0, mat=None, name=None, rotation=(0, 0, 0), vertices=32) -> bpy.types.Object:
    return _add(bpy.ops.mesh.primitive_cylinder_add, mat, name, radius=radius, depth=depth, location=location,
                rotation=rotation, vertices=vertices)


def sun(rotation=(math.radians(50), 0, math.radians(30)), strength: float = 3.0, name: str = "Sun") -> bpy.types.Object:
    light = bpy.data.lights.new(name, "SUN")
    light.energy = strength
    light.angle = math.radians(3)
    obj = bpy.data.objects.new(name, light)
    obj.rotation_euler = rotation
    bpy.context.scene.collection.objects.link(obj)
    return obj


def point_light(location, power: float = 300.0, color=(1, 1, 1), name: str = "Lamp") -> bpy.types.Object:
    light = bpy.data.lights.new(name, "POINT")
    light.energy = power
    light.color = color
    obj = bpy.data.objects.new(name, light)
    obj.location = location
    bpy.context.scene.collection.objects.link(obj)
    return obj


def camera(name: str = "Camera", lens: float = 35.0, location=(0, -8, 2), rotation=(math.radians(80), 0, 0),
           active: bool = True) -> bpy.types.Object:
    data = bpy.data.cameras.new(name)
    data.lens = lens
    data.clip_start, data.clip_end = 0.1, 200.0
    obj = bpy.data.objects.new(name, data)
    obj.location, obj.rotation_euler = location, rotation
    bpy.context.scene.collection.objects.link(obj)
    if active:
        bpy.context.scene.camera = obj
    return obj


def keyframes(obj: bpy.types.Object, path: str, values: dict[int, tuple], interpolation: str = "LINEAR") -> None:
    """Key ``obj.<path>`` at each frame; LINEAR keeps a pan's speed constant."""
    for frame, value in sorted(values.items()):
        setattr(obj, path, value)
        obj.keyframe_insert(path, frame=frame)
    for fcurve in action_fcurves(obj.animation_data.action):
        if fcurve.data_path == path:
            for point in fcurve.keyframe_points:
                point.interpolation = interpolation


def shake(obj: bpy.types.Object, path: str, strength: float, scale: float, rng: random.Random) -> None:
    """Hand-held shake: a seeded noise F-modifier on every channel of ``obj.<path>`` (keyed first)."""
    if obj.animation_data is None or obj.animation_data.action is None:
        obj.keyframe_insert(path, frame=bpy.context.scene.frame_start)
    for fcurve in action_fcurves(obj.animation_data.action):
        if fcurve.data_path == path:
            noise = fcurve.modifiers.new("NOISE")
            noise.strength = strength
            noise.scale = scale
            noise.phase = rng.uniform(0, 100)


def track_to(obj: bpy.types.Object, target: bpy.types.Object) -> None:
    constraint = obj.constraints.new("TRACK_TO")
    constraint.target = target
    constraint.track_axis = "TRACK_NEGATIVE_Z"
    constraint.up_axis = "UP_Y"


def empty(location=(0, 0, 0), name: str = "Target") -> bpy.types.Object:
    obj = bpy.data.objects.new(name, None)
    obj.location = location
    bpy.context.scene.collection.objects.link(obj)
    return obj
