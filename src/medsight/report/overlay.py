"""Overlays of label maps on images, for reports and quick checks.

An overlay is an ``(H, W, 3)`` uint8 RGB array: the image rescaled to grey (percentiles 0.5-99.5, a
``(level, width)`` window or a CT preset name such as ``"lung"``), each label as a semi-transparent fill with a solid contour in its colour from a
fixed table (the first entries follow ITK-SNAP: red, green, blue, yellow, cyan, magenta), and an optional
reference drawn as a contour only, in a colour of its own (white by default), beneath the label contours: where
prediction and reference agree the label colour shows, and the reference colour marks what was missed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medsight.core.atomic import write_bytes
from medsight.core.display import REFERENCE_COLOUR, WindowSpec, label_colour, resolve_window
from medsight.errors import MedsightError


def to_display(image: np.ndarray, *, window: WindowSpec | None = None) -> np.ndarray:
    """Rescale an image to uint8 for display.

    Args:
        image: ``(H, W)`` grey or ``(H, W, 3)`` RGB, any numeric type.
        window: ``(level, width)`` in image units (e.g. HU ``(40, 400)``) or a preset name (``"lung"``, see
            :mod:`medsight.core.display`); default: the 0.5 and 99.5 percentiles of the finite values
            map to 0 and 255.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] == 3)):
        raise MedsightError(f"Expected an image of shape (H, W) or (H, W, 3), got {img.shape}; pass one slice")
    finite = np.isfinite(img)
    if window is not None:
        level, width = resolve_window(window)
        lo, hi = level - width / 2.0, level + width / 2.0
    elif finite.any():
        lo, hi = (float(v) for v in np.percentile(img[finite], [0.5, 99.5]))
    else:
        lo, hi = 0.0, 1.0
    scaled = (np.where(finite, img, lo) - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    out = np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=-1) if out.ndim == 2 else out


def contour(mask: np.ndarray) -> np.ndarray:
    """Boolean ``(H, W)`` outline of a mask: its pixels with a 4-neighbour outside it (or on the image border)."""
    from scipy.ndimage import binary_erosion

    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return m
    return m & ~binary_erosion(m, border_value=0)


def overlay_png(
    image: np.ndarray,
    label: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    colours: Mapping[int, Sequence[int]] | None = None,
    window: WindowSpec | None = None,
    alpha: float = 0.35,
    reference_colour: Sequence[int] = REFERENCE_COLOUR,
) -> np.ndarray:
    """Draw a label map (and optionally a reference contour) over an image.

    Args:
        image: ``(H, W)`` float (grey) or ``(H, W, 3)`` RGB.
        label: ``(H, W)`` integer label map; 0 is background.
        reference: optional ``(H, W)`` reference label map, drawn as contours in ``reference_colour``.
        colours: label value -> RGB (0-255) overrides for :data:`LABEL_COLOURS`.
        window: ``(level, width)`` display window or a preset name (``"lung"``); default percentiles 0.5-99.5.
        alpha: opacity of the label fills (contours are opaque).
        reference_colour: RGB of the reference contours.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    rgb = to_display(image, window=window).astype(np.float32)
    lab = np.asarray(label)
    if lab.shape != rgb.shape[:2]:
        raise MedsightError(f"Expected a label map of the image's shape {rgb.shape[:2]}, got {lab.shape}; "
                            "pass the matching slice")
    if not 0.0 <= alpha <= 1.0:
        raise MedsightError(f"Expected alpha in [0, 1], got {alpha}; e.g. 0.35")
    ref = None if reference is None else np.asarray(reference)
    if ref is not None and ref.shape != lab.shape:
        raise MedsightError(f"Expected a reference of the label's shape {lab.shape}, got {ref.shape}; "
                            "pass the matching slice")
    values = [int(v) for v in np.unique(lab) if v != 0]
    for value in values:
        mask = lab == value
        rgb[mask] = (1.0 - alpha) * rgb[mask] + alpha * np.asarray(label_colour(value, colours), dtype=np.float32)
    if ref is not None:  # under the label contours: where both agree the label colour shows, elsewhere the reference
        colour = np.asarray(reference_colour, dtype=np.float32)
        for value in np.unique(ref):
            if value != 0:
                rgb[contour(ref == value)] = colour
    for value in values:
        rgb[contour(lab == value)] = np.asarray(label_colour(value, colours), dtype=np.float32)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def best_slice(label_3d: np.ndarray, *, axis: int = 0) -> int:
    """Index of the slice along ``axis`` with the most foreground (non-zero) voxels; the middle one if none.

    Args:
        label_3d: ``(D, H, W)`` label map.
        axis: the slicing axis (0: axial slices of a row-major volume).
    """
    lab = np.asarray(label_3d)
    if lab.ndim != 3:
        raise MedsightError(f"Expected a 3D label map (D, H, W), got shape {lab.shape}; drop the channel axis")
    axes = tuple(a for a in range(3) if a != axis % 3)
    counts = np.count_nonzero(lab, axis=axes)
    return int(np.argmax(counts)) if counts.any() else lab.shape[axis] // 2


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W, 3)`` (or ``(H, W)``) uint8 array."""
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def save_overlay(
    path: str | Path,
    image: np.ndarray,
    label: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    colours: Mapping[int, Sequence[int]] | None = None,
    window: WindowSpec | None = None,
    alpha: float = 0.35,
) -> Path:
    """Render :func:`overlay_png` and write it atomically as a PNG file; returns ``path``."""
    data = encode_png(overlay_png(image, label, reference=reference, colours=colours, window=window, alpha=alpha))
    return write_bytes(path, data)


__all__ = [
    "REFERENCE_COLOUR", "best_slice", "contour", "encode_png", "label_colour", "overlay_png",
    "save_overlay", "to_display",
]
