"""Weight files: the project's own `.npz` parameter files and safe readers for foreign formats."""
