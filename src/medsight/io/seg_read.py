"""Read any standard DICOM-SEG as a label map, on its referenced series' grid or on its own frame geometry.

Reads BINARY and FRACTIONAL Segmentation objects (SOP class 1.2.840.10008.5.1.4.1.1.66.4) and Label Map
Segmentations (1.2.840.10008.5.1.4.1.1.66.7), whoever wrote them (highdicom, dcmqi/3D Slicer, Brainlab...).

**Values.** Each segment becomes one label value: medsight's own ``label <value>`` Tracking ID when present (so a
label map with gaps reads back as written), else the segment number. A fractional segment covers the voxels whose
value is at least half of MaximumFractionalValue (``>= 0.5`` after rescaling). Segment 0 of a label map SEG is the
background. Missing frames (sparse SEGs, where empty frames are omitted) are empty.

**Overlapping segments** (``overlaps``): ``"error"`` (default) refuses them in one line naming the segments that
overlap; ``"last"`` gives each voxel the value of its highest-numbered segment (highdicom's rule); ``"separate"``
returns a ``(S, D, H, W)`` image, one channel per segment in segment-number order, channel ``s`` holding that
segment's value where it is present and 0 elsewhere (``extra["channels"]`` names them).

**Placement on the series** (``series`` given), first that applies:

1. by source instance (highdicom ``get_pixels_by_source_instance``), when the SEG declares that spatial locations
   are preserved and references single-frame instances of the series: exact by SOPInstanceUID;
2. by the SEG's volume geometry (highdicom ``get_volume``) moved onto the series grid by axis permutation, flips,
   crops and padding (``Volume.match_geometry``): dcmqi/Slicer SEGs, which do not declare preserved locations,
   SEGs of another series in the same frame of reference (the Brainlab SEG on its multi-frame image);
3. frame by frame from each frame's PlanePositionSequence ImagePositionPatient, when highdicom cannot form a
   regular volume from the SEG's frames (a sparse SEG with gaps and no SpacingBetweenSlices).

A series that reading reconstructs (gantry tilt, uneven spacing, a missing slice: :mod:`medsight.io.dicom_regrid`)
is read through its *recorded* slices: methods 1 and 3 place the frames on the recorded slice whose instance or
ImagePositionPatient they name, and the label map drawn there goes onto the regular grid of ``read_image(series)``
with :func:`medsight.io.dicom.to_regular_grid` (nearest neighbour); method 2 (a SEG already on the regular grid)
comes last.

The series must share the SEG's FrameOfReferenceUID, and every SEG frame must lie on a slice of its grid (within
:data:`PLANE_TOLERANCE` of a voxel); otherwise one line says why. **Without the series** the SEG's own frame
geometry is used (highdicom's volume of its frames, slices ordered along the normal as medsight reads series), and
a warning says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from medsight.core.image import Image, SourceInfo
from medsight.errors import MedsightError, require_exists, user_error
from medsight.io import read_image
from medsight.io.dicom import list_series, series_grid, to_regular_grid
from medsight.io.dicom_geometry import multiframe_frames
from medsight.io.dicom_header import header_from_dataset, read_dataset
from medsight.io.dicom_regrid import SeriesGrid
from medsight.io.dicom_repair import load_source_series

logger = logging.getLogger(__name__)

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.7"
SEG_SOP_CLASS_UIDS = frozenset({SEG_SOP_CLASS_UID, LABELMAP_SEG_SOP_CLASS_UID})
OVERLAPS = ("error", "last", "separate")
#: How far (fraction of a voxel) a SEG frame may lie from a slice of the series grid.
PLANE_TOLERANCE = 0.05
_CHUNK_VOXELS = 64_000_000  # voxels of (D, H, W, segments) masks decoded at once
_TRACKING_PREFIX = "label "
_MAX_PAIRS = 5  # overlapping pairs named in the error

#: ``getter(segment_numbers) -> (D, H, W, len(segment_numbers))`` masks on the target grid.
Getter = Callable[[Sequence[int]], np.ndarray]


@dataclass(frozen=True)
class Segment:
    """One segment of a SEG: its number, label and the value it gets in the label map."""

    number: int
    label: str
    value: int


def is_dicom_seg(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file holding a Segmentation or Label Map Segmentation (header read only)."""
    import pydicom

    p = Path(path)
    if not p.is_file():
        return False
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - any parse failure means "not a SEG"; the readers report it
        return False
    return str(ds.get("SOPClassUID", "")) in SEG_SOP_CLASS_UIDS


def _open(p: Path):  # type: ignore[no-untyped-def]
    import highdicom as hd

    if not is_dicom_seg(p):
        raise user_error("a DICOM Segmentation object (SOP class 1.2.840.10008.5.1.4.1.1.66.4 or .66.7)",
                         "another file", p, "pass the SEG file")
    try:
        return hd.seg.segread(p)
    except (ValueError, AttributeError, KeyError, TypeError, NotImplementedError) as exc:
        raise user_error("a DICOM-SEG highdicom can parse", f"{type(exc).__name__}: {_first_line(exc)}", p,
                         "re-export the segmentation") from exc


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _segments(seg) -> list[Segment]:  # type: ignore[no-untyped-def]
    """The segments (a label map SEG's background segment 0 left out), in segment-number order."""
    out = []
    for number in sorted(int(n) for n in seg.get_segment_numbers()):
        if number == 0:
            continue
        desc = seg.get_segment_description(number)
        tracking = str(getattr(desc, "tracking_id", "") or "")
        suffix = tracking[len(_TRACKING_PREFIX):]
        value = int(suffix) if tracking.startswith(_TRACKING_PREFIX) and suffix.isdigit() else number
        out.append(Segment(number, str(desc.segment_label), value))
    return out


def segment_names(path: str | Path) -> dict[str, int]:
    """Segment label -> label value of a DICOM-SEG (what :func:`read_dicom_seg` puts in the array)."""
    return {s.label: s.value for s in _segments(_open(require_exists(path, "DICOM-SEG file")))}


def read_dicom_seg(path: str | Path, series: str | Path | None = None, *, overlaps: str = "error",
                   series_uid: str | None = None) -> Image:
    """Read a DICOM-SEG as a ``(1, D, H, W)`` label map (``(S, D, H, W)`` with ``overlaps="separate"``).

    Args:
        path: the SEG file.
        series: the referenced series (a folder, searched recursively, or one file such as a multi-frame image);
            the result is then on its grid (same shape and geometry as ``read_image(series)``). Without it, the
            SEG's own frame geometry is used and a warning is logged.
        overlaps: ``"error"``, ``"last"`` or ``"separate"`` (see the module docstring).
        series_uid: which series of the folder to use (default: the one the SEG references, else the only
            image series there).

    Raises:
        MedsightError: not a SEG, a series in another frame of reference, frames off the series grid,
            overlapping segments under ``overlaps="error"`` (one line each).
    """
    if overlaps not in OVERLAPS:
        raise user_error(f"overlaps one of {', '.join(OVERLAPS)}", repr(overlaps), None,
                         "choose error, last or separate")
    p = require_exists(path, "DICOM-SEG file")
    seg = _open(p)
    segments = _segments(seg)
    referenced = sorted({str(s) for _, s, _ in seg.get_source_image_uids()})
    source = SourceInfo(path=str(p), format="dicom-seg", modality="SEG", series_uid=str(seg.SeriesInstanceUID),
                        description=str(seg.get("SeriesDescription", "")),
                        extra={"segments": ", ".join(f"{s.label}={s.value}" for s in segments),
                               "referenced_series": ", ".join(referenced),
                               "segmentation_type": str(seg.get("SegmentationType", "")),
                               "sop_class": str(seg.SOPClassUID)})
    if overlaps == "separate":
        source.extra["channels"] = ", ".join(f"{i}={s.label}" for i, s in enumerate(segments))
    try:
        if series is None:
            logger.warning("no referenced series given for %s: the label map is on the SEG's own frame geometry "
                           "(pass the series to read it onto the series' grid)", p)
            grid, getter = _own_grid(seg, p)
        else:
            grid, getter = _series_grid(seg, p, require_exists(series, "DICOM series folder"), series_uid,
                                        referenced)
        array = _combine(getter, segments, grid.shape, overlaps, p)
    except (ValueError, RuntimeError, KeyError, IndexError) as exc:
        if isinstance(exc, MedsightError):
            raise
        raise user_error("a DICOM-SEG that highdicom can place", f"an error ({_first_line(exc)})", p,
                         "check that the SEG belongs to this series (medsight info SEG shows the referenced series)") \
            from exc
    return grid.with_array(array, source=source)


def _combine(getter: Getter, segments: Sequence[Segment], shape: tuple[int, ...], overlaps: str,
             p: Path) -> np.ndarray:
    """The label map ``(1, *shape)`` (or ``(S, *shape)`` for ``"separate"``) from the segments' masks."""
    top = max([s.value for s in segments], default=0)
    dtype = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32
    out = np.zeros((len(segments) if overlaps == "separate" else 1, *shape), dtype=dtype)
    owner = np.zeros(shape, dtype=np.uint16 if len(segments) < 65535 else np.uint32)  # 1 + index of the segment
    clashes: dict[tuple[int, int], int] = {}
    per_chunk = max(1, _CHUNK_VOXELS // max(1, int(np.prod(shape))))
    for start in range(0, len(segments), per_chunk):
        chunk = segments[start:start + per_chunk]
        masks = getter([s.number for s in chunk])
        for i, segment in enumerate(chunk):
            mask = masks[..., i] >= 0.5
            if overlaps == "separate":
                out[start + i][mask] = segment.value
                continue
            hit = mask & (owner > 0)
            if overlaps == "error" and hit.any():
                for other, count in zip(*np.unique(owner[hit], return_counts=True)):
                    clashes[(int(other) - 1, start + i)] = int(count)
            owner[mask] = start + i + 1
            out[0][mask] = segment.value
    if clashes:
        listed = sorted(clashes.items())
        pairs = ", ".join(f"{segments[a].number} {segments[a].label!r} and {segments[b].number} {segments[b].label!r} "
                          f"({n} voxel{'s' if n != 1 else ''})" for (a, b), n in listed[:_MAX_PAIRS])
        pairs += f" and {len(listed) - _MAX_PAIRS} more pairs" if len(listed) > _MAX_PAIRS else ""
        raise user_error("non-overlapping segments", f"overlapping segments {pairs}", p,
                         "read with --overlaps last (the higher segment number wins) or --overlaps separate "
                         "(one channel per segment); in Python overlaps='last' or 'separate'")
    return out


# ---------------------------------------------------------------------------------------------- grids
def frame_slices(reference: Image | SeriesGrid, datasets: Sequence[Dataset]) -> list[tuple[int, int]]:
    """``(dataset number, slice index)`` of every frame of the source ``datasets`` on ``reference``'s grid, from
    its ImagePositionPatient (a DICOM-SEG frame per source frame references it).

    ``reference`` is the image grid (``read_image(series)``), or the :class:`SeriesGrid` of a series that reading
    reconstructs: the index is then that of the recorded slice (``SeriesGrid.positions``) the frame lies on.

    Raises:
        MedsightError: a frame without position, or off the grid (by more than :data:`PLANE_TOLERANCE` voxel).
    """
    out = []
    for n, ds in enumerate(datasets):
        path = Path(str(getattr(ds, "filename", "") or "source"))
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            positions = [f.position for f in multiframe_frames(ds, header_from_dataset(ds, path))]
        else:
            positions = [tuple(float(v) for v in ds.ImagePositionPatient) if "ImagePositionPatient" in ds else None]
        for position in positions:
            if position is None:
                raise user_error("an ImagePositionPatient (0020,0032) per source frame", "none", path,
                                 "DICOM-SEG export needs the slice positions of the series")
            k = slice_of(reference, position)
            if k is None:
                raise user_error("a slice of the label map's grid", f"position {list(position)}", path,
                                 "write the labels on the series' own grid (medsight predict does)")
            out.append((n, k))
    return out


def slice_of(reference: Image | SeriesGrid, position: Sequence[float]) -> int | None:
    """The slice of ``reference`` whose first pixel is at ``position`` (within :data:`PLANE_TOLERANCE` voxel), or
    ``None``: a slice of the image grid, or a recorded slice of a :class:`SeriesGrid`."""
    if isinstance(reference, SeriesGrid):
        distances = np.linalg.norm(reference.positions - np.asarray(position, dtype=float)[None], axis=1)
        k = int(np.argmin(distances))
        return k if distances[k] <= PLANE_TOLERANCE * min(reference.pixel_spacing) else None
    idx = np.linalg.inv(reference.affine) @ np.array([*position, 1.0])
    k = int(round(idx[0]))
    if np.abs(idx[:3] - np.round(idx[:3])).max() > PLANE_TOLERANCE or np.abs(np.round(idx[1:3])).max() \
            or not 0 <= k < reference.shape[0]:
        return None
    return k


def _shape(reference: Image | SeriesGrid) -> tuple[int, int, int]:
    """The label map shape of ``reference``: the image grid, or a :class:`SeriesGrid`'s recorded slices."""
    shape = reference.recorded.shape if isinstance(reference, SeriesGrid) else reference.shape
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _own_grid(seg, p: Path) -> tuple[Image, Getter]:  # type: ignore[no-untyped-def]
    """The SEG's own volume (slices ordered along row x column, as medsight reads series) and its masks."""
    geometry = seg.get_volume_geometry()
    if geometry is None:
        raise user_error("SEG frames that form a regular volume", "irregular frame positions", p,
                         "pass the referenced series to read the SEG onto its grid")
    affine = np.asarray(geometry.affine, dtype=float)
    shape = tuple(int(s) for s in geometry.spatial_shape)
    flip = float(np.dot(affine[:3, 0], np.cross(affine[:3, 2], affine[:3, 1]))) < 0
    if flip:
        affine[:3, 3] = affine[:3, :3] @ np.array([shape[0] - 1, 0, 0]) + affine[:3, 3]
        affine[:3, 0] = -affine[:3, 0]
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    grid = Image(np.broadcast_to(np.zeros(1, np.uint8), (1, *shape)), spacing=tuple(spacing),
                 origin=tuple(affine[:3, 3]), direction=affine[:3, :3] / spacing[None, :])

    def getter(numbers: Sequence[int]) -> np.ndarray:
        masks = np.asarray(seg.get_volume(segment_numbers=list(numbers), combine_segments=False).array)
        return masks[::-1] if flip else masks

    return grid, getter


def _series_grid(seg, p: Path, series: Path, series_uid: str | None,  # type: ignore[no-untyped-def]
                 referenced: Sequence[str]) -> tuple[Image, Getter]:
    uid = series_uid if series_uid is not None else _choose_series(series, referenced, p)
    reference = read_image(series, series_uid=uid)
    if reference.ndim != 3:
        raise user_error("a 3D image series", f"a {reference.ndim}D image", series, "pass the SEG's series")
    datasets = load_source_series(series, uid, level=logging.DEBUG, purpose="reading a DICOM-SEG")
    own_for = str(seg.get("FrameOfReferenceUID", "") or "")
    series_for = str(datasets[0].get("FrameOfReferenceUID", "") or "")
    if own_for and series_for and own_for != series_for:
        raise user_error(f"a series in the SEG's frame of reference {own_for}", f"frame of reference {series_for}",
                         series, "pass the series the SEG was drawn on (medsight info SEG names it)")
    grid = series_grid(series, series_uid=uid)
    attempts: list[tuple[Placement, Image | SeriesGrid]] = [
        (_by_source_instance, reference), (_by_volume, reference), (_by_plane_positions, reference)]
    if grid.reconstructed:  # frames drawn on the recorded slices first, then onto the reconstructed grid
        attempts = [(_by_source_instance, grid), (_by_plane_positions, grid), (_by_volume, reference)]
    reasons = []
    for method, target in attempts:
        try:
            getter = method(seg, target, datasets)
        except _Refused as exc:
            logger.debug("%s: %s", p, exc)
            reasons.append(str(exc))
            continue
        return reference, (_onto_regular(getter, grid) if isinstance(target, SeriesGrid) else getter)
    raise user_error("SEG frames on the grid of the series", "; ".join(reasons[1:]), p,
                     "pass the series the SEG was drawn on (medsight info SEG names it)")


def _choose_series(series: Path, referenced: Sequence[str], p: Path) -> str:
    infos = [s for s in list_series(series) if s.num_frames > 0 and s.modality not in ("SEG", "RTSTRUCT")]
    for info in infos:
        if info.series_uid in referenced:
            return info.series_uid
    if len(infos) == 1:
        logger.info("%s references series %s; %s holds series %s instead: placed by plane positions in the "
                    "shared frame of reference", p.name, ", ".join(referenced), series, infos[0].series_uid or "''")
        return infos[0].series_uid
    if not infos:
        raise user_error("an image series", "none", series, "pass the SEG's referenced series folder")
    raise user_error(f"the SEG's referenced series {', '.join(referenced)}",
                     f"{len(infos)} other series ({', '.join(s.series_uid for s in infos[:3])})", series,
                     "pass series_uid (--series) to choose one")


class _Refused(Exception):
    """A placement method does not apply to this SEG and series (the next one is tried)."""


#: ``method(seg, target, datasets) -> getter`` placing the SEG's frames on ``target`` (or raising ``_Refused``).
Placement = Callable[..., Getter]


def _onto_regular(getter: Getter, grid: SeriesGrid) -> Getter:
    """A getter of masks on the recorded slices turned into one on the regular grid the series is read onto
    (:func:`medsight.io.dicom.to_regular_grid`: nearest neighbour, as for any label map of the series)."""

    def regular(numbers: Sequence[int]) -> np.ndarray:
        masks = getter(numbers)
        planes = [to_regular_grid(grid.recorded.image(masks[None, ..., j]), grid).array[0]
                  for j in range(masks.shape[-1])]
        return np.stack(planes, axis=-1) if planes else np.zeros((*grid.regular.shape, 0), masks.dtype)

    return regular


def _by_source_instance(seg, reference: Image | SeriesGrid,  # type: ignore[no-untyped-def]
                        datasets: Sequence) -> Getter:
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in datasets):
        raise _Refused("the series is multi-frame")
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    if not {str(u) for _, _, u in seg.get_source_image_uids()} <= set(uids):
        raise _Refused("the SEG references instances outside the series")
    try:
        slices = [k for _, k in frame_slices(reference, datasets)]
    except MedsightError as exc:
        raise _Refused(f"by source instance: {exc}") from exc

    def getter(numbers: Sequence[int]) -> np.ndarray:
        planes = seg.get_pixels_by_source_instance(uids, segment_numbers=list(numbers), combine_segments=False,
                                                   assert_missing_frames_are_empty=True)
        out = np.zeros((*_shape(reference), len(numbers)), dtype=planes.dtype)
        out[slices] = planes
        return out

    try:
        getter([n for n in seg.get_segment_numbers() if n][:1])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise _Refused(f"by source instance: {_first_line(exc)}") from exc
    return getter


def _by_volume(seg, reference: Image, datasets: Sequence) -> Getter:  # type: ignore[no-untyped-def]
    import highdicom as hd

    geometry = seg.get_volume_geometry()
    if geometry is None:
        raise _Refused("the SEG frames do not form a regular volume")
    move = np.linalg.inv(reference.affine) @ np.asarray(geometry.affine, dtype=float)
    linear = move[:3, :3]
    if np.abs(np.abs(linear).sum(axis=0) - 1).max() > 1e-3 or np.abs(linear - np.round(linear)).max() > 1e-3 \
            or np.abs(move[:3, 3] - np.round(move[:3, 3])).max() > PLANE_TOLERANCE:
        raise _Refused("the SEG volume is not on the series grid (it would need resampling)")
    corners = np.array([[i, j, k, 1.0] for i in (0, geometry.spatial_shape[0] - 1)
                        for j in (0, geometry.spatial_shape[1] - 1) for k in (0, geometry.spatial_shape[2] - 1)])
    at = np.round((move @ corners.T)[:3].T)
    if (at < 0).any() or (at > np.array(reference.shape) - 1).any():
        raise _Refused(f"SEG frames reach outside the series grid (voxel {at.min(axis=0).astype(int).tolist()} to "
                       f"{at.max(axis=0).astype(int).tolist()} of {list(reference.shape)})")
    target = hd.VolumeGeometry(affine=reference.affine, spatial_shape=reference.shape, coordinate_system="PATIENT")

    def getter(numbers: Sequence[int]) -> np.ndarray:
        volume = seg.get_volume(segment_numbers=list(numbers), combine_segments=False)
        return np.asarray(volume.match_geometry(target, tol=1e-3).array)

    return getter


def _by_plane_positions(seg, reference: Image | SeriesGrid,  # type: ignore[no-untyped-def]
                        datasets: Sequence) -> Getter:
    """Each frame placed on the slice its ImagePositionPatient names (orientation and spacing must match)."""
    path = Path(str(seg.filename))
    ds = read_dataset(path, stop_before_pixels=True)  # pydicom's items (highdicom's refuse comparisons)
    frames = multiframe_frames(ds, header_from_dataset(ds, path))
    grid = reference.recorded if isinstance(reference, SeriesGrid) else reference
    shape = _shape(reference)
    row, col = np.asarray(grid.direction)[:, 2], np.asarray(grid.direction)[:, 1]
    if (int(seg.Rows), int(seg.Columns)) != shape[1:]:
        raise _Refused(f"frames of {seg.Rows}x{seg.Columns} on a series of {shape[1]}x{shape[2]}")
    slices = []
    for i, frame in enumerate(frames):
        if frame.position is None or frame.orientation is None:
            raise _Refused(f"frame {i + 1} has no plane position or orientation")
        if np.abs(np.array(frame.orientation) - np.concatenate([row, col])).max() > 1e-3 or (
                frame.pixel_spacing and np.abs(np.array(frame.pixel_spacing) - grid.spacing[1:]).max() > 1e-3):
            raise _Refused(f"frame {i + 1} has another orientation or pixel spacing than the series")
        k = slice_of(reference, frame.position)
        if k is None:
            raise _Refused(f"frame {i + 1} at {[round(v, 3) for v in frame.position]} is not on a slice of the "
                           "series grid")
        slices.append(k)
    labelmap = str(seg.get("SegmentationType", "")) == "LABELMAP"
    fractional = str(seg.get("SegmentationType", "")) == "FRACTIONAL"
    scale = float(seg.get("MaximumFractionalValue", 1) or 1) if fractional else 1.0
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]

    numbers_of = [0] * len(slices)
    for i in range(len(slices) if not labelmap else 0):
        items = [per_frame[i] if i < len(per_frame) else None, shared]
        found = [it.SegmentIdentificationSequence for it in items if it is not None and
                 "SegmentIdentificationSequence" in it]
        if not found:
            raise _Refused(f"frame {i + 1} names no segment")
        numbers_of[i] = int(found[0][0].ReferencedSegmentNumber)

    def getter(numbers: Sequence[int]) -> np.ndarray:
        out = np.zeros((*shape, len(numbers)), dtype=np.float32)
        for i, k in enumerate(slices):
            stored = seg.get_stored_frame(i + 1)
            if labelmap:
                for j, n in enumerate(numbers):
                    out[k, :, :, j] = np.maximum(out[k, :, :, j], stored == n)
            elif numbers_of[i] in numbers:
                j = list(numbers).index(numbers_of[i])
                out[k, :, :, j] = np.maximum(out[k, :, :, j], stored / scale)
        return out

    return getter


__all__ = ["LABELMAP_SEG_SOP_CLASS_UID", "OVERLAPS", "PLANE_TOLERANCE", "SEG_SOP_CLASS_UID", "SEG_SOP_CLASS_UIDS",
           "Segment", "frame_slices", "is_dicom_seg", "read_dicom_seg", "segment_names", "slice_of"]
