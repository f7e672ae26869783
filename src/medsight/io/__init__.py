"""Readers and writers chosen by extension or by what a folder holds; all keep geometry.

``read_image(path)`` returns an :class:`~medsight.core.image.Image`; ``write_image(image, path)`` writes one atomically.
"""

from __future__ import annotations

from pathlib import Path

from medsight.core.atomic import atomic_path
from medsight.core.image import Image
from medsight.errors import InputNotFoundError, MedsightError, user_error
from medsight.io.dicom import find_dicom_files, is_dicom_file, read_dicom
from medsight.io.itk import ITK_SUFFIXES, read_itk, write_itk
from medsight.io.raster import RASTER_SUFFIXES, read_raster, write_raster

WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".tif", ".tiff", ".bmp")

_policy = {"strict": True}


def set_strict_reading(strict: bool) -> None:
    """Process-wide default of :func:`read_image`'s ``strict`` (``medsight --allow-irregular`` turns it off).

    Strict reading refuses what cannot be read exactly: DICOM series with a slice gap wider than 2 x the median
    step, images with NaN/Inf voxels. Other irregular DICOM series (gantry tilt, uneven spacing, one missing slice)
    are reconstructed onto a regular grid either way (:mod:`medsight.io.dicom_regrid`).
    """
    _policy["strict"] = bool(strict)


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
        if find_dicom_files(p, limit=1):
            return "dicom"
        raise user_error(
            "a folder holding DICOM series", "a folder with no DICOM files", p,
            "point at the series or study folder, or at an image file (NIfTI, NRRD, MHA, PNG, TIFF)",
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

    if suf in (".dcm", ".dicom", ".ima") or is_dicom_file(p):
        return "dicom"
    raise user_error(
        "an image file (.nii/.nii.gz, .nrrd, .mha/.mhd, .dcm, .png, .tif, .jpg, .gif, .bmp) or a DICOM folder",
        f"suffix {suf or '(none)'!r}", p, "convert the file to one of those formats",
    )


def read_image(path: str | Path, *, series_uid: str | None = None, strict: bool | None = None) -> Image:
    """Read any supported image file or DICOM series folder.

    Args:
        path: an image file, a DICOM file, a DICOMDIR, or a folder holding DICOM series (a series folder or a study
            tree, searched recursively; index files, localizers, secondary captures and non-image objects are
            skipped with one note per kind).
        series_uid: which DICOM series to read when there are several: SeriesInstanceUID, SeriesNumber or
            SeriesDescription (``medsight info`` lists them; :func:`medsight.io.dicom_study.choose_series` gives
            the rule without it).
        strict: refuse a DICOM series with a slice gap wider than 2 x its median step and an image with NaN/Inf
            voxels (default: the process-wide policy, strict unless ``--allow-irregular`` was given). Lenient
            reading interpolates across such gaps and reads NaN/Inf as 0, with a warning (``info`` and ``dataset
            check`` read leniently: they describe such files rather than refuse them). Either way a DICOM series
            with gantry tilt, uneven spacing or a missing slice is reconstructed onto a regular grid from the
            recorded slice positions, with one warning (:mod:`medsight.io.dicom_regrid`).

    Returns:
        The image, ``(C, *spatial)``, with geometry and source info.
    """
    p = Path(path)
    fmt = detect_format(p)
    strict_now = _policy["strict"] if strict is None else strict
    if not p.is_dir() and not _readable(p):
        raise user_error("a readable file", "a file without read permission", p, "fix its permissions (chmod +r)")
    if fmt == "itk":

        image = read_itk(p)
    elif fmt == "raster":

        image = read_raster(p)
    elif fmt == "dicom":
        image = read_dicom(p, series_uid=series_uid, fill_gaps=not strict_now)
    else:
        raise user_error(
            "a single image", "an NPZ archive", p, "use it as a dataset (medsight dataset check / train), not as one image"
        )
    if strict_now:
        _refuse_non_finite(image, p)
    return image


def _refuse_non_finite(image: Image, path: Path) -> None:
    """Raise for what lenient reading would only warn about (see :func:`read_image`)."""
    extra = image.source.extra if image.source else {}
    if extra.get("non_finite_voxels"):
        raise user_error("finite voxel values", f"{extra['non_finite_voxels']} NaN/Inf voxels", path,
                         "replace them (e.g. with the background value) and re-save, or pass --allow-irregular "
                         "(before the command) to read it anyway with them as 0")


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

            if suf == ".mhd":
                raise MedsightError(f"Expected a single-file output, got .mhd for {path}; use .mha instead")
            write_itk(image, tmp)
        else:

            write_raster(image, tmp)
    return path


__all__ = ["detect_format", "full_suffix", "read_image", "set_strict_reading", "strip_suffix", "write_image"]
