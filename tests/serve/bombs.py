"""The upload bombs of issue 20, built in memory (used by ``test_limits.py`` and ``benchmarks/serve_bombs.py``)."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib

import numpy as np


def nifti_bomb(shape: tuple[int, int, int] = (256, 512, 512)) -> bytes:
    """A .nii.gz of int16 zeros: 128 MiB of voxels in about 130 KB (the issue's bomb), written in chunks."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        gz.write(header.binaryblock + b"\x00" * 4)  # 348-byte header + extension flag; voxels at offset 352
        zeros = b"\x00" * (1 << 22)
        for _ in range(int(np.prod(shape)) * 2 // len(zeros)):
            gz.write(zeros)
    return buf.getvalue()


def zip_bomb(members: int = 4, size: int = 1 << 20) -> bytes:
    """A zip of ``members`` members of ``size`` zero bytes each (4 x 1 MiB -> about 4.5 KB: the issue's bomb)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for n in range(members):
            zf.writestr(f"slice{n}.dcm", b"\x00" * size)
    return buf.getvalue()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG whose header claims ``width x height`` pixels, in a few dozen bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


__all__ = ["nifti_bomb", "png_bomb", "zip_bomb"]
