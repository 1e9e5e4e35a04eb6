"""Hand-held shake: a still life on a table filmed with a slowly drifting, shaking camera."""
import math
import random

from scenes import common as c

FRAMES = (1, 48)


def build(seed: int = 0):
    rng = random.Random(seed)
    scene = c.new_scene(FRAMES)
    c.world()
    c.sun(rotation=(math.radians(45), 0, math.radians(120)), strength=2.5)
    c.point_light((2, -2, 3), power=200)
    c.plane((0, 0, 0), size=20, mat=c.checker_material("Floor", (0.6, 0.55, 0.5), (0.3, 0.28, 0.25), scale=12))
    c.cube((0, 0, 0.45), (3, 2, 0.9), c.wood_material("Table"))
    for i in range(6):
        location = (rng.uniform(-1.2, 1.2), rng.uniform(-0.7, 0.7), 1.05)
        if i % 3 == 0:
            c.sphere(location, 0.15, c.noise_material(f"Fruit{i}", (0.5, 0.05, 0.02), (0.9, 0.4, 0.1), scale=20))
        elif i % 3 == 1:
            c.cylinder((location[0], location[1], 1.2), 0.12, 0.5, c.noise_material(f"Vase{i}", (0.1, 0.2, 0.5), (0.6, 0.7, 0.9)))
        else:
            c.cube(location, (0.25, 0.35, 0.2), c.brick_material(f"Book{i}", scale=12))
    cam = c.camera(lens=40, location=(0, -4.5, 2.2), rotation=(math.radians(68), 0, 0))
    c.keyframes(cam, "location", {1: (-0.3, -4.5, 2.2), 48: (0.3, -4.2, 2.2)})
    c.keyframes(cam, "rotation_euler", {1: (math.radians(68), 0, 0), 48: (math.radians(68), 0, 0)})
    c.shake(cam, "rotation_euler", strength=0.02, scale=4.0, rng=rng)
    c.shake(cam, "location", strength=0.04, scale=5.0, rng=rng)
    return scene
