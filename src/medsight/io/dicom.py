"""DICOM files and series on pydicom: find them, list the series in a folder, read one as an :class:`Image`.

``read_dicom(folder)`` groups the files by SeriesInstanceUID, sorts the slices of the chosen series along the
slice normal (see :mod:`medsight.io.dicom_geometry` for sorting, spacing and tolerances) and decodes the pixels
(see :mod:`medsight.io.dicom_pixels` for rescale, MONOCHROME1, colour and codecs). The result:

* a series of single-frame files, or an enhanced multi-frame file: ``(C, D, H, W)`` with array axes
  ``(slice, row, col)``, spacing ``(slice step, PixelSpacing row, PixelSpacing col)`` mm, origin = position of
  the first slice, direction columns ``[slice normal, column cosine, row cosine]`` -- the same as SimpleITK's
  ImageSeriesReader followed by :func:`medsight.io.itk.from_sitk`;
* a single frame without ImagePositionPatient (X-ray: CR/DX): ``(C, H, W)`` with spacing from PixelSpacing or
  ImagerPixelSpacing and the identity direction. A single frame *with* a position stays 3D, ``(C, 1, H, W)``, so
  that its physical placement survives a conversion to NIfTI.

``C`` is 1 for grayscale and 3 for colour. Problems a user should know about (missing slices, uneven spacing,
gantry tilt, missing positions) are logged as warnings and kept in ``SourceInfo.extra["warnings"]``; problems
that make the volume wrong (mixed image sizes, duplicate positions, several orientations, truncated files) raise
:class:`~medsight.errors.MedsightError` naming the file. Patient identifiers are never read into the result.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsight.core.image import Image, SourceInfo
from medsight.errors import MedsightError, require_exists, user_error
from medsight.io.dicom_geometry import (
    Frame,
    StackGeometry,
    frame_from_header,
    multiframe_frames,
    stack_geometry,
)
from medsight.io.dicom_header import (
    FileHeader,
    has_dicm_preamble,
    is_raw_dicom,
    read_dataset,
    read_header,
    transfer_syntax_name,
)
from medsight.io.dicom_pixels import needs_rescale, stack_pixels

logger = logging.getLogger(__name__)

_SKIPPED_NAMES = {"DICOMDIR"}


def is_dicom_file(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file.

    True when the file has the ``DICM`` marker at byte 128, or (no preamble) pydicom parses it and it holds a
    SOPClassUID or pixel data.
    """
    p = Path(path)
    if not p.is_file():
        return False
    return has_dicm_preamble(p) or is_raw_dicom(p)


def walk_files(folder: Path) -> Iterator[Path]:
    """Files under ``folder`` in a stable order, skipping hidden files and folders."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def find_dicom_files(folder: str | Path, limit: int | None = None) -> list[Path]:
    """DICOM files under ``folder`` (recursive), in sorted path order.

    Hidden files and folders and ``DICOMDIR`` indexes are skipped; other non-DICOM files are skipped with a
    debug log. Only the first 132 bytes of files with a preamble are read, so thousands of files take well
    under a second.

    Args:
        folder: the folder to search.
        limit: stop after this many files (``limit=1`` answers "is there any DICOM here?").

    Returns:
        Paths of the DICOM files.
    """
    out: list[Path] = []
    for path in walk_files(Path(folder)):
        if path.name.upper() in _SKIPPED_NAMES:
            continue
        if has_dicm_preamble(path) or is_raw_dicom(path):
            out.append(path)
            if limit is not None and len(out) >= limit:
                break
        else:
            logger.debug("skipping non-DICOM file %s", path)
    return out


@dataclass(frozen=True)
class SeriesInfo:
    """One series found in a folder. Holds no patient identifiers.

    Attributes:
        series_uid: SeriesInstanceUID (``""`` when the files have none).
        modality: Modality (``"CT"``, ``"MR"``...).
        description: SeriesDescription.
        num_files: number of files.
        num_frames: number of 2D frames (slices) over all files; 0 for non-image objects (SR, KO, PR).
        rows, columns: image size of the first image file (0 for non-image objects).
        folder: the deepest folder holding all of the series' files.
        study_uid: StudyInstanceUID.
        series_number: SeriesNumber, or ``None``.
    """

    series_uid: str
    modality: str
    description: str
    num_files: int
    num_frames: int
    rows: int
    columns: int
    folder: str
    study_uid: str
    series_number: int | None = None

    def summary(self) -> str:
        """One line: ``UID  MODALITY  'description'  N files, M frames, ROWSxCOLUMNS``."""
        size = f"{self.rows}x{self.columns}" if self.rows else "no pixel data"
        number = f"#{self.series_number} " if self.series_number is not None else ""
        return (
            f"{self.series_uid or '(no SeriesInstanceUID)'}  {self.modality or '?'}  {number}"
            f"{self.description!r}  {self.num_files} files, {self.num_frames} frames, {size}"
        )


def _scan(path: Path) -> list[FileHeader]:
    """Headers of the DICOM files at ``path`` (a folder, searched recursively, or one file)."""
    if path.is_dir():
        files = find_dicom_files(path)
        if not files:
            raise user_error(
                "a folder holding DICOM files",
                "no DICOM files",
                path,
                "point at the folder that holds the series (files with the DICM marker or .dcm files)",
            )
        return [read_header(f) for f in files]
    if path.name.upper() == "DICOMDIR":
        raise user_error(
            "a DICOM image file or series folder",
            "a DICOMDIR index (it holds no images)",
            path,
            "point at the folder that holds the DICOMDIR instead",
        )
    if not is_dicom_file(path):
        raise user_error(
            "a DICOM file",
            "a file without the DICM marker that pydicom cannot read as DICOM",
            path,
            "check that it is a DICOM file (not text, ZIP or an image export)",
        )
    return [read_header(path)]


def _group(headers: Sequence[FileHeader]) -> dict[str, list[FileHeader]]:
    groups: dict[str, list[FileHeader]] = {}
    for h in headers:
        groups.setdefault(h.series_uid, []).append(h)
    return groups


def _series_info(headers: Sequence[FileHeader]) -> SeriesInfo:
    first = headers[0]
    images = [h for h in headers if h.is_image]
    sizes = Counter((h.rows or 0, h.columns or 0) for h in images)
    rows, cols = sizes.most_common(1)[0][0] if sizes else (0, 0)
    folder = os.path.commonpath([str(h.path.parent) for h in headers])
    return SeriesInfo(
        series_uid=first.series_uid,
        modality=first.modality,
        description=first.description,
        num_files=len(headers),
        num_frames=sum(h.frames for h in images),
        rows=rows,
        columns=cols,
        folder=folder,
        study_uid=first.study_uid,
        series_number=first.series_number,
    )


def _sorted_infos(groups: dict[str, list[FileHeader]]) -> list[SeriesInfo]:
    infos = [_series_info(hs) for hs in groups.values()]
    return sorted(
        infos, key=lambda s: (s.study_uid, s.series_number is None, s.series_number or 0, s.series_uid)
    )


def list_series(path: str | Path) -> list[SeriesInfo]:
    """The series in a folder (searched recursively) or in one file, ordered by study and SeriesNumber.

    Args:
        path: a folder or a DICOM file.

    Raises:
        MedsightError: no DICOM files, or a DICOM file that cannot be parsed (named).
    """
    p = require_exists(path, "DICOM file or folder")
    return _sorted_infos(_group(_scan(p)))


def _choose(groups: dict[str, list[FileHeader]], series_uid: str | None, where: Path) -> list[FileHeader]:
    infos = _sorted_infos(groups)
    if series_uid is not None:
        if series_uid in groups:
            return groups[series_uid]
        uids = [s.series_uid for s in infos]
        close = difflib.get_close_matches(series_uid, uids, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise MedsightError(
            f"Expected a SeriesInstanceUID present in {where}, got {series_uid!r}; {hint}choose one of: "
            + ", ".join(_choice(s) for s in infos)
        )
    image_series = [s for s in infos if s.num_frames > 0]
    if not image_series:
        example = next(iter(groups.values()))[0].path
        raise user_error(
            "DICOM files with pixel data",
            f"only non-image objects (SR/KO/PR; e.g. {example.name})",
            where,
            "point at the folder of an image series",
        )
    if len(image_series) > 1:
        raise MedsightError(
            f"Expected one DICOM series, got {len(image_series)} series in {where}: "
            + "; ".join(_choice(s) for s in image_series)
            + "; pass --series UID (series_uid=... in Python) to choose one"
        )
    return groups[image_series[0].series_uid]


def _choice(info: SeriesInfo) -> str:
    return f"{info.series_uid or '(none)'} ({info.modality or '?'}, {info.description!r}, {info.num_files} files)"


def read_dicom(path: str | Path, *, series_uid: str | None = None) -> Image:
    """Read a DICOM series (folder) or a single DICOM file as an :class:`Image`.

    Args:
        path: a folder (searched recursively; non-DICOM files are skipped) or one DICOM file.
        series_uid: the SeriesInstanceUID to read when the folder holds several series.

    Returns:
        ``(C, D, H, W)`` for slice stacks and multi-frame files, ``(C, H, W)`` for a single frame without
        position (X-ray); C = 1 (gray) or 3 (RGB). float32 when a rescale applies (CT in HU), else the stored
        integer type. Geometry and :class:`SourceInfo` (no patient identifiers) as in the module docstring.

    Raises:
        MedsightError: several series and no ``series_uid``; an unknown ``series_uid``; a file that cannot be
            parsed or decoded (truncated, no pixel data, missing codec); mixed image sizes, several orientations
            or duplicate slice positions within the series; not enough memory.
    """
    p = require_exists(path, "DICOM file or folder")
    groups = _group(_scan(p))
    if not p.is_dir() and series_uid is not None and series_uid not in groups:
        found = next(iter(groups))
        raise user_error(
            f"series {series_uid!r}", f"a file of series {found!r}", p, "drop --series or pick another file"
        )
    return read_series(_choose(groups, series_uid, p), where=p)


def _check_sizes(headers: Sequence[FileHeader], where: Path) -> None:
    sizes = Counter((h.rows, h.columns, h.samples) for h in headers)
    if len(sizes) > 1:
        parts = []
        for (r, c, s), count in sizes.most_common():
            example = next(h.path.name for h in headers if (h.rows, h.columns, h.samples) == (r, c, s))
            parts.append(f"{r}x{c}{' RGB' if s == 3 else ''} ({count} files, e.g. {example})")
        raise user_error(
            "one image size per series",
            ", ".join(parts),
            where,
            "remove the odd files (often a localizer or a screenshot) or pick the series with --series",
        )


def read_series(headers: Sequence[FileHeader], *, where: Path) -> Image:
    """Read the files of one series (their headers already scanned) as an :class:`Image`.

    Args:
        headers: the headers of every file of the series.
        where: the folder or file the user gave, for messages and ``SourceInfo.path``.
    """
    skipped = [h for h in headers if not h.is_image]
    headers = [h for h in headers if h.is_image]
    if not headers:
        raise user_error(
            "DICOM files with pixel data",
            f"only non-image objects (SR/KO/PR; e.g. {skipped[0].path.name})",
            where,
            "point at the folder of an image series",
        )
    _check_sizes(headers, where)
    by_path = {h.path: h for h in headers}
    frames: list[Frame] = []
    for h in headers:
        if h.frames > 1:
            frames += multiframe_frames(read_dataset(h.path, stop_before_pixels=True), h)
        else:
            frames.append(frame_from_header(h))
    first = headers[0]
    channels = 3 if first.samples == 3 or first.photometric == "PALETTE COLOR" else first.samples
    label = str(where)
    two_d = len(frames) == 1 and (frames[0].position is None or frames[0].orientation is None)
    if two_d:
        geometry = _plane_geometry(frames[0], label)
    else:
        geometry = stack_geometry(frames, where=label)
    if skipped:
        note = (
            f"skipped {len(skipped)} non-image object(s) of the series without Rows/Columns in {label} "
            f"(e.g. {skipped[0].path.name})"
        )
        geometry = dataclasses.replace(geometry, warnings=(*geometry.warnings, note))
    ordered = [frames[i] for i in geometry.order]
    array = stack_pixels(ordered, by_path, where=where, channels=channels)
    for message in geometry.warnings:
        logger.warning(message)
    for message in geometry.notes:
        logger.debug(message)
    source = SourceInfo(
        path=str(where),
        format="dicom",
        modality=first.modality,
        series_uid=first.series_uid,
        description=first.description,
        extra=_extra(headers, ordered, geometry, array),
    )
    if two_d:
        return Image(array[:, 0], spacing=geometry.spacing[1:], source=source)
    return Image(
        array, spacing=geometry.spacing, origin=geometry.origin, direction=geometry.direction, source=source
    )


def _plane_geometry(frame: Frame, where: str) -> StackGeometry:
    """Geometry of a lone frame without position (X-ray): in-plane spacing only."""
    warnings: tuple[str, ...] = ()
    spacing = frame.pixel_spacing
    if spacing is None:
        spacing = (1.0, 1.0)
        warnings = (f"no PixelSpacing or ImagerPixelSpacing in {where}; pixel spacing set to 1 mm",)
    return StackGeometry(
        order=(0,),
        spacing=(1.0, *spacing),
        origin=(0.0, 0.0, 0.0),
        direction=np.eye(3),
        sorted_by="single frame",
        warnings=warnings,
    )


def _extra(
    headers: Sequence[FileHeader], frames: Sequence[Frame], geometry: StackGeometry, array: np.ndarray
) -> dict[str, str]:
    """Reader facts for ``SourceInfo.extra`` (strings; no patient identifiers)."""
    first = headers[0]
    syntaxes = sorted({transfer_syntax_name(h.transfer_syntax) for h in headers})
    photometric = sorted({h.photometric or "unknown" for h in headers})
    extra = {
        "transfer_syntax": ", ".join(syntaxes),
        "photometric_interpretation": ", ".join(photometric),
        "num_files": str(len(headers)),
        "num_slices": str(len(frames)),
        "sorted_by": geometry.sorted_by,
        "dtype": str(array.dtype),
    }
    if needs_rescale(frames):
        slopes = sorted({f.slope for f in frames})
        intercepts = sorted({f.intercept for f in frames})
        units = first.rescale_type or ("HU" if first.modality == "CT" else "")
        unit_text = f", {units}" if units else ""
        extra["rescale"] = (
            f"slope {_range(slopes)}, intercept {_range(intercepts)} applied (float32{unit_text})"
        )
    else:
        extra["rescale"] = "none (identity)"
    if "MONOCHROME1" in photometric:
        extra["monochrome1"] = "inverted to MONOCHROME2 (stored v -> 2**BitsStored-1-v; signed: -1-v)"
    if any(p.startswith("YBR") for p in photometric):
        extra["color"] = "converted from YBR to RGB"
    if first.spacing_source and first.spacing_source != "PixelSpacing":
        extra["pixel_spacing_source"] = first.spacing_source
    if geometry.tilt_deg:
        extra["gantry_tilt_deg"] = f"{geometry.tilt_deg:.3f}"
    if geometry.notes:
        extra["notes"] = " | ".join(geometry.notes)
    if geometry.warnings:
        extra["warnings"] = " | ".join(geometry.warnings)
    return extra


def _range(values: Sequence[float]) -> str:
    return f"{values[0]:g}" if len(values) == 1 else f"{values[0]:g}..{values[-1]:g} (varies per slice)"


__all__ = ["SeriesInfo", "find_dicom_files", "is_dicom_file", "list_series", "read_dicom", "read_series"]
