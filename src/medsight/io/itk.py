"""NIfTI, NRRD and MHA/MHD through SimpleITK, keeping geometry."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medsight.core.guard import check_allocation
from medsight.core.image import Image, SourceInfo
from medsight.errors import MedsightError, user_error
from medsight.io.nifti_check import nifti_integrity

log = logging.getLogger(__name__)

ITK_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

_FORMAT_NAMES = {".nii": "nifti", ".nii.gz": "nifti", ".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "mha", ".mhd": "mhd"}


def format_of(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in _FORMAT_NAMES.items():
        if name.endswith(suffix):
            return fmt
    return "itk"


def read_itk(path: str | Path) -> Image:
    """Read a NIfTI/NRRD/MHA file into an :class:`Image`.

    3D scalar files give ``(1, D, H, W)``; 4D files and vector-pixel files put the extra axis first as channels.
    The header's size is checked against free memory before the voxels are read.
    """
    path = Path(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise user_error(
            "a readable NIfTI/NRRD/MHA file", "a file SimpleITK cannot parse", path, "check that the file is complete and not corrupted"
        ) from exc
    size = reader.GetSize()
    comps = reader.GetNumberOfComponents()
    itemsize = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    bytes_per = 8 if "64" in itemsize or "double" in itemsize else 4
    check_allocation(int(np.prod(size, dtype=np.float64)) * comps * bytes_per, path)
    truncated, non_finite = nifti_integrity(path)
    if truncated:
        raise user_error("a complete NIfTI file", truncated, path, "re-export or re-copy the file")
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise user_error(
            "a complete image file", "a file whose voxel data cannot be read", path, "re-export or re-download it"
        ) from exc
    extra = {}
    if non_finite:
        log.warning("%s has %d NaN/Inf voxels; they are read as 0", path, non_finite)
        extra["non_finite_voxels"] = str(non_finite)
    return from_sitk(img, source=SourceInfo(path=str(path), format=format_of(path), extra=extra))


def from_sitk(img: sitk.Image, *, source: SourceInfo | None = None) -> Image:
    """Convert a SimpleITK image to an :class:`Image` (row-major spatial axes, channels first)."""
    dim = img.GetDimension()
    arr = sitk.GetArrayFromImage(img)  # (z, y, x[, comps]) or (t, z, y, x)
    where = source.path if source else "image"
    if dim == 4:
        spacing = img.GetSpacing()[:3][::-1]
        origin = img.GetOrigin()[:3]
        d4 = np.asarray(img.GetDirection()).reshape(4, 4)[:3, :3]
        direction = d4[:, ::-1]
        if img.GetNumberOfComponentsPerPixel() > 1:
            raise user_error("a scalar 4D image", "a 4D vector image", where, "split it into 3D files")
    elif dim in (2, 3):
        spacing = img.GetSpacing()[::-1]
        origin = img.GetOrigin()
        direction = np.asarray(img.GetDirection()).reshape(dim, dim)[:, ::-1]
        if img.GetNumberOfComponentsPerPixel() > 1:
            arr = np.moveaxis(arr, -1, 0)
        else:
            arr = arr[None]
    else:
        raise user_error("a 2D, 3D or 4D image", f"{dim} dimensions", where, "convert it to a 2D or 3D image")
    return Image(arr, spacing=spacing, origin=origin, direction=direction, source=source or SourceInfo())


def to_sitk(image: Image, channel: int | None = None) -> sitk.Image:
    """Convert an :class:`Image` to SimpleITK. Several channels become a vector image unless ``channel`` is set."""
    arr = image.array
    if channel is not None:
        arr = arr[channel : channel + 1]
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype == np.int64 and arr.size and arr.min() >= -(2**31) and arr.max() < 2**31:
        arr = arr.astype(np.int32)
    if arr.shape[0] == 1:
        out = sitk.GetImageFromArray(np.ascontiguousarray(arr[0]))
    else:
        out = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(arr, 0, -1)), isVector=True)
    out.SetSpacing(tuple(float(s) for s in image.spacing[::-1]))
    out.SetOrigin(tuple(float(o) for o in image.origin))
    out.SetDirection(tuple(float(v) for v in np.asarray(image.direction)[:, ::-1].ravel()))
    return out


def write_itk(image: Image, path: str | Path) -> Path:
    """Write an image as NIfTI/NRRD/MHA (chosen by ``path``'s suffix). Not atomic; see ``medsight.io.write_image``."""
    path = Path(path)
    if image.num_channels > 1 and format_of(path) == "nifti":
        # NIfTI stores several channels as a 4th axis; keep geometry of the first three.
        arr = image.array
        vol = sitk.JoinSeries([to_sitk(image, c) for c in range(arr.shape[0])])
        sitk.WriteImage(vol, str(path), useCompression=path.name.lower().endswith(".gz"))
        return path
    try:
        sitk.WriteImage(to_sitk(image), str(path), useCompression=path.name.lower().endswith(".gz"))
    except RuntimeError as exc:
        raise MedsightError(f"Expected a writable image file, got an error writing {path}: {exc}".splitlines()[0]) from exc
    return path
