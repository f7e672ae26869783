"""Decoding DICOM pixel data into one stacked array: codecs, rescale, MONOCHROME1 and colour.

Value conventions, the same for every series medsight reads:

* RescaleSlope/RescaleIntercept are applied. When any frame's rescale is not the identity the volume is
  ``float32`` (e.g. CT in HU); otherwise the stored integer type is kept, widened with ``np.result_type`` when
  files of one series differ (``uint16`` and ``int16`` give ``int32``).
* MONOCHROME1 (low values shown bright, common for CR/DX) is inverted to the MONOCHROME2 convention on the
  stored values, before the rescale: ``v -> (2**BitsStored - 1) - v`` for unsigned data and ``v -> -1 - v`` for
  signed data. Bright is then high in every image medsight returns, which is what models trained on mixed
  sources need; the dtype and value range are kept and the mapping does not depend on the image content.
  ``SourceInfo.extra["monochrome1"]`` records it.
* Colour (RGB, YBR_*) becomes 3 channels in RGB (pydicom converts YBR to RGB); PALETTE COLOR is expanded
  through its lookup table to 3 channels.
* Compressed transfer syntaxes are decoded by pydicom's pixel plugins (pylibjpeg, pylibjpeg-libjpeg,
  pylibjpeg-openjpeg, pyjpegls; RLE is built in). A missing plugin is reported before any decoding, naming the
  transfer syntax and the ``medsight[codecs]`` extra.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, ImplicitVRLittleEndian

from medsight.core.guard import check_allocation
from medsight.errors import user_error
from medsight.io.dicom_geometry import Frame
from medsight.io.dicom_header import FileHeader, read_dataset, transfer_syntax_name

logger = logging.getLogger(__name__)

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
CODECS_HINT = (
    'install the codecs: pip install "medsight[codecs]" (pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg)'
)


def check_decoder(transfer_syntax: str, path: Path) -> None:
    """Raise a :class:`MedsightError` when no installed plugin can decode ``transfer_syntax``.

    Args:
        transfer_syntax: the file's transfer syntax UID.
        path: the file, for the message.
    """
    if not transfer_syntax:
        return
    uid = UID(transfer_syntax)
    if not uid.is_transfer_syntax or not uid.is_compressed:
        return
    try:
        from pydicom.pixels import get_decoder
    except ImportError:  # pydicom < 3: decoding itself reports missing handlers
        return
    name = f"{transfer_syntax_name(uid)} ({uid})"
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise user_error(
            "a transfer syntax pydicom can decode",
            name,
            path,
            "convert the files to an uncompressed transfer syntax first "
            "(e.g. gdcmconv --raw, or dcmtk's dcmdjpeg)",
        ) from exc
    if not decoder.is_available:
        raise user_error(
            f"an installed decoder for transfer syntax {name}", "none installed", path, CODECS_HINT
        )


def bits_dtype(header: FileHeader) -> np.dtype:
    """The integer dtype pydicom returns for this header's stored samples (for memory estimates)."""
    nbytes = max(1, (header.bits_allocated + 7) // 8)
    nbytes = 1 if nbytes == 1 else 2 if nbytes == 2 else 4 if nbytes <= 4 else 8
    return np.dtype(f"{'i' if header.signed else 'u'}{nbytes}")


def decode(ds: Dataset, header: FileHeader) -> np.ndarray:
    """Decode all frames of one file.

    Args:
        ds: the full dataset, pixels included.
        header: its header facts.

    Returns:
        ``(frames, rows, columns, samples)``; colour in RGB order, PALETTE COLOR expanded to 3 samples.
    """
    path = header.path
    if not any(k in ds for k in PIXEL_KEYWORDS):
        sop = header.sop_class or "unknown"
        raise user_error(
            "a DICOM image with pixel data",
            f"a file without PixelData (SOP class {UID(sop).name or sop})",
            path,
            "remove it from the series folder (it is not an image) or re-export the image",
        )
    check_decoder(header.transfer_syntax, path)
    try:
        arr = ds.pixel_array
        if header.photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            arr = apply_color_lut(arr, ds)
    except (
        ValueError,
        RuntimeError,
        NotImplementedError,
        AttributeError,
        TypeError,
        KeyError,
        EOFError,
        struct.error,
        IndexError,
    ) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "missing" in reason.lower() and "dependenc" in reason.lower():
            raise user_error(
                f"an installed decoder for {transfer_syntax_name(header.transfer_syntax)}",
                reason,
                path,
                CODECS_HINT,
            ) from exc
        raise user_error(
            "decodable pixel data",
            f"a decoding error ({reason})",
            path,
            "re-copy or re-export the file (it may be truncated or corrupted), or remove it from the series",
        ) from exc
    samples = 3 if header.photometric == "PALETTE COLOR" else header.samples
    expected = (header.frames, header.rows or 0, header.columns or 0, samples)
    if arr.size != int(np.prod(expected)):
        raise user_error(
            f"pixel data of {header.frames} frame(s) of {header.size} x {samples} sample(s)",
            f"an array of shape {arr.shape}",
            path,
            "check the file's Rows/Columns/NumberOfFrames (it may be corrupted) or re-export it",
        )
    return arr.reshape(expected)


def read_native(header: FileHeader) -> np.ndarray | None:
    """Read uncompressed little-endian pixel data straight from the file, without parsing the header again.

    Gives exactly what pydicom's native decoder returns (no masking of unused high bits), several times faster
    for series of many small files. Only for gray or RGB data of 8, 16 or 32 bits; ``None`` when the file is
    anything else (the caller then decodes through pydicom).

    Args:
        header: the file's header, with ``pixel_offset`` from :func:`~medsight.io.dicom_header.read_header`.

    Returns:
        ``(frames, rows, columns, samples)`` or ``None``.

    Raises:
        MedsightError: the pixel data is shorter than Rows x Columns x frames needs (a truncated file).
    """
    if (
        header.pixel_offset is None
        or header.bits_allocated not in (8, 16, 32)
        or (header.samples, header.photometric) not in ((1, "MONOCHROME1"), (1, "MONOCHROME2"), (3, "RGB"))
        or not header.rows
        or not header.columns
    ):
        return None
    implicit = header.transfer_syntax == str(ImplicitVRLittleEndian)
    nbytes = header.bits_allocated // 8
    expected = header.frames * header.rows * header.columns * header.samples * nbytes
    with open(header.path, "rb") as fh:
        fh.seek(header.pixel_offset)
        head = fh.read(8 if implicit else 12)
        if len(head) < 8 or struct.unpack("<HH", head[:4]) != (0x7FE0, 0x0010):
            return None
        if implicit:
            length = struct.unpack("<I", head[4:8])[0]
        elif head[4:6] in (b"OW", b"OB") and len(head) == 12:
            length = struct.unpack("<I", head[8:12])[0]
        else:
            return None
        if length == 0xFFFFFFFF:  # encapsulated despite the transfer syntax: let pydicom decide
            return None
        data = fh.read(expected) if length >= expected else b""
    if len(data) < expected:
        got = min(length, len(data)) if data else length
        raise user_error(
            "complete pixel data",
            f"{got} of the {expected} bytes that {header.frames} frame(s) of {header.size} need",
            header.path,
            "re-copy or re-export the file (it may be truncated or corrupted), or remove it from the series",
        )
    arr = np.frombuffer(data, dtype=np.dtype(f"<{'i' if header.signed else 'u'}{nbytes}"))
    if header.samples == 3 and header.planar == 1:
        return arr.reshape(header.frames, 3, header.rows, header.columns).transpose(0, 2, 3, 1)
    return arr.reshape(header.frames, header.rows, header.columns, header.samples)


def invert_monochrome1(values: np.ndarray, *, bits_stored: int, signed: bool) -> np.ndarray:
    """Map MONOCHROME1 stored values to the MONOCHROME2 convention, keeping dtype and range.

    Args:
        values: stored values (any shape).
        bits_stored: BitsStored.
        signed: PixelRepresentation == 1.

    Returns:
        ``-1 - v`` for signed data, ``(2**bits_stored - 1) - v`` for unsigned data (floats: ``max + min - v``).
    """
    if values.dtype.kind == "f":
        return (np.nanmax(values) + np.nanmin(values) - values).astype(values.dtype)
    wide = values.astype(np.int64)
    if signed:
        return (-1 - wide).astype(values.dtype)
    top = max((1 << bits_stored) - 1, int(wide.max()) if wide.size else 0)
    return (top - wide).astype(values.dtype)


def needs_rescale(frames: Sequence[Frame]) -> bool:
    """Whether any frame's RescaleSlope/RescaleIntercept is not the identity."""
    return any(f.slope != 1.0 or f.intercept != 0.0 for f in frames)


def stack_pixels(
    frames: Sequence[Frame], headers: Mapping[Path, FileHeader], *, where: str | Path, channels: int
) -> np.ndarray:
    """Decode sorted frames into one ``(C, D, H, W)`` array (see the module docstring for value conventions).

    Each file is read and decoded once; memory is checked before the volume is allocated.

    Args:
        frames: frames in output slice order (``D = len(frames)``).
        headers: header of each file, by path.
        where: the series folder or file, for messages.
        channels: ``C`` (1 gray, 3 colour).

    Returns:
        ``(C, D, H, W)``: float32 when rescaled, else the stored integer dtype.
    """
    first = headers[frames[0].path]
    rows, cols, n = int(first.rows or 0), int(first.columns or 0), len(frames)
    rescale = needs_rescale(frames)
    itemsize = 4 if rescale else max(bits_dtype(headers[f.path]).itemsize for f in frames)
    check_allocation(rows * cols * n * channels * itemsize, where)
    slots: dict[Path, list[tuple[int, int]]] = {}
    for slot, frame in enumerate(frames):
        slots.setdefault(frame.path, []).append((frame.index, slot))
    out: np.ndarray | None = None
    for path, items in slots.items():
        header = headers[path]
        pixels = read_native(header)
        if pixels is None:
            pixels = decode(read_dataset(path, stop_before_pixels=False), header)
        for index, slot in items:
            values = pixels[index]
            if header.photometric == "MONOCHROME1":
                values = invert_monochrome1(values, bits_stored=header.bits_stored, signed=header.signed)
            frame = frames[slot]
            if rescale:
                values = (values.astype(np.float64) * frame.slope + frame.intercept).astype(np.float32)
            if out is None:
                out = np.empty((channels, n, rows, cols), dtype=values.dtype)
            elif not np.can_cast(values.dtype, out.dtype, "safe"):
                wider = np.result_type(out.dtype, values.dtype)
                logger.debug("widening %s to %s for %s", out.dtype, wider, path.name)
                check_allocation(out.size * wider.itemsize, where)
                out = out.astype(wider)
            out[:, slot] = np.moveaxis(values, -1, 0)
    if out is None:  # frames is never empty; keeps type checkers content
        raise user_error("at least one frame", "none", where, "check the series folder")
    return out
