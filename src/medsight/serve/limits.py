"""Decompressed-size limits of uploaded images, checked from their headers before any voxel is decompressed.

A small compressed file can declare a huge image: a 130 KB ``.nii.gz`` of zeros holds 128 MiB of voxels, and the
reader would allocate all of it. Every upload kind is therefore measured from its header with the field's own
readers, and refused with 413 before the job reads it:

=============================  =================================================================================
kind                           how the voxel bytes are measured (nothing decompressed)
=============================  =================================================================================
NIfTI ``.nii``, ``.nii.gz``    nibabel's header: ``prod(dims) x bytes per voxel``
NRRD, MHA                      SimpleITK ``ReadImageInformation``: size x components x bytes per component; the
                               voxels must be in the file itself (a header naming a data file is refused: it
                               would make the server read a file of its own)
PNG, JPEG, TIFF, GIF, BMP      Pillow's lazy ``open``: width x height x frames x bytes per pixel
DICOM (a file, or a series)    pydicom's header: rows x columns x frames x samples x bytes, summed over the
                               series; a deflated data set is inflated in bounded chunks and refused as soon as
                               it passes the limit
=============================  =================================================================================

Two rules apply to the measured size ``n`` of an image stored in ``s`` bytes:

* ``n`` at most the server's ``max_image_bytes`` (``--max-image-mb``);
* beyond :data:`RATIO_EXEMPT_BYTES`, ``n / s`` at most :data:`MAX_IMAGE_RATIO` (scans compress 2-10 times; an image
  that claims more is a decompression bomb). Smaller images are exempt: a sparse label map compresses far more,
  and a few tens of MiB are harmless.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from medsight.serve.security import api_error, megabytes

#: Largest accepted ratio of decompressed voxel bytes to stored bytes, for images above the exemption.
MAX_IMAGE_RATIO = 200
#: Images up to this many voxel bytes are not subject to the ratio rule.
RATIO_EXEMPT_BYTES = 64 * 1024 * 1024
DEFLATED_TS = "1.2.840.10008.1.2.1.99"
_BITS = re.compile(r"(\d+)-bit")
_RASTER = ("png", "jpeg", "tiff", "gif", "bmp")


def _refuse_header(kind: str, field: str, why: str) -> Exception:
    return api_error(415, f"a {kind} file with a header medsight can read", why, f"'{field}'",
                     "re-export the image, or upload it in another format")


def _nifti_bytes(path: Path, field: str) -> int:
    import nibabel as nib

    try:
        header: Any = nib.load(str(path)).header  # the header only: the voxels stay on disk, compressed
        shape = header.get_data_shape()
        itemsize = int(header.get_data_dtype().itemsize)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for damaged headers
        raise _refuse_header("NIfTI", field, f"a header nibabel cannot parse ({type(exc).__name__})") from exc
    n = itemsize
    for d in shape:
        n *= max(int(d), 0)
    return n


def _external_data(path: Path, kind: str) -> bool:
    """Whether an NRRD/MHA header names a separate data file (only the text header is read)."""
    with path.open("rb") as fh:
        head = fh.read(64 * 1024)
    if kind == "nrrd":
        text = head.split(b"\n\n", 1)[0]
        return re.search(rb"^data ?file:", text, re.MULTILINE | re.IGNORECASE) is not None
    found = re.search(rb"^ElementDataFile\s*=\s*(\S+)", head, re.MULTILINE)
    return found is None or found.group(1).upper() != b"LOCAL"


def _itk_bytes(path: Path, kind: str, field: str) -> int:
    import SimpleITK as sitk

    if _external_data(path, kind):
        raise api_error(415, f"a single-file {kind.upper()} (voxels inside the file)",
                        "a header that names a separate data file", f"'{field}'",
                        "save the image as one file (.nrrd with embedded data, .mha)")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise _refuse_header(kind.upper(), field, "a header SimpleITK cannot parse") from exc
    bits = _BITS.search(sitk.GetPixelIDValueAsString(reader.GetPixelID()))
    n = (int(bits.group(1)) // 8 if bits else 8) * max(1, int(reader.GetNumberOfComponents()))
    for d in reader.GetSize():
        n *= int(d)
    return n


def _raster_bytes(path: Path, field: str) -> int:
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as pil:  # lazy: reads the header, decodes nothing
            width, height = pil.size
            frames = int(getattr(pil, "n_frames", 1) or 1)
            mode = pil.mode
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for damaged headers
        raise _refuse_header("raster", field, f"a header Pillow cannot parse ({type(exc).__name__})") from exc
    per_band = 2 if "16" in mode else 4 if mode in ("I", "F") else 1
    bands = int(PILImage.getmodebands(mode)) if mode in PILImage.MODES else 4
    return int(width) * int(height) * frames * per_band * bands


def _inflated_within(path: Path, limit: int) -> bool:
    """Whether a deflated DICOM data set inflates to at most ``limit`` bytes (inflated in 1 MiB steps)."""
    with path.open("rb") as fh:
        head = fh.read(144)
        if len(head) < 144 or head[132:138] != b"\x02\x00\x00\x00UL":
            return False
        fh.seek(144 + int.from_bytes(head[140:144], "little"))
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        total = 0
        while chunk := fh.read(64 * 1024):
            data = inflater.decompress(chunk, 1 << 20)
            total += len(data)
            while inflater.unconsumed_tail and total <= limit:
                data = inflater.decompress(inflater.unconsumed_tail, 1 << 20)
                total += len(data)
            if total > limit:
                return False
    return True


def dicom_pixel_bytes(path: Path, limit: int, field: str = "file") -> int:
    """Voxel bytes one DICOM file declares (0 for objects without pixels); a deflated one is inflated with a cap."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        meta = pydicom.filereader.read_file_meta_info(path)
        if str(meta.get("TransferSyntaxUID", "")) == DEFLATED_TS and not _inflated_within(path, limit):
            raise api_error(413, f"a deflated DICOM data set of at most {megabytes(limit)}",
                            "one that inflates to more (a decompression bomb?)", f"'{field}'",
                            "upload the series uncompressed or with image compression")
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, KeyError, EOFError, zlib.error) as exc:
        raise _refuse_header("DICOM", field, f"a header pydicom cannot parse ({type(exc).__name__})") from exc
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    nbytes = (int(ds.get("BitsAllocated", 8) or 8) + 7) // 8
    return rows * cols * frames * samples * nbytes


def image_bytes(path: Path, kind: str, *, limit: int, field: str = "file") -> int:
    """The voxel bytes ``path`` (an upload of ``kind``, or a DICOM series folder) decompresses to."""
    if kind in ("nifti", "nifti-gz"):
        return _nifti_bytes(path, field)
    if kind in ("nrrd", "mha"):
        return _itk_bytes(path, kind, field)
    if kind in _RASTER:
        return _raster_bytes(path, field)
    if kind == "dicom" and path.is_file():
        return dicom_pixel_bytes(path, limit, field)
    if kind == "dicom":
        total = 0
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            try:
                total += dicom_pixel_bytes(f, limit, field)
            except HTTPException as exc:
                if exc.status_code != 415:
                    raise
                continue  # a damaged member: the series reader skips it with a note, as it would without the server
            if total > limit:
                break
        return total
    raise api_error(415, "an image file", f"{kind} content", f"'{field}'", "upload an image medsight reads")


def stored_bytes(path: Path) -> int:
    """Bytes on disk of a file, or of every file below a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_image(path: Path, kind: str, *, max_bytes: int, field: str = "file") -> int:
    """Refuse (413) an image that decompresses beyond ``max_bytes`` or beyond the ratio rule; returns its voxel bytes."""
    n = image_bytes(path, kind, limit=max_bytes, field=field)
    if n > max_bytes:
        raise api_error(413, f"an image of at most {megabytes(max_bytes)} of voxels", f"one of {megabytes(n)}",
                        f"'{field}'", "crop or downsample it, or restart the server with a larger --max-image-mb")
    stored = max(stored_bytes(path), 1)
    if n > RATIO_EXEMPT_BYTES and n > MAX_IMAGE_RATIO * stored:
        raise api_error(413, f"an image compressed at most {MAX_IMAGE_RATIO}:1",
                        f"{megabytes(stored)} that decompress to {megabytes(n)} (a decompression bomb?)", f"'{field}'",
                        "upload the image with ordinary compression")
    return n


__all__ = ["MAX_IMAGE_RATIO", "RATIO_EXEMPT_BYTES", "check_image", "dicom_pixel_bytes", "image_bytes", "stored_bytes"]
