"""hydrator package."""
