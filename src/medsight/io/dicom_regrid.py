"""Irregular DICOM slice stacks (gantry tilt, uneven spacing, missing slices) onto a regular grid, and back.

A series whose slices are not a regular stack (see :mod:`medsight.io.dicom_geometry` for what counts as
irregular) cannot be described by one origin, spacing and direction. Stacking its slices with the median step
(what medsight did before) puts slices up to tens of millimetres from where the scanner recorded them and shears a
tilted series. Instead the reader reconstructs the series onto a *regular grid* from the recorded slice positions,
so that every voxel sits where the scanner put it:

* **Axes**: the slice normal ``n = row x col`` of ImageOrientationPatient (for a tilted series: the normal of the
  image plane, not the drifting line through the slice origins), the column cosine (down the rows) and the row
  cosine (along a row): the same direction matrix ``[n, col, row]`` as a regular series.
* **Step along n**: ``h`` = the smallest step between consecutive recorded slices that at least 10 % of the steps
  (and at least two) share within ``max(0.01 mm, 1 %)``; without such a step, the median step. That is the regular
  step of a series with missing slices and the step of the finest slab of a multi-slab series (dcm2niix chooses the
  same), so no recorded resolution is lost.
* **Extent along n**: from the first recorded slice, ``M = round(span / h) + 1`` grid slices, so the last grid slice
  lies within ``h / 2`` of the last recorded slice.
* **Extent in-plane**: the pixel lattice of the first slice, extended by whole pixels until it covers every
  recorded slice (a tilted series drifts in-plane, so the grid has more rows or columns than one slice).

Values (:func:`reconstruct`): a grid voxel takes the value interpolated linearly along ``n`` between the two recorded
slices whose planes enclose it, each sampled bilinearly at the foot of the voxel on its own plane (scipy). A grid
slice within the snap tolerance ``max(0.01 mm, 1 % of h)`` of a recorded slice (the tolerance that calls spacing
regular) takes that slice alone, so recorded values are kept exactly. In-plane areas that no recorded slice covers
(the corners a tilt uncovers) take the series' minimum value (air for CT, background for MR), as dcm2niix does. The
volume is ``float32``.

Gaps (:data:`MAX_GAP_FACTOR`): a step of up to 2 x the median step (one missing slice) is bridged by the same
interpolation. A wider gap would invent more than one slice of anatomy: :func:`check_gaps` refuses it with one line
unless the caller allows it (``medsight --allow-irregular``, ``read_image(strict=False)``), and the warning then says
how wide the widest bridged gap is.

Label maps follow with nearest-neighbour sampling: :func:`labels_to_regular_grid` takes a label map drawn on the
recorded slices (SEG, RTSTRUCT; array index ``k`` = the ``k``-th recorded slice along ``n``) onto the regular grid;
:func:`labels_to_recorded_slices` takes a label map on any grid (a prediction on the reconstructed volume) back onto
the recorded slices by sampling it at each recorded pixel's centre. :mod:`medsight.io.dicom` wraps both as
``to_regular_grid`` and ``to_original_slices``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from medsight.core.guard import check_allocation
from medsight.core.image import Image
from medsight.errors import user_error
from medsight.io.dicom_geometry import UNEVEN_FRACTION, UNEVEN_MM, StackGeometry

#: Widest step (in median steps) bridged by interpolation without being asked: one missing slice.
MAX_GAP_FACTOR = 2.0
_COMMON_FRACTION = 0.1  # share of the steps the grid step must be common to
_EPS = 1e-6


@dataclass(frozen=True)
class Grid:
    """A regular voxel grid: shape ``(slices, rows, columns)``, spacing (mm), origin (mm, LPS), direction columns."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray

    @property
    def affine(self) -> np.ndarray:
        """``(4, 4)`` index -> LPS mm."""
        a = np.eye(4)
        a[:3, :3] = np.asarray(self.direction) * np.asarray(self.spacing)[None, :]
        a[:3, 3] = self.origin
        return a

    def image(self, array: np.ndarray, like: Image | None = None) -> Image:
        """An :class:`Image` of ``array`` ``(C, *shape)`` on this grid (source info from ``like``)."""
        kwargs = {"source": like.source} if like is not None else {}
        return Image(array, spacing=self.spacing, origin=self.origin, direction=self.direction, **kwargs)


@dataclass(frozen=True)
class SeriesGrid:
    """The recorded slices of one DICOM series and the regular grid medsight reads it onto.

    Attributes:
        where: the folder or file, for messages.
        positions: ``(N, 3)`` ImagePositionPatient of the recorded slices, ascending along the slice normal.
        pixel_spacing: (between rows, between columns) mm.
        recorded: the recorded slices stacked with the median step (array index ``k`` = recorded slice ``k``).
            For an irregular series this geometry is only approximate: the exact positions are ``positions``.
        regular: the grid :func:`reconstruct` fills; equal to ``recorded`` for a regular series.
        irregularities: what makes the series irregular (empty for a regular one).
        median_step: median distance between consecutive recorded slices along the normal (mm).
        widest_step: the largest such distance (mm).
        offsets: ``(N,)`` distance of each recorded slice from the first, along the normal (mm).
        shifts: ``(N, 2)`` (rows, columns) position of each recorded slice's first pixel on the regular grid's
            in-plane lattice, in pixels (fractional for a tilted series; zero without tilt).
        files, frames, sop_instances: per recorded slice, its file, frame number and SOPInstanceUID (for writers
            that reference the original slices), when known.
    """

    where: str
    positions: np.ndarray
    pixel_spacing: tuple[float, float]
    recorded: Grid
    regular: Grid
    irregularities: tuple[str, ...] = ()
    median_step: float = 0.0
    widest_step: float = 0.0
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shifts: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    files: tuple[str, ...] = ()
    frames: tuple[int, ...] = ()
    sop_instances: tuple[str, ...] = ()

    @property
    def reconstructed(self) -> bool:
        """Whether reading reconstructs the series (it is irregular), rather than stacking its slices as they are."""
        return bool(self.irregularities)

    @property
    def gaps(self) -> list[tuple[float, float, float]]:
        """``(width, from, to)`` (mm along the normal, from the first slice) of steps wider than
        :data:`MAX_GAP_FACTOR` x the median step, which reconstruction does not bridge unless allowed."""
        if not self.reconstructed or len(self.offsets) < 2:
            return []
        steps = np.diff(self.offsets)
        limit = MAX_GAP_FACTOR * self.median_step + max(UNEVEN_MM, UNEVEN_FRACTION * self.median_step)
        return [(float(steps[i]), float(self.offsets[i]), float(self.offsets[i + 1]))
                for i in np.flatnonzero(steps > limit)]

    def summary(self) -> str:
        """What reconstruction does, in one clause (for the warning and ``medsight info``)."""
        if not self.reconstructed:
            return ""
        n, m = len(self.offsets), self.regular.shape[0]
        snapped = _snapped_slices(self)
        parts = [
            f"reconstructed onto a regular grid of {m} slices x {self.regular.shape[1]} x {self.regular.shape[2]} "
            f"(step {self.regular.spacing[0]:.4g} mm along the slice normal) from {n} recorded slices",
            f"{m - snapped} grid slice(s) interpolated linearly between recorded neighbours",
        ]
        if np.any(np.abs(self.shifts) > _EPS):
            parts.append(f"tilt corrected: each slice shifted in-plane to its recorded position "
                         f"(grid widened from {self.recorded.shape[1]} x {self.recorded.shape[2]})")
        gaps = self.gaps
        if gaps:
            parts.append(f"{len(gaps)} gap(s) wider than {MAX_GAP_FACTOR:g} x the median step bridged by interpolation "
                         f"(widest {max(g[0] for g in gaps):.4g} mm)")
        return "; ".join(parts)


def _common_step(steps: np.ndarray, median: float) -> float:
    """The grid step: the smallest step shared by enough of the steps (module docstring), else the median."""
    need = max(2, math.ceil(_COMMON_FRACTION * len(steps))) if len(steps) >= 2 else 1
    for s in np.sort(steps):
        tol = max(UNEVEN_MM, UNEVEN_FRACTION * s)
        members = steps[np.abs(steps - s) <= tol]
        if len(members) >= need:
            return float(np.median(members))
    return median


def plan_grid(
    geometry: StackGeometry,
    rows: int,
    columns: int,
    *,
    where: str,
    files: Sequence[str] = (),
    frames: Sequence[int] = (),
    sop_instances: Sequence[str] = (),
) -> SeriesGrid:
    """The :class:`SeriesGrid` of a sorted stack (``geometry`` from :func:`~medsight.io.dicom_geometry.stack_geometry`).

    Args:
        geometry: the recorded frames' geometry.
        rows, columns: the slice size.
        where: the folder or file, for messages.
        files, frames, sop_instances: per frame in output order (optional), kept for writers.
    """
    direction = np.asarray(geometry.direction, dtype=float)
    spacing = tuple(float(v) for v in geometry.spacing)
    n = len(geometry.order)
    recorded = Grid((n, rows, columns), spacing, geometry.origin, direction)  # type: ignore[arg-type]
    positions = np.asarray(geometry.positions, dtype=float).reshape(-1, 3)
    common = {"where": where, "pixel_spacing": (spacing[1], spacing[2]), "recorded": recorded,
              "files": tuple(files), "frames": tuple(frames), "sop_instances": tuple(sop_instances)}
    if len(positions) < 2 or not geometry.irregularities:
        offsets = np.arange(n) * spacing[0]
        return SeriesGrid(positions=positions, regular=recorded, median_step=spacing[0], widest_step=spacing[0],
                          offsets=offsets, shifts=np.zeros((n, 2)), **common)  # type: ignore[arg-type]
    normal, col, row = direction[:, 0], direction[:, 1], direction[:, 2]
    rel = positions - positions[0]
    offsets = rel @ normal
    steps = np.diff(offsets)
    median = float(np.median(steps))
    h = _common_step(steps, median)
    m = int(round(offsets[-1] / h)) + 1
    shifts = np.column_stack([rel @ col / spacing[1], rel @ row / spacing[2]])
    if not any(i.startswith("gantry tilt") for i in geometry.irregularities):
        shifts[:] = 0.0  # sub-half-pixel drift (rounding of the positions) is not a tilt
    low = np.floor(shifts.min(axis=0) + _EPS)
    high = np.ceil(shifts.max(axis=0) - _EPS)
    size = (m, rows + int(high[0] - low[0]), columns + int(high[1] - low[1]))
    origin = positions[0] + low[0] * spacing[1] * col + low[1] * spacing[2] * row
    regular = Grid(size, (h, spacing[1], spacing[2]), tuple(float(v) for v in origin),  # type: ignore[arg-type]
                   direction)
    return SeriesGrid(positions=positions, regular=regular, irregularities=geometry.irregularities,
                      median_step=median, widest_step=float(steps.max()), offsets=offsets, shifts=shifts - low,
                      **common)  # type: ignore[arg-type]


def check_gaps(grid: SeriesGrid, *, allow: bool) -> None:
    """Refuse, in one line, a series with a gap wider than :data:`MAX_GAP_FACTOR` x the median step (unless ``allow``)."""
    gaps = grid.gaps
    if not gaps or allow:
        return
    width, a, b = max(gaps)
    raise user_error(
        f"slice gaps of at most {MAX_GAP_FACTOR:g} x the median slice step ({grid.median_step:.4g} mm), which medsight "
        "bridges by interpolation",
        f"{len(gaps)} wider gap(s), the widest {width:.4g} mm between {a:.2f} and {b:.2f} mm along the slice normal "
        f"(~{max(round(width / grid.median_step) - 1, 1)} missing slices)",
        grid.where,
        "re-export the complete series, or pass --allow-irregular (before the command; strict=False in Python) to "
        "interpolate across the gap",
    )


def _snap(grid: SeriesGrid) -> float:
    return max(UNEVEN_MM, UNEVEN_FRACTION * grid.regular.spacing[0])


def _neighbours(grid: SeriesGrid, i: int) -> tuple[int, int, float]:
    """Recorded slices ``(k0, k1, w)`` around grid slice ``i``: value = (1 - w) * slice k0 + w * slice k1."""
    t = i * grid.regular.spacing[0]
    s = grid.offsets
    snap = _snap(grid)
    if t >= s[-1] - snap:
        return len(s) - 1, len(s) - 1, 0.0
    k = max(int(np.searchsorted(s, t, side="right")) - 1, 0)
    if t - s[k] <= snap:
        return k, k, 0.0
    if s[k + 1] - t <= snap:
        return k + 1, k + 1, 0.0
    return k, k + 1, float((t - s[k]) / (s[k + 1] - s[k]))


def _snapped_slices(grid: SeriesGrid) -> int:
    return sum(1 for i in range(grid.regular.shape[0]) if _neighbours(grid, i)[2] == 0.0)


def _place(values: np.ndarray, shift: np.ndarray, size: tuple[int, int], fill: float, *, nearest: bool) -> np.ndarray:
    """One recorded slice ``(C, H, W)`` on the regular grid's in-plane lattice, its first pixel at ``shift``."""
    c, h, w = values.shape
    if nearest:
        base = np.rint(shift).astype(int)
        frac = np.zeros(2)
    else:
        base = np.floor(shift + _EPS).astype(int)
        frac = np.clip(shift - base, 0.0, None)
    canvas = np.full((c, *size), fill, dtype=np.float32 if not nearest else values.dtype)
    r0, c0 = int(base[0]), int(base[1])
    canvas[:, r0:r0 + h, c0:c0 + w] = values[:, : max(0, size[0] - r0), : max(0, size[1] - c0)]
    if nearest or not np.any(frac > _EPS):
        return canvas
    return ndimage.shift(canvas, (0.0, float(frac[0]), float(frac[1])), order=1, mode="nearest", prefilter=False)


def reconstruct(array: np.ndarray, grid: SeriesGrid, *, where: str = "") -> np.ndarray:
    """The recorded slices ``(C, N, H, W)`` (ascending along the normal) on the regular grid, ``float32``.

    See the module docstring for the interpolation; areas no recorded slice covers take the series' minimum.
    """
    c = array.shape[0]
    m, rows, cols = grid.regular.shape
    check_allocation(c * m * rows * cols * 4, where or grid.where)
    fill = float(np.min(array)) if array.size else 0.0
    out = np.empty((c, m, rows, cols), dtype=np.float32)
    cache: dict[int, np.ndarray] = {}

    def placed(k: int) -> np.ndarray:
        if k not in cache:
            for old in [key for key in cache if key < k - 1]:
                del cache[old]
            cache[k] = _place(array[:, k].astype(np.float32), grid.shifts[k], (rows, cols), fill, nearest=False)
        return cache[k]

    for i in range(m):
        k0, k1, w = _neighbours(grid, i)
        out[:, i] = placed(k0) if w == 0.0 else (1.0 - w) * placed(k0) + w * placed(k1)
    return out


def _check_shape(labels: Image, shape: tuple[int, ...], what: str, grid: SeriesGrid) -> None:
    if labels.ndim != 3 or labels.shape != tuple(shape):
        raise user_error(
            f"a label map on {what} ({' x '.join(str(s) for s in shape)})",
            f"shape {' x '.join(str(s) for s in labels.shape)}",
            grid.where,
            "pass the label map drawn on this series (or its prediction), with the series it belongs to",
        )


def labels_to_regular_grid(labels_on_original: Image, grid: SeriesGrid) -> Image:
    """A label map on the recorded slices (array index ``k`` = recorded slice ``k``) onto the regular grid.

    Nearest neighbour: each grid voxel takes the label of the nearest recorded slice along the normal, at the
    nearest pixel; voxels no recorded slice covers are 0. Its own geometry is ignored (a stack of recorded slices
    has none that is exact); the shape must be ``(N, H, W)`` of the series.
    """
    _check_shape(labels_on_original, grid.recorded.shape, "the recorded slices", grid)
    array = labels_on_original.array
    if not grid.reconstructed:
        return grid.regular.image(array.copy(), like=labels_on_original)
    m, rows, cols = grid.regular.shape
    out = np.zeros((array.shape[0], m, rows, cols), dtype=array.dtype)
    h = grid.regular.spacing[0]
    for i in range(m):
        k = int(np.argmin(np.abs(grid.offsets - i * h)))
        out[:, i] = _place(array[:, k], grid.shifts[k], (rows, cols), 0, nearest=True)
    return grid.regular.image(out, like=labels_on_original)


def labels_to_recorded_slices(labels: Image, grid: SeriesGrid) -> Image:
    """A label map on any 3D grid (usually the regular grid) sampled at the recorded slices' pixel centres.

    Nearest neighbour in physical space: recorded pixel ``(k, r, c)`` at ``positions[k] + r * row spacing * col
    cosine + c * column spacing * row cosine`` takes the label of the voxel of ``labels`` containing that point, 0
    outside it. The result has the recorded slices' shape ``(N, H, W)`` and :attr:`SeriesGrid.recorded` geometry
    (exact for a regular series; for an irregular one array index ``k`` is the ``k``-th recorded slice, whose exact
    position is ``positions[k]``), ready for a SEG or RTSTRUCT writer that references the original slices.
    """
    if labels.ndim != 3:
        _check_shape(labels, grid.regular.shape, "the series' grid", grid)
    n, rows, cols = grid.recorded.shape
    direction = np.asarray(grid.recorded.direction)
    col, row = direction[:, 1], direction[:, 2]
    to_index = np.linalg.inv(labels.affine)
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    in_plane = (rr.reshape(-1, 1) * grid.pixel_spacing[0] * col[None] + cc.reshape(-1, 1) * grid.pixel_spacing[1] * row[None])
    array = labels.array
    out = np.zeros((array.shape[0], n, rows, cols), dtype=array.dtype)
    limits = np.asarray(labels.shape)[:, None]
    positions = grid.positions if len(grid.positions) == n else grid.recorded.origin + np.outer(
        np.arange(n) * grid.recorded.spacing[0], direction[:, 0])
    for k in range(n):
        points = positions[k][None] + in_plane
        idx = np.rint(to_index[:3, :3] @ points.T + to_index[:3, 3:4]).astype(int)
        inside = np.all((idx >= 0) & (idx < limits), axis=0)
        flat = np.zeros((array.shape[0], rows * cols), dtype=array.dtype)
        flat[:, inside] = array[:, idx[0, inside], idx[1, inside], idx[2, inside]]
        out[:, k] = flat.reshape(array.shape[0], rows, cols)
    return grid.recorded.image(out, like=labels)


__all__ = [
    "MAX_GAP_FACTOR",
    "Grid",
    "SeriesGrid",
    "check_gaps",
    "labels_to_recorded_slices",
    "labels_to_regular_grid",
    "plan_grid",
    "reconstruct",
]
