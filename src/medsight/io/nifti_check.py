"""On-disk integrity of NIfTI voxel data.

SimpleITK (ITK 5.4) zero-fills the missing voxels of a truncated NIfTI and turns NaN/Inf voxels into 0 without a
word; this module reads the file itself so medsight can refuse truncated files and report non-finite voxels.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np


def nifti_integrity(path: Path) -> tuple[str, int]:
    """Check a NIfTI file's voxel data on disk: ``(why it is incomplete or "", number of NaN/Inf voxels)``.

    SimpleITK (ITK 5) zero-fills the missing voxels of a truncated NIfTI and replaces NaN/Inf voxels with 0,
    both without a word, so neither shows in the array it returns. This reads the file itself: float data are
    streamed once in 4 MiB chunks (counting non-finite values and bytes); for integer data an uncompressed
    file's size is compared with the header, and a ``.nii.gz``'s gzip trailer (uncompressed size) is compared
    first, decompressing the stream only on a mismatch. Files that are not NIfTI, or whose header cannot be
    parsed (the reader reports those), give ``("", 0)``.
    """
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return "", 0
    import gzip
    import zlib

    from nibabel.nifti1 import Nifti1Header
    from nibabel.nifti2 import Nifti2Header

    compressed = name.endswith(".gz")
    total, bad, carry = 0, 0, b""
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as fh:
            head = fh.read(540)
            try:
                sizeof_hdr = int.from_bytes(head[:4], "little")
                header_class = Nifti2Header if sizeof_hdr in (540, 540 << 24) else Nifti1Header
                header = header_class.from_fileobj(io.BytesIO(head))
                dtype = header.get_data_dtype()
                offset = int(header.get_data_offset())
                data_bytes = int(np.prod(header.get_data_shape(), dtype=np.int64)) * int(dtype.itemsize)
            except Exception:  # noqa: BLE001 - any parse failure is the reader's to report
                return "", 0
            expected = offset + data_bytes
            floating = dtype.kind in "fc"
            if not floating:
                if not compressed:
                    size = path.stat().st_size
                    return ("" if size >= expected else f"truncated: {size} bytes on disk, the header needs {expected}"), 0
                with open(path, "rb") as raw:
                    raw.seek(-4, os.SEEK_END)
                    if int.from_bytes(raw.read(4), "little") == expected % 2**32:
                        return "", 0
            pending = head[offset:] if offset <= len(head) else b""
            skip = offset - len(head)
            while skip > 0:  # in bounded chunks: a damaged vox_offset can claim gigabytes
                got = len(fh.read(min(1 << 22, skip)))
                if not got:
                    return f"truncated: the header's voxel offset {offset} is past the end of the data", 0
                skip -= got
            while total < data_bytes:
                chunk = pending or fh.read(min(1 << 22, data_bytes - total))
                pending = b""
                if not chunk:
                    break
                chunk = chunk[: data_bytes - total]
                total += len(chunk)
                if floating:
                    chunk = carry + chunk
                    usable = len(chunk) - len(chunk) % dtype.itemsize
                    values = np.frombuffer(chunk[:usable], dtype=dtype)
                    bad += int(values.size - np.count_nonzero(np.isfinite(values)))
                    carry = chunk[usable:]
    except (EOFError, OSError, zlib.error) as exc:
        return f"truncated or corrupt compressed data ({exc})", bad
    if total < data_bytes:
        return f"truncated: {offset + total} bytes of header and voxel data, the header needs {expected}", bad
    return "", bad
