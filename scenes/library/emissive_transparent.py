"""Emissive and transparent surfaces: glowing lanterns behind tinted glass panes, at dusk."""
import math
import random

from scenes import common as c

FRAMES = (1, 48)


def build(seed: int = 0):
    rng = random.Random(seed)
    scene = c.new_scene(FRAMES)
    c.world(color=(0.01, 0.01, 0.03), horizon=(0.15, 0.08, 0.1), strength=0.8)
    c.plane((0, 0, 0), size=40, mat=c.brick_material("Plaza", (0.3, 0.3, 0.3), (0.2, 0.2, 0.22), (0.1, 0.1, 0.1), scale=10))
    colors = [(1.0, 0.5, 0.1), (0.2, 0.6, 1.0), (1.0, 0.2, 0.4), (0.5, 1.0, 0.3)]
    for i in range(8):
        color = colors[i % 4]
        location = (rng.uniform(-5, 5), rng.uniform(0, 8), rng.uniform(0.5, 2.5))
        c.sphere(location, rng.uniform(0.2, 0.4), c.emission_material(f"Lantern{i}", color, strength=rng.uniform(6, 15)))
        c.point_light(location, power=80, color=color)
    for i in range(5):
        pane = c.cube((-4 + i * 2, -0.5 + rng.uniform(-0.3, 0.3), 1.2), (1.6, 0.04, 2.2),
                      c.transparent_material(f"Glass{i}", colors[i % 4], alpha=0.3))
        pane.rotation_euler = (0, 0, rng.uniform(-0.3, 0.3))
    c.cube((0, 9, 2), (14, 0.3, 4), c.noise_material("Backdrop", (0.05, 0.05, 0.06), (0.2, 0.2, 0.22), scale=20))
    cam = c.camera(lens=30, location=(0, -7, 1.6), rotation=(math.radians(86), 0, 0))
    c.keyframes(cam, "location", {1: (0, -7, 1.6), 48: (0.8, -5, 1.8)})
    return scene
