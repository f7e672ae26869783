"""Postprocessing of label maps: keep the largest connected component of chosen labels, and the one decision of which
labels to postprocess, made on validation predictions."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from medsight.metrics.segmentation import dice_per_label


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


def decide_largest_component(pairs: Iterable[tuple[np.ndarray, np.ndarray]], foreground: Sequence[int], *,
                             allowed: bool = True, decided: bool = True) -> dict[str, Any]:
    """The postprocessing decision of every task that predicts label maps, made on pooled validation predictions.

    A label keeps only its largest connected component when that raises its mean Dice over the validation cases
    (by more than 1e-4), as nnU-Net decides it; cases where the label is absent from both maps do not count.

    Args:
        pairs: (prediction, reference) label maps of the validation cases.
        foreground: the label values to decide for.
        allowed: the plan's ``postprocessing.allowed`` (``False``: never postprocess, but still report the Dice).
        decided: whether every fold contributed (recorded, so a later run with more folds decides again).

    Returns:
        The plan's ``postprocessing`` section: ``largest_component`` (chosen values), ``allowed``, ``decided``,
        ``dice_without`` and ``dice_with`` per value.
    """
    fg = [int(v) for v in foreground]
    raw, post = [], []
    for pred, ref in pairs:
        raw.append(dice_per_label(pred, ref, fg))
        post.append(dice_per_label(keep_largest_component(pred, fg), ref, fg))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a label absent from every case: NaN, never chosen
        before = np.nanmean(np.asarray(raw, dtype=float).reshape(-1, len(fg)), axis=0)
        after = np.nanmean(np.asarray(post, dtype=float).reshape(-1, len(fg)), axis=0)
    chosen = [v for v, a, b in zip(fg, before, after) if allowed and b > a + 1e-4]
    return {"largest_component": chosen, "allowed": allowed, "decided": decided,
            "dice_without": {str(v): float(a) for v, a in zip(fg, before)},
            "dice_with": {str(v): float(b) for v, b in zip(fg, after)}}
