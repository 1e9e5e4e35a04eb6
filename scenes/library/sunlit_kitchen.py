"""A kitchen-diner of real models (Sweet Home 3D's CC0 catalog) in low evening sun: training data for real assets.

Other models, sky and light than the held-out ``furnished_room`` (same catalog, none of its pieces): kitchen
cabinets, a fridge, an oven, a table with a cloth and bentwood chairs against smooth painted walls that a low sun
(Blender's ``sunset.exr`` sky plus a sun lamp) lights in broad flat patches, the surfaces the network must leave
alone rather than tint. The camera arcs past the table towards the counter, faster than ``furnished_room``'s dolly.
"""
import math

from scenes import common as c
from scenes.sweethome3d import FurnitureCatalog

FRAMES = (1, 48)
HDRI = "sunset.exr"


def build(seed: int = 0):
    catalog = FurnitureCatalog()  # first, so a missing catalog fails before the scene is replaced
    scene = c.new_scene(FRAMES)
    c.hdri_world(HDRI, 1.0)
    c.sun(rotation=(math.radians(72), 0, math.radians(-120)), strength=3.0)
    c.point_light((0.5, 2.5, 2.5), power=80, color=(1.0, 0.9, 0.8))
    c.plane((0, 2.0, 0), size=10, mat=c.checker_material("Tiles", (0.62, 0.6, 0.56), (0.32, 0.3, 0.28), scale=40), name="Floor")
    paint = c.noise_material("Paint", (0.55, 0.62, 0.52), (0.57, 0.64, 0.54), scale=4, roughness=0.8)
    c.cube((0, 5.05, 1.4), (7.2, 0.1, 2.8), paint, name="BackWall")
    c.cube((-3.05, 2.4, 1.4), (0.1, 5.6, 2.8), c.noise_material("Paint2", (0.72, 0.66, 0.55), (0.74, 0.68, 0.57), scale=4,
                                                               roughness=0.8), name="LeftWall")

    # The counter along the back wall: lower cabinets, the sink, the oven and the fridge, upper cabinets above.
    y = 5.0 - 0.62 / 2
    catalog.place("lowerCornerCabinet", (-2.55, 4.6))
    for x in (-1.8, -1.2):
        catalog.place("lowerCabinet", (x, y))
    catalog.place("sinkCabinet", (-0.6, y))
    catalog.place("doubleOven", (0.0, 5.0 - 0.52 / 2))
    catalog.place("lowerCabinet", (0.6, y))
    catalog.place("refrigerator", (1.5, 5.0 - 0.96 / 2))
    counter = catalog.models["lowerCabinet"].size_cm[2]
    catalog.place("kitchenaid", (-1.8, 4.75), elevation_cm=counter)
    catalog.place("coffeeBrewer", (0.6, 4.8), elevation_cm=counter)
    for x in (-1.8, -1.2, -0.6):
        catalog.place("upperCabinet", (x, 5.0 - 0.41 / 2), elevation_cm=150)
    catalog.place("rangeHood", (0.0, 5.0 - 0.32 / 2), elevation_cm=160)
    catalog.place("radiator3", (-2.95, 2.4), rotation_deg=-90)

    catalog.place("tableWithTablecloth", (-0.6, 2.3))
    for x, y2, turn in ((-0.6, 2.95, 180), (-0.6, 1.65, 0), (-1.25, 2.3, -90), (0.05, 2.3, 90)):
        catalog.place("thonet", (x, y2), rotation_deg=turn)
    top = catalog.models["tableWithTablecloth"].size_cm[2]
    catalog.place("cactus", (-0.5, 2.2), elevation_cm=top)
    catalog.place("plasticCup", (-0.8, 2.4), elevation_cm=top)
    catalog.place("plant", (2.4, 3.2))
    catalog.place("dustbin", (2.1, 4.7))

    cam = c.camera(lens=26, location=(1.6, -1.0, 1.6), rotation=(math.radians(80), 0, math.radians(25)))
    c.keyframes(cam, "location", {1: (1.6, -1.0, 1.6), 48: (-1.4, -0.6, 1.45)})
    c.keyframes(cam, "rotation_euler", {1: (math.radians(80), 0, math.radians(25)), 48: (math.radians(78), 0, math.radians(-20))})
    return scene
