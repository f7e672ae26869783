"""Uploads: recognised by their first bytes, stored under server-chosen names, zipped DICOM series unpacked safely.

An upload is accepted when its content is one of the formats medsight reads (magic bytes, not the client's file
name), and the name's suffix, when it names a format, agrees with the content. It is written under a name made
from the job id (the client's file name, which may hold a patient's name, is never stored or logged).

A zip must hold a DICOM series: members with absolute names, ``..`` steps, links or encryption are refused; the
declared sizes, the member count, every member's compression ratio (small members too) and the whole archive's
are checked before anything is unpacked, and the bytes actually written are counted again while unpacking (a lying
header cannot exceed the limit). The voxels the unpacked series declares are then checked by
:mod:`medsight.serve.limits`. Members
are written as numbered files (their names are dropped); those that are not DICOM are discarded.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from medsight.io.dicom import is_dicom_file
from medsight.serve.security import api_error, megabytes

CHUNK = 1024 * 1024
#: A zip may unpack to at most this many times the upload limit.
UNZIP_FACTOR = 4
#: Beyond the voxel limit, what an unpacked series' DICOM headers may add (a few KB per file).
ZIP_HEADER_ALLOWANCE = 64 * 1024 * 1024
MAX_ZIP_MEMBERS = 20000
#: Larger compression ratios are treated as a zip bomb (DICOM compresses about 2-10x).
MAX_COMPRESSION_RATIO = 200

#: content kind -> (suffix the stored file gets, client suffixes that name this kind)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "nifti": (".nii", (".nii",)),
    "nifti-gz": (".nii.gz", (".nii.gz", ".gz")),
    "nrrd": (".nrrd", (".nrrd",)),
    "mha": (".mha", (".mha",)),
    "png": (".png", (".png",)),
    "jpeg": (".jpg", (".jpg", ".jpeg")),
    "tiff": (".tif", (".tif", ".tiff")),
    "gif": (".gif", (".gif",)),
    "bmp": (".bmp", (".bmp",)),
    "dicom": (".dcm", (".dcm", ".dicom", ".ima")),
    "zip": (".zip", (".zip",)),
}
ACCEPTED = "NIfTI (.nii, .nii.gz), NRRD, MHA, PNG, JPEG, TIFF, GIF, BMP, a DICOM file, or a zipped DICOM series"
_META_KEY = re.compile(rb"^(ObjectType|NDims|Comment|TransformMatrix)\s*=")


def _nifti_header(head: bytes) -> bool:
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return int.from_bytes(head[:4], "little") == 348 or int.from_bytes(head[:4], "big") == 348
    return len(head) >= 8 and head[4:8] == b"n+2\x00" and int.from_bytes(head[:4], "little") in (540, 540 << 24)


def sniff(head: bytes) -> str | None:
    """The content kind (a key of :data:`KINDS`) of a file starting with ``head`` (>= 512 bytes when available)."""
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 560)
        except zlib.error:
            return None
        return "nifti-gz" if _nifti_header(inner) else None
    if _nifti_header(head):
        return "nifti"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    signatures = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
                  (b"GIF87a", "gif"), (b"GIF89a", "gif"), (b"BM", "bmp"), (b"NRRD000", "nrrd"), (b"PK\x03\x04", "zip"))
    for magic, kind in signatures:
        if head.startswith(magic):
            return kind
    if _META_KEY.match(head) and (b"ElementType" in head[:8192] or b"NDims" in head[:8192]):
        return "mha"
    return None


def _client_kind(filename: str) -> str | None:
    name = filename.lower()
    for kind, (_, suffixes) in KINDS.items():
        if any(name.endswith(s) for s in suffixes):
            return kind
    return None


@dataclass(frozen=True)
class SavedUpload:
    """An upload written to the work folder: where, what it holds, how many bytes."""

    path: Path
    kind: str
    size: int


def save_upload(stream: BinaryIO, filename: str, dest_dir: Path, stem: str, *, max_bytes: int,
                field: str = "file") -> SavedUpload:
    """Check and store an uploaded file as ``dest_dir/<stem><suffix of its kind>`` (mode 0600).

    Raises:
        HTTPException: 400 empty, 413 too large, 415 not a readable format or a suffix that contradicts the content.
    """
    head = stream.read(CHUNK)
    if not head:
        raise api_error(400, f"a non-empty '{field}' upload", "0 bytes", None, "choose the file again")
    kind = sniff(head)
    if kind is None:
        raise api_error(415, ACCEPTED, "content of an unknown type (its first bytes match none of them)", f"'{field}'",
                        "upload an image medsight reads, or zip the DICOM series folder")
    claimed = _client_kind(filename or "")
    if claimed is not None and claimed != kind:
        raise api_error(415, f"content matching the file name's suffix ({claimed})", f"{kind} content", f"'{field}'",
                        "fix the file's suffix, or upload the file you meant")
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"{stem}{KINDS[kind][0]}"
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        chunk = head
        while chunk:
            size += len(chunk)
            if size > max_bytes:
                out.close()
                path.unlink()
                raise api_error(413, f"an upload of at most {megabytes(max_bytes)}", "a larger file",
                                f"'{field}'", "send a smaller file, or restart the server with a larger --max-upload-mb")
            out.write(chunk)
            chunk = stream.read(CHUNK)
    return SavedUpload(path=path, kind=kind, size=size)


# ---------------------------------------------------------------------------------------------- zip
def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "an absolute member name"
    if ".." in PurePosixPath(name).parts:
        return "a member name with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if info.flag_bits & 0x1:
        return "an encrypted member"
    return None


def _check_zip(infos: list[zipfile.ZipInfo], max_total: int) -> None:
    if len(infos) > MAX_ZIP_MEMBERS:
        raise api_error(413, f"a zip of at most {MAX_ZIP_MEMBERS} members", f"{len(infos)} members", "the upload",
                        "upload the series in smaller parts")
    for info in infos:
        problem = _member_problem(info)
        if problem:
            raise api_error(400, "a zip of plain files with relative names", problem, "the upload",
                            "zip the series folder with a standard tool (no links, no '..', no encryption)")
        if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):  # every member, however small
            raise api_error(413, f"zip members compressed at most {MAX_COMPRESSION_RATIO}:1", "a member compressed "
                            f"{info.file_size / max(info.compress_size, 1):.0f}:1 (a zip bomb?)", "the upload",
                            "upload the series zipped normally")
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    if total > MAX_COMPRESSION_RATIO * max(packed, 1):
        raise api_error(413, f"a zip compressed at most {MAX_COMPRESSION_RATIO}:1", f"{megabytes(packed)} that unpack "
                        f"to {megabytes(total)} (a zip bomb?)", "the upload", "upload the series zipped normally")
    if total > max_total:
        raise api_error(413, f"a zip that unpacks to at most {megabytes(max_total)}",
                        megabytes(total), "the upload", "upload a smaller series")


def extract_dicom_zip(zip_path: Path, dest: Path, *, max_total_bytes: int) -> int:
    """Unpack the DICOM files of a zip into ``dest`` as numbered files; returns how many were kept.

    Raises:
        HTTPException: 400 unsafe member, 413 too big or a zip bomb, 415 not a zip or no DICOM file in it.
    """

    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise api_error(415, "a valid zip archive", "a damaged zip", "the upload", "zip the series folder again") from exc
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        _check_zip(infos, max_total_bytes)
        dest.mkdir(parents=True, exist_ok=True)
        written = kept = 0
        for n, info in enumerate(infos):
            target = dest / f"{n:06d}"
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(CHUNK):
                    written += len(chunk)
                    if written > max_total_bytes:
                        raise api_error(413, f"a zip that unpacks to at most {megabytes(max_total_bytes)}",
                                        "more data than its headers declare", "the upload", "upload a smaller series")
                    out.write(chunk)
            if is_dicom_file(target):
                kept += 1
            else:
                target.unlink()
    if not kept:
        raise api_error(415, "a zip holding a DICOM series", "a zip with no DICOM file", "the upload",
                        "zip the folder that holds the series' .dcm files")
    return kept


__all__ = ["ACCEPTED", "CHUNK", "KINDS", "UNZIP_FACTOR", "ZIP_HEADER_ALLOWANCE", "SavedUpload", "extract_dicom_zip", "save_upload", "sniff"]
