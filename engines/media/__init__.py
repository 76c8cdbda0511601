"""Media files: reading, probing, writing and fitting audio and video."""
