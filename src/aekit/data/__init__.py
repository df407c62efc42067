"""Readers that turn a user's data into an in-memory `ImageData` (decoded once)."""

from .base import ImageData, Skipped
from .images import IMAGE_EXTENSIONS, read_images
from .memory import from_array, from_dataset, load_data

__all__ = ["IMAGE_EXTENSIONS", "ImageData", "Skipped", "from_array", "from_dataset", "load_data", "read_images"]
