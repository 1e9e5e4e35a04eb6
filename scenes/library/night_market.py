"""Night market: neon tubes, strings of bulbs and glass shop windows along a street, camera trucking sideways."""
import math
import random

from scenes import common as c

FRAMES = (1, 48)


def build(seed: int = 0):
    rng = random.Random(seed)
    scene = c.new_scene(FRAMES)
    c.world(color=(0.005, 0.005, 0.015), horizon=(0.05, 0.04, 0.08), strength=0.6)
    c.plane((0, 3, 0), size=50, mat=c.noise_material("Asphalt", (0.03, 0.03, 0.035), (0.12, 0.12, 0.13), scale=30, roughness=0.3))
    c.cube((0, 7, 3), (30, 0.5, 6), c.brick_material("Shopfronts", (0.25, 0.2, 0.18), (0.18, 0.15, 0.14), (0.3, 0.3, 0.3), scale=7))
    neon = [(1.0, 0.1, 0.6), (0.1, 0.9, 1.0), (1.0, 0.6, 0.05), (0.4, 1.0, 0.2), (0.6, 0.3, 1.0)]
    for i in range(6):
        x = -10 + i * 4 + rng.uniform(-0.5, 0.5)
        color = neon[i % len(neon)]
        # A shop window: tinted glass in front of a lit interior wall with shelves.
        c.cube((x, 6.6, 1.6), (1.4, 0.05, 1.2), c.noise_material(f"Interior{i}", (0.3, 0.25, 0.2), (0.8, 0.7, 0.5), scale=6))
        c.point_light((x, 6.2, 1.8), power=60, color=(1.0, 0.85, 0.6), name=f"ShopLamp{i}")
        c.cube((x, 6.0, 1.6), (1.5, 0.03, 1.3), c.transparent_material(f"Window{i}", neon[(i + 2) % len(neon)], alpha=0.25))
        # A neon sign above it: thin emissive tubes forming a frame and a bar.
        tube = c.emission_material(f"Neon{i}", color, strength=rng.uniform(8, 20))
        c.cylinder((x, 6.3, 3.4), 0.05, 2.2, tube, rotation=(0, math.radians(90), 0))
        c.cylinder((x, 6.3, 4.0), 0.05, 2.2, tube, rotation=(0, math.radians(90), 0))
        c.cylinder((x - 1.1, 6.3, 3.7), 0.05, 0.6, tube)
        c.cylinder((x + 1.1, 6.3, 3.7), 0.05, 0.6, tube)
        c.point_light((x, 5.8, 3.7), power=40, color=color, name=f"NeonGlow{i}")
    # A string of warm bulbs across the street.
    bulb = c.emission_material("Bulb", (1.0, 0.8, 0.5), strength=12)
    for j in range(24):
        x = -12 + j * 1.05
        c.sphere((x, 3.5, 3.2 - 0.3 * math.cos(j / 23 * 2 * math.pi)), 0.08, bulb, segments=12)
    for i in range(4):  # market stalls with striped awnings in front
        x = -7 + i * 4.5 + rng.uniform(-0.4, 0.4)
        c.cube((x, 2.0, 0.5), (1.2, 0.6, 0.5), c.wood_material(f"Stall{i}", scale=4))
        c.cube((x, 2.0, 1.6), (1.4, 0.8, 0.04), c.checker_material(f"Awning{i}", neon[i % len(neon)], (0.9, 0.9, 0.85), scale=10),
               rotation=(math.radians(12), 0, 0))
    cam = c.camera(lens=32, location=(-3, -5, 1.8), rotation=(math.radians(84), 0, math.radians(-6)))
    c.keyframes(cam, "location", {1: (-3, -5, 1.8), 48: (3, -5.4, 1.9)})
    c.keyframes(cam, "rotation_euler", {1: (math.radians(84), 0, math.radians(-6)), 48: (math.radians(85), 0, math.radians(6))})
    return scene
