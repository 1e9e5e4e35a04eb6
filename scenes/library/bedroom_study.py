"""A bedroom with a study corner, of real models (Sweet Home 3D's CC0 catalog) under a morning sky: training data.

None of the held-out ``furnished_room``'s pieces: a bed with a painted cover, a wardrobe, a desk and a design
chair, shelves, a guitar and a rug-like tatami, in Blender's ``sunrise.exr`` sky with a cool sun and a warm desk
lamp; walls of two paints and a wooden floor. The camera pans and climbs slightly, as an interior walkthrough does.
"""
import math

from scenes import common as c
from scenes.sweethome3d import FurnitureCatalog

FRAMES = (1, 48)
HDRI = "sunrise.exr"


def build(seed: int = 0):
    catalog = FurnitureCatalog()  # first, so a missing catalog fails before the scene is replaced
    scene = c.new_scene(FRAMES)
    c.hdri_world(HDRI, 0.6)
    c.sun(rotation=(math.radians(60), 0, math.radians(-40)), strength=1.2)
    c.point_light((1.9, 4.3, 1.3), power=40, color=(1.0, 0.75, 0.5))
    c.plane((0, 2.0, 0), size=10, mat=c.wood_material("Floor", scale=4), name="Floor")
    c.cube((0, 5.05, 1.4), (7.2, 0.1, 2.8), c.noise_material("Blue", (0.42, 0.5, 0.62), (0.45, 0.53, 0.65), scale=3,
                                                            roughness=0.85), name="BackWall")
    c.cube((-3.05, 2.4, 1.4), (0.1, 5.6, 2.8), c.noise_material("White", (0.8, 0.79, 0.76), (0.83, 0.82, 0.79), scale=3,
                                                               roughness=0.85), name="LeftWall")

    catalog.place("bedWithTexture", (-1.7, 3.8), rotation_deg=180)
    catalog.place("bedsideTable2", (-0.4, 4.7))
    catalog.place("lamp2", (-0.4, 4.7), elevation_cm=catalog.models["bedsideTable2"].size_cm[2])
    catalog.place("tatami", (-1.6, 1.9), rotation_deg=90)
    catalog.place("wardrobeWithSlidingDoors", (-2.65, 1.2), rotation_deg=90)
    catalog.place("desk", (1.9, 4.7))
    catalog.place("designChair", (1.9, 3.9), rotation_deg=170)
    catalog.place("shelves", (0.6, 4.78))
    catalog.place("electricGuitar", (1.0, 4.8))
    catalog.place("slippers", (-0.9, 2.3), rotation_deg=20)
    catalog.place("basketball", (0.2, 3.3))
    catalog.place("verticalShelves", (2.8, 3.0), rotation_deg=-90)
    catalog.place("modernArmchair", (2.2, 1.6), rotation_deg=-130)

    cam = c.camera(lens=24, location=(-0.5, -1.8, 1.4), rotation=(math.radians(84), 0, math.radians(-15)))
    c.keyframes(cam, "location", {1: (-0.5, -1.8, 1.4), 48: (0.8, -1.5, 1.7)})
    c.keyframes(cam, "rotation_euler", {1: (math.radians(84), 0, math.radians(-15)), 48: (math.radians(80), 0, math.radians(18))})
    return scene
