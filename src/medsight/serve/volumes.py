"""Volumes for the viewer: compact binaries with their geometry, and windowed slice PNGs.

A :class:`Volume` holds ``data`` ``(C, *spatial)`` in the smallest dtype that keeps the values (``uint8``,
``int16`` or ``float32``; probabilities and heat maps as ``uint8`` with ``scale`` 1/255) plus the geometry of the
:class:`~medsight.core.image.Image` it came from: spacing per array axis (mm), origin and direction (LPS). The viewer
fetches ``meta()`` as JSON and the bytes (gzip) once, then slices, windows and colours in the browser.

Slices: ``axial`` fixes array axis 0 (``(y, x)`` shown), ``coronal`` axis 1 (``(z, x)``), ``sagittal`` axis 2
(``(z, y)``). For coronal and sagittal the rows are flipped when array axis 0 runs towards superior, so the head is
up. A 2D image has one plane (``axial``, index 0). The viewer applies the same rules.
"""

from __future__ import annotations

import gzip
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from medsight.core.display import label_colour, window_bounds
from medsight.core.image import Image
from medsight.report.overlay import encode_png, to_display
from medsight.serve.security import api_error

AXES = {"axial": 0, "coronal": 1, "sagittal": 2}
_SAMPLE = 1_000_000


def _compact(array: np.ndarray) -> np.ndarray:
    """The smallest of uint8 / int16 / float32 that holds ``array`` exactly (float32 for non-integer values)."""
    arr = np.asarray(array)
    integral = arr.dtype.kind in "iub"
    if arr.dtype.kind == "f" and arr.size:
        finite = bool(np.isfinite(arr).all())
        integral = finite and bool(np.array_equal(arr, np.round(arr)))
    if integral and arr.size:
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0 and hi <= 255:
            return np.ascontiguousarray(arr, dtype=np.uint8)
        if lo >= -32768 and hi <= 32767:
            return np.ascontiguousarray(arr, dtype=np.int16)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _display_range(arr: np.ndarray) -> tuple[float, float]:
    """0.5 and 99.5 percentiles of the finite values (of at most a million samples)."""
    flat = arr.reshape(-1)
    flat = flat[:: max(1, flat.size // _SAMPLE)].astype(np.float64)
    flat = flat[np.isfinite(flat)]
    if not flat.size:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(flat, [0.5, 99.5]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


@dataclass(frozen=True, eq=False)
class Volume:
    """Viewer data: ``data`` ``(C, *spatial)``, what it is (``kind``), and the geometry.

    Attributes:
        kind: ``image``, ``labels``, ``probabilities`` or ``heatmap``.
        scale: real value = stored value * scale (1/255 for probabilities and heat maps).
        grid: ``native`` (the input's grid) or ``network`` (the network's input grid, for Grad-CAM).
        labels: label value -> ``{"name", "colour"}`` for label maps; class names for probabilities.
        window: the default display window ``(low, high)`` in real values.
    """

    data: np.ndarray
    kind: str
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[tuple[float, ...], ...]
    modality: str = ""
    grid: str = "native"
    scale: float = 1.0
    labels: dict[str, Any] = field(default_factory=dict)
    window: tuple[float, float] = (0.0, 1.0)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape[1:])

    @cached_property
    def value_range(self) -> tuple[float | None, float | None]:
        """(min, max) of the finite values in real units (computed once)."""
        finite = self.data[np.isfinite(self.data)] if self.data.dtype.kind == "f" else self.data
        if not finite.size:
            return None, None
        return float(finite.min()) * self.scale, float(finite.max()) * self.scale

    def meta(self) -> dict[str, Any]:
        """Geometry and value facts as JSON (no patient identifiers)."""
        low, high = self.value_range
        return {
            "kind": self.kind, "shape": list(self.shape), "channels": int(self.data.shape[0]),
            "dtype": str(self.data.dtype), "scale": self.scale, "spacing": list(self.spacing),
            "origin": list(self.origin), "direction": [list(r) for r in self.direction], "modality": self.modality,
            "grid": self.grid, "labels": self.labels, "window": list(self.window),
            "min": low, "max": high,
            "rows_flipped": self.rows_flipped, "bytes": int(self.data.nbytes),
        }

    @property
    def rows_flipped(self) -> bool:
        """Whether coronal/sagittal rows are shown flipped (array axis 0 runs towards superior)."""
        return len(self.shape) == 3 and self.direction[2][0] > 0

    @cached_property
    def gzip_bytes(self) -> bytes:
        """``data`` as C-order little-endian bytes, gzip-compressed (computed once)."""
        return gzip.compress(self.data.astype(self.data.dtype.newbyteorder("<"), copy=False).tobytes(), compresslevel=1)

    def plane(self, axis: str, index: int, channel: int = 0) -> np.ndarray:
        """One slice ``(rows, cols)`` in stored values, oriented as the viewer shows it."""
        if axis not in AXES:
            raise api_error(400, f"an axis among {', '.join(AXES)}", repr(axis), None, "fix the 'axis' parameter")
        ndim = len(self.shape)
        if ndim == 2 and axis != "axial":
            raise api_error(400, "the axial plane for a 2D image", repr(axis), None, "use axis=axial")
        if not 0 <= channel < self.data.shape[0]:
            raise api_error(400, f"a channel in 0..{self.data.shape[0] - 1}", channel, None, "fix the 'channel' parameter")
        if ndim == 2:
            if index != 0:
                raise api_error(400, "index 0 for a 2D image", index, None, "use index=0")
            return self.data[channel]
        size = self.shape[AXES[axis]]
        if not 0 <= index < size:
            raise api_error(400, f"a slice index in 0..{size - 1} for the {axis} plane", index, None, "fix 'index'")
        plane = np.take(self.data[channel], index, axis=AXES[axis])
        return plane[::-1] if axis != "axial" and self.rows_flipped else plane

    def pixel_spacing(self, axis: str) -> tuple[float, float]:
        """(row, column) spacing in mm of a plane."""
        if len(self.shape) == 2:
            return self.spacing[0], self.spacing[1]
        keep = [a for a in range(3) if a != AXES[axis]]
        return self.spacing[keep[0]], self.spacing[keep[1]]


def _geometry(image: Image) -> dict[str, Any]:
    return {"spacing": tuple(image.spacing), "origin": tuple(image.origin),
            "direction": tuple(tuple(float(v) for v in row) for row in image.direction),
            "modality": image.source.modality}


def image_volume(image: Image, *, grid: str = "native") -> Volume:
    """An intensity image; the default window is ``soft_tissue`` for CT, else the 0.5-99.5 percentiles."""
    data = _compact(image.array)
    if image.source.modality == "CT":

        window = window_bounds("soft_tissue")
    else:
        window = _display_range(data)
    return Volume(data=data, kind="image", grid=grid, window=window, **_geometry(image))


def label_volume(image: Image, names: Mapping[str, int] | None = None) -> Volume:
    """A label map ``(1, *spatial)`` with a name and colour per value present or named."""

    data = np.rint(np.asarray(image.array)).astype(np.int64) if image.array.dtype.kind == "f" else np.asarray(image.array)
    data = np.ascontiguousarray(data, dtype=np.uint8 if data.max(initial=0) < 256 and data.min(initial=0) >= 0 else np.int16)
    by_value = {int(v): n for n, v in (names or {}).items()}
    values = sorted({int(v) for v in np.unique(data)} | set(by_value)) if data.size else sorted(by_value)
    labels = {str(v): {"name": by_value.get(v, f"label {v}"), "colour": list(label_colour(v))} for v in values if v != 0}
    return Volume(data=data, kind="labels", labels=labels, window=(0.0, float(max(values, default=1))),
                  **_geometry(image))


def fraction_volume(array: np.ndarray, like: Image, *, kind: str, names: list[str] | None = None,
                    grid: str = "native") -> Volume:
    """Probabilities ``(K, *spatial)`` or a heat map ``(1, *spatial)`` in [0, 1], stored as uint8 (scale 1/255)."""
    arr = np.nan_to_num(np.asarray(array, dtype=np.float32), nan=0.0)
    data = np.ascontiguousarray(np.rint(np.clip(arr, 0.0, 1.0) * 255.0), dtype=np.uint8)
    labels = {str(i): n for i, n in enumerate(names or [])}
    return Volume(data=data, kind=kind, scale=1.0 / 255.0, labels=labels, grid=grid, window=(0.0, 1.0), **_geometry(like))


def render_png(volume: Volume, axis: str, index: int, *, channel: int = 0,
               window: tuple[float, float] | None = None) -> bytes:
    """PNG bytes of one slice: a windowed grey (or RGB) image, a coloured label map, or a grey [0, 1] map."""

    if volume.kind == "labels":
        values = volume.plane(axis, index, 0).astype(np.int64)
        rgb = np.zeros((*values.shape, 3), dtype=np.uint8)
        for v in np.unique(values):
            if v != 0:
                rgb[values == v] = label_colour(int(v))
        return encode_png(rgb)
    if volume.kind == "image" and volume.data.shape[0] == 3 and len(volume.shape) == 2 and volume.data.dtype == np.uint8:
        return encode_png(np.stack([volume.plane(axis, index, c) for c in range(3)], axis=-1))
    plane = volume.plane(axis, index, channel).astype(np.float64) * volume.scale
    lo, hi = window or volume.window
    return encode_png(to_display(plane, window=((lo + hi) / 2.0, max(hi - lo, 1e-6))))


class VolumeCache:
    """A small thread-safe LRU of loaded volumes (loading reads and converts whole files): at most ``capacity``
    volumes and ``max_bytes`` of arrays (the newest volume is always kept)."""

    def __init__(self, capacity: int = 8, max_bytes: int = 1024**3) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, Volume] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], Volume]) -> Volume:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        volume = load()
        with self._lock:
            self._items[key] = volume
            while len(self._items) > 1 and (len(self._items) > self.capacity or
                                            sum(v.data.nbytes for v in self._items.values()) > self.max_bytes):
                self._items.popitem(last=False)
        return volume

    def drop(self, prefix: Hashable) -> None:
        """Forget every volume whose key starts with ``prefix`` (keys are tuples)."""
        with self._lock:
            for key in [k for k in self._items if isinstance(k, tuple) and k[:1] == (prefix,)]:
                del self._items[key]


__all__ = ["AXES", "Volume", "VolumeCache", "fraction_volume", "image_volume", "label_volume", "render_png"]
