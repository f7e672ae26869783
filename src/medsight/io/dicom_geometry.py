"""Slice geometry of a DICOM series: sort the frames, derive spacing, origin and direction, flag problems.

A *frame* is one 2D plane: a single-frame file, or one frame of a multi-frame (enhanced) file. The frames of a
series are sorted by their ImagePositionPatient projected on the slice normal ``n = row x col`` (the cross product
of the ImageOrientationPatient row and column cosines), ascending, so array axis 0 runs along ``+n``. The result
follows :class:`~medsight.core.image.Image`: array axes ``(slice, row, col)``, spacing ``(slice step, PixelSpacing[0],
PixelSpacing[1])`` in mm, origin = ImagePositionPatient of the first slice (LPS, mm), direction columns
``[n, column cosine (down the rows), row cosine (along a row)]``.

Tolerances (all in mm along the slice normal unless stated):

* duplicate position: two frames closer than :data:`DUPLICATE_MM` (0.001 mm) -> error (a 4D series or copies).
* missing slices: a step of at least :data:`GAP_FACTOR` (1.5) x the median step -> irregularity.
* uneven spacing: a step that differs from the median by more than ``max(0.01 mm, 1 % of the median)`` ->
  irregularity. The decimal strings of ImagePositionPatient carry rounding errors far below that, while real
  irregularities (slabs with different steps, a slice acquired twice) exceed it.
* gantry tilt: slice origins that drift in-plane (after removing their component along ``n``) by more than half
  the smallest pixel spacing -> irregularity with the tilt angle.

:class:`StackGeometry` describes the recorded frames stacked with the median step and the orthonormal direction
``[n, col, row]``; its ``irregularities`` say where that stack differs from the recorded positions (and
``stacking_error_mm`` by how much). :mod:`medsight.io.dicom_regrid` reconstructs such stacks onto a regular grid
from the recorded positions. When positions are missing the frames are stacked by InstanceNumber (else file
order) with SpacingBetweenSlices/SliceThickness (else 1 mm) as spacing, and a warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from medsight.errors import MedsightError
from medsight.io.dicom_header import FileHeader, get_value, positive_spacing

logger = logging.getLogger(__name__)

DUPLICATE_MM = 1e-3
GAP_FACTOR = 1.5
UNEVEN_MM = 0.01
UNEVEN_FRACTION = 0.01
ORIENTATION_TOL = 1e-3  # max difference between direction cosines of frames in one series
_MAX_LISTED = 5  # positions listed per warning


@dataclass(frozen=True)
class Frame:
    """One 2D frame of a series.

    Attributes:
        path: the file holding it.
        index: frame number inside that file (0 for single-frame files).
        position: ImagePositionPatient of its first pixel (mm, LPS), or ``None``.
        orientation: ImageOrientationPatient (row cosine, column cosine), or ``None``.
        pixel_spacing: (between rows, between columns) mm, or ``None``.
        thickness: SpacingBetweenSlices, else SliceThickness (mm), or ``None``.
        slope, intercept: the rescale of its stored values.
        instance: InstanceNumber of its file, or ``None``.
    """

    path: Path
    index: int
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    thickness: float | None = None
    slope: float = 1.0
    intercept: float = 0.0
    instance: int | None = None

    @property
    def name(self) -> str:
        """File name, with the frame number for multi-frame files."""
        return self.path.name if self.index == 0 else f"{self.path.name}[frame {self.index}]"


@dataclass(frozen=True)
class StackGeometry:
    """Where the sorted frames lie.

    Attributes:
        order: indices into the input frames, in output slice order.
        spacing: ``(slice, row, col)`` voxel size (mm).
        origin: physical position of the first voxel (mm, LPS, ``(x, y, z)``).
        direction: ``(3, 3)``; columns are the unit vectors of array axes ``(slice, row, col)``.
        sorted_by: ``"ImagePositionPatient"``, ``"InstanceNumber"``, ``"file order"`` or ``"frame order"``.
        warnings: problems worth a user's attention (missing slices, uneven spacing, tilt...).
        notes: facts that are expected but useful (frames stacked in file order, thickness used as spacing).
        tilt_deg: gantry tilt (degrees), 0 when none.
        steps: distances between consecutive sorted frames along the slice normal (mm).
        irregularities: missing slices, uneven spacing, gantry tilt, described (empty for a regular stack);
            what reading does about them is the reader's business (:mod:`medsight.io.dicom_regrid`).
        positions: ``(N, 3)`` ImagePositionPatient of the frames in output order (empty without positions).
        stacking_error_mm: how far (mm) the farthest frame is from where a regular stack with ``spacing`` and
            ``direction`` would put it (0 for a regular stack).
    """

    order: tuple[int, ...]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    sorted_by: str
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    tilt_deg: float = 0.0
    steps: tuple[float, ...] = ()
    irregularities: tuple[str, ...] = ()
    positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    stacking_error_mm: float = 0.0


def frame_from_header(header: FileHeader) -> Frame:
    """The single frame of a single-frame file."""
    return Frame(
        path=header.path,
        index=0,
        position=header.position,
        orientation=header.orientation,
        pixel_spacing=header.pixel_spacing,
        thickness=header.thickness,
        slope=header.slope,
        intercept=header.intercept,
        instance=header.instance,
    )


def _functional(
    items: Sequence[Dataset | None], sequence: str, keyword: str, n: int
) -> tuple[float, ...] | None:
    """``keyword`` from the first of ``items`` (per-frame group, then shared group) whose ``sequence`` holds it."""
    for item in items:
        if item is None:
            continue
        seq = get_value(item, sequence)
        if not seq:
            continue
        value = get_value(seq[0], keyword)
        if value is None:
            continue
        try:
            values = tuple(float(v) for v in (value if n > 1 else [value]))
        except (TypeError, ValueError):
            continue
        if len(values) == n:
            return values
    return None


def multiframe_frames(ds: Dataset, header: FileHeader) -> list[Frame]:
    """The frames of a multi-frame file, with per-frame geometry where the file has it.

    Enhanced objects (enhanced CT/MR/PET...) carry PlanePositionSequence, PlaneOrientationSequence,
    PixelMeasuresSequence and PixelValueTransformationSequence in the per-frame or shared functional groups.
    Other multi-frame files (cine, NM, XA) get their file-level geometry on frame 0 only, so they are stacked in
    file order by :func:`stack_geometry`.

    Args:
        ds: the file's full header (pixels may be skipped).
        header: its :class:`FileHeader`.
    """
    n = header.frames
    per = list(get_value(ds, "PerFrameFunctionalGroupsSequence") or [])
    shared_seq = get_value(ds, "SharedFunctionalGroupsSequence") or []
    shared = shared_seq[0] if len(shared_seq) else None
    if per and len(per) != n:
        logger.debug("%s: %d per-frame groups for %d frames; ignored", header.path.name, len(per), n)
        per = []
    detector = get_value(ds, "DetectorInformationSequence")  # NM
    file_position = header.position
    file_orientation = header.orientation
    if detector:
        file_position = file_position or _functional(
            [ds], "DetectorInformationSequence", "ImagePositionPatient", 3
        )
        file_orientation = file_orientation or _functional(
            [ds], "DetectorInformationSequence", "ImageOrientationPatient", 6
        )
    frames = []
    for i in range(n):
        items = [per[i] if per else None, shared]
        position = _functional(items, "PlanePositionSequence", "ImagePositionPatient", 3)
        if position is None and i == 0 and not per:
            position = file_position
        orientation = (
            _functional(items, "PlaneOrientationSequence", "ImageOrientationPatient", 6) or file_orientation
        )
        spacing = positive_spacing(_functional(items, "PixelMeasuresSequence", "PixelSpacing", 2))
        thickness = _functional(items, "PixelMeasuresSequence", "SpacingBetweenSlices", 1) or _functional(
            items, "PixelMeasuresSequence", "SliceThickness", 1
        )
        slope = _functional(items, "PixelValueTransformationSequence", "RescaleSlope", 1)
        intercept = _functional(items, "PixelValueTransformationSequence", "RescaleIntercept", 1)
        frames.append(
            Frame(
                path=header.path,
                index=i,
                position=position,
                orientation=orientation,
                pixel_spacing=(spacing[0], spacing[1]) if spacing else header.pixel_spacing,
                thickness=thickness[0] if thickness and thickness[0] > 0 else header.thickness,
                slope=slope[0] if slope and slope[0] != 0 else header.slope,
                intercept=intercept[0] if intercept else header.intercept,
                instance=header.instance,
            )
        )
    return frames


def axes_from_orientation(orientation: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row cosine, column cosine and slice normal ``row x col`` from ImageOrientationPatient."""
    iop = np.asarray(orientation, dtype=float)
    row, col = iop[:3], iop[3:6]
    row = row / (np.linalg.norm(row) or 1.0)
    col = col / (np.linalg.norm(col) or 1.0)
    normal = np.cross(row, col)
    normal = normal / (np.linalg.norm(normal) or 1.0)
    return row, col, normal


def _in_plane_spacing(frames: Sequence[Frame], where: str) -> tuple[tuple[float, float], list[str]]:
    found = [f.pixel_spacing for f in frames if f.pixel_spacing is not None]
    if not found:
        return (1.0, 1.0), [
            f"no PixelSpacing in {where}; in-plane spacing set to 1 mm (distances will be wrong)"
        ]
    first = found[0]
    if any(not np.allclose(s, first, rtol=1e-4, atol=1e-6) for s in found):
        distinct = sorted({tuple(round(v, 6) for v in s) for s in found})
        return first, [
            f"pixel spacing varies between slices in {where} ({distinct[:_MAX_LISTED]}); using {first}"
        ]
    return first, []


def _check_orientations(frames: Sequence[Frame], where: str) -> None:
    first = np.asarray(frames[0].orientation, dtype=float)
    distinct = [first]
    for f in frames[1:]:
        iop = np.asarray(f.orientation, dtype=float)
        if not any(np.allclose(iop, d, atol=ORIENTATION_TOL) for d in distinct):
            distinct.append(iop)
    if len(distinct) > 1:
        raise MedsightError(
            f"Expected one slice orientation per series, got {len(distinct)} different ImageOrientationPatient "
            f"values in {where} (e.g. a localizer with several planes); choose another series with --series, "
            "or read the files of one orientation from their own folder"
        )


def stack_geometry(frames: Sequence[Frame], *, where: str) -> StackGeometry:
    """Sort frames into a volume and derive its geometry.

    Args:
        frames: all frames of one series (at least one).
        where: the folder or file, for messages.

    Returns:
        The order, spacing, origin, direction and any warnings (see the module docstring for tolerances).

    Raises:
        MedsightError: frames with different orientations, or two frames at the same position.
    """
    if all(f.position is not None and f.orientation is not None for f in frames):
        _check_orientations(frames, where)
        return _by_position(frames, where)
    return _by_order(frames, where)


def _by_position(frames: Sequence[Frame], where: str) -> StackGeometry:
    row, col, normal = axes_from_orientation(frames[0].orientation or ())
    pos = np.array([f.position for f in frames], dtype=float)
    dist = pos @ normal
    tie = np.array([f.instance if f.instance is not None else 0 for f in frames])
    order = np.lexsort((np.arange(len(frames)), tie, dist))
    d = dist[order]
    steps = np.diff(d)
    (ps_row, ps_col), warn = _in_plane_spacing([frames[i] for i in order], where)
    notes: list[str] = []
    irregular: list[str] = []
    dup = np.flatnonzero(steps < DUPLICATE_MM)
    if dup.size:
        a, b = frames[order[dup[0]]], frames[order[dup[0] + 1]]
        n_pos = len(frames) - dup.size
        raise MedsightError(
            f"Expected one slice per position, got {len(frames)} frames at {n_pos} distinct positions "
            f"({a.name} and {b.name} both at {d[dup[0]]:.3f} mm along the slice normal) in {where}; "
            "this is a 4D series (time points, echoes or b-values) or holds duplicate files: "
            "remove the duplicates, or put each volume's files in its own folder"
        )
    if len(frames) == 1:
        thickness = frames[0].thickness
        step = thickness if thickness else 1.0
        notes.append(
            f"single slice; slice spacing {step:g} mm from "
            f"{'SpacingBetweenSlices/SliceThickness' if thickness else 'the 1 mm default'}"
        )
    else:
        step = float(np.median(steps))
        irregular += _spacing_irregularities(d, steps, step)
    offsets = pos[order] - pos[order[0]]
    in_plane = offsets - np.outer(offsets @ normal, normal)
    drift = np.linalg.norm(in_plane, axis=1)
    tilt = 0.0
    if len(frames) > 1 and drift.max() > 0.5 * min(ps_row, ps_col):
        tilt = math.degrees(math.atan2(float(drift[-1]), float(d[-1] - d[0])))
        irregular.append(f"gantry tilt of {tilt:.2f} degrees (slice origins drift {drift.max():.2f} mm in-plane)")
    stacked = d[0] + step * np.arange(len(d))
    error = np.sqrt((d - stacked) ** 2 + drift**2) if len(frames) > 1 else np.zeros(1)
    return StackGeometry(
        order=tuple(int(i) for i in order),
        spacing=(step, ps_row, ps_col),
        origin=tuple(float(v) for v in pos[order[0]]),  # type: ignore[arg-type]
        direction=np.column_stack([normal, col, row]),
        sorted_by="ImagePositionPatient",
        warnings=tuple(warn),
        notes=tuple(notes),
        tilt_deg=tilt,
        steps=tuple(float(s) for s in steps),
        irregularities=tuple(irregular),
        positions=pos[order],
        stacking_error_mm=float(error.max()),
    )


def _spacing_irregularities(d: np.ndarray, steps: np.ndarray, step: float) -> list[str]:
    """Missing slices and uneven steps, described (see module docstring for the tolerances)."""
    out = []
    gaps = np.flatnonzero(steps >= GAP_FACTOR * step)
    if gaps.size:
        listed = ", ".join(
            f"{steps[i]:.4g} mm between {d[i]:.2f} and {d[i + 1]:.2f} "
            f"(~{max(round(steps[i] / step) - 1, 1)} missing)"
            for i in gaps[:_MAX_LISTED]
        )
        more = f" and {gaps.size - _MAX_LISTED} more" if gaps.size > _MAX_LISTED else ""
        out.append(
            f"missing slices: {gaps.size} gap(s) along the slice normal: {listed}{more} (median step {step:.4g} mm)"
        )
    tol = max(UNEVEN_MM, UNEVEN_FRACTION * step)
    uneven = np.flatnonzero((np.abs(steps - step) > tol) & (steps < GAP_FACTOR * step))
    if uneven.size:
        listed = ", ".join(
            f"{steps[i]:.4g} mm between {d[i]:.2f} and {d[i + 1]:.2f}" for i in uneven[:_MAX_LISTED]
        )
        more = f" and {uneven.size - _MAX_LISTED} more" if uneven.size > _MAX_LISTED else ""
        out.append(
            f"uneven slice spacing: {uneven.size} step(s) differ from the median {step:.4g} mm by more than "
            f"{tol:.3g} mm: {listed}{more}"
        )
    return out


def _by_order(frames: Sequence[Frame], where: str) -> StackGeometry:
    n = len(frames)
    instances = [f.instance for f in frames]
    single_file = len({f.path for f in frames}) == 1
    if single_file:
        order = list(range(n))
        sorted_by = "frame order"
    elif all(i is not None for i in instances) and len(set(instances)) == n:
        order = sorted(range(n), key=lambda k: (instances[k], str(frames[k].path), frames[k].index))
        sorted_by = "InstanceNumber"
    else:
        order = sorted(range(n), key=lambda k: (str(frames[k].path), frames[k].index))
        sorted_by = "file order"
    warn: list[str] = []
    notes: list[str] = []
    missing = sum(f.position is None or f.orientation is None for f in frames)
    if single_file and n > 1:
        notes.append(f"multi-frame file without per-frame positions: {n} frames stacked in file order")
    elif n > 1:
        warn.append(
            f"no ImagePositionPatient/ImageOrientationPatient in {missing} of {n} slices in {where}; "
            f"slices sorted by {sorted_by} and spacing taken from the header, so check the slice order"
        )
    thickness = next((f.thickness for f in frames if f.thickness), None)
    if thickness:
        step = thickness
        if n > 1:
            notes.append(f"slice spacing {step:g} mm from SpacingBetweenSlices/SliceThickness")
    else:
        step = 1.0
        if n > 1:
            warn.append(f"no slice positions or thickness in {where}; slice spacing set to 1 mm")
    (ps_row, ps_col), spacing_warn = _in_plane_spacing(frames, where)
    warn += spacing_warn
    first = frames[order[0]]
    origin = first.position if first.position is not None else (0.0, 0.0, 0.0)
    orientation = next((f.orientation for f in frames if f.orientation is not None), None)
    if orientation is not None:
        row, col, normal = axes_from_orientation(orientation)
        direction = np.column_stack([normal, col, row])
    else:
        direction = np.eye(3)[:, ::-1].copy()
    return StackGeometry(
        order=tuple(order),
        spacing=(step, ps_row, ps_col),
        origin=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        direction=direction,
        sorted_by=sorted_by,
        warnings=tuple(warn),
        notes=tuple(notes),
    )
