"""Files for people: convert between formats, export slice stacks as 8-bit images, describe a path.

The library side of ``medsight convert`` and ``medsight info`` (the command line only prints):

* :func:`convert` reads any supported input and writes any supported output; volumes written to PNG/TIFF
  become one 8-bit file per slice (:func:`export_slices`).
* :func:`display_range` and :func:`rescale_to_uint8` map intensities to 0..255 (min-max over the whole image, or
  a ``(level, width)`` window such as ``(40, 400)`` for CT soft tissue in HU).
* :func:`describe_path` and :func:`describe_npz` gather the facts ``medsight info`` shows.

Every file is written atomically (temporary name, then rename), so an existing output is either replaced
whole or left untouched.
"""

from __future__ import annotations

import dataclasses
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.display import resolve_window
from medsight.core.image import Image
from medsight.core.outputs import check_new_output
from medsight.errors import require_exists, user_error
from medsight.io import WRITE_SUFFIXES, detect_format, full_suffix, read_image, strip_suffix, write_image
from medsight.io.dicom_files import is_dicomdir
from medsight.io.dicom_seg import is_dicom_seg, read_dicom_seg
from medsight.io.dicom_study import choose_series, list_study
from medsight.io.rtstruct import is_rtstruct, read_rtstruct, rtstruct_info

#: Suffixes written as one 8-bit image per slice when the input is a volume.
RASTER_OUTPUTS = (".png", ".tif", ".tiff", ".bmp")

#: ``progress(done, total)`` callback, called after each file (the CLI drives a tqdm bar with it).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ConversionResult:
    """What :func:`convert` did.

    Attributes:
        image: the input as read.
        outputs: the files written (one, or one per slice).
        value_range: the input values mapped to 0 and 255, or ``None`` when values were written unchanged.
        notes: facts worth telling the user (rescaling, files left over from an earlier export).
    """

    image: Image
    outputs: tuple[Path, ...]
    value_range: tuple[float, float] | None = None
    notes: tuple[str, ...] = ()


def parse_window(text: str) -> tuple[float, float]:
    """Parse a window: a preset name (``"lung"``, ``"bone"``, see :mod:`medsight.core.display`) or
    ``"LEVEL,WIDTH"`` (e.g. ``"40,400"``, ``"-600,1500"``); the width must be positive."""

    return resolve_window(text)


def display_range(array: np.ndarray, *, window: tuple[float, float] | None = None) -> tuple[float, float]:
    """The values mapped to 0 and 255: ``level -/+ width/2`` for a window, else the finite min and max.

    Args:
        array: any shape, any numeric dtype.
        window: ``(level, width)`` in the image's units (HU for CT), or ``None``.
    """
    if window is not None:
        level, width = window
        return level - width / 2.0, level + width / 2.0
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    if finite.size == 0:
        return 0.0, 0.0
    return float(finite.min()), float(finite.max())


def rescale_to_uint8(array: np.ndarray, *, value_range: tuple[float, float]) -> np.ndarray:
    """Map ``value_range`` linearly to 0..255 (clipped, rounded); non-finite values and constant images give 0.

    Args:
        array: any shape.
        value_range: ``(low, high)`` from :func:`display_range`.

    Returns:
        uint8 array of the same shape.
    """
    low, high = value_range
    floating = np.asarray(array).dtype.kind == "f"
    values = np.asarray(array, dtype=np.float64)
    if high <= low:
        out = np.zeros(values.shape, dtype=np.uint8)
    else:
        scaled = (values - low) * (255.0 / (high - low))
        out = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0) + 0.5, 0, 255).astype(np.uint8)
    if floating:
        out[~np.isfinite(values)] = 0
    return out


def slice_paths(out: str | Path, count: int, *, default_stem: str) -> list[Path]:
    """File names for ``count`` slices: ``OUT_DIR/<default_stem>_000.png`` or, for ``OUT=dir/name.png``,
    ``dir/name_000.png`` (the raster suffix of OUT is kept). At least three digits, more for long stacks."""
    out = Path(out)
    suffix = full_suffix(out)
    if suffix in RASTER_OUTPUTS and not out.is_dir():
        folder, stem = out.parent, strip_suffix(out)
    else:
        if out.exists() and not out.is_dir():
            raise user_error(
                "a folder (or NAME.png) for the slices",
                "an existing file",
                out,
                "choose a folder name or a file pattern such as out/slice.png",
            )
        folder, stem, suffix = out, default_stem, ".png"
    digits = max(3, len(str(count - 1)))
    return [folder / f"{stem}_{i:0{digits}d}{suffix}" for i in range(count)]


def _check_raster_channels(image: Image, where: Path) -> None:
    if image.num_channels not in (1, 3):
        raise user_error(
            "1 (gray) or 3 (RGB) channels for a raster output",
            f"{image.num_channels} channels",
            where,
            "write NIfTI instead, or convert one channel at a time",
        )


def export_slices(
    image: Image,
    out: str | Path,
    *,
    default_stem: str = "slice",
    window: tuple[float, float] | None = None,
    progress: Progress | None = None,
) -> tuple[list[Path], tuple[float, float] | None]:
    """Write one 8-bit image per slice along array axis 0 (the slice axis of DICOM stacks).

    Values are mapped to 0..255 with one range for the whole volume (so slices stay comparable): the window when
    given, else the volume's min and max. uint8 input without a window is written unchanged.

    Args:
        image: ``(C, D, H, W)`` with C = 1 or 3 (a 2D image is written as one slice).
        out: a folder, or a pattern ``folder/name.png`` giving ``name_000.png`` ...
        default_stem: file stem when ``out`` is a folder.
        window: ``(level, width)`` or ``None``.
        progress: called as ``progress(done, total)`` after each slice; the library itself stays silent.

    Returns:
        The files written, and the value range mapped to 0..255 (``None`` when values were kept).
    """
    out = Path(out)
    _check_raster_channels(image, out)
    array = image.array if image.ndim == 3 else image.array[:, None]
    keep = array.dtype in (np.uint8, np.bool_) and window is None
    value_range = None if keep else display_range(array, window=window)
    paths = slice_paths(out, array.shape[1], default_stem=default_stem)
    for i, path in enumerate(paths):
        plane = (
            array[:, i].astype(np.uint8)
            if keep
            else rescale_to_uint8(array[:, i], value_range=value_range or (0, 0))
        )
        write_image(Image(plane, spacing=image.spacing[-2:]), path)
        if progress is not None:
            progress(i + 1, len(paths))
    return paths, value_range


def _leftovers(paths: list[Path]) -> list[Path]:
    """Files in the output folder that follow the same ``stem_NNN.suffix`` pattern but were not written now."""
    if not paths:
        return []
    folder = paths[0].parent
    written = {p.name for p in paths}
    name = paths[0].name
    stem = name[: name.rindex("_")]
    pattern = re.compile(re.escape(stem) + r"_\d+" + re.escape(full_suffix(paths[0])) + "$")
    return sorted(p for p in folder.iterdir() if pattern.match(p.name) and p.name not in written)


def convert(
    src: str | Path,
    dst: str | Path,
    *,
    series_uid: str | None = None,
    slices: bool = False,
    window: tuple[float, float] | None = None,
    progress: Progress | None = None,
    reference: str | Path | None = None,
    overlaps: str = "error",
    overwrite: bool = False,
) -> ConversionResult:
    """Convert an image file or DICOM series to another format.

    * ``dst`` with a volume suffix (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``): values and geometry kept.
    * ``dst`` a raster (``.png``, ``.tif``, ``.bmp``) and a 2D input: one file; uint8 (and uint16 gray) values
      are kept, others are mapped to 0..255 (min-max or ``window``).
    * ``dst`` a raster with a 3D input (more than one slice), or ``slices=True``, or ``dst`` an existing folder:
      one 8-bit file per slice, see :func:`export_slices`.

    Args:
        src: input file or DICOM folder.
        dst: output file, folder or slice pattern.
        series_uid: which DICOM series, when the folder holds several.
        slices: force one file per slice.
        window: ``(level, width)`` for 8-bit outputs.
        progress: ``progress(done, total)`` after each slice file.
        reference: for a DICOM-SEG or RTSTRUCT input, the image series whose grid the label map is placed on.
        overlaps: for a SEG whose segments overlap: ``error``, ``last`` or ``separate`` (see
            :func:`medsight.io.dicom_seg.read_dicom_seg`).
        overwrite: replace an existing output file (an input is never written over).
    """
    src, dst = Path(src), Path(dst)
    suffix = full_suffix(dst)
    raster = suffix in RASTER_OUTPUTS
    if slices and suffix in WRITE_SUFFIXES and not raster and not dst.is_dir():
        raise user_error(
            "a folder or a NAME.png/.tif pattern with --slices",
            f"output {dst.name}",
            None,
            "drop --slices to write a volume file, or give a folder such as out_slices/",
        )
    if window is not None and not (raster or slices or dst.is_dir()):
        raise user_error(
            "--window only with PNG/TIFF/BMP output or --slices",
            f"output {dst.name}",
            None,
            "drop --window (volume formats keep the original values)",
        )
    if reference is None:
        _check_series_option(src, detect_format(src), series_uid)
    image = read_any(src, series_uid=series_uid, reference=Path(reference) if reference else None, overlaps=overlaps)
    volume = image.ndim == 3 and image.shape[0] > 1
    if slices or (raster and volume) or dst.is_dir():
        paths, value_range = export_slices(
            image, dst, default_stem=strip_suffix(src) or "slice", window=window, progress=progress
        )
        notes = [f"mapped values {value_range[0]:g}..{value_range[1]:g} to 0..255"] if value_range else []
        extra = _leftovers(paths)
        if extra:
            notes.append(
                f"{len(extra)} older file(s) with the same pattern were left in {paths[0].parent} "
                f"(e.g. {extra[0].name}); delete them if they belong to an earlier export"
            )
        return ConversionResult(image, tuple(paths), value_range, tuple(notes))
    if not raster:
        write_image(image, check_new_output(dst, [src], overwrite=overwrite))
        return ConversionResult(image, (dst,))
    flat = (
        image
        if image.ndim == 2
        else dataclasses.replace(
            image, array=image.array[:, 0], spacing=image.spacing[1:], origin=(), direction=np.zeros((0, 0))
        )
    )
    _check_raster_channels(flat, dst)
    check_new_output(dst, [src], overwrite=overwrite)
    keep = window is None and (
        flat.array.dtype in (np.uint8, np.bool_) or (flat.array.dtype == np.uint16 and flat.num_channels == 1)
    )
    if keep:
        write_image(flat, dst)
        return ConversionResult(image, (dst,))
    value_range = display_range(flat.array, window=window)
    write_image(flat.with_array(rescale_to_uint8(flat.array, value_range=value_range)), dst)
    note = (
        f"{flat.array.dtype} values {value_range[0]:g}..{value_range[1]:g} mapped to 0..255 for "
        f"{suffix.lstrip('.').upper()}; write NIfTI to keep the original values"
    )
    return ConversionResult(image, (dst,), value_range, (note,))


def _npy_header(fh: Any) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    return tuple(int(s) for s in shape), np.dtype(dtype)


def describe_npz(path: str | Path) -> dict[str, Any]:
    """Arrays of an ``.npz`` archive (MedMNIST layout: ``train_images``, ``train_labels``, ``val_*``, ``test_*``).

    Shapes and dtypes come from the array headers (image arrays are not loaded); label arrays (names containing
    ``label``) are loaded to count classes: ``{class: count}`` for ``(N,)``/``(N, 1)`` labels, positives per
    column for multi-label ``(N, K)``.

    Returns:
        ``{"path", "format": "npz", "arrays": [{"name", "shape", "dtype"[, "label_counts" | "positives"]}]}``.
    """
    p = require_exists(path, "NPZ file")
    arrays: list[dict[str, Any]] = []
    try:
        with zipfile.ZipFile(p) as zf, np.load(p, allow_pickle=False) as npz:
            for member in zf.namelist():
                if not member.endswith(".npy"):
                    continue
                name = member[: -len(".npy")]
                with zf.open(member) as fh:
                    shape, dtype = _npy_header(fh)
                entry: dict[str, Any] = {"name": name, "shape": list(shape), "dtype": str(dtype)}
                if "label" in name.lower() and dtype.kind in "iub" and len(shape) in (1, 2):
                    labels = npz[name]
                    if labels.ndim == 2 and labels.shape[1] > 1:
                        entry["positives"] = [int(v) for v in (labels > 0).sum(axis=0)]
                    else:
                        values, counts = np.unique(labels.ravel(), return_counts=True)
                        entry["label_counts"] = {str(int(v)): int(c) for v, c in zip(values, counts)}
                arrays.append(entry)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        if isinstance(exc, PermissionError):
            raise
        raise user_error(
            "a readable .npz archive",
            f"a file NumPy cannot open ({exc})",
            p,
            "re-download or re-save it with numpy.savez",
        ) from exc
    return {"path": str(p), "format": "npz", "arrays": arrays}


def read_any(path: Path, *, series_uid: str | None = None, strict: bool | None = None, reference: Path | None = None,
             overlaps: str = "error") -> Image:
    """:func:`medsight.io.read_image`, plus DICOM-SEG and RTSTRUCT files read as label maps: on the grid of the
    ``reference`` image series (required for an RTSTRUCT), or a SEG on its own frame grid without one."""
    if path.is_file():
        if is_dicom_seg(path):
            return read_dicom_seg(path, reference, overlaps=overlaps, series_uid=series_uid)
        if is_rtstruct(path):
            return read_rtstruct(path, reference)[0]
    if reference is not None:
        raise user_error("a DICOM-SEG or RTSTRUCT file with --reference", "another input", path,
                         "drop --reference (it places SEG/RTSTRUCT label maps on a series' grid)")
    return read_image(path, series_uid=series_uid, strict=strict)


def _check_series_option(path: Path, fmt: str, series_uid: str | None) -> None:
    if series_uid is not None and fmt != "dicom":
        raise user_error(
            "--series only with DICOM input",
            f"a {fmt} file",
            path,
            "drop --series (it selects a DICOM series)",
        )


def describe_path(path: str | Path, *, series_uid: str | None = None) -> dict[str, Any]:
    """Facts about an image file, a DICOM file or folder, or an NPZ archive (for ``medsight info``).

    Returns:
        ``{"kind": "npz", ...describe_npz}`` for archives; ``{"kind": "rtstruct", "rois", "referenced_series",
        "frame_of_reference", "referenced_images"}`` for an RTSTRUCT (its contours need the image series: see
        :func:`medsight.io.rtstruct.read_rtstruct`); otherwise ``{"kind": "image", "series": [...],
        "objects": [...], "skipped": {...}, "missing": [...] (DICOM folders and DICOMDIRs, see
        :meth:`medsight.io.dicom_study.StudyListing.to_dict`), "image": {...} or None}``. ``image`` is
        ``Image.describe()`` plus ``description``, ``extra`` (reader facts) and ``warnings``; it is ``None`` when
        a folder holds several candidate series (or only non-image objects) and none was chosen.
    """
    p = require_exists(path)
    fmt = detect_format(p)
    _check_series_option(p, fmt, series_uid)
    if fmt == "npz":
        return {"kind": "npz", **describe_npz(p)}
    if p.is_file() and is_rtstruct(p):
        info = rtstruct_info(p)
        return {"kind": "rtstruct", "path": str(p), "rois": info.roi_names,
                "referenced_series": info.referenced_series_uid, "frame_of_reference": info.frame_of_reference_uid,
                "referenced_images": len(info.referenced_sop_uids)}
    out: dict[str, Any] = {"kind": "image"}
    if fmt == "dicom" and (p.is_dir() or is_dicomdir(p)):
        listing = list_study(p)
        out.update({k: v for k, v in listing.to_dict().items() if k != "path"})
        if series_uid is None and len([s for s in listing.series if s.kind == "image"] or listing.series) != 1:
            out["image"] = None  # several candidates (or only objects): list them, describe none
            return out
        series_uid = choose_series(listing, series_uid, p).series_uid
    image = read_any(p, series_uid=series_uid, strict=False)  # describe irregular files, do not refuse them
    facts = image.describe()
    extra = dict(image.source.extra)
    warnings = extra.pop("warnings", "")
    facts["description"] = image.source.description
    on_disk = int(extra.pop("non_finite_voxels", 0) or 0)  # the reader turned them into 0: count what the file holds
    facts["non_finite_voxels"] = max(int(facts["non_finite_voxels"]), on_disk)
    facts["extra"] = extra
    facts["warnings"] = [w for w in warnings.split(" | ") if w]
    out["image"] = facts
    return out


__all__ = [
    "RASTER_OUTPUTS",
    "ConversionResult",
    "convert",
    "describe_npz",
    "describe_path",
    "display_range",
    "export_slices",
    "parse_window",
    "read_any",
    "rescale_to_uint8",
    "slice_paths",
]
