"""Registration of everything the add-on adds to Blender, in one place (the extension's entry calls it)."""
from __future__ import annotations

import bpy

from blender_addon import operators, settings, ui, viewport

_keymaps: list = []


@bpy.app.handlers.persistent
def warn_plain_render(scene, *args):
    """F12 / Ctrl F12 (or ``blender -a``) on a scene with ReFrame enabled renders without the network: say so
    instead of skipping it silently."""
    from blender_addon import render_loop

    if render_loop.ACTIVE_RUNS or not getattr(getattr(scene, "reframe", None), "enabled", False):
        return
    message = ("ReFrame is enabled on this scene, but this is Blender's own render, without the network: use Render > "
               "Render Animation (ReFrame) (Ctrl Shift F12), or bpy.ops.reframe.render_animation() headless")
    print(f"ReFrame: {message}")
    if not bpy.app.background:
        # render_init may run on the render job's thread: the popup goes up from the main thread, via a timer.
        def popup():
            def draw(menu, context):
                menu.layout.label(text="ReFrame is enabled on this scene, but F12 / Ctrl F12 render without the network.")
                menu.layout.label(text="Use Render > Render Animation (ReFrame) (Ctrl Shift F12) or Render Frame (ReFrame).")

            windows = bpy.context.window_manager.windows
            if windows:
                with bpy.context.temp_override(window=windows[0]):
                    bpy.context.window_manager.popup_menu(draw, title="ReFrame is not rendering this", icon="INFO")
            return None

        bpy.app.timers.register(popup, first_interval=0.0)


def register(package: str) -> None:
    """``package``: the add-on's module name as Blender knows it (its preferences live under it)."""
    settings.register(package)
    for cls in operators.CLASSES:
        bpy.utils.register_class(cls)
    viewport.register()
    ui.register()
    bpy.app.handlers.render_init.append(warn_plain_render)
    keyconfig = bpy.context.window_manager.keyconfigs.addon
    if keyconfig is not None:  # none in background mode
        keymap = keyconfig.keymaps.new(name="Screen", space_type="EMPTY")
        # Ctrl Shift F12 beside Ctrl F12 (Blender's plain animation render, which does not run the network)
        _keymaps.append((keymap, keymap.keymap_items.new("reframe.render_animation", "F12", "PRESS", ctrl=True,
                                                         shift=True)))


def unregister() -> None:
    if warn_plain_render in bpy.app.handlers.render_init:
        bpy.app.handlers.render_init.remove(warn_plain_render)
    for keymap, item in _keymaps:
        keymap.keymap_items.remove(item)
    _keymaps.clear()
    ui.unregister()
    viewport.unregister()
    for cls in reversed(operators.CLASSES):
        bpy.utils.unregister_class(cls)
    settings.unregister()
