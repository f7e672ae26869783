"""DICOM Segmentation objects (highdicom): write a label map against its source series, read one back.

* :func:`write_dicom_seg` turns a label :class:`~medsight.data.Image` on the grid of a DICOM series (as
  :func:`medsight.io.read_image` returns it) into a BINARY DICOM-SEG that references the series' instances: one
  segment per foreground label value, named and coloured from ``dataset.json`` (``labels`` and an optional
  ``colors``/``colours`` map of name or value -> ``[r, g, b]``; else medsight's overlay colours). Each segment's
  Tracking ID is ``label <value>``, so a label map with gaps (``{1, 4}``) reads back with its own values.
* :func:`read_dicom_seg` reads a DICOM-SEG back as a label map: with its series, on the series' grid (slice order
  and geometry exactly as ``read_image(series)``); alone, on the SEG's own grid (highdicom's volume geometry).

Both keep medsight's conventions: ``(1, D, H, W)`` arrays, spacing per array axis, origin/direction in LPS.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medsight import __version__
from medsight.core.atomic import atomic_path
from medsight.core.display import label_colour
from medsight.core.image import Image, SourceInfo
from medsight.errors import MedsightError, require_exists, user_error
from medsight.io import strip_suffix
from medsight.io.dicom import find_dicom_files, read_dicom

logger = logging.getLogger(__name__)

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
_TRACKING = re.compile(r"^label (\d+)$")

RGB = tuple[int, int, int]


def is_dicom_seg(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file holding a Segmentation object (header read only)."""
    import pydicom

    p = Path(path)
    if not p.is_file():
        return False
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - any parse failure means "not a SEG"; the readers report it
        return False
    return str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS_UID


def _series_datasets(series: Path, series_uid: str) -> list:
    """The image datasets (headers, no pixels) of ``series_uid`` under ``series`` (a folder or one file)."""
    import pydicom


    files = find_dicom_files(series) if series.is_dir() else [series]
    out = []
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if str(ds.get("SeriesInstanceUID", "")) == series_uid and "Rows" in ds:
            out.append(ds)
    if not out:
        raise user_error(f"image files of series {series_uid}", "none", series, "point at the source series folder")
    return out


def _slice_indices(image: Image, datasets: Sequence) -> list[int]:
    """Index along array axis 0 of ``image`` of each single-frame dataset, from its ImagePositionPatient."""
    inverse = np.linalg.inv(image.affine)
    out = []
    for ds in datasets:
        if "ImagePositionPatient" not in ds or int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise user_error("a series of single-frame images with ImagePositionPatient", "another layout",
                             ds.filename, "DICOM-SEG export supports classic CT/MR slice series")
        idx = inverse @ np.array([*map(float, ds.ImagePositionPatient), 1.0])
        k = int(round(idx[0]))
        if abs(idx[0] - k) > 0.05 or not 0 <= k < image.shape[0]:
            raise user_error("a slice of the label map's grid", f"position {list(ds.ImagePositionPatient)}",
                             ds.filename, "write the labels on the series' own grid (medsight predict does)")
        out.append(k)
    return out


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
        labels: ``(1, D, H, W)`` integer label map on the series' grid (the geometry ``read_image(series)`` gives).
        series: the source series folder (or a file of it).
        out: the ``.dcm`` file to write (atomically).
        label_names: name -> value (dataset.json ``labels``); unnamed values are called ``label_<value>``.
        colours: value -> RGB (0-255); default :data:`medsight.report.overlay.LABEL_COLOURS`.
        series_uid: the source SeriesInstanceUID (default ``labels.source.series_uid``, else the only series).
        series_description: SeriesDescription of the new SEG series.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes


    series = require_exists(series, "DICOM series folder")
    uid = series_uid or labels.source.series_uid or None
    reference = read_dicom(series, series_uid=uid)
    if labels.ndim != 3 or labels.num_channels != 1 or not labels.same_geometry(reference):
        raise user_error(f"a (1, D, H, W) label map on the series grid {reference.shape}",
                         f"shape {(labels.num_channels, *labels.shape)}", series,
                         "predict on this series (medsight predict keeps the input geometry)")
    datasets = _series_datasets(series, reference.source.series_uid)
    order = _slice_indices(reference, datasets)
    array = np.asarray(labels.array[0])
    if array.dtype.kind == "f" and not np.all(np.equal(np.mod(array, 1), 0)):
        raise user_error("an integer label map", f"dtype {array.dtype} with fractions", out, "write the argmax labels")
    values = sorted(int(v) for v in np.unique(array) if v != 0)
    names = {int(v): n for n, v in (label_names or {}).items()}
    values = sorted(set(values) | {v for v in names if v != 0})
    if not values:
        raise user_error("at least one foreground label", "none", out, "pass the label names (dataset.json)")
    descriptions = []
    for number, value in enumerate(values, start=1):
        rgb = label_colour(value, colours)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=names.get(value, f"label_{value}")[:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name="medsight", family=codes.cid7162.ArtificialIntelligence, version=__version__),
            tracking_uid=hd.UID(),
            tracking_id=f"label {value}",
            display_color=hd.color.CIELabColor.from_rgb(*rgb),
        ))
    # (frames, H, W, segments) binary, in the order of `datasets`
    planes = array[order]
    mask = np.stack([planes == v for v in values], axis=-1).astype(np.uint8)
    with warnings.catch_warnings():  # highdicom checks the source's PatientName form, not ours to fix
        warnings.simplefilter("ignore", UserWarning)
        seg = _segmentation(hd, datasets, mask, descriptions, series_description)
    out = Path(out)
    with atomic_path(out) as tmp:
        seg.save_as(tmp)
    return out


def _segmentation(hd, datasets, mask, descriptions, series_description):  # type: ignore[no-untyped-def]

    return hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=mask,
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
    )


def require_series_input(image: Image, where: str | Path) -> None:
    """Raise a user error unless ``image`` was read from a DICOM series (the only input a SEG can reference)."""
    if image.source.format != "dicom" or image.ndim != 3:
        raise user_error("a DICOM series as input for --dicom-seg", f"a {image.source.format or 'non-DICOM'} image",
                         where, "drop --dicom-seg, or predict on the DICOM series folder")


def write_prediction_seg(labels: Image, series: str | Path, target: str | Path, *, run_dir: str | Path,
                         label_names: Mapping[str, int], series_uid: str | None = None) -> Path:
    """Write ``<target stem>_seg.dcm`` beside a prediction, with colours from the run's dataset.json if it has any.

    The dataset is the one recorded in ``run_dir/config.json`` (``medsight train`` writes it).
    """

    dataset_json = None
    config = Path(run_dir) / "config.json"
    if config.is_file():
        recorded = Path(json.loads(config.read_text(encoding="utf-8")).get("dataset", ""))
        dataset_json = recorded if recorded.suffix == ".json" else recorded / "dataset.json"
    target = Path(target)
    return write_dicom_seg(labels, series, target.parent / f"{strip_suffix(target)}_seg.dcm", label_names=label_names,
                           colours=dataset_colours(dataset_json, label_names),
                           series_uid=series_uid or labels.source.series_uid or None)


def _segment_values(seg) -> dict[int, int]:
    """Segment number -> label value (from medsight's ``label <value>`` Tracking IDs; else the segment number)."""
    mapping: dict[int, int] = {}
    for number in seg.get_segment_numbers():
        desc = seg.get_segment_description(number)
        match = _TRACKING.match(str(getattr(desc, "tracking_id", "") or ""))
        mapping[int(number)] = int(match.group(1)) if match else int(number)
    return mapping


def _relabel(array: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    top = max([*mapping, *mapping.values(), 0])
    dtype = np.uint8 if top < 256 else np.uint16
    lut = np.arange(max(int(array.max(initial=0)), *mapping) + 1, dtype=dtype)
    for number, value in mapping.items():
        lut[number] = value
    return lut[array.astype(np.int64)]


def segment_names(path: str | Path) -> dict[str, int]:
    """Segment label -> label value of a DICOM-SEG (what :func:`read_dicom_seg` puts in the array)."""
    import highdicom as hd

    seg = hd.seg.segread(require_exists(path, "DICOM-SEG file"))
    values = _segment_values(seg)
    return {str(seg.get_segment_description(n).segment_label): v for n, v in values.items()}


def read_dicom_seg(path: str | Path, series: str | Path | None = None) -> Image:
    """Read a DICOM-SEG as a ``(1, D, H, W)`` label map (values from the segments, see the module docstring).

    Args:
        path: the SEG file.
        series: the source series folder; the result is then on its grid (same shape and geometry as
            ``read_image(series)``). Without it, the SEG's own frame grid is used.

    Raises:
        MedsightError: not a SEG, a series the SEG does not reference, overlapping segments.
    """
    import highdicom as hd

    p = require_exists(path, "DICOM-SEG file")
    if not is_dicom_seg(p):
        raise user_error("a DICOM Segmentation object (SOP class 1.2.840.10008.5.1.4.1.1.66.4)", "another file", p,
                         "pass the SEG file")
    seg = hd.seg.segread(p)
    mapping = _segment_values(seg)
    referenced = sorted({str(series_uid) for _, series_uid, _ in seg.get_source_image_uids()})
    source = SourceInfo(path=str(p), format="dicom-seg", modality="SEG", series_uid=str(seg.SeriesInstanceUID),
                        description=str(seg.get("SeriesDescription", "")),
                        extra={"segments": ", ".join(f"{n}={v}" for n, v in segment_names(p).items()),
                               "referenced_series": ", ".join(referenced)})
    try:
        if series is None:
            volume = seg.get_volume(combine_segments=True)
            affine = np.asarray(volume.affine, dtype=float)
            spacing = np.linalg.norm(affine[:3, :3], axis=0)
            array = _relabel(np.asarray(volume.array), mapping)
            return Image(array[None], spacing=tuple(spacing), origin=tuple(affine[:3, 3]),
                         direction=affine[:3, :3] / spacing[None, :], source=source)

        series_path = require_exists(series, "DICOM series folder")
        uid = next((u for u in referenced), None)
        reference = read_dicom(series_path, series_uid=uid)
        datasets = _series_datasets(series_path, reference.source.series_uid)
        order = _slice_indices(reference, datasets)
        planes = seg.get_pixels_by_source_instance(
            [str(ds.SOPInstanceUID) for ds in datasets], combine_segments=True, assert_missing_frames_are_empty=True)
    except (ValueError, RuntimeError, KeyError) as exc:
        if isinstance(exc, MedsightError):
            raise
        raise user_error("a DICOM-SEG that highdicom can place on its series", f"an error ({exc})", p,
                         "check that the SEG belongs to this series (medsight info SEG shows the referenced series)") \
            from exc
    array = np.zeros(reference.shape, dtype=np.uint16)
    array[order] = _relabel(np.asarray(planes), mapping)
    array = array.astype(np.uint8) if array.max(initial=0) < 256 else array
    return reference.with_array(array[None], source=source)


__all__ = ["SEG_SOP_CLASS_UID", "dataset_colours", "is_dicom_seg", "read_dicom_seg", "require_series_input",
           "segment_names", "write_dicom_seg", "write_prediction_seg"]
