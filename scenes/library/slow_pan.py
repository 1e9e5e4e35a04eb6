"""Slow pan along a brick street front with windows, doors and a cobbled road."""
import math
import random

from scenes import common as c

FRAMES = (1, 48)


def build(seed: int = 0):
    rng = random.Random(seed)
    scene = c.new_scene(FRAMES)
    c.world()
    c.sun(rotation=(math.radians(55), 0, math.radians(-40)))
    c.plane((0, 2, 0), size=60, mat=c.noise_material("Cobbles", (0.15, 0.14, 0.13), (0.45, 0.42, 0.4), scale=40), name="Road")
    c.cube((0, 8, 4), (40, 1, 8), c.brick_material("Facade", scale=8), name="Facade")
    glass = c.noise_material("Window", (0.02, 0.03, 0.05), (0.2, 0.25, 0.3), scale=3, roughness=0.1)
    wood = c.wood_material("Door", scale=5)
    for i in range(-9, 10):
        x = i * 2.0 + rng.uniform(-0.2, 0.2)
        c.cube((x, 7.45, 5.0), (0.9, 0.2, 1.4), glass)
        if i % 3 == 0:
            c.cube((x, 7.45, 1.1), (1.0, 0.2, 2.2), wood)
        else:
            c.cube((x, 7.45, 2.4), (0.9, 0.2, 1.2), glass)
    for i in range(6):
        c.cylinder((rng.uniform(-12, 12), 5.5, 1.5), 0.08, 3.0, c.noise_material(f"Pole{i}", (0.1, 0.1, 0.1), (0.3, 0.3, 0.3)))
    cam = c.camera(lens=35, location=(0, -6, 1.7), rotation=(math.radians(88), 0, math.radians(12)))
    c.keyframes(cam, "rotation_euler", {1: (math.radians(88), 0, math.radians(12)), 48: (math.radians(88), 0, math.radians(-12))})
    return scene
