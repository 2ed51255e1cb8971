"""Activities: everything that touches the world, grouped by the party that owns it."""
