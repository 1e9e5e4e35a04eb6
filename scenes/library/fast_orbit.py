"""Fast orbit: the camera circles a sculpture garden half a turn in two seconds."""
import math
import random

from scenes import common as c

FRAMES = (1, 48)


def build(seed: int = 0):
    rng = random.Random(seed)
    scene = c.new_scene(FRAMES)
    c.world()
    c.sun(rotation=(math.radians(40), 0, math.radians(70)))
    c.plane((0, 0, 0), size=40, mat=c.noise_material("Grass", (0.05, 0.15, 0.03), (0.25, 0.45, 0.1), scale=30), name="Ground")
    c.cylinder((0, 0, 0.25), 2.5, 0.5, c.brick_material("Plinth", scale=5))
    mats = [c.wood_material("Wood"), c.checker_material("Tiles", scale=6), c.noise_material("Marble", (0.6, 0.6, 0.6), (0.95, 0.93, 0.9), scale=3)]
    for i in range(7):
        angle = 2 * math.pi * i / 7
        radius = rng.uniform(0.6, 2.0)
        location = (radius * math.cos(angle), radius * math.sin(angle), 0.5 + rng.uniform(0.3, 1.2))
        if i % 2:
            c.sphere(location, rng.uniform(0.25, 0.5), mats[i % 3])
        else:
            c.cube(location, (rng.uniform(0.3, 0.7),) * 3, mats[i % 3], rotation=(0, 0, rng.uniform(0, 3)))
    target = c.empty((0, 0, 1.0))
    cam = c.camera(lens=30, location=(7, 0, 3))
    c.track_to(cam, target)
    orbit = {f: (7 * math.cos(math.pi * (f - 1) / 47), 7 * math.sin(math.pi * (f - 1) / 47), 3) for f in range(1, 49, 4)}
    orbit[48] = (7 * math.cos(math.pi), 7 * math.sin(math.pi), 3)
    c.keyframes(cam, "location", orbit, "BEZIER")
    return scene
