"""Readers and writers chosen by extension or by what a folder holds; all keep geometry.

``read_image(path)`` returns an :class:`~medsight.data.Image`; ``write_image(image, path)`` writes one atomically.
"""

from __future__ import annotations

from pathlib import Path

from medsight.data.image import Image
from medsight.errors import InputNotFoundError, MedsightError, user_error
from medsight.io.atomic import atomic_path
from medsight.io.itk import ITK_SUFFIXES
from medsight.io.raster import RASTER_SUFFIXES

WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".tif", ".tiff", ".bmp")


def full_suffix(path: str | Path) -> str:
    """The lower-case format suffix, keeping ``.nii.gz`` whole."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def strip_suffix(path: str | Path) -> str:
    """The file name without its format suffix (``case_0000.nii.gz`` -> ``case_0000``)."""
    name = Path(path).name
    suf = full_suffix(name)
    return name[: len(name) - len(suf)] if suf else name


def detect_format(path: str | Path) -> str:
    """``"dicom"``, ``"itk"``, ``"raster"`` or ``"npz"`` for a path; raises a clear error otherwise."""
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"Expected an existing file or folder, got {p} which does not exist; check the path")
    if p.is_dir():
        from medsight.io.dicom import find_dicom_files

        if find_dicom_files(p, limit=1):
            return "dicom"
        raise user_error(
            "a folder holding a DICOM series", "a folder with no DICOM files", p,
            "point at the series folder, or at an image file (NIfTI, NRRD, MHA, PNG, TIFF)",
        )
    if p.stat().st_size == 0:
        raise user_error("a non-empty image file", "a zero-byte file", p, "re-export or re-copy the file")
    suf = full_suffix(p)
    if suf in ITK_SUFFIXES:
        return "itk"
    if suf in RASTER_SUFFIXES:
        return "raster"
    if suf == ".npz":
        return "npz"
    from medsight.io.dicom import is_dicom_file

    if suf in (".dcm", ".dicom", ".ima") or is_dicom_file(p):
        return "dicom"
    raise user_error(
        "an image file (.nii/.nii.gz, .nrrd, .mha/.mhd, .dcm, .png, .tif, .jpg, .gif, .bmp) or a DICOM folder",
        f"suffix {suf or '(none)'!r}", p, "convert the file to one of those formats",
    )


def read_image(path: str | Path, *, series_uid: str | None = None) -> Image:
    """Read any supported image file or DICOM series folder.

    Args:
        path: a file or a folder holding one DICOM series (searched recursively).
        series_uid: which series to read when a folder holds several (``medsight info`` lists them).

    Returns:
        The image, ``(C, *spatial)``, with geometry and source info.
    """
    p = Path(path)
    fmt = detect_format(p)
    if not p.is_dir() and not _readable(p):
        raise user_error("a readable file", "a file without read permission", p, "fix its permissions (chmod +r)")
    if fmt == "itk":
        from medsight.io.itk import read_itk

        return read_itk(p)
    if fmt == "raster":
        from medsight.io.raster import read_raster

        return read_raster(p)
    if fmt == "dicom":
        from medsight.io.dicom import read_dicom

        return read_dicom(p, series_uid=series_uid)
    raise user_error(
        "a single image", "an NPZ archive", p, "use it as a dataset (medsight dataset check / train), not as one image"
    )


def _readable(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            fh.read(1)
        return True
    except PermissionError:
        return False


def write_image(image: Image, path: str | Path) -> Path:
    """Atomically write ``image`` in the format given by ``path``'s suffix."""
    path = Path(path)
    suf = full_suffix(path)
    if suf not in WRITE_SUFFIXES:
        raise MedsightError(
            f"Expected an output suffix among {', '.join(WRITE_SUFFIXES)}, got {suf or '(none)'!r} for {path}; "
            "choose one of those"
        )
    with atomic_path(path) as tmp:
        if suf in ITK_SUFFIXES:
            from medsight.io.itk import write_itk

            if suf == ".mhd":
                raise MedsightError(f"Expected a single-file output, got .mhd for {path}; use .mha instead")
            write_itk(image, tmp)
        else:
            from medsight.io.raster import write_raster

            write_raster(image, tmp)
    return path


__all__ = ["detect_format", "full_suffix", "read_image", "strip_suffix", "write_image"]
