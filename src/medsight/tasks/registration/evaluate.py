"""Registration quality: Dice of warped labels against the fixed labels and Jacobian folding."""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

from medsight.core.image import Image
from medsight.metrics.segmentation import dice_per_label
from medsight.tasks.registration.transforms import jacobian_determinant


def folding_fraction(jacobian: np.ndarray) -> float:
    """Fraction of voxels whose Jacobian determinant is <= 0 (the transform folds space there)."""
    jac = np.asarray(jacobian)
    return float((jac <= 0).mean()) if jac.size else float("nan")


def label_dice(warped: np.ndarray, fixed: np.ndarray, labels: list[int] | None = None) -> dict[int, float]:
    """Dice per label value of a warped label map against the fixed one (both ``(*spatial)`` on one grid).

    Labels default to every non-zero value in either map; a label absent from both gets NaN.
    """
    if labels is None:
        labels = sorted(int(v) for v in np.union1d(np.unique(warped), np.unique(fixed)) if v != 0)
    return dict(zip(labels, dice_per_label(np.asarray(warped), np.asarray(fixed), labels)))


def evaluate_pair(transform: sitk.Transform, fixed: Image, *, warped_labels: Image | None = None,
                  fixed_labels: Image | None = None) -> dict[str, Any]:
    """Dice per label (with the mean) when both label maps are given, and the folding fraction on the fixed grid."""
    out: dict[str, Any] = {"folding_fraction": folding_fraction(jacobian_determinant(transform, fixed))}
    if warped_labels is not None and fixed_labels is not None:
        dice = label_dice(warped_labels.array[0], fixed_labels.array[0])
        out["dice"] = {str(k): v for k, v in dice.items()}
        finite = [v for v in dice.values() if np.isfinite(v)]
        out["mean_dice"] = float(np.mean(finite)) if finite else float("nan")
    return out
