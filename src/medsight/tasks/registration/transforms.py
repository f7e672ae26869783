"""Saved transforms (ITK ``.tfm`` / ``.h5``) and warping images or label maps with them.

A transform maps points of the *fixed* image's physical space (mm, LPS) to the *moving* image's space, as in ITK:
warping samples the moving image at ``T(p)`` for each fixed-grid point ``p``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medsight.core.image import Image
from medsight.errors import require_exists, user_error
from medsight.io.itk import from_sitk, to_sitk

TRANSFORM_SUFFIXES = (".tfm", ".txt", ".h5", ".hdf5", ".mat")


def save_transform(transform: sitk.Transform, path: str | Path) -> Path:
    """Atomically write an ITK transform; SimpleITK picks the format from the suffix (``.tfm`` text, ``.h5`` HDF5)."""
    path = Path(path)
    if path.suffix.lower() not in TRANSFORM_SUFFIXES:
        raise user_error(f"a transform file name ending in {', '.join(TRANSFORM_SUFFIXES)}", path.suffix or "(none)", path,
                         "name it e.g. transform.h5")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        sitk.WriteTransform(transform, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_transform(path: str | Path) -> sitk.Transform:
    """Read an ITK transform file (any format SimpleITK reads)."""
    path = require_exists(path, "transform file")
    try:
        return sitk.ReadTransform(str(path))
    except RuntimeError as exc:
        raise user_error("an ITK transform file (.tfm, .h5, .mat)", "a file SimpleITK cannot read as a transform", path,
                         "pass the transform.tfm or transform.h5 written by 'medsight register'") from exc


def check_pair(a: Image, b: Image, a_name: str, b_name: str) -> None:
    """Both images must have the same number of spatial dimensions."""
    if a.ndim != b.ndim:
        raise user_error(f"{a_name} and {b_name} with the same number of dimensions", f"{a.ndim}D and {b.ndim}D",
                         b.source.path or b_name, f"register or warp a {a.ndim}D image onto a {a.ndim}D image")


def check_transform_dims(transform: sitk.Transform, image: Image, where: str | Path) -> None:
    if transform.GetDimension() != image.ndim:
        raise user_error(f"a {image.ndim}D transform for a {image.ndim}D image", f"a {transform.GetDimension()}D transform",
                         where, "use the transform written for images of this dimensionality")


def resample(moving: sitk.Image, reference: sitk.Image, transform: sitk.Transform, *, labels: bool,
             default: float = 0.0) -> sitk.Image:
    """``moving`` sampled on ``reference``'s grid at ``transform(p)``: nearest neighbour (labels) or linear."""
    interp = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    pixel = moving.GetPixelID() if labels else (sitk.sitkVectorFloat32 if moving.GetNumberOfComponentsPerPixel() > 1
                                                  else sitk.sitkFloat32)
    return sitk.Resample(moving, reference, transform, interp, default, pixel)


def warp_image(image: Image, transform: sitk.Transform, *, reference: Image | None = None, labels: bool = False) -> Image:
    """Warp ``image`` (the moving image) onto ``reference``'s grid (its own grid when ``None``).

    Args:
        image: ``(C, *spatial)``; several channels are warped together.
        transform: fixed -> moving point mapping.
        reference: the fixed image whose grid (shape, spacing, origin, direction) the output takes.
        labels: nearest-neighbour interpolation; the output keeps the label values and dtype.

    Returns:
        The warped image, float32 for intensities, the input dtype for labels.
    """
    ref = reference if reference is not None else image
    check_pair(ref, image, "the reference", "the image")
    check_transform_dims(transform, image, image.source.path or "image")
    if labels and image.array.dtype.kind == "f" and not np.all(np.mod(image.array, 1) == 0):
        raise user_error("a label map with integer values", f"non-integer values ({image.array.dtype})", image.source.path or "image",
                         "drop --labels to warp an intensity image")
    ref_itk = to_sitk(ref.with_array(np.zeros((1, *ref.shape), np.uint8)))
    out = from_sitk(resample(to_sitk(image), ref_itk, transform, labels=labels))
    arr = out.array.astype(image.array.dtype) if labels else out.array.astype(np.float32)
    return ref.with_array(arr, source=image.source)


def jacobian_determinant(transform: sitk.Transform, reference: Image) -> np.ndarray:
    """Determinant of the Jacobian of ``p -> T(p)`` on ``reference``'s grid, ``(*spatial)`` (1 = volume kept, <= 0 = folding)."""
    ref = to_sitk(reference.with_array(np.zeros((1, *reference.shape), np.uint8)))
    field = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, ref.GetSize(), ref.GetOrigin(),
                                              ref.GetSpacing(), ref.GetDirection())
    return sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field, True))
