"""Reading DICOM RT Structure Sets (RTSTRUCT): ROI facts, and ROIs rasterised onto the referenced series'
grid.

* :func:`is_rtstruct` tells an RTSTRUCT by its SOP class (header only).
* :func:`rtstruct_info` lists its ROI names and what it references (series, frame of reference, instances).
* :func:`read_rtstruct` rasterises the ROIs' closed planar contours onto the grid of the image series they
  were drawn on: the result has the shape and geometry of ``read_image(series)``.

How contours become voxels (the rules treatment planning systems follow):

* Each contour point (mm, LPS) is mapped into the series' index space through the image's affine (so oblique
  series work), and each contour is put on its nearest slice. For a series that reading reconstructs (gantry
  tilt, uneven spacing, a missing slice), the slices are the *recorded* ones (each in its own recorded plane),
  and the label map drawn there is then taken onto the regular grid of ``read_image(series)`` by
  :func:`medsight.io.dicom.to_regular_grid` (nearest neighbour). A contour more than a tenth of a slice step off
  the slice plane (drawn on another slice spacing) is still put on the nearest slice, with one warning; a
  contour farther than half a slice step from every slice, or not in one slice plane, is refused.
* A pixel belongs to a contour when its centre lies inside the polygon (``skimage.draw.polygon``). Contours of
  one ROI on one slice combine by XOR (even-odd rule): a contour inside another is a hole, a contour inside a
  hole an island, as in RTSTRUCTs written by planning systems. plastimatch gives the same voxels with
  ``--xor-contours``.
* ``POINT`` contours (isocentres, markers) and open contours have no area: they are skipped with one note.
* Where ROIs overlap, the higher label value wins (with the default numbering, the later ROI of the file); one
  warning names the overlapping pairs and their voxel counts.

Refused, in one line each: an object that is not an RTSTRUCT; no series given; the referenced series absent
from the folder; contours naming images that are not in the series; a frame of reference other than the
series' (unless every contour names images of the series: early rt-utils wrote a random FrameOfReferenceUID,
and such files are read with a warning); a contour outside the image.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medsight.core.image import Image, SourceInfo
from medsight.errors import did_you_mean, require_exists, user_error
from medsight.io.dicom import to_regular_grid
from medsight.io.dicom_header import has_dicm_preamble, is_raw_dicom, read_dataset
from medsight.io.rtstruct_series import RTSTRUCT_SOP_CLASS_UID, SeriesSlices, load_series_slices, sop_class_of

logger = logging.getLogger(__name__)

#: How far off a slice plane (in slice steps) a contour may lie before a warning (it is still placed).
OFF_PLANE_WARN = 0.1
#: How far beyond the image edge (in pixels, from the outermost pixel centres) contour points may lie.
EDGE_TOLERANCE = 1.0


@dataclass(frozen=True)
class RTStructInfo:
    """What an RTSTRUCT holds and references (header facts, no contours).

    Attributes:
        roi_names: ROI names in StructureSetROISequence order (exactly as in the file).
        referenced_series_uid: the first SeriesInstanceUID of the RT Referenced Series Sequence (``""``:
            none).
        frame_of_reference_uid: the referenced FrameOfReferenceUID (``""``: none).
        referenced_sop_uids: the image instances referenced (by the series sequence and by the contours), in
            file order, without repeats.
    """

    roi_names: list[str]
    referenced_series_uid: str
    frame_of_reference_uid: str
    referenced_sop_uids: list[str]


def is_rtstruct(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM RT Structure Set (SOP class 1.2.840.10008.5.1.4.1.1.481.3; header only)."""
    p = Path(path)
    if not p.is_file() or not (has_dicm_preamble(p) or is_raw_dicom(p)):
        return False
    try:
        ds = pydicom.dcmread(p, force=True, stop_before_pixels=True, defer_size=1024,
                             specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - any parse failure means "not an RTSTRUCT"; the readers report it
        return False
    return sop_class_of(ds) == RTSTRUCT_SOP_CLASS_UID


def _read_structure_set(path: str | Path) -> tuple[Path, Dataset]:
    p = require_exists(path, "RTSTRUCT file")
    if p.is_dir():
        raise user_error("an RTSTRUCT file", "a folder", p, "pass the RTSTRUCT file itself")
    ds = read_dataset(p, stop_before_pixels=True)
    if sop_class_of(ds) != RTSTRUCT_SOP_CLASS_UID:
        raise user_error(f"an RT Structure Set (SOP class {RTSTRUCT_SOP_CLASS_UID})",
                         f"SOP class {sop_class_of(ds) or '(none)'}", p, "pass the RTSTRUCT file")
    return p, ds


def _referenced_series(ds: Dataset) -> list[Dataset]:
    """The RT Referenced Series items of every referenced frame of reference and study."""
    out = []
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            out.extend(study.get("RTReferencedSeriesSequence", []))
    return out


def _info(ds: Dataset) -> RTStructInfo:
    series = _referenced_series(ds)
    frames = [str(f.get("FrameOfReferenceUID", "") or "")
              for f in ds.get("ReferencedFrameOfReferenceSequence", [])]
    frames += [str(r.get("ReferencedFrameOfReferenceUID", "") or "")
               for r in ds.get("StructureSetROISequence", [])]
    sops: dict[str, None] = {}
    for item in series:
        for image in item.get("ContourImageSequence", []):
            sops[str(image.get("ReferencedSOPInstanceUID", ""))] = None
    for roi in ds.get("ROIContourSequence", []):
        for contour in roi.get("ContourSequence", []):
            for image in contour.get("ContourImageSequence", []):
                sops[str(image.get("ReferencedSOPInstanceUID", ""))] = None
    sops.pop("", None)
    return RTStructInfo(
        roi_names=[str(r.get("ROIName", "")) for r in ds.get("StructureSetROISequence", [])],
        referenced_series_uid=next((str(s.SeriesInstanceUID) for s in series if s.get("SeriesInstanceUID")),
                                   ""),
        frame_of_reference_uid=next((f for f in frames if f), ""),
        referenced_sop_uids=list(sops),
    )


def rtstruct_info(path: str | Path) -> RTStructInfo:
    """ROI names and references of an RTSTRUCT (no series needed).

    Raises:
        MedsightError: not an RTSTRUCT, or a file pydicom cannot parse.
    """
    return _info(_read_structure_set(path)[1])


@dataclass(frozen=True)
class _Roi:
    number: int
    name: str
    frame_of_reference_uid: str
    contours: list[Dataset]


def _number(item: Dataset, keyword: str, path: Path) -> int:
    try:
        return int(item.get(keyword))
    except (TypeError, ValueError) as exc:
        raise user_error(f"an integer {keyword} in every ROI item", repr(item.get(keyword)), path,
                         "re-export the structure set") from exc


def _rois(ds: Dataset, path: Path) -> list[_Roi]:
    """ROIs in StructureSetROISequence order, each with its contours (matched by ReferencedROINumber)."""
    contours: dict[int, list[Dataset]] = {}
    for item in ds.get("ROIContourSequence", []):
        number = _number(item, "ReferencedROINumber", path)
        contours.setdefault(number, []).extend(item.get("ContourSequence", []))
    rois = []
    for r in ds.get("StructureSetROISequence", []):
        number = _number(r, "ROINumber", path)
        rois.append(_Roi(number=number, name=str(r.get("ROIName", "")),
                         frame_of_reference_uid=str(r.get("ReferencedFrameOfReferenceUID", "") or ""),
                         contours=contours.get(number, [])))
    return rois


def _closed(contour: Dataset) -> bool:
    return str(contour.get("ContourGeometricType", "")).upper() == "CLOSED_PLANAR"


def _select(rois: list[_Roi], roi_values: Mapping[str, int] | None, path: Path) -> list[tuple[_Roi, int]]:
    """(ROI, label value) to rasterise, in increasing value order (so the higher value is painted last)."""
    if roi_values is None:
        drawn = [r for r in rois if any(_closed(c) for c in r.contours)]
        skipped = [r.name for r in rois if r not in drawn]
        if skipped:
            logger.info("%s: ROIs without closed contours are left out (points, open contours or none): %s",
                        path.name, ", ".join(skipped))
        return [(r, i) for i, r in enumerate(drawn, start=1)]
    by_name = {r.name: r for r in rois}
    out = []
    for name, value in roi_values.items():
        if name not in by_name:
            raise did_you_mean(name, by_name, f"ROI name of {path}")
        if not isinstance(value, int | np.integer) or not 0 < int(value) < 65536:
            raise user_error("label values from 1 to 65535", f"{value} for ROI {name!r}", path,
                             "number the ROIs from 1")
        if not any(_closed(c) for c in by_name[name].contours):
            logger.info("%s: ROI %r has no closed contours: it stays empty", path.name, name)
        out.append((by_name[name], int(value)))
    return sorted(out, key=lambda rv: rv[1])


def _check_references(ds: Dataset, selected: Sequence[_Roi], ref: SeriesSlices, path: Path) -> None:
    """Refuse contours that name images outside the series, or another frame of reference without such
    names."""
    named = {str(image.get("ReferencedSOPInstanceUID", ""))
             for roi in selected for c in roi.contours for image in c.get("ContourImageSequence", [])} - {""}
    missing = sorted(named - ref.instances)
    info = _info(ds)
    if missing:
        named_series = info.referenced_series_uid
        where = f"series {named_series}" if named_series else "no referenced series"
        raise user_error(f"contours drawn on images of series {ref.series_uid}",
                         f"{len(missing)} contour image reference(s) not in it (e.g. {missing[0]}; "
                         f"the RTSTRUCT names {where})", path,
                         "point at the series the structures were drawn on")
    frames = {r.frame_of_reference_uid for r in selected} | {info.frame_of_reference_uid}
    frames.discard("")
    other = sorted(frames - {ref.frame_of_reference_uid}) if ref.frame_of_reference_uid else []
    if other and not named:
        raise user_error(f"structures in the series' frame of reference {ref.frame_of_reference_uid}",
                         f"frame of reference {other[0]}", path,
                         "point at the series the structures were drawn on (or register them onto this one)")
    if other:
        logger.warning("%s: frame of reference %s differs from the series' %s; every contour names images of "
                       "the series, so it is read in the series' coordinates", path.name, other[0],
                       ref.frame_of_reference_uid)


def _points(contour: Dataset, path: Path, roi: str) -> np.ndarray:
    """``(N, 3)`` contour points (mm, LPS)."""
    try:
        return np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
    except (AttributeError, ValueError) as exc:
        raise user_error("ContourData with x, y, z per point", "a malformed contour", path,
                         f"re-export ROI {roi!r}") from exc


def read_rtstruct(path: str | Path, series: str | Path | None, *,
                  roi_values: Mapping[str, int] | None = None) -> tuple[Image, dict[str, int]]:
    """Rasterise an RTSTRUCT's ROIs onto the grid of the image series they were drawn on.

    Args:
        path: the RTSTRUCT file.
        series: the image series folder (it may hold other series and the RTSTRUCT too; the referenced series
            is picked by its SeriesInstanceUID) or one of its files.
        roi_values: ROI name (exactly as in the file) -> label value; only these ROIs are read. Default: every
            ROI with closed contours, numbered 1..n in the file's ROI order.

    Returns:
        A ``(1, D, H, W)`` label map (uint8, or uint16 for values above 255) with the shape and geometry of
        ``read_image(series)``, and the ROI name -> label value used, in the file's ROI order (a requested ROI
        without closed contours is in it, with no voxels). Where ROIs overlap, the higher value wins.

    Raises:
        MedsightError: see the module docstring (one line each).
    """
    p, ds = _read_structure_set(path)
    info = _info(ds)
    if series is None:
        named = f"series {info.referenced_series_uid}" if info.referenced_series_uid else "its image series"
        raise user_error(f"the image series the RTSTRUCT was drawn on ({named})", "no series", p,
                         "pass the series folder (rtstruct_info reads the ROI names without one)")
    rois = _rois(ds, p)
    chosen = _select(rois, roi_values, p)
    ref = load_series_slices(series, info.referenced_series_uid or None, wanted_by=p)
    _check_references(ds, [r for r, _ in chosen], ref, p)
    shape = ref.slice_shape
    top = max((v for _, v in chosen), default=0)
    labels = np.zeros(shape, dtype=np.uint8 if top < 256 else np.uint16)
    notes = _Notes()
    painted: dict[int, str] = {}
    for roi, value in chosen:
        mask = _rasterise(roi, ref, p, notes)
        under = labels[mask]
        for other, count in zip(*np.unique(under[under != 0], return_counts=True)):
            notes.overlaps.append(f"{roi.name!r} over {painted[int(other)]!r} ({int(count)} voxels)")
        labels[mask] = value
        painted[value] = roi.name
    notes.log(p)
    mapping = {roi.name: value for roi, value in sorted(chosen, key=lambda rv: rois.index(rv[0]))}
    source = SourceInfo(path=str(p), format="rtstruct", modality="RTSTRUCT",
                        series_uid=str(ds.get("SeriesInstanceUID", "")),
                        description=str(ds.get("StructureSetLabel", "")),
                        extra={"rois": ", ".join(f"{n}={v}" for n, v in mapping.items()),
                               "referenced_series": ref.series_uid})
    array = labels[None] if ref.grid is None else to_regular_grid(ref.grid.recorded.image(labels[None]), ref.grid).array
    return ref.image.with_array(array, source=source), mapping


@dataclass
class _Notes:
    """What a read skipped or adjusted, logged once per kind."""

    points: int = 0
    open_contours: int = 0
    degenerate: int = 0
    off_plane: int = 0
    off_plane_mm: float = 0.0
    overlaps: list[str] = field(default_factory=list)

    def log(self, path: Path) -> None:
        if self.points or self.open_contours:
            logger.info("%s: %d POINT and %d open contour(s) have no area and were skipped", path.name,
                        self.points, self.open_contours)
        if self.degenerate:
            logger.info("%s: %d closed contour(s) with fewer than 3 points were skipped", path.name,
                        self.degenerate)
        if self.off_plane:
            logger.warning("%s: %d contour(s) lie off the slice planes (up to %.2f mm); each was put on its "
                           "nearest slice", path.name, self.off_plane, self.off_plane_mm)
        if self.overlaps:
            logger.warning("%s: overlapping ROIs, the higher label value wins: %s", path.name,
                           "; ".join(self.overlaps))


def _rasterise(roi: _Roi, ref: SeriesSlices, path: Path, notes: _Notes) -> np.ndarray:
    """The ROI's voxels on :attr:`SeriesSlices.slice_shape` (the series grid, or the recorded slices of a
    reconstructed series): each slice the XOR of its closed contours' interiors (pixel centres inside)."""
    from skimage.draw import polygon

    shape = ref.slice_shape
    depth, rows, cols = shape
    step = ref.slice_step  # mm per slice index
    mask = np.zeros(shape, dtype=bool)
    for contour in roi.contours:
        kind = str(contour.get("ContourGeometricType", "")).upper()
        if kind == "POINT":
            notes.points += 1
            continue
        if kind != "CLOSED_PLANAR":
            notes.open_contours += 1
            continue
        points = _points(contour, path, roi.name)
        if len(points) < 3:
            notes.degenerate += 1
            continue
        idx = ref.to_index(points)
        k_mean = float(idx[:, 0].mean())
        k = int(round(k_mean))
        spread = float(idx[:, 0].max() - idx[:, 0].min())
        if spread > 0.5:
            raise user_error("closed planar contours in the series' slice planes",
                             f"a contour of ROI {roi.name!r} spanning {spread * step:.1f} mm across slices",
                             path,
                             "use the series the structures were drawn on (same orientation)")
        lo = (idx[:, 1:] < -0.5 - EDGE_TOLERANCE).any(axis=0)
        hi = idx[:, 1:] > np.array([rows, cols]) - 0.5 + EDGE_TOLERANCE
        if not 0 <= k < depth or lo.any() or hi.any():
            around = ", ".join(f"{v:.1f}" for v in points.mean(axis=0))
            raise user_error(f"contours inside the image ({depth} slices of {rows}x{cols})",
                             f"a contour of ROI {roi.name!r} around ({around}) mm", path,
                             "check that the RTSTRUCT belongs to this series, or crop the contour to the "
                             "image")
        if abs(k_mean - k) > OFF_PLANE_WARN:
            notes.off_plane += 1
            notes.off_plane_mm = max(notes.off_plane_mm, abs(k_mean - k) * step)
        rr, cc = polygon(idx[:, 1], idx[:, 2], shape=(rows, cols))
        mask[k, rr, cc] ^= True
    return mask


__all__ = ["OFF_PLANE_WARN", "RTStructInfo", "is_rtstruct", "read_rtstruct", "rtstruct_info"]
