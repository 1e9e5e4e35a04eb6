"""Blender-side code (imports bpy): capture, dataset writing, the render loop and, later, the add-on."""
