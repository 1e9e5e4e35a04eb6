"""Thin geometry and high-frequency detail: a picket fence, a wire grid and foliage cards (alpha cut-outs)."""
import math
import random

from scenes import common as c

FRAMES = (1, 48)


def build(seed: int = 0):
    rng = random.Random(seed)
    scene = c.new_scene(FRAMES)
    c.world()
    c.sun(rotation=(math.radians(35), 0, math.radians(60)))
    c.plane((0, 0, 0), size=40, mat=c.noise_material("Soil", (0.12, 0.08, 0.05), (0.35, 0.25, 0.15), scale=50))
    paint = c.noise_material("Paint", (0.8, 0.8, 0.75), (0.95, 0.95, 0.92), scale=30)
    for i in range(40):
        c.cube((-6 + i * 0.3, 1.0, 0.6), (0.06, 0.04, 1.2), paint)
    for z in (0.3, 1.0):
        c.cube((0, 1.0, z), (12, 0.03, 0.06), paint)
    wire = c.noise_material("Wire", (0.2, 0.2, 0.2), (0.4, 0.4, 0.4))
    for i in range(60):
        c.cube((-6 + i * 0.2, 3.0, 1.2), (0.015, 0.015, 2.4), wire)
    for k in range(12):
        c.cube((0, 3.0, 0.05 + k * 0.2), (12, 0.015, 0.015), wire)
    for i in range(14):
        card = c.plane((rng.uniform(-6, 6), rng.uniform(4.5, 7), rng.uniform(0.8, 2.2)), size=rng.uniform(1.2, 2.0),
                       mat=c.cutout_material(f"Leaves{i}", (0.1, rng.uniform(0.3, 0.5), 0.05), seed=rng.uniform(0, 10)),
                       rotation=(math.radians(90), 0, rng.uniform(-0.4, 0.4)))
    cam = c.camera(lens=35, location=(-2, -5, 1.4), rotation=(math.radians(84), 0, math.radians(-5)))
    c.keyframes(cam, "location", {1: (-2, -5, 1.4), 48: (2, -5, 1.4)})
    return scene
