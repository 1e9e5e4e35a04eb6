"""A camera cut: two cameras on a courtyard, switched by timeline markers at frames 1 and 25."""
import math
import random

from scenes import common as c

FRAMES = (1, 48)
CUT_FRAME = 25


def build(seed: int = 0):
    rng = random.Random(seed)
    scene = c.new_scene(FRAMES)
    c.world()
    c.sun(rotation=(math.radians(50), 0, math.radians(-20)))
    c.plane((0, 0, 0), size=40, mat=c.checker_material("Paving", (0.55, 0.5, 0.45), (0.35, 0.32, 0.3), scale=30))
    for i in range(10):
        x, y = rng.uniform(-6, 6), rng.uniform(-3, 6)
        c.cube((x, y, 1.0), (0.8, 0.8, 2.0), c.brick_material(f"Pillar{i}", scale=rng.uniform(3, 8)))
    c.sphere((0, 1, 1.5), 1.0, c.noise_material("Globe", (0.1, 0.3, 0.6), (0.7, 0.85, 0.9), scale=5))
    first = c.camera("CamA", lens=35, location=(-6, -10, 3), rotation=(math.radians(78), 0, math.radians(-25)))
    c.keyframes(first, "location", {1: (-6, -10, 3), 24: (-4, -10, 3)})
    second = c.camera("CamB", lens=50, location=(9, 0, 2.5), rotation=(math.radians(85), 0, math.radians(90)), active=False)
    c.keyframes(second, "location", {25: (9, 0, 2.5), 48: (9, 2, 2.5)})
    scene.timeline_markers.new("A", frame=1).camera = first
    scene.timeline_markers.new("B", frame=CUT_FRAME).camera = second
    return scene
