"""A smooth 3D phantom and known transforms for the registration tests."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from medsight.core.image import Image
from medsight.io.itk import from_sitk, to_sitk

SIZE = 36
CENTRE = (SIZE - 1) / 2.0


def smooth_phantom(size: int = SIZE, spacing: float = 1.0, seed: int = 0) -> tuple[Image, Image]:
    """Three overlapping blurred ellipsoids of different intensity (no symmetry) with a smooth random texture inside, and their
    label map {0, 3, 7}."""
    g = np.meshgrid(*[np.arange(size, dtype=np.float32) - size / 2 for _ in range(3)], indexing="ij")
    s = size / 40.0
    big = ((g[0] / (11 * s)) ** 2 + (g[1] / (8 * s)) ** 2 + (g[2] / (13 * s)) ** 2) <= 1
    a = (((g[0] - 4 * s) / (4 * s)) ** 2 + ((g[1] + 3 * s) / (5 * s)) ** 2 + ((g[2] - 5 * s) / (3 * s)) ** 2) <= 1
    b = (((g[0] + 5 * s) / (3 * s)) ** 2 + ((g[1] - 6 * s) / (3 * s)) ** 2 + ((g[2] + 4 * s) / (4 * s)) ** 2) <= 1
    field = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=(size,) * 3), 3.0 * s)
    texture = 40.0 * field / field.std() * big
    arr = ndimage.gaussian_filter(100.0 * big + 60.0 * a - 50.0 * b + texture, 1.5).astype(np.float32)
    labels = np.where(a, 3, np.where(b, 7, 0)).astype(np.uint8)
    sp = (spacing,) * 3
    return Image(arr[None], spacing=sp), Image(labels[None], spacing=sp)


def euler(rot_deg: tuple[float, float, float], shift: tuple[float, float, float], centre: float = CENTRE) -> sitk.Euler3DTransform:
    t = sitk.Euler3DTransform()
    t.SetCenter((centre,) * 3)
    t.SetRotation(*np.deg2rad(rot_deg))
    t.SetTranslation(shift)
    return t


def moved(image: Image, transform: sitk.Transform, *, labels: bool = False) -> Image:
    """The moving image for which ``transform`` (fixed -> moving) is the true registration: ``fixed(p) = moving(T(p))``."""
    itk = to_sitk(image)
    interp = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    out = from_sitk(sitk.Resample(itk, itk, transform.GetInverse(), interp, 0.0))
    return image.with_array(out.array.astype(image.array.dtype))


def max_point_error(a: sitk.Transform, b: sitk.Transform, radius: float = 8.0, centre: float = CENTRE) -> float:
    """Largest distance (mm) between ``a(p)`` and ``b(p)`` over a 3x3x3 lattice of points within ``radius`` of the centre."""
    offsets = (-radius, 0.0, radius)
    pts = [(centre + x, centre + y, centre + z) for x in offsets for y in offsets for z in offsets]
    return max(float(np.linalg.norm(np.subtract(a.TransformPoint(p), b.TransformPoint(p)))) for p in pts)
