"""The field of view of raster photographs, and the scale that brings an image from another camera to the training scale.

Fundus photographs, dermoscopy and endoscopy frames show a bright disc on a dark surround; X-rays and most other
raster images fill the frame. A PNG carries no pixel size, so a model trained on 565-pixel DRIVE images sees vessels
1.7 times wider on a 960-pixel photograph from another camera, and the dark rim of its field of view looks like a
vessel edge. Two facts make such inputs comparable without a pixel size:

- **the extent**: the field of view's diameter when the image has a dark surround (its size on the sensor, which is
  what sets the vessel width in pixels; the frame around it varies between cameras), otherwise the longer side of the
  image (X-rays of the same body part at another hospital fill the frame the same way);
- **the field of view mask**, found from the image itself when no mask is given, so that nothing is predicted outside
  it and the rim is not segmented.

The plan stores the training extent (:func:`training_extent`): the median field-of-view diameter when every training
image shows a field of view of nearly one size (a camera's aperture), else the median longer side (a chest X-ray shows
a dark surround too, but it is the patient's outline, whose width varies from patient to patient and says nothing of
the scale). At prediction, the image is resampled by ``training extent / image extent`` and the prediction mapped
back to the image's own grid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

#: Share of the intensity range (99th percentile) below which a pixel counts as the dark surround.
DARK_FRACTION = 0.08
#: A field of view must cover this share of the image, and the corners must be this dark, to count as one.
MIN_COVER, MAX_COVER, DARK_CORNERS = 0.25, 0.97, 0.9
#: A training set's field of view counts when found in this share of its images, with this coefficient of variation.
MIN_FOUND, MAX_SPREAD = 0.9, 0.05
#: The fingerprint's ``extra`` key of the training extent.
RASTER_EXTENT_KEY = "raster_extent"
#: Pixels of rim dropped from a found field of view, as a share of its diameter (the rim's bright edge).
RIM_FRACTION = 0.01


@dataclass(frozen=True)
class Extent:
    """How large the content of a raster image is, in pixels.

    Attributes:
        pixels: the field of view's diameter (``measure == "fov"``) or the longer image side (``"image"``).
        measure: ``"fov"`` or ``"image"``.
    """

    pixels: float
    measure: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _brightness(array: np.ndarray) -> np.ndarray:
    """``(H, W)`` brightness of a ``(C, H, W)`` image: the brightest channel (the red one of a fundus photograph)."""
    a = np.asarray(array, dtype=np.float32)
    return a.max(axis=0) if a.ndim == 3 else a


def field_of_view(array: np.ndarray) -> np.ndarray | None:
    """The field of view of a 2D image ``(C, H, W)`` with a dark surround, as a boolean ``(H, W)`` mask, or ``None``
    when the image fills its frame (no dark corners)."""
    b = _brightness(array)
    if b.ndim != 2 or min(b.shape) < 16:
        return None
    hi = float(np.percentile(b, 99))
    lo = float(b.min())
    if hi <= lo:
        return None
    bright = b > lo + DARK_FRACTION * (hi - lo)
    lab, n = ndimage.label(bright)
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    mask = ndimage.binary_fill_holes(lab == int(np.argmax(sizes)) + 1)
    cover = float(mask.mean())
    h, w = mask.shape
    c = max(2, min(h, w) // 20)
    corners = np.concatenate([mask[:c, :c].ravel(), mask[:c, -c:].ravel(), mask[-c:, :c].ravel(), mask[-c:, -c:].ravel()])
    if not (MIN_COVER <= cover <= MAX_COVER) or float((~corners).mean()) < DARK_CORNERS:
        return None
    return np.asarray(mask, dtype=bool)


def extent_of(array: np.ndarray) -> Extent:
    """The extent of a 2D raster image ``(C, H, W)``: its field of view's diameter, or its longer side."""
    mask = field_of_view(array)
    if mask is None:
        return image_side(array)
    return Extent(pixels=_diameter(mask), measure="fov")


def _diameter(mask: np.ndarray) -> float:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    # the wider of the two spans: a disc clipped at the top and bottom keeps its full width
    return float(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))


def image_side(array: np.ndarray) -> Extent:
    """The longer side of a 2D image ``(C, H, W)``."""
    return Extent(pixels=float(max(np.shape(array)[-2:])), measure="image")


def measure(array: np.ndarray) -> tuple[float, float | None]:
    """``(longer side, field-of-view diameter or None)`` of one training image, for :func:`combine`."""
    e = extent_of(array)
    return image_side(array).pixels, (e.pixels if e.measure == "fov" else None)


def combine(measured: Iterable[tuple[float, float | None]]) -> Extent:
    """The extent of a training set from its images' :func:`measure`: the median field-of-view diameter when at least
    ``MIN_FOUND`` of the images show one and the diameters vary by at most ``MAX_SPREAD`` (coefficient of variation),
    else the median longer side."""
    sides, fovs = [], []
    for side, fov in measured:
        sides.append(side)
        if fov is not None:
            fovs.append(fov)
    if not sides:
        raise ValueError("a training extent needs at least one image")
    if len(fovs) >= MIN_FOUND * len(sides) and float(np.std(fovs)) <= MAX_SPREAD * float(np.mean(fovs)):
        return Extent(pixels=float(np.median(fovs)), measure="fov")
    return Extent(pixels=float(np.median(sides)), measure="image")


def training_extent(arrays: Iterable[np.ndarray]) -> Extent:
    """The extent of a training set of 2D images ``(C, H, W)`` (see :func:`combine`)."""
    return combine(measure(a) for a in arrays)


def extent_from_fingerprint(fingerprint: dict[str, Any]) -> Extent | None:
    """The training extent a plan recorded (``fingerprint.full.extra.raster_extent``), or ``None`` for a dataset
    with physical spacing (or a plan from before it was recorded)."""
    full = fingerprint.get("full", fingerprint) if isinstance(fingerprint, dict) else {}
    d = (full.get("extra") or {}).get(RASTER_EXTENT_KEY) if isinstance(full, dict) else None
    if not isinstance(d, dict) or d.get("measure") not in ("fov", "image"):
        return None
    return Extent(pixels=float(d["pixels"]), measure=str(d["measure"]))


def scale_to_training(array: np.ndarray, training: Extent, *, tolerance: float = 0.05) -> float:
    """The factor ``training extent / image extent`` that brings ``array`` to the training scale (1.0 within
    ``tolerance``, so images from the training camera are not resampled for nothing).

    The image is measured the way the training images were: a field-of-view diameter against a diameter, a side
    against a side. When the training images had a field of view and this one shows none, its longer side is compared
    with the training diameter, which is the best fact left.
    """
    mine = extent_of(array) if training.measure == "fov" else image_side(array)
    if mine.measure != training.measure:
        mine = image_side(array)
    factor = training.pixels / max(mine.pixels, 1.0)
    return 1.0 if abs(factor - 1.0) <= tolerance else float(factor)


def prediction_region(array: np.ndarray) -> np.ndarray | None:
    """Where a prediction may be foreground: the found field of view less a thin rim (``RIM_FRACTION`` of its
    diameter, at least one pixel), or ``None`` when the image has no dark surround."""
    mask = field_of_view(array)
    if mask is None:
        return None
    rim = max(1, int(round(RIM_FRACTION * _diameter(mask))))
    return np.asarray(ndimage.binary_erosion(mask, iterations=rim), dtype=bool)
