"""blockmap package."""
