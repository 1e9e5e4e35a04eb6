"""Dolly forward through an interior: a brick corridor with a wooden floor, columns and ceiling lamps."""
import math
import random

from scenes import common as c

FRAMES = (1, 48)


def build(seed: int = 0):
    rng = random.Random(seed)
    scene = c.new_scene(FRAMES)
    c.world(color=(0.01, 0.01, 0.02), horizon=(0.03, 0.03, 0.04))
    walls = c.brick_material("Walls", scale=6)
    c.plane((0, 15, 0), size=1, mat=c.wood_material("Floor", scale=2), name="Floor").scale = (5, 40, 1)
    c.cube((-2.5, 15, 2), (0.2, 40, 4), walls, name="WallL")
    c.cube((2.5, 15, 2), (0.2, 40, 4), walls, name="WallR")
    c.cube((0, 15, 4.1), (5.2, 40, 0.2), c.noise_material("Ceiling", (0.5, 0.5, 0.48), (0.8, 0.8, 0.78), scale=10), name="Ceiling")
    c.cube((0, 35, 2), (5, 0.2, 4), c.checker_material("EndWall", scale=10), name="EndWall")
    lamp = c.emission_material("Lamp", (1.0, 0.85, 0.6), strength=12)
    column = c.noise_material("Column", (0.3, 0.3, 0.32), (0.7, 0.7, 0.72), scale=12)
    for i in range(8):
        y = 2 + i * 4
        c.cube((0, y, 3.95), (0.8, 0.3, 0.08), lamp)
        c.point_light((0, y, 3.5), power=120, color=(1.0, 0.9, 0.75))
        for side in (-1.9, 1.9):
            c.cylinder((side, y + rng.uniform(-0.3, 0.3), 2), 0.2, 4, column)
    cam = c.camera(lens=24, location=(0, -4, 1.6), rotation=(math.radians(90), 0, 0))
    c.keyframes(cam, "location", {1: (0, -4, 1.6), 48: (0, 8, 1.6)})
    return scene
