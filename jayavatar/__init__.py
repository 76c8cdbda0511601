"""JayAvatar: a self-hosted talking-avatar system."""

__version__ = "0.1.0"
