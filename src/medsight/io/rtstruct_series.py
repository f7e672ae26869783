"""The image series an RT Structure Set lies on: its grid, its instances per slice and its frame of reference.

An RTSTRUCT holds contours in patient coordinates (mm, LPS) of a frame of reference, and names the image
instances they were drawn on. Reading and writing one both need the same facts about that series:
:func:`load_series_slices` reads them once (the grid exactly as :func:`medsight.io.read_image` gives it, so
label maps from an RTSTRUCT lie on the same voxels as the image) and :class:`SeriesSlices` holds them. For a
series that reading reconstructs (gantry tilt, uneven spacing, a missing slice), contours lie on the *recorded*
slices: :class:`SeriesSlices` then also holds the :class:`~medsight.io.dicom_regrid.SeriesGrid`, names the
instances by recorded slice and maps pixels of a recorded slice to patient coordinates and back.

Anonymised series often carry empty header values (SOP, study and series UIDs, character set): a writer reads
the headers through :mod:`medsight.io.dicom_repair`, which repairs them in memory the same way for every
derived object; a reader takes the SOP UIDs from the file meta where the data set has none, and also finds a
series by the SeriesInstanceUID that the repair derives for files without one. :func:`sop_class_of` falls back
to the file meta.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from medsight.core.image import Image
from medsight.errors import MedsightError, require_exists, user_error
from medsight.io import read_image
from medsight.io.dicom import find_dicom_files, list_series, series_grid
from medsight.io.dicom_header import read_dataset
from medsight.io.dicom_regrid import SeriesGrid
from medsight.io.dicom_repair import load_source_series

#: SOP class of the RT Structure Set Storage objects.
RTSTRUCT_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.481.3"
#: Tags a reader needs of every slice.
_SLICE_TAGS = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
               "ImagePositionPatient", "NumberOfFrames", "Rows")



def sop_class_of(ds: Dataset) -> str:
    """SOPClassUID of ``ds``, else the file meta's MediaStorageSOPClassUID (anonymisers empty the former)."""
    value = str(ds.get("SOPClassUID", "") or "")
    meta = getattr(ds, "file_meta", None)
    return value or (str(meta.get("MediaStorageSOPClassUID", "") or "") if meta is not None else "")


@dataclass(frozen=True)
class SeriesSlices:
    """An image series as an RTSTRUCT sees it.

    Attributes:
        image: the series as :func:`medsight.io.read_image` reads it (array and geometry).
        series_uid: its SeriesInstanceUID (repaired: derived from the instances when the files hold none).
        frame_of_reference_uid: its FrameOfReferenceUID (repaired likewise).
        sop_uids: SOPInstanceUID of each slice, by index along array axis 0 (``""`` where no single-frame file
            lies on that slice: a multi-frame series).
        sop_classes: SOPClassUID of each slice, same order.
        instances: every SOPInstanceUID of the series (also those of multi-frame files).
        header: the first file's repaired header (no pixels), for the patient and study modules of a new
            object.
        multiframe: whether the series is one or more multi-frame files.
        grid: the recorded slices and the regular grid of a series that reading reconstructs (gantry tilt,
            uneven spacing, a missing slice: :mod:`medsight.io.dicom_regrid`), else ``None``. When set,
            ``sop_uids`` and ``sop_classes`` go by recorded slice (``grid.positions``), not by array index of
            ``image``: contours lie on the recorded slices.
    """

    image: Image
    series_uid: str
    frame_of_reference_uid: str
    sop_uids: tuple[str, ...]
    sop_classes: tuple[str, ...]
    instances: frozenset[str]
    header: Dataset
    multiframe: bool
    grid: SeriesGrid | None = None

    @property
    def slice_shape(self) -> tuple[int, int, int]:
        """Shape of a label map on the slices contours lie on: ``image``'s, or the recorded slices'."""
        shape = self.grid.recorded.shape if self.grid is not None else self.image.shape
        return (int(shape[0]), int(shape[1]), int(shape[2]))

    def to_patient(self, k: int, pixels: np.ndarray) -> np.ndarray:
        """``(M, 3)`` LPS mm of ``(M, 2)`` (row, column) pixel coordinates on slice ``k`` of :attr:`slice_shape`."""
        if self.grid is None:
            index = np.column_stack([np.full(len(pixels), float(k)), pixels])
            return index @ self.image.affine[:3, :3].T + self.image.affine[:3, 3]
        direction = np.asarray(self.grid.recorded.direction)
        steps = np.asarray(self.grid.pixel_spacing)[None] * pixels
        return self.grid.positions[k][None] + steps[:, :1] * direction[:, 1] + steps[:, 1:] * direction[:, 2]

    def to_index(self, points: np.ndarray) -> np.ndarray:
        """``(M, 3)`` (slice, row, column) index coordinates of ``(M, 3)`` LPS mm points on :attr:`slice_shape`.

        For recorded slices the slice coordinate is fractional between the recorded planes (linear in the
        distance along the normal, extrapolated with the end steps), and row and column are taken on the plane
        of the nearest one (a tilted series' slices are shifted in-plane).
        """
        if self.grid is None:
            inverse = np.linalg.inv(self.image.affine)
            return (inverse[:3, :3] @ points.T).T + inverse[:3, 3]
        g = self.grid
        direction = np.asarray(g.recorded.direction)
        along = (points - g.positions[0][None]) @ direction[:, 0]
        offsets = g.offsets
        k = np.interp(along, offsets, np.arange(len(offsets), dtype=float))
        if len(offsets) > 1:
            first, last = offsets[1] - offsets[0], offsets[-1] - offsets[-2]
            k = np.where(along < offsets[0], (along - offsets[0]) / first, k)
            k = np.where(along > offsets[-1], len(offsets) - 1 + (along - offsets[-1]) / last, k)
        nearest = int(np.clip(np.rint(k.mean()), 0, len(offsets) - 1)) if len(k) else 0
        rel = points - g.positions[nearest][None]
        rows = rel @ direction[:, 1] / g.pixel_spacing[0]
        cols = rel @ direction[:, 2] / g.pixel_spacing[1]
        return np.column_stack([k, rows, cols])

    @property
    def slice_step(self) -> float:
        """mm per slice index of :attr:`slice_shape` (the median recorded step for recorded slices)."""
        if self.grid is not None:
            return float(self.grid.median_step)
        return float(self.image.spacing[0])


def _choose_series(folder: Path, series_uid: str | None, wanted_by: str | Path | None) -> str:
    """The SeriesInstanceUID, as the files hold it, of the series to read under ``folder``.

    ``series_uid`` may also be the UID that :mod:`medsight.io.dicom_repair` derives for a series whose files
    have an empty SeriesInstanceUID (medsight's SEG and RTSTRUCT objects reference such a series by it).
    ``None``: the only image series there.
    """
    infos = list_series(folder)
    images = [s for s in infos if s.num_frames > 0]
    listed = ", ".join(f"{s.series_uid or '(empty)'} ({s.modality or '?'}, {s.num_frames} frames)"
                       for s in images) or "none"
    by = f" that {Path(wanted_by).name} references" if wanted_by is not None else ""
    if series_uid is not None:
        if any(s.series_uid == series_uid for s in images):
            return series_uid
        if series_uid and any(s.series_uid == "" for s in images) and _repaired_uid(folder) == series_uid:
            return ""
        raise user_error(f"the image series {series_uid}{by}", f"image series {listed}", folder,
                         "point at the folder holding the series the structures were drawn on")
    if len(images) != 1:
        raise user_error("one image series", f"{len(images)} image series ({listed})", folder,
                         "pass the SeriesInstanceUID of the series to use")
    return images[0].series_uid


def _repaired_uid(folder: Path) -> str:
    """The SeriesInstanceUID that :mod:`medsight.io.dicom_repair` derives for the files without one (or
    ``""``)."""
    try:
        headers = load_source_series(folder, "", level=logging.DEBUG, purpose="the RTSTRUCT")
        return str(headers[0].SeriesInstanceUID)
    except MedsightError:  # a defect the repair refuses: then no derived UID matches
        return ""


def load_series_slices(series: str | Path, series_uid: str | None = None, *,
                       wanted_by: str | Path | None = None, repair: bool = False) -> SeriesSlices:
    """Read the image series ``series_uid`` under ``series`` (a folder, searched recursively, or one file).

    Args:
        series: the series folder (it may also hold other series and the RTSTRUCT itself) or one of its files.
        series_uid: which series (as the files hold it, ``""`` for files without one, or its repaired UID);
            ``None``: the only image series. When ``series`` is a file, checked against it.
        wanted_by: the file asking (an RTSTRUCT), for messages.
        repair: read the headers through :func:`medsight.io.dicom_repair.load_source_series` (for writing: the
            new object copies the patient and study from them, with the same repaired UIDs as medsight's
            DICOM-SEG of the series, and one warning line). Reading needs only the SOP instance UIDs (taken
            from the file meta where the data set has none) and the frame of reference, so it does not refuse
            a series for defects that do not touch them (such as several StudyInstanceUIDs).

    Raises:
        MedsightError: the path does not exist, the series is not there, a file cannot be parsed, or the
            series cannot be read as a volume (one line each).
    """
    p = require_exists(series, "DICOM series folder")
    uid = _choose_series(p, series_uid, wanted_by) if p.is_dir() else None
    image = read_image(p, series_uid=uid)
    if image.ndim != 3:
        raise user_error("a volume (a stack of slices with positions)", f"a {image.ndim}D image", p,
                         "structure sets lie on CT/MR/PET slice series")
    file_uid = image.source.series_uid
    if repair:
        datasets = load_source_series(p, file_uid, level=logging.WARNING, purpose="the RTSTRUCT")
    else:
        datasets = _headers(p, file_uid)
    planned = series_grid(p, series_uid=uid)
    grid = planned if planned.reconstructed else None
    inverse = np.linalg.inv(image.affine)
    depth = grid.recorded.shape[0] if grid is not None else image.shape[0]
    sop_uids, sop_classes = [""] * depth, [""] * depth
    multiframe = False
    for ds in datasets:
        if int(ds.get("NumberOfFrames", 1) or 1) > 1 or "ImagePositionPatient" not in ds:
            multiframe = True
            continue
        k = _slice_index(inverse, ds.ImagePositionPatient, depth) if grid is None else \
            _recorded_index(grid, ds.ImagePositionPatient)
        if k is not None:
            sop_uids[k], sop_classes[k] = str(ds.SOPInstanceUID), str(ds.SOPClassUID)
    first = datasets[0]
    uid = str(first.get("SeriesInstanceUID", "") or "") or (series_uid or "")
    if series_uid and series_uid not in (file_uid, uid):
        by = f" that {Path(wanted_by).name} references" if wanted_by is not None else ""
        raise user_error(f"the image series {series_uid}{by}", f"a file of series {uid or '(none)'}", p,
                         "point at the series the structures were drawn on")
    return SeriesSlices(image=image, series_uid=uid,
                        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "") or ""),
                        sop_uids=tuple(sop_uids), sop_classes=tuple(sop_classes),
                        instances=frozenset(str(ds.SOPInstanceUID) for ds in datasets), header=first,
                        multiframe=multiframe, grid=grid)


def _headers(path: Path, series_uid: str) -> list[Dataset]:
    """The header tags a reader needs of every image file of ``series_uid``, SOP UIDs completed from the file
    meta."""
    files = find_dicom_files(path) if path.is_dir() else [path]
    out = []
    for f in files:
        ds = read_dataset(f, stop_before_pixels=True, specific_tags=_SLICE_TAGS)
        if "Rows" not in ds or str(ds.get("SeriesInstanceUID", "") or "") != series_uid:
            continue
        meta = getattr(ds, "file_meta", None)
        for keyword, meta_keyword in (("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
                                      ("SOPClassUID", "MediaStorageSOPClassUID")):
            if not str(ds.get(keyword, "") or "") and meta is not None:
                setattr(ds, keyword, str(meta.get(meta_keyword, "") or ""))
        out.append(ds)
    return out


def _slice_index(inverse: np.ndarray, position: Sequence[float], depth: int) -> int | None:
    """Index along array axis 0 of a slice at ``position`` (``None`` when it is not on the grid)."""
    idx = inverse @ np.array([*map(float, position), 1.0])
    k = int(round(idx[0]))
    return k if abs(idx[0] - k) <= 0.05 and 0 <= k < depth else None


def _recorded_index(grid: SeriesGrid, position: Sequence[float]) -> int | None:
    """The recorded slice at ``position`` (within 0.05 pixel; ``None`` when none is there)."""
    distances = np.linalg.norm(grid.positions - np.asarray([float(v) for v in position])[None], axis=1)
    k = int(np.argmin(distances))
    return k if distances[k] <= 0.05 * min(grid.pixel_spacing) else None


__all__ = ["RTSTRUCT_SOP_CLASS_UID", "SeriesSlices", "load_series_slices", "sop_class_of"]
