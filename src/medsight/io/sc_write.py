"""Write a label map as a Secondary Capture series of overlay images, for viewers that cannot show a DICOM-SEG.

:func:`write_overlay_series` renders, for every slice of the source series that holds a label (the middle slice
when none does), the slice in grey (a window from the 1st-99th percentile of the series, or the one given) with the
labels blended over it in their colours (:func:`medsight.core.display.label_colour`, half opaque), and writes each
as an RGB Secondary Capture Image (highdicom ``SCImage``, SOP class 1.2.840.10008.5.1.4.1.1.7) that:

* belongs to the source's study (patient and study attributes copied from the source instance, so a PACS files it
  in the same study), in a new series ``medsight overlay``;
* references its source instance (Source Image Sequence, with the purpose "Source image for image processing
  operation") and says what it is (Image Type ``DERIVED\\SECONDARY``, Derivation Description, Burned In Annotation
  ``YES``: the labels are in the pixels);
* keeps the slice's geometry where Secondary Capture allows it: Pixel Spacing and Patient Orientation.

The files pass ``dciodvfy`` (tests/io/test_sc_write.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from medsight import __version__
from medsight.core.atomic import atomic_path
from medsight.core.display import label_colour
from medsight.core.image import Image
from medsight.errors import MedsightError, user_error
from medsight.io import read_image
from medsight.io.dicom_repair import load_source_series
from medsight.io.seg_read import frame_slices
from medsight.io.seg_write import place_on_grid

SC_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.7"
ALPHA = 0.5


def orientation_letters(vector: Sequence[float]) -> str:
    """Patient Orientation letters of a direction in LPS (``L``/``R``, ``P``/``A``, ``H``/``F``), strongest first;
    components under 0.25 are left out."""
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    v = np.asarray(vector, dtype=float)
    order = np.argsort(-np.abs(v))
    out = "".join(letters[i][0 if v[i] > 0 else 1] for i in order if abs(v[i]) >= 0.25)
    return out or "L"


def overlay_rgb(grey: np.ndarray, labels: np.ndarray, low: float, high: float,
                colours: Mapping[int, Sequence[int]] | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8: ``grey`` windowed to ``[low, high]`` with each label blended in its colour."""
    scaled = np.clip((grey.astype(np.float64) - low) / max(high - low, 1e-6), 0.0, 1.0) * 255.0
    rgb = np.repeat(scaled[..., None], 3, axis=-1)
    for value in np.unique(labels):
        if value == 0:
            continue
        mask = labels == value
        rgb[mask] = (1 - ALPHA) * rgb[mask] + ALPHA * np.asarray(label_colour(int(value), colours), dtype=np.float64)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def write_overlay_series(
    labels: Image,
    series: str | Path,
    out_dir: str | Path,
    *,
    series_uid: str | None = None,
    colours: Mapping[int, Sequence[int]] | None = None,
    window: tuple[float, float] | None = None,
    series_description: str = "medsight overlay",
) -> list[Path]:
    """Write the overlay Secondary Capture series of ``labels`` into ``out_dir`` (``sc_NNNN.dcm``, atomically).

    Args:
        labels: ``(1, D, H, W)`` label map on the series' grid (what ``medsight predict`` gives for the series).
        series: the source series folder.
        out_dir: the folder for the new files.
        series_uid: the source SeriesInstanceUID (default: that of ``labels``, else the only series of the folder).
        colours: value -> RGB; default medsight's label colours.
        window: ``(low, high)`` grey window; default the 1st and 99th percentile of the series.
        series_description: SeriesDescription of the new series.

    Returns:
        The written files, in slice order.

    Raises:
        MedsightError: a label map off the series grid, a multi-frame source, headers that cannot be repaired.
    """
    import highdicom as hd

    series = Path(series)
    uid = series_uid or (labels.source.series_uid if labels.source.format == "dicom" else "") or None
    reference = read_image(series, series_uid=uid)
    if reference.ndim != 3 or labels.ndim != 3:
        raise user_error("a 3D series and a (1, D, H, W) label map", f"{reference.ndim}D and {labels.ndim}D", series,
                         "predict on the DICOM series")
    array = place_on_grid(labels, reference, series)
    datasets = load_source_series(series, reference.source.series_uid or uid, purpose="the overlay images")
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in datasets):
        raise user_error("a single-frame source series for the overlay images", "a multi-frame image", series,
                         "leave 'sc' out of what is sent for this series")
    placement = sorted(frame_slices(reference, datasets), key=lambda p: p[1])
    grey = np.asarray(reference.array[0])
    low, high = window or (float(np.percentile(grey, 1)), float(np.percentile(grey, 99)))
    chosen = [(n, k) for n, k in placement if np.any(array[k])] or [placement[len(placement) // 2]]
    new_series = hd.UID()
    number = int(datasets[0].get("SeriesNumber", 0) or 0) + 2000
    out = Path(out_dir)
    written = []
    for instance, (n, k) in enumerate(chosen, start=1):
        src = datasets[n]
        rgb = overlay_rgb(grey[k], array[k], low, high, colours)
        iop = [float(v) for v in src.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0])]
        spacing = src.get("PixelSpacing")
        with warnings.catch_warnings():  # highdicom checks the source's PatientName form, not ours to fix
            warnings.simplefilter("ignore", UserWarning)
            try:
                sc = hd.sc.SCImage.from_ref_dataset(
                    ref_dataset=src, pixel_array=rgb, photometric_interpretation="RGB", bits_allocated=8,
                    coordinate_system="PATIENT", series_instance_uid=new_series, sop_instance_uid=hd.UID(),
                    series_number=number, instance_number=instance, manufacturer="medsight",
                    pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing else None,  # type: ignore[arg-type]
                    patient_orientation=(orientation_letters(iop[:3]), orientation_letters(iop[3:])),
                    transfer_syntax_uid="1.2.840.10008.1.2.1")
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                if isinstance(exc, MedsightError):
                    raise
                raise user_error("a source series highdicom accepts for a Secondary Capture", f"{type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}", series,
                                 "report it with `medsight info SERIES`") from exc
        _describe(sc, src, series_description)
        target = out / f"sc_{instance:04d}.dcm"
        with atomic_path(target) as tmp:
            sc.save_as(tmp, enforce_file_format=True)
        written.append(target)
    return written


def _describe(sc: Dataset, src: Dataset, series_description: str) -> None:
    """What the image is and which instance it was made from."""
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.SeriesDescription = series_description[:64]
    sc.DerivationDescription = "medsight segmentation overlay (labels blended over the source slice)"
    sc.BurnedInAnnotation = "YES"
    sc.SoftwareVersions = __version__
    sc.ConversionType = "WSD"
    if "Laterality" not in sc:
        sc.Laterality = src.get("Laterality", "")  # type 2C in General Series; empty: not a paired structure known
    item = Dataset()
    item.ReferencedSOPClassUID = src.SOPClassUID
    item.ReferencedSOPInstanceUID = src.SOPInstanceUID
    purpose = Dataset()
    purpose.CodeValue = "121320"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Uncompressed predecessor"
    item.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
    sc.SourceImageSequence = DicomSequence([item])


__all__ = ["SC_SOP_CLASS_UID", "orientation_letters", "overlay_rgb", "write_overlay_series"]
