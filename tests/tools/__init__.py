"""Tools: bench, blast, generator, demo."""
