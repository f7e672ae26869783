"""The :class:`Image`: a channels-first array with its physical geometry.

Conventions (used everywhere in medsight):

* ``array`` has shape ``(C, *spatial)``: ``(C, H, W)`` for 2D, ``(C, D, H, W)`` for 3D. Spatial axes are in
  row-major order, the order of NumPy arrays from SimpleITK, PNG rows/columns and DICOM slice stacks:
  ``(z, y, x)`` for volumes and ``(y, x)`` for 2D images.
* ``spacing[i]`` is the size (mm) of one voxel along spatial array axis ``i``.
* ``origin`` is the physical position (mm, DICOM/ITK LPS patient coordinates) of the centre of the first voxel;
  it has one entry per spatial dimension, in physical order ``(x, y[, z])``.
* ``direction`` is a ``(d, d)`` matrix whose column ``i`` is the physical unit vector of spatial array axis ``i``.

So the physical position of array index ``idx`` is ``origin + direction @ (spacing * idx)``, see :attr:`affine`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import user_error

#: Reader names of picture and array formats (no physical geometry).
RASTER_FORMATS = frozenset({"png", "gif", "jpeg", "jpg", "tiff", "tif", "bmp", "npz"})


@dataclass(frozen=True)
class SourceInfo:
    """Where an image came from. Holds no patient identifiers.

    Attributes:
        path: the file or folder it was read from.
        format: reader name (``"dicom"``, ``"nifti"``, ``"png"``, ...).
        modality: DICOM modality (``"CT"``, ``"MR"``, ...) or ``""`` when unknown.
        series_uid: DICOM SeriesInstanceUID, or ``""``.
        description: series description or other short human label.
        extra: further reader-specific facts as strings (e.g. rescale applied, transfer syntax).
    """

    path: str = ""
    format: str = ""
    modality: str = ""
    series_uid: str = ""
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def _as_tuple(values: Any, n: int, name: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in np.asarray(values, dtype=float).ravel())
    if len(out) != n:
        raise ValueError(f"Expected {n} values for {name}, got {len(out)}: {out}")
    return out


@dataclass(frozen=True, eq=False)
class Image:
    """A channels-first image with geometry.

    Args:
        array: ``(C, H, W)`` or ``(C, D, H, W)``.
        spacing: voxel size per spatial array axis (mm). Defaults to 1.
        origin: physical position of the first voxel (mm, LPS). Defaults to 0.
        direction: ``(d, d)``; column ``i`` is the unit vector of spatial axis ``i``. Defaults to
            the row-major identity (axis 0 of a volume runs along z).
        source: where the image came from.
    """

    array: np.ndarray
    spacing: tuple[float, ...] = ()
    origin: tuple[float, ...] = ()
    direction: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    source: SourceInfo = field(default_factory=SourceInfo)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim not in (3, 4):
            raise ValueError(
                f"Expected an array of shape (C, H, W) or (C, D, H, W), got shape {arr.shape}; "
                "add a channel axis with array[None]"
            )
        d = arr.ndim - 1
        object.__setattr__(self, "array", arr)
        spacing = self.spacing if len(self.spacing) else (1.0,) * d
        origin = self.origin if len(self.origin) else (0.0,) * d
        object.__setattr__(self, "spacing", _as_tuple(spacing, d, "spacing"))
        object.__setattr__(self, "origin", _as_tuple(origin, d, "origin"))
        direction = np.asarray(self.direction, dtype=float)
        if direction.size == 0:
            direction = np.eye(d)[:, ::-1].copy()  # array axis 0 = physical last axis (z or y)
        if direction.shape != (d, d):
            raise ValueError(f"Expected a {d}x{d} direction matrix, got shape {direction.shape}")
        direction = direction.copy()
        direction.setflags(write=False)
        object.__setattr__(self, "direction", direction)
        if any(s <= 0 or not np.isfinite(s) for s in self.spacing):
            raise ValueError(f"Expected positive finite spacing, got {self.spacing} for {self.source.path or 'image'}")

    # ----------------------------------------------------------------- shape facts
    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return self.array.ndim - 1

    @property
    def num_channels(self) -> int:
        return int(self.array.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape (without the channel axis)."""
        return tuple(int(s) for s in self.array.shape[1:])

    @property
    def is_raster(self) -> bool:
        """Read from a picture or array file (PNG, TIFF, JPEG, GIF, BMP, NPZ): its spacing and origin are not
        physical, so geometry comparisons and mm distances do not apply."""
        return self.source.format.lower() in RASTER_FORMATS

    @property
    def affine(self) -> np.ndarray:
        """``(d+1, d+1)`` matrix mapping array indices to physical LPS coordinates (mm)."""
        d = self.ndim
        a = np.eye(d + 1)
        a[:d, :d] = self.direction * np.asarray(self.spacing)[None, :]
        a[:d, d] = self.origin
        return a

    @property
    def orientation(self) -> str:
        """Orientation code (one letter per spatial array axis, the direction it runs *towards*), e.g. ``"SPL"``.

        Letters are in LPS terms: L/R, P/A, S/I. For 2D images the letters describe x/y only.
        """
        pos = "LPS"
        neg = "RAI"
        code = []
        for i in range(self.ndim):
            col = self.direction[:, i]
            k = int(np.argmax(np.abs(col)))
            code.append(pos[k] if col[k] > 0 else neg[k])
        return "".join(code)

    # ----------------------------------------------------------------- helpers
    def with_array(self, array: np.ndarray, **changes: Any) -> Image:
        """A copy with a new array (same spatial geometry unless ``changes`` say otherwise)."""
        return dataclasses.replace(self, array=array, **changes)

    def same_geometry(self, other: Image, *, atol: float = 1e-3) -> bool:
        """Whether both images share spatial shape, spacing, origin and direction (within ``atol`` mm)."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=atol)
            and np.allclose(self.direction, other.direction, atol=atol)
        )

    def describe(self) -> dict[str, Any]:
        """Facts for ``medsight info`` and reports (no pixel data, no patient identifiers)."""
        arr = self.array
        finite = np.isfinite(arr) if arr.dtype.kind == "f" else None
        values = arr[finite] if finite is not None else arr
        return {
            "path": self.source.path,
            "format": self.source.format,
            "channels": self.num_channels,
            "shape": list(self.shape),
            "spacing_mm": [round(s, 6) for s in self.spacing],
            "origin_mm": [round(o, 4) for o in self.origin],
            "orientation": self.orientation,
            "dtype": str(arr.dtype),
            "min": float(values.min()) if values.size else None,
            "max": float(values.max()) if values.size else None,
            "non_finite_voxels": int((~finite).sum()) if finite is not None else 0,
            "modality": self.source.modality,
            "series_uid": self.source.series_uid,
        }

    def __repr__(self) -> str:
        return (
            f"Image(shape={(self.num_channels, *self.shape)}, dtype={self.array.dtype}, spacing={self.spacing}, "
            f"orientation={self.orientation!r}, source={Path(self.source.path).name or '-'})"
        )


def integer_labels(array: np.ndarray, where: str | Path | None) -> np.ndarray:
    """A label map's array as integers: fractional or negative values are one clear error (write argmax labels)."""
    array = np.asarray(array)
    if array.dtype.kind == "f" and not np.all(np.equal(np.mod(array, 1), 0)):
        raise user_error("an integer label map", f"dtype {array.dtype} with fractions", where, "write the argmax labels")
    if array.min(initial=0) < 0:
        raise user_error("non-negative label values", f"minimum {array.min()}", where, "write the argmax labels")
    return array if array.dtype.kind in "biu" else array.astype(np.int64)
