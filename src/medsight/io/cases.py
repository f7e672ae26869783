"""Inputs and outputs of prediction, for every task: which files make the cases of an input path (a file, a DICOM
series folder, a folder of images with nnU-Net ``_0000`` channel files), the suffix an output keeps, and the
probability archives written beside label maps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from medsight.core.atomic import atomic_path
from medsight.errors import MedsightError, user_error
from medsight.io import detect_format, full_suffix, strip_suffix
from medsight.io.dicom import find_dicom_files

#: Name suffix of the voxel-uncertainty maps ``predict --uncertainty`` writes beside label maps
#: (``<case>_uncertainty<suffix>``): never a prediction to score or a case to list.
UNCERTAINTY_SUFFIX = "_uncertainty"


def write_probabilities(path: Path, probs: np.ndarray) -> Path:
    """Atomically write class probabilities ``(K, *spatial)`` as ``probabilities`` in a compressed ``.npz``."""
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, probabilities=probs)
    return path


# ---------------------------------------------------------------------------------------------- predict
def input_cases(input_path: Path, n_channels: int) -> list[tuple[str, list[Path]]]:
    """(case id, files) for a file, a DICOM folder, or a folder of images (nnU-Net ``_0000`` channel files grouped);
    shared by every task's predict and by explain."""
    if input_path.is_file():
        return [(strip_suffix(input_path), [input_path])]
    if find_dicom_files(input_path, limit=1) and not any(
        f.is_file() and full_suffix(f) in (".nii.gz", ".nii", ".png", ".tif", ".nrrd", ".mha") for f in input_path.iterdir()
    ):
        return [(input_path.name, [input_path])]
    files = sorted(f for f in input_path.iterdir() if f.is_file() and not f.name.startswith(".") and full_suffix(f) != ".json")
    files = [f for f in files if _is_image(f, detect_format)]
    if not files:
        raise user_error("image files or a DICOM series", "none", input_path, "point at a file or a folder of images")
    groups: dict[str, list[Path]] = {}
    for f in files:
        stem = strip_suffix(f)
        if n_channels > 1 and len(stem) > 5 and stem[-5] == "_" and stem[-4:].isdigit():
            groups.setdefault(stem[:-5], []).append(f)
        else:
            groups.setdefault(stem[:-5] if stem.endswith("_0000") else stem, []).append(f)
    return sorted(groups.items())


def _is_image(f: Path, detect: Callable[[Path], str]) -> bool:
    try:
        return detect(f) in ("itk", "raster", "dicom")
    except MedsightError:
        return False


def output_suffix(files: list[Path], image_format: str) -> str:
    """Predictions keep the input's format: NIfTI -> NIfTI, PNG/TIFF -> PNG/TIFF, DICOM -> NIfTI."""
    if image_format == "dicom" or files[0].is_dir():
        return ".nii.gz"
    suf = full_suffix(files[0])
    if suf in (".jpg", ".jpeg", ".gif", ".bmp"):
        return ".png"
    if suf == ".mhd":
        return ".mha"
    return suf
