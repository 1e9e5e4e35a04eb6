"""A living room furnished with real models (Sweet Home 3D's CC0 Blend Swap catalog) under a real HDRI sky.

Held out of every training run: the furniture meshes and their painted textures come from other people's work
(see scenes/sweethome3d.py; needs `apt-get install sweethome3d-furniture`), and the sky is one of the HDRI world
maps Blender ships. Ours are the walls, the floor, a sun and a warm point light, the layout and the camera move:
a slow sideways dolly that turns towards the sofa, the kind of move an architectural walkthrough makes.
"""
import math

from scenes import common as c
from scenes.sweethome3d import FurnitureCatalog

FRAMES = (1, 48)
HDRI = "courtyard.exr"


def build(seed: int = 0):
    catalog = FurnitureCatalog()  # first, so a missing catalog fails before the scene is replaced
    scene = c.new_scene(FRAMES)
    c.hdri_world(HDRI, 1.2)
    c.sun(rotation=(math.radians(50), 0, math.radians(-60)), strength=1.6)
    c.point_light((0.2, 2.6, 2.4), power=150, color=(1.0, 0.85, 0.7))
    c.plane((0, 2.0, 0), size=9, mat=c.wood_material("Floor", scale=6), name="Floor")
    plaster = c.noise_material("Plaster", (0.5, 0.47, 0.42), (0.6, 0.57, 0.5), scale=30, roughness=0.9)
    c.cube((0, 5.05, 1.4), (7.2, 0.1, 2.8), plaster, name="BackWall")
    c.cube((-3.05, 2.4, 1.4), (0.1, 5.6, 2.8), plaster, name="LeftWall")

    catalog.place("couch", (0.0, 4.5))
    catalog.place("teddyBear", (0.55, 4.45), elevation_cm=42)
    catalog.place("oakTable", (-0.7, 2.3))
    catalog.place("oakChair", (-0.7, 3.15), rotation_deg=0)
    catalog.place("oakChair", (-0.7, 1.45), rotation_deg=180)
    table_top = catalog.models["oakTable"].size_cm[2]
    catalog.place("bread", (-0.9, 2.2), elevation_cm=table_top)
    catalog.place("littlePlant", (-0.4, 2.45), elevation_cm=table_top)
    catalog.place("bookcase", (-2.8, 3.4), rotation_deg=90)
    catalog.place("televisionCabinet", (-2.65, 1.6), rotation_deg=90)
    catalog.place("drawersCabinet", (2.35, 4.65))
    drawers_top = catalog.models["drawersCabinet"].size_cm[2]
    catalog.place("desklamp", (2.2, 4.65), elevation_cm=drawers_top)
    catalog.place("kalender", (2.5, 4.6), elevation_cm=drawers_top)
    catalog.place("decorativePlant", (1.5, 4.55))
    catalog.place("armchair2", (1.9, 2.5), rotation_deg=125)  # turned to the open side of the room
    catalog.place("cuckooClock", (-1.7, 4.9), elevation_cm=120)
    catalog.place("orchids", (-2.8, 3.4), elevation_cm=catalog.models["bookcase"].size_cm[2])

    cam = c.camera(lens=28, location=(-1.0, -1.4, 1.55), rotation=(math.radians(82), 0, math.radians(-8)))
    c.keyframes(cam, "location", {1: (-1.0, -1.4, 1.55), 48: (1.0, -1.2, 1.5)})
    c.keyframes(cam, "rotation_euler", {1: (math.radians(82), 0, math.radians(-8)), 48: (math.radians(81), 0, math.radians(10))})
    return scene
