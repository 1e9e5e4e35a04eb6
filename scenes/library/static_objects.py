"""Static camera, moving objects: a turntable of textured solids, a rolling ball and a swinging sign."""
import math
import random

from scenes import common as c

FRAMES = (1, 48)


def build(seed: int = 0):
    rng = random.Random(seed)
    scene = c.new_scene(FRAMES)
    c.world()
    c.sun()
    c.plane((0, 0, 0), size=30, mat=c.checker_material("Floor", scale=20), name="Floor")
    table = c.cylinder((0, 0, 0.1), radius=2.2, depth=0.2, mat=c.wood_material("Turntable"), name="Turntable")
    solids = [c.cube((1.2, 0, 0.7), (0.8, 0.8, 1.0), c.noise_material("Stone", (0.2, 0.2, 0.25), (0.7, 0.65, 0.6), scale=8)),
              c.sphere((-1.2, 0.3, 0.8), 0.6, c.brick_material("BrickBall", scale=6)),
              c.cylinder((0, -1.3, 0.6), 0.35, 1.0, c.noise_material("Copper", (0.4, 0.15, 0.05), (0.9, 0.5, 0.2), roughness=0.3))]
    for obj in solids:
        obj.parent = table
    c.keyframes(table, "rotation_euler", {1: (0, 0, 0), 48: (0, 0, math.radians(rng.uniform(100, 140)))})
    ball = c.sphere((-4, 2.5, 0.5), 0.5, c.checker_material("Ball", (0.9, 0.2, 0.1), (0.95, 0.9, 0.8), scale=4))
    c.keyframes(ball, "location", {1: (-4, 2.5, 0.5), 48: (4, 2.5, 0.5)})
    c.keyframes(ball, "rotation_euler", {1: (0, 0, 0), 48: (0, math.radians(8 / 0.5 * 57.3), 0)})
    sign = c.cube((3.2, -1, 1.5), (0.05, 1.2, 0.8), c.noise_material("Sign", (0.1, 0.3, 0.1), (0.6, 0.9, 0.4), scale=15))
    c.keyframes(sign, "rotation_euler", {1: (0, 0, 0), 24: (0, 0, math.radians(40)), 48: (0, 0, 0)}, "BEZIER")
    c.camera(lens=32, location=(0, -9, 3.5), rotation=(math.radians(72), 0, 0))
    return scene
