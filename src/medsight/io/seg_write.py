"""Write a label map as a DICOM-SEG (highdicom) that references its source series and that other tools accept.

:func:`write_dicom_seg` turns a label :class:`~medsight.core.image.Image` on the grid of a DICOM series into a
BINARY DICOM-SEG (SOP class 1.2.840.10008.5.1.4.1.1.66.4) referencing the series' instances:

* one segment per foreground label value, labelled with the dataset's name (``dataset.json`` ``labels``), coloured
  from ``colours`` (``dataset.json`` ``colors``/``colours``; else medsight's overlay colours), coded from the name
  (:func:`medsight.io.seg_codes.segment_coding`: SNOMED CT organ + laterality, else Tissue); its Tracking ID is
  ``label <value>``, so a label map with gaps (``{1, 4}``) reads back with its own values;
* the label map may be on the series' grid in another axis order or on a part of it (a crop, a NIfTI in RAS):
  it is placed onto the series grid by axis permutation, flips and padding (highdicom ``Volume.match_geometry``),
  never resampled; a grid that does not coincide with the series' voxels is refused in one line;
* the source headers are repaired first (:mod:`medsight.io.dicom_repair`: empty SOP UIDs, invalid
  SpecificCharacterSet, missing type 2 attributes; one warning line) so that anonymised series work;
* empty frames are omitted (a sparse SEG, as dcmqi and highdicom read it);
* a series that reading reconstructs (gantry tilt, uneven spacing, a missing slice: :mod:`medsight.io.dicom_regrid`)
  gets its frames on the *recorded* slices: the label map on the regular grid is sampled there by
  :func:`medsight.io.dicom.to_original_slices` (nearest neighbour), and each frame references its own instance at
  that instance's ImagePositionPatient, so other tools see the SEG on the original slices.

What the written files pass (tests/io/test_seg_interop.py): dciodvfy without errors, dcmqi's
``segimage2itkimage`` and highdicom read back the same voxels on the same grid.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medsight import __version__
from medsight.core.atomic import atomic_path
from medsight.core.display import label_colour
from medsight.core.image import Image, integer_labels
from medsight.errors import MedsightError, require_exists, user_error
from medsight.io import read_image
from medsight.io.dicom import series_grid, to_original_slices
from medsight.io.dicom_regrid import SeriesGrid
from medsight.io.dicom_repair import load_source_series
from medsight.io.seg_codes import segment_coding
from medsight.io.seg_read import frame_slices

RGB = tuple[int, int, int]


def dataset_colours(dataset_json: str | Path | None, labels: Mapping[str, int]) -> dict[int, RGB]:
    """Label value -> RGB from ``dataset.json``'s ``colors`` (or ``colours``) map; ``{}`` when there is none."""
    if dataset_json is None or not Path(dataset_json).is_file():
        return {}
    spec = json.loads(Path(dataset_json).read_text(encoding="utf-8"))
    table = spec.get("colors") or spec.get("colours") or {}
    out: dict[int, RGB] = {}
    for name, rgb in table.items():
        value = labels.get(name, int(name) if str(name).isdigit() else None)
        if value is not None and isinstance(rgb, Sequence) and len(rgb) == 3:
            out[int(value)] = (int(rgb[0]), int(rgb[1]), int(rgb[2]))
    return out


def place_on_grid(labels: Image, reference: Image, where: str | Path) -> np.ndarray:
    """``labels``' ``(D, H, W)`` array on ``reference``'s grid, by axis permutation, flips and zero padding only.

    Raises:
        MedsightError: the grids' voxels do not coincide, or labelled voxels fall outside the reference grid.
    """
    array = np.asarray(labels.array[0])
    if labels.same_geometry(reference):
        return array
    import highdicom as hd

    target = hd.VolumeGeometry(affine=reference.affine, spatial_shape=reference.shape, coordinate_system="PATIENT")
    fix = "write the labels on the series' own grid (medsight predict does), or resample them onto it first"
    try:
        moved = hd.Volume(array, affine=labels.affine, coordinate_system="PATIENT").match_geometry(target, tol=1e-3)
    except (RuntimeError, ValueError) as exc:
        raise user_error(f"a label map on the series grid {reference.shape} (or a part of it in any axis order)",
                         f"shape {labels.shape}, spacing {tuple(round(s, 4) for s in labels.spacing)}, origin "
                         f"{tuple(round(o, 2) for o in labels.origin)}", where, fix) from exc
    placed = np.asarray(moved.array)
    if np.count_nonzero(placed) != np.count_nonzero(array):
        raise user_error("labels inside the series grid", f"{np.count_nonzero(array) - np.count_nonzero(placed)} "
                         "labelled voxels outside it", where, fix)
    return placed


def _source_labels(labels: Image, reference: Image, grid: SeriesGrid, where: str | Path) -> np.ndarray:
    """The label map on the slices the SEG frames reference: the series grid for a regular series; for one that
    reading reconstructs (:mod:`medsight.io.dicom_regrid`), the recorded slices (array index ``k`` = recorded slice
    ``k``), from a label map on the regular grid (``read_image``, what ``medsight predict`` gives) by
    :func:`medsight.io.dicom.to_original_slices`, or from one already on the recorded slices (``grid="recorded"``).
    """
    if not grid.reconstructed:
        return place_on_grid(labels, reference, where)
    if not labels.same_geometry(reference) and labels.same_geometry(
            grid.recorded.image(np.broadcast_to(np.zeros(1, np.uint8), (1, *grid.recorded.shape)))):
        return np.asarray(labels.array[0])
    on_grid = place_on_grid(labels, reference, where)
    return np.asarray(to_original_slices(reference.with_array(on_grid[None]), grid).array[0])


def _segment_descriptions(hd, values: Sequence[int], names: Mapping[int, str],  # type: ignore[no-untyped-def]
                          colours: Mapping[int, Sequence[int]] | None) -> list:
    from pydicom.sr.codedict import codes

    out = []
    for number, value in enumerate(values, start=1):
        name = names.get(value, f"label_{value}")
        coding = segment_coding(name)
        desc = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=name[:64],
            segmented_property_category=coding.category,
            segmented_property_type=coding.type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name="medsight", family=codes.cid7162.ArtificialIntelligence, version=__version__),
            tracking_uid=hd.UID(),
            tracking_id=f"label {value}",
            display_color=hd.color.CIELabColor.from_rgb(*label_colour(value, colours)),
        )
        if coding.laterality is not None:
            desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                hd.sr.CodedConcept.from_code(coding.laterality)]
        out.append(desc)
    return out


def write_dicom_seg(
    labels: Image,
    series: str | Path,
    out: str | Path,
    *,
    label_names: Mapping[str, int] | None = None,
    colours: Mapping[int, Sequence[int]] | None = None,
    series_uid: str | None = None,
    series_description: str = "medsight segmentation",
) -> Path:
    """Write ``labels`` as a DICOM-SEG referencing the source series; returns ``out``.

    Args:
        labels: ``(1, D, H, W)`` integer label map on the series' grid (the geometry ``read_image(series)`` gives),
            or on a part of it in another axis order (placed without resampling, see the module docstring).
        series: the source series folder (or a file of it).
        out: the ``.dcm`` file to write (atomically).
        label_names: name -> value (dataset.json ``labels``); unnamed values are called ``label_<value>``.
        colours: value -> RGB (0-255); default :data:`medsight.core.display.LABEL_COLOURS`.
        series_uid: the source SeriesInstanceUID (default: that of ``labels`` when read from the series, else the
            only image series of the folder).
        series_description: SeriesDescription of the new SEG series.

    Raises:
        MedsightError: a label map off the series grid, fractional values, no foreground, a source header defect
            that cannot be repaired, a source highdicom refuses (each one line naming the file).
    """
    import highdicom as hd

    series = require_exists(series, "DICOM series folder")
    uid = series_uid or (labels.source.series_uid if labels.source.format == "dicom" else "") or None
    reference = read_image(series, series_uid=uid)
    if labels.ndim != 3 or labels.num_channels != 1 or reference.ndim != 3:
        raise user_error(f"a (1, D, H, W) label map on the series grid {reference.shape}",
                         f"shape {(labels.num_channels, *labels.shape)}", series,
                         "predict on this series (medsight predict keeps the input geometry)")
    grid = series_grid(series, series_uid=uid)
    array = integer_labels(_source_labels(labels, reference, grid, series), out)
    names = {int(v): n for n, v in (label_names or {}).items()}
    values = sorted({int(v) for v in np.unique(array) if v != 0} | {v for v in names if v != 0})
    if not values:
        raise user_error("at least one foreground label", "none", out, "pass the label names (dataset.json)")
    datasets = load_source_series(series, reference.source.series_uid)
    placement = frame_slices(grid if grid.reconstructed else reference, datasets)
    lut = np.zeros(int(max(values)) + 1, dtype=np.uint16 if len(values) > 255 else np.uint8)
    lut[values] = np.arange(1, len(values) + 1)
    picked = array[[k for _, k in placement]]
    planes = lut[picked if picked.dtype.kind in "ui" else picked.astype(np.int64)]  # (frames, H, W): segment numbers
    charset = {} if all(n.isascii() for n in names.values()) else {"specific_character_set": "ISO_IR 192"}
    with warnings.catch_warnings():  # highdicom checks the source's PatientName form, not ours to fix
        warnings.simplefilter("ignore", UserWarning)
        try:
            descriptions = _segment_descriptions(hd, values, names, colours)
            seg = _segmentation(hd, datasets, planes, descriptions, series_description, **charset)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, MedsightError):
                raise
            raise user_error("a source series highdicom accepts for a DICOM-SEG",
                             f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", series,
                             "report it with `medsight info SERIES`; re-exporting the series may help") from exc
    if "ContentCreatorName" not in seg:
        seg.ContentCreatorName = ""  # type 2 of the Content Identification Macro (dcmqi warns without it)
    out = Path(out)
    with atomic_path(out) as tmp:
        seg.save_as(tmp)
    return out


def _segmentation(hd, datasets, planes, descriptions, series_description,  # type: ignore[no-untyped-def]
                  **kwargs):
    return hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=planes,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(datasets[0].get("SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medsight",
        manufacturer_model_name="medsight",
        software_versions=__version__,
        device_serial_number="0",
        series_description=series_description,
        content_label="MEDSIGHT",
        **kwargs,
    )


def require_series_input(image: Image, where: str | Path) -> None:
    """Raise a user error unless ``image`` was read from a DICOM series (the only input a SEG can reference) whose
    headers can serve as a SEG source (checked before a prediction, so that a defect that cannot be repaired is
    reported at once rather than after the prediction)."""
    if image.source.format != "dicom" or image.ndim != 3:
        raise user_error("a DICOM series as input for --dicom-seg", f"a {image.source.format or 'non-DICOM'} image",
                         where, "drop --dicom-seg, or predict on the DICOM series folder")
    load_source_series(where, image.source.series_uid, level=logging.DEBUG, purpose="checking a --dicom-seg source")


__all__ = ["dataset_colours", "place_on_grid", "require_series_input", "write_dicom_seg"]
