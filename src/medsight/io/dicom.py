"""DICOM files and series on pydicom: find them, list the series of a folder tree, read one as an :class:`Image`.

``read_dicom(path)`` scans a series folder, a study folder tree, a DICOMDIR or one file
(:mod:`medsight.io.dicom_study`: vendor index files, localizers, secondary captures and non-image objects such as
SEG, RTSTRUCT and dose reports are skipped with one note per kind), chooses the series
(:func:`~medsight.io.dicom_study.choose_series`), sorts its slices along the slice normal (see
:mod:`medsight.io.dicom_geometry` for sorting, spacing and tolerances) and decodes the pixels (see
:mod:`medsight.io.dicom_pixels` for rescale, MONOCHROME1, colour and codecs). The result:

* a series of single-frame files, or an enhanced multi-frame file: ``(C, D, H, W)`` with array axes
  ``(slice, row, col)``, spacing ``(slice step, PixelSpacing row, PixelSpacing col)`` mm, origin = position of
  the first slice, direction columns ``[slice normal, column cosine, row cosine]`` -- the same as SimpleITK's
  ImageSeriesReader followed by :func:`medsight.io.itk.from_sitk`;
* an irregular series (gantry tilt, uneven spacing, missing slices): reconstructed onto a regular grid from the
  recorded slice positions, so every voxel sits where the scanner put it (:mod:`medsight.io.dicom_regrid`: axes,
  step, extent, interpolation, and the gaps that are refused), ``float32``, with one warning that says what was
  done. ``grid="recorded"`` stacks the recorded slices as they are instead (median step, approximate geometry);
  :func:`to_original_slices` and :func:`to_regular_grid` move label maps between the two;
* a single frame without ImagePositionPatient (X-ray: CR/DX): ``(C, H, W)`` with spacing from PixelSpacing or
  ImagerPixelSpacing and the identity direction. A single frame *with* a position stays 3D, ``(C, 1, H, W)``, so
  that its physical placement survives a conversion to NIfTI.

``C`` is 1 for grayscale and 3 for colour. Problems a user should know about (irregular stacks, missing
positions) are logged as warnings and kept in ``SourceInfo.extra["warnings"]``; problems that make the volume
wrong (mixed image sizes, duplicate positions, several orientations, truncated files, gaps too wide to bridge)
raise :class:`~medsight.errors.MedsightError` naming the file. Patient identifiers are never read into the result.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medsight.core.image import Image, SourceInfo
from medsight.errors import require_exists, user_error
from medsight.io.dicom_files import find_dicom_files, is_dicom_file, is_dicomdir, walk_files
from medsight.io.dicom_geometry import Frame, StackGeometry, stack_geometry
from medsight.io.dicom_header import FileHeader, transfer_syntax_name
from medsight.io.dicom_pixels import needs_rescale, stack_pixels
from medsight.io.dicom_regrid import (
    SeriesGrid,
    check_gaps,
    labels_to_recorded_slices,
    labels_to_regular_grid,
    reconstruct,
)
from medsight.io.dicom_study import (
    ObjectInfo,
    SeriesInfo,
    StudyListing,
    choose_series,
    frames_of,
    grid_of,
    is_planar,
    list_study,
    scan_study,
)

logger = logging.getLogger(__name__)

GRIDS = ("regular", "recorded")


def list_series(path: str | Path) -> list[SeriesInfo]:
    """The image series in a folder tree, DICOMDIR or file, ordered by study and SeriesNumber.

    :func:`~medsight.io.dicom_study.list_study` gives the non-image objects and skipped files too.

    Raises:
        MedsightError: no DICOM files, or a DICOM file that cannot be parsed (named).
    """
    return list(list_study(path).series)


def _select(path: str | Path, series_uid: str | None) -> tuple[Path, list[FileHeader]]:
    """The path and the headers of the series to read (notes logged once per kind of thing left out)."""
    p = require_exists(path, "DICOM file, folder or DICOMDIR")
    scan = scan_study(p)
    if p.is_file() and not is_dicomdir(p):
        found = next(iter(scan.groups), None)
        if found is None:
            raise user_error("a DICOM image or object file", "a directory or index file", p,
                             "point at the image files, or at the folder holding them")
        if series_uid is not None and series_uid != found:
            raise user_error(
                f"series {series_uid!r}", f"a file of series {found!r}", p, "drop --series or pick another file"
            )
        return p, scan.groups[found]
    info = choose_series(scan.listing, series_uid, p)
    for note in scan.listing.notes(read=info.series_uid if series_uid is None else None):
        logger.info("note: %s", note)
    return p, scan.groups[info.series_uid]


def read_dicom(
    path: str | Path, *, series_uid: str | None = None, fill_gaps: bool = False, grid: str = "regular"
) -> Image:
    """Read a DICOM series from a series or study folder, a DICOMDIR or a single file as an :class:`Image`.

    Args:
        path: a folder (searched recursively; index files, localizers, secondary captures and non-image objects
            are skipped with one note per kind), a DICOMDIR, or one DICOM file.
        series_uid: which series to read when there are several: its SeriesInstanceUID, SeriesNumber or
            SeriesDescription (:func:`~medsight.io.dicom_study.choose_series` gives the rule without it).
        fill_gaps: also reconstruct a series with a gap wider than 2 x its median slice step, interpolating across
            it (refused otherwise; :mod:`medsight.io.dicom_regrid`).
        grid: ``"regular"`` (default) reconstructs an irregular series onto its regular grid; ``"recorded"``
            stacks the recorded slices as they are, with the median step (array index ``k`` = recorded slice
            ``k``; the geometry is then approximate and the warning says by how much).

    Returns:
        ``(C, D, H, W)`` for slice stacks and multi-frame files, ``(C, H, W)`` for a single frame without
        position (X-ray); C = 1 (gray) or 3 (RGB). float32 when a rescale applies (CT in HU) or the series was
        reconstructed, else the stored integer type. Geometry and :class:`SourceInfo` (no patient identifiers) as
        in the module docstring.

    Raises:
        MedsightError: several candidate series and no ``series_uid``; an unknown ``series_uid``; a file that
            cannot be parsed or decoded (truncated, no pixel data, missing codec); mixed image sizes, several
            orientations or duplicate slice positions within the series; a gap too wide (without ``fill_gaps``);
            not enough memory.
    """
    if grid not in GRIDS:
        raise user_error(f"grid one of {', '.join(GRIDS)}", repr(grid), None, "pass grid='regular' or 'recorded'")
    p, headers = _select(path, series_uid)
    return read_series(headers, where=p, fill_gaps=fill_gaps, grid=grid)


def series_grid(path: str | Path, *, series_uid: str | None = None) -> SeriesGrid:
    """The recorded slices of a series and the regular grid :func:`read_dicom` reads it onto (headers only).

    Args:
        path, series_uid: as for :func:`read_dicom`.
    """
    p, headers = _select(path, series_uid)
    images = [h for h in headers if h.is_image]
    if not images:
        raise user_error("DICOM files with pixel data", "only non-image objects", p, "point at an image series")
    frames = frames_of(images)
    if is_planar(frames):
        raise user_error("a slice stack", "a single 2D image without position", p,
                         "label maps of 2D images need no regridding")
    return grid_of(frames, stack_geometry(frames, where=str(p)), images, str(p))


def _grid_arg(series: SeriesGrid | str | Path, series_uid: str | None) -> SeriesGrid:
    return series if isinstance(series, SeriesGrid) else series_grid(series, series_uid=series_uid)


def to_original_slices(labels: Image, series: SeriesGrid | str | Path, *, series_uid: str | None = None) -> Image:
    """A label map (a prediction on the volume :func:`read_dicom` returned) back onto the recorded slices.

    Nearest neighbour in physical space (:func:`~medsight.io.dicom_regrid.labels_to_recorded_slices`): array
    index ``k`` of the result is the ``k``-th recorded slice along the slice normal (``SeriesGrid.files``,
    ``sop_instances`` name it), so a SEG or RTSTRUCT writer can reference the original slices. For a regular
    series this is the identity.

    Args:
        labels: ``(C, D, H, W)`` label map with its geometry (usually that of the image read from ``series``).
        series: the series (a :class:`SeriesGrid` from :func:`series_grid`, or its path).
        series_uid: which series of ``series`` when it is a path holding several.
    """
    return labels_to_recorded_slices(labels, _grid_arg(series, series_uid))


def to_regular_grid(
    labels_on_original: Image, series: SeriesGrid | str | Path, *, series_uid: str | None = None
) -> Image:
    """A label map drawn on the recorded slices (SEG, RTSTRUCT) onto the grid :func:`read_dicom` reads the series
    onto, nearest neighbour (:func:`~medsight.io.dicom_regrid.labels_to_regular_grid`), so that it lies on the
    image voxel for voxel. For a regular series the array is unchanged and gets the series' geometry.

    Args:
        labels_on_original: ``(C, N, H, W)``: index ``k`` = the ``k``-th recorded slice along the slice normal.
        series, series_uid: as for :func:`to_original_slices`.
    """
    return labels_to_regular_grid(labels_on_original, _grid_arg(series, series_uid))


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


def read_series(
    headers: Sequence[FileHeader], *, where: Path, fill_gaps: bool = False, grid: str = "regular"
) -> Image:
    """Read the files of one series (their headers already scanned) as an :class:`Image`.

    Args:
        headers: the headers of every file of the series.
        where: the folder or file the user gave, for messages and ``SourceInfo.path``.
        fill_gaps, grid: as for :func:`read_dicom`.
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
    frames = frames_of(headers)
    first = headers[0]
    channels = 3 if first.samples == 3 or first.photometric == "PALETTE COLOR" else first.samples
    label = str(where)
    two_d = is_planar(frames)
    geometry = _plane_geometry(frames[0], label) if two_d else stack_geometry(frames, where=label)
    plan = None if two_d else grid_of(frames, geometry, headers, label)
    regrid = plan is not None and plan.reconstructed and grid == "regular"
    if plan is not None and regrid:
        check_gaps(plan, allow=fill_gaps)
    warnings = list(geometry.warnings)
    if skipped:
        warnings.append(
            f"skipped {len(skipped)} non-image object(s) of the series without Rows/Columns in {label} "
            f"(e.g. {skipped[0].path.name})"
        )
    if plan is not None and plan.irregularities:
        found = "; ".join(plan.irregularities)
        if regrid:
            warnings.append(f"{found} in {label}: {plan.summary()}, so every voxel sits where the scanner recorded it")
        else:
            warnings.append(
                f"{found} in {label}: the recorded slices are stacked as they are with the median step "
                f"{geometry.spacing[0]:.4g} mm, so slices are up to {geometry.stacking_error_mm:.3g} mm from their "
                "recorded positions (read with grid='regular' to reconstruct them)"
            )
    geometry = dataclasses.replace(geometry, warnings=tuple(warnings))
    ordered = [frames[i] for i in geometry.order]
    array = stack_pixels(ordered, by_path, where=where, channels=channels)
    if plan is not None and regrid:
        array = reconstruct(array, plan, where=label)
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
        extra=_extra(headers, ordered, geometry, array, plan if regrid else None),
    )
    if two_d:
        return Image(array[:, 0], spacing=geometry.spacing[1:], source=source)
    if plan is not None and regrid:
        target = plan.regular
        return Image(array, spacing=target.spacing, origin=target.origin, direction=target.direction, source=source)
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
    headers: Sequence[FileHeader],
    frames: Sequence[Frame],
    geometry: StackGeometry,
    array: np.ndarray,
    plan: SeriesGrid | None,
) -> dict[str, str]:
    """Reader facts for ``SourceInfo.extra`` (strings; no patient identifiers)."""
    first = headers[0]
    syntaxes = sorted({transfer_syntax_name(h.transfer_syntax) for h in headers})
    photometric = sorted({h.photometric or "unknown" for h in headers})
    extra = {
        "transfer_syntax": ", ".join(syntaxes),
        "photometric_interpretation": ", ".join(photometric),
        "num_files": str(len(headers)),
        "num_slices": str(array.shape[1]) if array.ndim == 4 else "1",
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
    if geometry.irregularities:
        extra["irregularities"] = " | ".join(geometry.irregularities)
    if plan is not None:
        extra["recorded_slices"] = str(len(frames))
        extra["reconstruction"] = plan.summary()
    if geometry.notes:
        extra["notes"] = " | ".join(geometry.notes)
    if geometry.warnings:
        extra["warnings"] = " | ".join(geometry.warnings)
    return extra


def _range(values: Sequence[float]) -> str:
    return f"{values[0]:g}" if len(values) == 1 else f"{values[0]:g}..{values[-1]:g} (varies per slice)"


__all__ = [
    "GRIDS",
    "ObjectInfo",
    "SeriesGrid",
    "SeriesInfo",
    "StudyListing",
    "find_dicom_files",
    "is_dicom_file",
    "list_series",
    "list_study",
    "read_dicom",
    "read_series",
    "series_grid",
    "to_original_slices",
    "to_regular_grid",
    "walk_files",
]
