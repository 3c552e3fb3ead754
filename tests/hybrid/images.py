"""Decode a PNG the way the drawing, `show` and report tests check pictures."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.image import imread


def decoded_png(path_or_bytes: Path | bytes) -> np.ndarray:
    """Return the pixels of a PNG, checked to be a real picture (size, not one flat colour)."""
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    img = imread(io.BytesIO(data), format="png")
    assert img.ndim == 3 and img.shape[0] >= 100 and img.shape[1] >= 100, img.shape
    colours = np.unique(img.reshape(-1, img.shape[2]), axis=0)
    assert len(colours) > 10, len(colours)
    return img
