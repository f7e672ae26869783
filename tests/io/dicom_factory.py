"""Synthetic DICOM files for tests, written with pydicom. Every value is made up (no patient data).

Reusable from any test: ``write_series`` writes a single-frame series (CT or MR, any spacing, shuffled names,
rescale, missing slices, uneven spacing, gantry tilt, compression, no positions); ``write_multiframe`` an enhanced
multi-frame file (or a cine/NM-style one without per-frame geometry); ``write_xray`` a 2D CR/DX image;
``write_color`` an RGB or YBR image; ``truncate``, ``strip_pixel_data`` damage a file. For study folders:
``write_dirfile`` a DICOM-encoded vendor index file (Philips ``DIRFILE``-like), ``write_dicomdir`` a DICOMDIR file-set
(pydicom's FileSet), ``copy_series`` a copy of a real series with edited positions, orientation, tilt or UIDs. Stored values are unique per
voxel (``k * rows * cols + r * cols + c`` plus an offset), so a wrong slice order shows up as a wrong array.

From tests outside ``tests/io`` load it with ``importlib`` (``tests/io`` has no ``__init__.py`` and must not be
imported as ``io``), as ``tests/cli/test_info_convert.py`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import convert_color_space
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

PATIENT_NAME = "Synthetic^Patient"
PATIENT_ID = "SYNTH-0001"


@dataclass(frozen=True)
class WrittenSeries:
    """What a factory wrote.

    Attributes:
        paths: the files, in ascending slice position (their names are shuffled when asked).
        stored: ``(D, H, W)`` (or ``(D, H, W, 3)``) stored values in ascending slice position.
        positions: ``(D, 3)`` ImagePositionPatient in the same order (mm).
        series_uid, study_uid: the UIDs.
        orientation: ImageOrientationPatient.
        pixel_spacing: (between rows, between columns) mm.
        slope, intercept: the rescale written.
    """

    paths: list[Path]
    stored: np.ndarray
    positions: np.ndarray
    series_uid: str
    study_uid: str
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]
    slope: float = 1.0
    intercept: float = 0.0

    @property
    def values(self) -> np.ndarray:
        """Stored values after the rescale (HU for CT), float64."""
        return self.stored.astype(np.float64) * self.slope + self.intercept

    @property
    def folder(self) -> Path:
        return self.paths[0].parent


def _ds(sop_class: UID, *, modality: str, study_uid: str, series_uid: str, description: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19000101"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.Modality = modality
    ds.SeriesDescription = description
    return ds


def _pixels(
    ds: Dataset, stored: np.ndarray, *, photometric: str = "MONOCHROME2", bits_stored: int | None = None
) -> None:
    """Fill the Image Pixel module from ``stored`` ``(H, W)``, ``(F, H, W)`` or with a trailing RGB axis."""
    color = photometric not in ("MONOCHROME1", "MONOCHROME2")
    shape = stored.shape[:-1] if color else stored.shape
    ds.Rows, ds.Columns = int(shape[-2]), int(shape[-1])
    ds.SamplesPerPixel = 3 if color else 1
    ds.PhotometricInterpretation = photometric
    if color:
        ds.PlanarConfiguration = 0
    bits = stored.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(stored).tobytes()


def _save(ds: Dataset, path: Path, transfer_syntax: UID | None) -> Path:
    if transfer_syntax is not None:
        ds.compress(transfer_syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def volume_values(n: int, rows: int, columns: int, *, dtype: type = np.uint16, offset: int = 0) -> np.ndarray:
    """``(n, rows, columns)`` with a unique value per voxel: ``offset + k*rows*columns + r*columns + c``."""
    return (offset + np.arange(n * rows * columns).reshape(n, rows, columns)).astype(dtype)


def write_series(
    folder: str | Path,
    *,
    n_slices: int = 5,
    rows: int = 8,
    columns: int = 6,
    slice_step: float = 2.5,
    offsets: Sequence[float] | None = None,
    pixel_spacing: tuple[float, float] = (0.8, 0.7),
    origin: tuple[float, float, float] = (-20.0, -30.0, 10.0),
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    tilt_deg: float = 0.0,
    modality: str = "MR",
    slope: float | None = None,
    intercept: float | None = None,
    dtype: type = np.uint16,
    value_offset: int = 0,
    photometric: str = "MONOCHROME2",
    series_uid: str | None = None,
    study_uid: str | None = None,
    description: str = "synthetic",
    shuffle: bool = False,
    seed: int = 0,
    transfer_syntax: UID | None = None,
    with_positions: bool = True,
    prefix: str = "slice",
) -> WrittenSeries:
    """Write a single-frame series, one file per slice.

    Args:
        folder: where to write (created).
        n_slices, rows, columns: volume size (``offsets`` overrides ``n_slices``).
        slice_step: distance between slices along the normal (mm).
        offsets: explicit slice positions along the normal (mm), for gaps or uneven spacing.
        pixel_spacing: (between rows, between columns) mm.
        origin: position of the first slice (mm, LPS).
        orientation: ImageOrientationPatient.
        tilt_deg: gantry tilt: slice ``k`` is shifted by ``offset_k * tan(tilt)`` along the column cosine.
        modality: ``"CT"`` (CT Image Storage) or anything else (MR Image Storage).
        slope, intercept: RescaleSlope/RescaleIntercept to write (``None``: not written).
        dtype: stored dtype (``np.uint16``, ``np.int16``, ``np.uint8``).
        value_offset: added to the stored values (e.g. negative values for int16).
        photometric: PhotometricInterpretation (grayscale).
        series_uid, study_uid: UIDs (generated when ``None``).
        description: SeriesDescription.
        shuffle: write the files with names in a random order (InstanceNumber still follows position).
        seed: for ``shuffle``.
        transfer_syntax: compress with pydicom's encoder (e.g. ``RLELossless``).
        with_positions: write ImagePositionPatient/ImageOrientationPatient (False: only InstanceNumber).
        prefix: file name prefix.
    """
    folder = Path(folder)
    offs = np.asarray(offsets if offsets is not None else np.arange(n_slices) * slice_step, dtype=float)
    n = len(offs)
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:], dtype=float)
    normal = np.cross(row, col)
    shear = math.tan(math.radians(tilt_deg))
    positions = np.asarray(origin)[None] + offs[:, None] * normal[None] + (offs * shear)[:, None] * col[None]
    stored = volume_values(n, rows, columns, dtype=dtype, offset=value_offset)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    names = np.arange(n)
    if shuffle:
        names = np.random.default_rng(seed).permutation(n)
    sop = CTImageStorage if modality == "CT" else MRImageStorage
    paths = []
    for k in range(n):
        ds = _ds(sop, modality=modality, study_uid=study_uid, series_uid=series_uid, description=description)
        ds.InstanceNumber = k + 1
        if with_positions:
            ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
            ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
        ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
        ds.SliceThickness = f"{slice_step:g}"
        if slope is not None:
            ds.RescaleSlope = f"{slope:g}"
        if intercept is not None:
            ds.RescaleIntercept = f"{intercept:g}"
        _pixels(ds, stored[k], photometric=photometric)
        paths.append(_save(ds, folder / f"{prefix}_{names[k]:03d}.dcm", transfer_syntax))
    return WrittenSeries(
        paths=paths,
        stored=stored,
        positions=positions,
        series_uid=series_uid,
        study_uid=study_uid,
        orientation=tuple(orientation),
        pixel_spacing=pixel_spacing,
        slope=slope if slope is not None else 1.0,
        intercept=intercept if intercept is not None else 0.0,
    )


def write_multiframe(
    path: str | Path,
    *,
    n_frames: int = 4,
    rows: int = 8,
    columns: int = 6,
    slice_step: float = 3.0,
    pixel_spacing: tuple[float, float] = (0.9, 0.8),
    origin: tuple[float, float, float] = (5.0, -10.0, -40.0),
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
    slope: float = 2.0,
    intercept: float = -100.0,
    per_frame_geometry: bool = True,
    frame_order: Sequence[int] | None = None,
) -> WrittenSeries:
    """Write one Enhanced MR multi-frame file.

    Args:
        path: the file.
        n_frames, rows, columns: size.
        slice_step: distance between frames along the normal (mm).
        pixel_spacing, origin, orientation: geometry (the default orientation is coronal).
        slope, intercept: in the shared PixelValueTransformationSequence.
        per_frame_geometry: write PlanePositionSequence per frame and orientation/measures in the shared
            group; ``False`` writes a cine/NM-like file with only top-level PixelSpacing and SpacingBetweenSlices.
        frame_order: the slice index stored in each frame (default ascending), to test sorting.
    """
    path = Path(path)
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:], dtype=float)
    normal = np.cross(row, col)
    positions = np.asarray(origin)[None] + (np.arange(n_frames) * slice_step)[:, None] * normal[None]
    stored = volume_values(n_frames, rows, columns)
    order = list(frame_order) if frame_order is not None else list(range(n_frames))
    ds = _ds(
        EnhancedMRImageStorage,
        modality="MR",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        description="enhanced",
    )
    ds.InstanceNumber = 1
    ds.NumberOfFrames = n_frames
    if per_frame_geometry:
        shared = Dataset()
        orient = Dataset()
        orient.ImageOrientationPatient = list(orientation)
        shared.PlaneOrientationSequence = DicomSequence([orient])
        measures = Dataset()
        measures.PixelSpacing = list(pixel_spacing)
        measures.SliceThickness = slice_step
        shared.PixelMeasuresSequence = DicomSequence([measures])
        transform = Dataset()
        transform.RescaleSlope = slope
        transform.RescaleIntercept = intercept
        transform.RescaleType = "US"
        shared.PixelValueTransformationSequence = DicomSequence([transform])
        ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
        per = []
        for k in order:
            item = Dataset()
            plane = Dataset()
            plane.ImagePositionPatient = [float(v) for v in positions[k]]
            item.PlanePositionSequence = DicomSequence([plane])
            per.append(item)
        ds.PerFrameFunctionalGroupsSequence = DicomSequence(per)
    else:
        ds.PixelSpacing = list(pixel_spacing)
        ds.SpacingBetweenSlices = slice_step
    _pixels(ds, stored[order])
    _save(ds, path, None)
    return WrittenSeries(
        paths=[path],
        stored=stored if per_frame_geometry else stored[order],
        positions=positions,
        series_uid=ds.SeriesInstanceUID,
        study_uid=ds.StudyInstanceUID,
        orientation=tuple(orientation),
        pixel_spacing=pixel_spacing,
        slope=slope if per_frame_geometry else 1.0,
        intercept=intercept if per_frame_geometry else 0.0,
    )


def write_xray(
    path: str | Path,
    *,
    rows: int = 10,
    columns: int = 12,
    imager_pixel_spacing: tuple[float, float] | None = (0.15, 0.14),
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    modality: str = "DX",
) -> tuple[Path, np.ndarray]:
    """Write a single 2D X-ray (no ImagePositionPatient); returns the path and the stored ``(H, W)`` uint16."""
    path = Path(path)
    stored = volume_values(1, rows, columns)[0]
    ds = _ds(
        DigitalXRayImageStorageForPresentation,
        modality=modality,
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        description="chest PA",
    )
    if imager_pixel_spacing is not None:
        ds.ImagerPixelSpacing = list(imager_pixel_spacing)
    _pixels(ds, stored, photometric=photometric, bits_stored=bits_stored)
    return _save(ds, path, None), stored


def write_color(
    path: str | Path,
    *,
    rows: int = 6,
    columns: int = 5,
    photometric: str = "RGB",
    study_uid: str | None = None,
    description: str = "screenshot",
) -> tuple[Path, np.ndarray]:
    """Write a 2D colour secondary capture (RGB or YBR_FULL); returns the path and the RGB ``(H, W, 3)`` uint8."""
    path = Path(path)
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(rows, columns, 3), dtype=np.uint8)
    stored = rgb if photometric == "RGB" else convert_color_space(rgb, "RGB", photometric)
    ds = _ds(
        SecondaryCaptureImageStorage,
        modality="OT",
        study_uid=study_uid or generate_uid(),
        series_uid=generate_uid(),
        description=description,
    )
    _pixels(ds, stored, photometric=photometric)
    return _save(ds, path, None), rgb


def write_non_image(path: str | Path, *, series_uid: str, study_uid: str) -> Path:
    """Write a Basic Text SR-like object (no Image Pixel module) into an existing series."""
    ds = _ds(
        UID("1.2.840.10008.5.1.4.1.1.88.11"),
        modality="SR",
        study_uid=study_uid,
        series_uid=series_uid,
        description="report",
    )
    return _save(ds, Path(path), None)


def truncate(path: str | Path, *, drop_bytes: int = 64) -> Path:
    """Cut the last ``drop_bytes`` bytes off a file (an interrupted copy)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - drop_bytes])
    return path


def strip_pixel_data(path: str | Path) -> Path:
    """Rewrite a file without its PixelData element (Rows/Columns kept)."""
    import pydicom

    path = Path(path)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    return path


def write_dirfile(path: str | Path) -> Path:
    """Write a DICOM-encoded vendor index file like Philips' ``DIRFILE``: a Part 10 file (preamble, ``DICM``, file
    meta) whose data set holds only private elements -- no SOP class, no series, no image."""
    path = Path(path)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    block = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
    block.add_new(0x01, "LO", "IM_0001")
    block.add_new(0x02, "LO", "IM_0002")
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=False)
    return path


def write_dicomdir(root: str | Path, files: Sequence[str | Path]) -> Path:
    """Write a DICOMDIR file-set under ``root`` with pydicom's FileSet: ``files`` are copied into its own
    ``PT*/ST*/SE*/IM*`` layout beside the DICOMDIR. Returns the DICOMDIR's path."""
    import pydicom
    from pydicom.fileset import FileSet

    fileset = FileSet()
    for f in files:
        ds = pydicom.dcmread(f)
        # the directory records need a few attributes that our synthetic objects leave out
        for keyword, value in (("InstanceNumber", 1), ("StudyDate", "20000101"), ("StudyTime", "000000"),
                               ("StudyID", "1"), ("AccessionNumber", ""), ("SeriesNumber", 1),
                               ("ContentDate", "20000101"), ("ContentTime", "000000"),
                               ("CompletionFlag", "COMPLETE"), ("VerificationFlag", "UNVERIFIED")):
            missing = keyword not in ds or (ds.get(keyword) in (None, "") and keyword != "AccessionNumber")
            if missing and (not keyword.endswith("Flag") or ds.get("Modality") == "SR"):
                setattr(ds, keyword, value)
        if ds.get("Modality") == "SR" and "ConceptNameCodeSequence" not in ds:
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "18748-4", "LN", "Diagnostic report"
            ds.ConceptNameCodeSequence = DicomSequence([code])
        fileset.add(ds)
    fileset.write(root)
    return Path(root) / "DICOMDIR"


def copy_series(
    src: str | Path,
    dest: str | Path,
    *,
    keep: Sequence[int] | None = None,
    offsets: Sequence[float] | None = None,
    tilt_deg: float = 0.0,
    orientation: Sequence[float] | None = None,
    series_uid: str | None = None,
    study_uid: str | None = None,
    series_number: int | None = None,
    description: str | None = None,
    image_type: Sequence[str] | None = None,
    ascending_instances: bool = False,
) -> list[Path]:
    """Copy a real single-frame series into ``dest``, sorted along its slice normal, editing its geometry.

    Pixels are kept as they are (compressed data stays compressed); only header elements change.

    Args:
        src: the series folder.
        dest: where to write ``000.dcm``, ``001.dcm``... (created).
        keep: indices (in ascending slice order) of the slices to copy (default all): drop some for missing slices.
        offsets: new distances of the kept slices from the first along the slice normal (mm), for uneven spacing.
        tilt_deg: shift slice ``k`` along the column cosine by ``offset_k * tan(tilt)`` (a gantry tilt), and set
            GantryDetectorTilt.
        orientation: a new ImageOrientationPatient for every slice (e.g. a localizer's plane).
        series_uid, study_uid, series_number, description, image_type: new values (UIDs default to fresh ones
            unless the originals are kept with ``series_uid=""``).
        ascending_instances: renumber InstanceNumber 1.. along the slice normal (dcm2niix needs this; the real
            CT counts down).
    """
    import pydicom

    src, dest = Path(src), Path(dest)
    datasets = [pydicom.dcmread(f) for f in sorted(src.iterdir()) if f.is_file()]
    iop = np.asarray([float(v) for v in datasets[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda d: float(np.asarray([float(v) for v in d.ImagePositionPatient]) @ normal))
    chosen = [datasets[i] for i in keep] if keep is not None else datasets
    first = np.asarray([float(v) for v in chosen[0].ImagePositionPatient])
    new_series = generate_uid() if series_uid is None else series_uid
    shear = math.tan(math.radians(tilt_deg))
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, ds in enumerate(chosen):
        pos = np.asarray([float(v) for v in ds.ImagePositionPatient])
        along = float((pos - first) @ normal)
        in_plane = (pos - first) - along * normal
        if offsets is not None:
            along = float(offsets[k])
        new = first + in_plane + along * normal + along * shear * iop[3:]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in new]
        if tilt_deg:
            ds.GantryDetectorTilt = f"{tilt_deg:g}"
        if orientation is not None:
            ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
        if new_series:
            ds.SeriesInstanceUID = new_series
        if study_uid is not None:
            ds.StudyInstanceUID = study_uid
        if series_number is not None:
            ds.SeriesNumber = series_number
        if description is not None:
            ds.SeriesDescription = description
        if image_type is not None:
            ds.ImageType = list(image_type)
        if ascending_instances:
            ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = generate_uid()
        if getattr(ds, "file_meta", None) is not None:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = dest / f"{k:03d}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths
