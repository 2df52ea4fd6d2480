"""Tasks: the on-disk format, its validation, and the built-in task sources."""
