"""Initialisation through an explicit numpy.random.Generator (placeholder, see helper)."""
