"""Reading DICOM files safely and keeping the header facts medsight needs (never patient identifiers).

Every parse goes through :func:`read_dataset`, which turns pydicom's parse errors into one-line
:class:`~medsight.errors.MedsightError` messages that name the file, and turns pydicom's warnings into debug
logs (so the command line stays quiet). :class:`FileHeader` holds the geometry, pixel-format and series facts of
one file, read with ``stop_before_pixels=True`` and a short tag list so that scanning thousands of files is fast.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medsight.errors import user_error

logger = logging.getLogger(__name__)

#: Tags read when scanning a folder (everything grouping, sorting and stacking single-frame files needs).
HEADER_TAGS: tuple[str, ...] = (
    "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "Modality", "SeriesDescription",
    "InstanceNumber", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "ImagerPixelSpacing",
    "NominalScannedPixelSpacing", "SliceThickness", "SpacingBetweenSlices", "Rows", "Columns", "NumberOfFrames",
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "BitsAllocated", "BitsStored",
    "PixelRepresentation", "RescaleSlope", "RescaleIntercept", "RescaleType", "SOPInstanceUID", "ImageType",
    "FrameOfReferenceUID",
)  # fmt: skip
# pydicom matches tag numbers faster than keywords
_HEADER_TAG_NUMBERS: tuple[int, ...] = tuple(int(tag_for_keyword(k) or 0) for k in HEADER_TAGS)

# What pydicom raises on malformed or truncated input. OSError is left out on purpose: permission problems and
# vanished files are reported by the command line as such.
_PARSE_ERRORS = (
    InvalidDicomError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    struct.error,
    NotImplementedError,
    OverflowError,
    BytesLengthException,  # a RuntimeError: an element whose length does not fit its VR (found by fuzzing)
)

#: Uncompressed little-endian transfer syntaxes, whose pixel data medsight reads straight from the file.
NATIVE_LITTLE_ENDIAN = (str(ImplicitVRLittleEndian), str(ExplicitVRLittleEndian))

_PREAMBLE_BYTES = 132  # 128-byte preamble + b"DICM"

#: Media Storage Directory Storage: the SOP class of a DICOMDIR (and of some vendors' per-folder index files).
DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"


def has_dicm_preamble(path: Path) -> bool:
    """Whether ``path`` carries the ``DICM`` marker at byte 128 (a DICOM Part 10 file)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_PREAMBLE_BYTES)
    except OSError:
        return False
    return len(head) == _PREAMBLE_BYTES and head[128:132] == b"DICM"


def _starts_like_raw_dicom(path: Path) -> bool:
    """Cheap pre-check for DICOM without preamble: the first element is in group 0x0002 or 0x0008."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    if len(head) < 8:
        return False
    group_le, group_be = struct.unpack("<H", head[:2])[0], struct.unpack(">H", head[:2])[0]
    return group_le in (0x0002, 0x0008) or group_be in (0x0002, 0x0008)


def is_raw_dicom(path: Path) -> bool:
    """Whether a file without preamble parses as DICOM and holds a SOPClassUID or pixel data."""
    if not _starts_like_raw_dicom(path):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True, defer_size=256, specific_tags=["SOPClassUID", "PixelData"])
        except (*_PARSE_ERRORS, OSError):
            return False
    return "SOPClassUID" in ds or "PixelData" in ds


def read_dataset(
    path: Path,
    *,
    stop_before_pixels: bool,
    specific_tags: tuple[str | int, ...] | None = None,
    fileobj: BinaryIO | None = None,
) -> Dataset:
    """Parse one DICOM file; a malformed file becomes a :class:`MedsightError` naming it.

    Args:
        path: the file.
        stop_before_pixels: skip the pixel data (for headers).
        specific_tags: read only these keywords or tag numbers (faster on large headers).
        fileobj: an open binary handle on ``path`` to read from (its position then tells where reading stopped).

    Returns:
        The dataset, with ``file_meta.TransferSyntaxUID`` filled in for files without a file meta header.
    """
    tags: Any = list(specific_tags) if specific_tags else None  # pydicom accepts keywords and tag numbers
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(
                fileobj if fileobj is not None else path,
                force=True,
                stop_before_pixels=stop_before_pixels,
                specific_tags=tags,
            )
        except _PARSE_ERRORS as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise user_error(
                "a readable DICOM file",
                f"a file pydicom cannot parse ({reason})",
                path,
                "re-export or re-copy it (it may be truncated or corrupted), or move it out of the folder",
            ) from exc
    for item in caught:
        logger.debug("pydicom on %s: %s", path.name, item.message)
    _ensure_transfer_syntax(ds)
    return ds


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Files without a file meta header (no preamble) still need a transfer syntax for pixel decoding."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is None:
        implicit, little = True, True
    uid = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    if meta is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid


# Value representations decoded straight from the raw bytes by ``get_value`` (ASCII text or unsigned shorts);
# everything else (person names, free text in a specific character set, sequences) goes through pydicom.
_RAW_TEXT_VRS = frozenset({"UI", "CS", "DS", "IS"})


@functools.lru_cache(maxsize=512)
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag, dictionary_VR(tag)


def _from_raw(raw: RawDataElement, vr: str) -> Any:
    """Decode a raw element of a simple VR without pydicom's conversion machinery (about 20x faster).

    Returns ``...`` (Ellipsis) when the element needs pydicom's full conversion.
    """
    value = raw.value
    if not isinstance(value, bytes):
        return ...
    if vr == "US":
        count = len(value) // 2
        if count == 0:
            return None
        numbers = struct.unpack(f"{'<' if raw.is_little_endian else '>'}{count}H", value[: 2 * count])
        return numbers[0] if count == 1 else list(numbers)
    if vr in _RAW_TEXT_VRS:
        try:
            text = value.decode("ascii").strip("\x00 ")
        except UnicodeDecodeError:
            return ...
        parts = [p.strip() for p in text.split("\\")]
        return parts[0] if len(parts) == 1 else parts
    return ...


def get_value(ds: Dataset, keyword: str) -> Any:
    """The value of ``keyword`` in ``ds``, or ``None`` when absent, empty or malformed.

    Numbers and UIDs (US, DS, IS, UI, CS) of elements not yet converted are decoded from their raw bytes, which
    makes scanning folders of thousands of files several times faster; DS and IS then come back as strings (the
    typed getters below convert them).
    """
    try:
        tag, vr = _tag_and_vr(keyword)
        element = ds.get_item(tag)
        if element is None:
            return None
        value = _from_raw(element, vr) if isinstance(element, RawDataElement) else ...
        if value is ...:
            value = ds[tag].value
    except _PARSE_ERRORS:
        logger.debug("malformed %s ignored", keyword)
        return None
    if value is None or value == "" or value == []:
        return None
    return value


def get_floats(ds: Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
    """``n`` floats from a multi-valued numeric element, or ``None`` when absent or malformed."""
    value = get_value(ds, keyword)
    if value is None:
        return None
    try:
        values = [float(v) for v in (value if isinstance(value, list | tuple | MultiValue) else [value])]
    except (TypeError, ValueError):
        logger.debug("malformed %s ignored: %r", keyword, value)
        return None
    if len(values) != n or not all(abs(v) < float("inf") for v in values):
        logger.debug("%s has %d values, expected %d: ignored", keyword, len(values), n)
        return None
    return tuple(values)


def get_float(ds: Dataset, keyword: str) -> float | None:
    """One float, or ``None``."""
    values = get_floats(ds, keyword, 1)
    return values[0] if values else None


def get_int(ds: Dataset, keyword: str) -> int | None:
    """One integer, or ``None``."""
    value = get_value(ds, keyword)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def get_str(ds: Dataset, keyword: str) -> str:
    """A string value stripped of padding, or ``""``."""
    value = get_value(ds, keyword)
    return str(value).strip() if value is not None else ""


def positive_spacing(values: tuple[float, ...] | None) -> tuple[float, ...] | None:
    """``values`` when all are positive and finite, else ``None``."""
    if values is None or not all(0 < v < float("inf") for v in values):
        return None
    return values


def pixel_spacing_of(ds: Dataset) -> tuple[tuple[float, float] | None, str]:
    """In-plane spacing (between rows, between columns) in mm, and the keyword it came from.

    Order: PixelSpacing (patient plane), ImagerPixelSpacing (detector plane of X-ray; not corrected for
    geometric magnification), NominalScannedPixelSpacing (scanned film).
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        values = positive_spacing(get_floats(ds, keyword, 2))
        if values is not None:
            return (values[0], values[1]), keyword
    return None, ""


def slice_thickness_of(ds: Dataset) -> float | None:
    """SpacingBetweenSlices, else SliceThickness (mm), else ``None``."""
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = get_float(ds, keyword)
        if value is not None and value > 0:
            return value
    return None


@dataclass(frozen=True)
class FileHeader:
    """Facts from one DICOM file's header. Holds no patient identifiers.

    Attributes:
        path: the file.
        series_uid, study_uid: SeriesInstanceUID and StudyInstanceUID (``""`` when absent).
        series_number: SeriesNumber, or ``None``.
        modality, description: Modality and SeriesDescription.
        sop_class: SOPClassUID.
        transfer_syntax: the transfer syntax UID.
        rows, columns: image size, ``None`` for non-image objects (SR, KO, PR).
        frames: NumberOfFrames (1 for single-frame files).
        samples: SamplesPerPixel (1 gray, 3 colour).
        photometric: PhotometricInterpretation.
        bits_allocated, bits_stored: bits per stored sample.
        signed: PixelRepresentation == 1.
        position: ImagePositionPatient (mm, LPS), or ``None``.
        orientation: ImageOrientationPatient (row cosine, column cosine), or ``None``.
        pixel_spacing: (between rows, between columns) mm, or ``None``.
        spacing_source: the keyword ``pixel_spacing`` came from.
        thickness: SpacingBetweenSlices, else SliceThickness (mm), or ``None``.
        slope, intercept: RescaleSlope/RescaleIntercept (1 and 0 when absent).
        rescale_type: RescaleType (``"HU"``...) or ``""``.
        instance: InstanceNumber, or ``None``.
        planar: PlanarConfiguration (0: RGBRGB..., 1: RR..GG..BB..).
        sop_instance: SOPInstanceUID (``""`` when absent).
        image_type: ImageType values, upper case (``("ORIGINAL", "PRIMARY", "LOCALIZER")``).
        frame_of_reference: FrameOfReferenceUID (``""`` when absent).
        pixel_offset: byte offset of the PixelData element when the file is native little endian (so the pixels
            can be read without parsing the header again), else ``None``.
    """

    path: Path
    series_uid: str
    study_uid: str
    series_number: int | None
    modality: str
    description: str
    sop_class: str
    transfer_syntax: str
    rows: int | None
    columns: int | None
    frames: int
    samples: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    signed: bool
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    spacing_source: str
    thickness: float | None
    slope: float
    intercept: float
    rescale_type: str
    instance: int | None
    planar: int = 0
    sop_instance: str = ""
    image_type: tuple[str, ...] = ()
    frame_of_reference: str = ""
    pixel_offset: int | None = None

    @property
    def is_image(self) -> bool:
        """Whether the header describes pixel data (Rows and Columns present)."""
        return bool(self.rows) and bool(self.columns)

    @property
    def size(self) -> str:
        """``"ROWSxCOLUMNS"`` for messages."""
        return f"{self.rows}x{self.columns}"


def header_from_dataset(ds: Dataset, path: Path) -> FileHeader:
    """Build a :class:`FileHeader` from a parsed dataset (header-only or full)."""
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    pixel_spacing, source = pixel_spacing_of(ds)
    slope = get_float(ds, "RescaleSlope")
    intercept = get_float(ds, "RescaleIntercept")
    bits_allocated = get_int(ds, "BitsAllocated") or 16
    return FileHeader(
        path=path,
        series_uid=get_str(ds, "SeriesInstanceUID"),
        study_uid=get_str(ds, "StudyInstanceUID"),
        series_number=get_int(ds, "SeriesNumber"),
        modality=get_str(ds, "Modality"),
        description=get_str(ds, "SeriesDescription"),
        sop_class=get_str(ds, "SOPClassUID"),
        transfer_syntax=transfer_syntax,
        rows=get_int(ds, "Rows"),
        columns=get_int(ds, "Columns"),
        frames=max(get_int(ds, "NumberOfFrames") or 1, 1),
        samples=get_int(ds, "SamplesPerPixel") or 1,
        photometric=get_str(ds, "PhotometricInterpretation").upper(),
        bits_allocated=bits_allocated,
        bits_stored=get_int(ds, "BitsStored") or bits_allocated,
        signed=get_int(ds, "PixelRepresentation") == 1,
        position=get_floats(ds, "ImagePositionPatient", 3),
        orientation=get_floats(ds, "ImageOrientationPatient", 6),
        pixel_spacing=pixel_spacing,
        spacing_source=source,
        thickness=slice_thickness_of(ds),
        slope=slope if slope is not None and slope != 0 else 1.0,
        intercept=intercept if intercept is not None else 0.0,
        rescale_type=get_str(ds, "RescaleType"),
        instance=get_int(ds, "InstanceNumber"),
        planar=get_int(ds, "PlanarConfiguration") or 0,
        sop_instance=get_str(ds, "SOPInstanceUID"),
        image_type=_image_type(ds),
        frame_of_reference=get_str(ds, "FrameOfReferenceUID"),
    )


def _image_type(ds: Dataset) -> tuple[str, ...]:
    value = get_value(ds, "ImageType")
    if value is None:
        return ()
    values = value if isinstance(value, list | tuple | MultiValue) else [value]
    return tuple(str(v).strip().upper() for v in values)


def media_sop_class(ds: Dataset) -> str:
    """MediaStorageSOPClassUID of the file meta information, or ``""``."""
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("MediaStorageSOPClassUID", "") or "").strip() if meta is not None else ""


def is_index_dataset(ds: Dataset) -> bool:
    """Whether a parsed file is a directory/index object rather than an instance of a series.

    True for a DICOMDIR (Media Storage Directory SOP class, or a DirectoryRecordSequence) and for vendor index
    files such as Philips' ``DIRFILE``: DICOM-encoded files that carry neither a SOP class (in the data set or
    the file meta information), nor a SeriesInstanceUID, nor an image size.
    """
    if media_sop_class(ds) == DIRECTORY_SOP_CLASS or get_str(ds, "SOPClassUID") == DIRECTORY_SOP_CLASS:
        return True
    if "DirectoryRecordSequence" in ds:
        return True
    return not (
        media_sop_class(ds) or get_str(ds, "SOPClassUID") or get_str(ds, "SeriesInstanceUID") or get_value(ds, "Rows")
    )


def read_header(path: Path) -> FileHeader:
    """Read the header facts of one DICOM file (pixel data skipped).

    Raises:
        MedsightError: the file cannot be parsed, or its header stops before any identifying element
            (a truncated copy), or it is a directory/index file (see :func:`scan_header`).
    """
    header = scan_header(path)
    if header is None:
        raise user_error(
            "a DICOM image or object file",
            "a directory or index file (no SOP class, series or image size)",
            path,
            "point at the image files, or at the folder holding them",
        )
    return header


def scan_header(path: Path) -> FileHeader | None:
    """Like :func:`read_header`, but ``None`` for a directory or vendor index file (:func:`is_index_dataset`).

    A file whose file meta information names an instance SOP class but whose header stops before SOPClassUID,
    SeriesInstanceUID and Rows is a truncated copy, and still an error.
    """
    with open(path, "rb") as fh:
        ds = read_dataset(path, stop_before_pixels=True, specific_tags=_HEADER_TAG_NUMBERS, fileobj=fh)
        stopped_at = fh.tell()  # pydicom rewinds to the start of the pixel data element
    if is_index_dataset(ds):
        return None
    header = header_from_dataset(ds, path)
    if header.transfer_syntax in NATIVE_LITTLE_ENDIAN:
        header = dataclasses.replace(header, pixel_offset=stopped_at)
    if not header.sop_class and not header.series_uid and not header.is_image:
        raise user_error(
            "a complete DICOM header",
            "a header that ends before SOPClassUID, SeriesInstanceUID and Rows",
            path,
            "re-copy or re-export the file (it looks truncated), or move it out of the folder",
        )
    return header


def transfer_syntax_name(uid: str) -> str:
    """A readable name for a transfer syntax UID (``"Explicit VR Little Endian"``), or the UID itself."""
    if not uid:
        return "unknown"
    name = UID(uid).name
    return name if name and name != uid else uid
