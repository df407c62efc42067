"""Readers that turn a user's data into an in-memory `LoadedData` (decoded once); `open_data`
(source.py) is the one way in."""

from aekit.data.base import LoadedData, Skipped
from aekit.data.images import IMAGE_EXTENSIONS, read_images

__all__ = [
    "IMAGE_EXTENSIONS",
    "LoadedData",
    "Request",
    "Skipped",
    "from_array",
    "from_dataset",
    "load_data",
    "open_data",
    "read_images",
]


def __getattr__(name: str):
    if name in ("from_array", "from_dataset"):  # these import torch
        from aekit.data import memory

        return getattr(memory, name)
    if name in ("load_data", "open_data", "Request"):
        from aekit.data import source

        return getattr(source, name)
    raise AttributeError(f"module 'aekit.data' has no attribute {name!r}")
