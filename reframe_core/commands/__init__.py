"""The reframe-blender subcommands, grouped by job; bpy is imported only inside commands that render."""
