"""Blender-side code (imports bpy): the add-on (registered by :mod:`blender_addon.addon` from the installed
extension's entry, :mod:`blender_addon.entry`), capture, frame output, the render loop and the viewport overlay."""
