"""Finding the DICOM files of a folder tree or a DICOMDIR, and naming the files that are skipped.

Hospital exports hold more than images: vendor index files beside the images (Philips writes a ``DIRFILE`` in
every series folder, many exports a ``DICOMDIR``, ``LOCKFILE`` and ``VERSION``), text and XML manifests, thumbnails,
viewer programs. :func:`find_dicom_files` skips them by name and :func:`skip_kind` says which kind each is, so that a
reader can note each kind once instead of failing on the first. A file that parses as DICOM but holds no instance
(a directory object, a vendor index) is recognised from its content by
:func:`medsight.io.dicom_header.scan_header`.

A ``DICOMDIR`` given as the entry point is read with pydicom's :class:`pydicom.fileset.FileSet`: its records name
the files of the file-set, which are then read like any other (:func:`dicomdir_files`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from medsight.errors import user_error
from medsight.io.dicom_header import has_dicm_preamble, is_raw_dicom

logger = logging.getLogger(__name__)

#: File names (upper case, without suffix) of vendor index and lock files.
INDEX_NAMES = frozenset({"DICOMDIR", "DIRFILE", "LOCKFILE", "VERSION", "AUTORUN", "README"})
#: Suffixes of manifests, reports, thumbnails and viewer files found beside DICOM images (never DICOM themselves).
INDEX_SUFFIXES = frozenset({
    ".txt", ".xml", ".htm", ".html", ".json", ".ini", ".inf", ".log", ".csv", ".pdf", ".xsl", ".css", ".js",
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ico", ".tif", ".tiff", ".exe", ".dll", ".bat", ".sh", ".cmd",
    ".md5", ".sha1", ".sha256", ".nfo", ".lnk",
})  # fmt: skip

#: Skip kinds, in the order notes are given, with the words used in notes and listings.
SKIP_KINDS = {
    "index": "vendor index or manifest file(s) (DICOMDIR, DIRFILE, LOCKFILE, VERSION, .txt/.xml, thumbnails)",
    "non-dicom": "other non-DICOM file(s)",
}


def skip_kind(path: Path) -> str | None:
    """``"index"`` for a vendor index, manifest or thumbnail file (by name), else ``None``."""
    name = path.name.upper()
    if name in INDEX_NAMES or os.path.splitext(name)[1].lower() in INDEX_SUFFIXES:
        return "index"
    return None


def is_dicom_file(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file.

    True when the file has the ``DICM`` marker at byte 128, or (no preamble) pydicom parses it and it holds a
    SOPClassUID or pixel data.
    """
    p = Path(path)
    if not p.is_file():
        return False
    return has_dicm_preamble(p) or is_raw_dicom(p)


def walk_files(folder: Path) -> Iterator[Path]:
    """Files under ``folder`` in a stable order, skipping hidden files and folders."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def find_dicom_files(
    folder: str | Path, limit: int | None = None, *, skipped: dict[str, list[Path]] | None = None
) -> list[Path]:
    """DICOM files under ``folder`` (recursive), in sorted path order.

    Hidden files and folders, vendor index files and manifests (:func:`skip_kind`) and other non-DICOM files are
    skipped. Only the first 132 bytes of files with a preamble are read, so thousands of files take well under a
    second.

    Args:
        folder: the folder to search.
        limit: stop after this many files (``limit=1`` answers "is there any DICOM here?").
        skipped: when given, filled with the skipped files by kind (``"index"``, ``"non-dicom"``).

    Returns:
        Paths of the DICOM files.
    """
    out: list[Path] = []
    for path in walk_files(Path(folder)):
        kind = skip_kind(path)
        if kind is None and not (has_dicm_preamble(path) or is_raw_dicom(path)):
            kind = "non-dicom"
        if kind is not None:
            logger.debug("skipping %s file %s", kind, path)
            if skipped is not None:
                skipped.setdefault(kind, []).append(path)
            continue
        out.append(path)
        if limit is not None and len(out) >= limit:
            break
    return out


def is_dicomdir(path: Path) -> bool:
    """Whether ``path`` is a file named ``DICOMDIR`` (any case): the index of a DICOM file-set."""
    return path.is_file() and path.name.upper() == "DICOMDIR"


def dicomdir_files(path: Path) -> tuple[list[Path], list[str]]:
    """The files a DICOMDIR's records reference, through :class:`pydicom.fileset.FileSet`.

    Args:
        path: the DICOMDIR file.

    Returns:
        ``(files that exist, sorted; messages about referenced files that are missing)``.

    Raises:
        MedsightError: the DICOMDIR cannot be parsed as a file-set.
    """
    import pydicom
    from pydicom.fileset import FileSet

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fileset = FileSet(pydicom.dcmread(path, force=True))
            instances = list(fileset)
        except Exception as exc:  # pydicom raises many kinds on a broken index: one line for the user
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise user_error(
                "a DICOMDIR that pydicom can read as a file-set",
                f"an unreadable index ({reason})",
                path,
                "point at the folder that holds the DICOMDIR instead (its files are then found by walking it)",
            ) from exc
    missing = [str(w.message).splitlines()[0] for w in caught if "does not exist" in str(w.message)]
    files = sorted({Path(i.path) for i in instances if Path(i.path).is_file()})
    missing += [f"{i.path} (listed, not found)" for i in instances if not Path(i.path).is_file()]
    for message in missing:
        logger.debug("DICOMDIR %s: %s", path, message)
    return files, missing


__all__ = [
    "INDEX_NAMES",
    "INDEX_SUFFIXES",
    "SKIP_KINDS",
    "dicomdir_files",
    "find_dicom_files",
    "is_dicom_file",
    "is_dicomdir",
    "skip_kind",
    "walk_files",
]
