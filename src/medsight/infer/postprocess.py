"""Postprocessing of label maps: keep the largest connected component of chosen labels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def keep_largest_component(labels: np.ndarray, values: list[int]) -> np.ndarray:
    """For each label value in ``values``, keep only its largest connected component (full connectivity)."""
    out = labels.copy()
    for v in values:
        mask = labels == v
        if not mask.any():
            continue
        comp, n = ndimage.label(mask, structure=np.ones((3,) * labels.ndim))
        if n <= 1:
            continue
        sizes = ndimage.sum_labels(mask, comp, index=np.arange(1, n + 1))
        keep = int(np.argmax(sizes)) + 1
        out[mask & (comp != keep)] = 0
    return out
