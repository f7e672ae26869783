"""Segmentation metrics: pure functions per case and label, a summary over cases, and a small evaluator.

Inputs are label maps of shape ``(*spatial)`` (``(H, W)`` or ``(D, H, W)``, integer values), compared per
label given as ``{name: value}``; value 0 is background and is never scored. ``spacing`` is the voxel size
(mm) per array axis, as in :class:`~medsight.core.image.Image`.

Per case and label (:func:`case_metrics`), one row holds:

* ``dice``, ``iou``, ``sensitivity`` (recall), ``precision``, ``specificity``, ``accuracy`` from the
  voxel counts (the hard prediction: for a binary medsight model that is probability >= 0.5, so ``dice``
  equals the F1 score at threshold 0.5);
* ``hd95``: the 95th-percentile symmetric Hausdorff distance (the larger of the two directed 95th
  percentiles), and ``assd``: the average symmetric surface distance, both as MONAI computes them and in mm
  (``distance_unit``; in voxels or pixels when no spacing is known);
* ``ref_volume`` / ``pred_volume``: in ml for 3D, mm² for 2D (``volume_unit``; voxel or pixel counts without spacing);
* ``volume_error``: ``pred_volume - ref_volume`` (signed, in ``volume_unit``) and ``volume_error_rel``:
  ``volume_error / ref_volume`` (signed fraction; NaN when the reference is empty), as in radiotherapy contour QA;
* ``auc``: pixel-wise ROC AUC of the label's probability, when a probability map is given;
* ``empty``: ``""``, ``"both"``, ``"reference"`` or ``"prediction"``; ``missing``: no prediction was given.

Empty masks (documented conventions, counted separately in :func:`summarize`):

* reference and prediction both empty: ``dice = iou = sensitivity = precision = 1``, ``hd95 = assd = 0``,
  ``empty = "both"`` (a correct "nothing here");
* reference empty, prediction not: ``dice = iou = precision = 0``, ``sensitivity = NaN`` (undefined),
  ``hd95 = assd = NaN``, ``empty = "reference"``;
* prediction empty, reference not: ``dice = iou = sensitivity = 0``, ``precision = NaN``,
  ``hd95 = assd = NaN``, ``empty = "prediction"``.

NaN values are left out of means and counted (``n_nan``) by :func:`summarize`.

A region-of-interest mask (``roi``, e.g. the DRIVE field of view) restricts every metric to the voxels inside
it: voxels outside count as background in both maps and are left out of the true negatives.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medsight.errors import MedsightError
from medsight.metrics.auc import roc_auc

log = logging.getLogger(__name__)

#: Numeric per-row metrics, in the order they appear in tables.
METRICS: tuple[str, ...] = (
    "dice", "iou", "hd95", "assd", "sensitivity", "precision", "specificity", "accuracy", "auc",
    "ref_volume", "pred_volume", "volume_error", "volume_error_rel",
)
#: Metrics averaged over labels in ``summary["foreground_mean"]`` (volumes are not averaged over labels).
RATIO_METRICS = ("dice", "iou", "hd95", "assd", "sensitivity", "precision", "specificity", "accuracy", "auc")

Row = dict[str, Any]


# ---------------------------------------------------------------------------------------------- helpers
def _spatial(arr: Any, name: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim not in (2, 3):
        raise MedsightError(
            f"Expected {name} of shape (H, W) or (D, H, W), got shape {a.shape}; "
            "drop the channel axis (array[0]) of a channels-first image"
        )
    return a


def _check_same(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise MedsightError(f"Expected {what} of the reference's shape {b.shape}, got shape {a.shape}; "
                            "resample it onto the reference grid")


def _spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    sp = tuple(float(s) for s in np.asarray(spacing, dtype=float).ravel())
    if len(sp) == 1:
        sp = sp * ndim
    if len(sp) != ndim or any(not (s > 0 and math.isfinite(s)) for s in sp):
        raise MedsightError(f"Expected {ndim} positive spacing values (mm per array axis), got {sp}; "
                            "pass the reference image's spacing")
    return sp


def _units(spacing: tuple[float, ...] | None, ndim: int) -> tuple[float, str, str]:
    """(voxel size in the volume unit, volume unit, distance unit)."""
    if spacing is None:
        unit = "voxels" if ndim == 3 else "pixels"
        return 1.0, unit, unit
    size = float(np.prod(spacing))
    return (size / 1000.0, "ml", "mm") if ndim == 3 else (size, "mm2", "mm")


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else math.nan


# ---------------------------------------------------------------------------------------------- counts
def confusion_counts(
    pred: np.ndarray, ref: np.ndarray, values: Sequence[int], *, roi: np.ndarray | None = None
) -> np.ndarray:
    """Per-label voxel counts in one pass over the arrays.

    Args:
        pred: predicted label map ``(*spatial)``, integers.
        ref: reference label map ``(*spatial)``, integers.
        values: label values to count (non-zero).
        roi: optional mask ``(*spatial)``; only voxels where it is non-zero are counted.

    Returns:
        ``(len(values), 4)`` int64 array of ``(tp, fp, fn, tn)`` per label.
    """
    pred = _spatial(pred, "a prediction")
    ref = _spatial(ref, "a reference")
    _check_same(pred, ref, "a prediction")
    if roi is not None:
        roi = np.asarray(roi).astype(bool)
        _check_same(roi, ref, "a region-of-interest mask")
        pred, ref = pred[roi], ref[roi]
    vals = np.asarray(list(values), dtype=np.int64)
    k = len(vals)
    order = np.argsort(vals)
    sorted_vals = vals[order]

    def index(a: np.ndarray) -> np.ndarray:
        flat = np.asarray(a).ravel()
        if flat.dtype.kind in "ub" or (flat.dtype.kind == "i" and flat.size and flat.min() >= 0):
            top = max(int(flat.max(initial=0)), int(sorted_vals.max(initial=0)))
            if top < 1 << 16:  # small non-negative labels: a lookup table
                lut = np.full(top + 1, k, dtype=np.int64)
                lut[vals[vals >= 0]] = np.flatnonzero(vals >= 0)
                return lut[flat.astype(np.intp, copy=False)]
        flat = flat.astype(np.int64, copy=False)
        pos = np.clip(np.searchsorted(sorted_vals, flat), 0, max(k - 1, 0))
        hit = sorted_vals[pos] == flat if k else np.zeros(flat.shape, bool)
        out = np.full(flat.shape, k, dtype=np.int64)  # k = "any other value"
        out[hit] = order[pos[hit]]
        return out

    cm = np.bincount(index(pred) * (k + 1) + index(ref), minlength=(k + 1) ** 2).reshape(k + 1, k + 1)
    total = int(pred.size)
    tp = np.diag(cm)[:k]
    fp = cm[:k, :].sum(axis=1) - tp
    fn = cm[:, :k].sum(axis=0) - tp
    tn = total - tp - fp - fn
    return np.stack([tp, fp, fn, tn], axis=1).astype(np.int64)


def overlap_metrics(tp: int, fp: int, fn: int, tn: int) -> Row:
    """Overlap scores from voxel counts, with the empty-mask conventions of this module.

    Returns:
        ``dice``, ``iou``, ``sensitivity``, ``precision``, ``specificity``, ``accuracy`` and ``empty``.
    """
    ref_n, pred_n = tp + fn, tp + fp
    total = tp + fp + fn + tn
    out: Row = {
        "specificity": _ratio(tn, tn + fp),
        "accuracy": _ratio(tp + tn, total),
    }
    if ref_n == 0 and pred_n == 0:
        out.update(dice=1.0, iou=1.0, sensitivity=1.0, precision=1.0, empty="both")
    else:
        out.update(
            dice=2.0 * tp / (2 * tp + fp + fn),
            iou=tp / (tp + fp + fn),
            sensitivity=_ratio(tp, ref_n),
            precision=_ratio(tp, pred_n),
            empty="reference" if ref_n == 0 else "prediction" if pred_n == 0 else "",
        )
    return out


# ---------------------------------------------------------------------------------------------- distances
def _edges(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return mask ^ binary_erosion(mask)


def surface_distances(
    pred_mask: np.ndarray, ref_mask: np.ndarray, *, spacing: Sequence[float] | None = None
) -> tuple[float, float]:
    """HD95 and ASSD between two binary masks.

    The algorithm is MONAI's (``compute_hausdorff_distance(..., percentile=95)`` and
    ``compute_average_surface_distance(..., symmetric=True)``, which the tests check it against): crop to the
    bounding box of both masks with a one-voxel margin, take as surface the voxels removed by one binary
    erosion (face connectivity), find each surface voxel's nearest surface voxel of the other mask in mm
    (a KD-tree), then HD95 is the larger of the two directed 95th percentiles and ASSD the mean of both
    directions' distances together. Done here in NumPy/SciPy because MONAI's cropping transforms cost
    about 0.1 s per call: on the MSD hippocampus volumes this is about 25 times faster.

    Args:
        pred_mask: ``(*spatial)`` boolean prediction.
        ref_mask: ``(*spatial)`` boolean reference.
        spacing: voxel size (mm) per array axis; ``None`` for distances in voxels.

    Returns:
        ``(hd95, assd)`` in mm (or voxels): both 0 when both masks are empty, NaN when exactly one is.
    """
    from scipy.spatial import KDTree

    pred_mask = _spatial(pred_mask, "a prediction mask").astype(bool)
    ref_mask = _spatial(ref_mask, "a reference mask").astype(bool)
    _check_same(pred_mask, ref_mask, "a prediction mask")
    p_any, r_any = bool(pred_mask.any()), bool(ref_mask.any())
    if not p_any and not r_any:
        return 0.0, 0.0
    if not p_any or not r_any:
        return math.nan, math.nan
    sp = _spacing(spacing, pred_mask.ndim)
    union = pred_mask | ref_mask
    box = []
    for axis in range(union.ndim):
        hit = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != axis)))
        box.append(slice(max(int(hit[0]) - 1, 0), min(int(hit[-1]) + 2, union.shape[axis])))
    scale = np.asarray(sp if sp is not None else (1.0,) * union.ndim, dtype=np.float64)
    p_pts = np.argwhere(_edges(pred_mask[tuple(box)])) * scale
    r_pts = np.argwhere(_edges(ref_mask[tuple(box)])) * scale
    d_pr = KDTree(r_pts, leafsize=32).query(p_pts, k=1)[0]
    d_rp = KDTree(p_pts, leafsize=32).query(r_pts, k=1)[0]
    hd95 = max(float(np.quantile(d_pr, 0.95)), float(np.quantile(d_rp, 0.95)))
    assd = float(np.concatenate([d_pr, d_rp]).mean())
    return hd95, assd


def binary_metrics(
    prob: np.ndarray, ref: np.ndarray, *, roi: np.ndarray | None = None, threshold: float = 0.5
) -> Row:
    """Vessel-style binary metrics from a foreground probability map, inside an optional field of view.

    Args:
        prob: ``(*spatial)`` foreground probability in [0, 1].
        ref: ``(*spatial)`` reference, non-zero = foreground.
        roi: optional ``(*spatial)`` field-of-view mask; only voxels inside are scored.
        threshold: probability at or above which a voxel is predicted foreground.

    Returns:
        ``auc``, and at the threshold ``f1``, ``accuracy``, ``sensitivity``, ``specificity``, ``precision``.
    """
    prob = _spatial(prob, "a probability map")
    ref = _spatial(ref, "a reference")
    _check_same(prob, ref, "a probability map")
    target = ref != 0
    if roi is not None:
        roi = np.asarray(roi).astype(bool)
        _check_same(roi, ref, "a region-of-interest mask")
        prob, target = prob[roi], target[roi]
    hard = prob >= threshold
    tp = int(np.count_nonzero(hard & target))
    fp = int(np.count_nonzero(hard & ~target))
    fn = int(np.count_nonzero(~hard & target))
    tn = int(target.size - tp - fp - fn)
    ov = overlap_metrics(tp, fp, fn, tn)
    return {
        "auc": roc_auc(prob, target),
        "f1": ov["dice"],
        "accuracy": ov["accuracy"],
        "sensitivity": ov["sensitivity"],
        "specificity": ov["specificity"],
        "precision": ov["precision"],
    }


def _label_probability(prob: np.ndarray, value: int, n_labels: int, shape: tuple[int, ...]) -> np.ndarray:
    if prob.shape == shape:
        if n_labels != 1:
            raise MedsightError(
                f"Expected per-class probabilities of shape (C, *{shape}) for {n_labels} labels, got one map "
                f"{prob.shape}; pass all class channels"
            )
        return prob
    if prob.ndim == len(shape) + 1 and prob.shape[1:] == shape:
        if value >= prob.shape[0]:
            raise MedsightError(
                f"Expected a probability channel for label value {value}, got {prob.shape[0]} channels; "
                "channel i must hold the probability of label value i"
            )
        return prob[value]
    raise MedsightError(
        f"Expected probabilities of shape {shape} or (C, *{shape}), got {prob.shape}; "
        "pass the probability map on the reference grid"
    )


# ---------------------------------------------------------------------------------------------- one case
def foreground_labels(labels: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, value in labels.items():
        if isinstance(value, bool) or not float(value).is_integer():
            raise MedsightError(f"Expected integer label values, got {name}={value!r}; use e.g. {{'tumour': 1}}")
        if int(value) != 0:
            out[str(name)] = int(value)
    if not out:
        raise MedsightError(f"Expected at least one non-zero label value, got {dict(labels)}; e.g. {{'foreground': 1}}")
    if len(set(out.values())) != len(out):
        raise MedsightError(f"Expected one name per label value, got {out}; give each value one name")
    return out


def case_metrics(
    pred: np.ndarray | None,
    ref: np.ndarray,
    labels: Mapping[str, int],
    *,
    spacing: Sequence[float] | None = None,
    prob: np.ndarray | None = None,
    roi: np.ndarray | None = None,
    distances: bool = True,
    case_id: str = "",
) -> list[Row]:
    """All metrics of one case, one row per foreground label.

    Args:
        pred: predicted label map ``(*spatial)``, or ``None`` for a missing prediction (scored as empty,
            rows flagged ``missing``).
        ref: reference label map ``(*spatial)``.
        labels: label name -> value; value 0 (background) is skipped.
        spacing: voxel size (mm) per array axis; ``None`` gives distances in voxels and volumes in voxel counts.
        prob: optional probabilities: ``(*spatial)`` foreground probability when there is one label, or
            ``(C, *spatial)`` with channel ``i`` the probability of label value ``i``; gives ``auc``.
        roi: optional ``(*spatial)`` region of interest; metrics are computed inside it only.
        distances: compute ``hd95``/``assd`` (the slow part); NaN when ``False``.
        case_id: written into each row's ``case``.

    Returns:
        Rows with ``case``, ``label``, ``value``, the :data:`METRICS`, ``volume_unit``, ``distance_unit``,
        ``empty`` and ``missing``.
    """
    ref = _spatial(ref, "a reference")
    missing = pred is None
    pred = np.zeros(ref.shape, dtype=np.uint8) if pred is None else _spatial(pred, "a prediction")
    _check_same(pred, ref, "a prediction")
    fg = foreground_labels(labels)
    sp = _spacing(spacing, ref.ndim)
    voxel, volume_unit, distance_unit = _units(sp, ref.ndim)
    roi_mask = None
    if roi is not None:
        roi_mask = _spatial(roi, "a region-of-interest mask").astype(bool)
        _check_same(roi_mask, ref, "a region-of-interest mask")
    probs = None if prob is None else np.asarray(prob)
    counts = confusion_counts(pred, ref, list(fg.values()), roi=roi_mask)
    rows: list[Row] = []
    for (name, value), (tp, fp, fn, tn) in zip(fg.items(), counts.tolist()):
        ov = overlap_metrics(tp, fp, fn, tn)
        hd = asd = math.nan
        if distances:
            p_m, r_m = pred == value, ref == value
            if roi_mask is not None:
                p_m &= roi_mask
                r_m &= roi_mask
            hd, asd = surface_distances(p_m, r_m, spacing=sp)
        auc = math.nan
        if probs is not None:
            p = _label_probability(probs, value, len(fg), ref.shape)
            target = ref == value
            auc = roc_auc(p[roi_mask], target[roi_mask]) if roi_mask is not None else roc_auc(p, target)
        rows.append({
            "case": case_id, "label": name, "value": value,
            "dice": ov["dice"], "iou": ov["iou"], "hd95": hd, "assd": asd,
            "sensitivity": ov["sensitivity"], "precision": ov["precision"],
            "specificity": ov["specificity"], "accuracy": ov["accuracy"], "auc": auc,
            "ref_volume": (tp + fn) * voxel, "pred_volume": (tp + fp) * voxel,
            "volume_error": (fp - fn) * voxel, "volume_error_rel": (fp - fn) / (tp + fn) if tp + fn else math.nan,
            "volume_unit": volume_unit, "distance_unit": distance_unit,
            "empty": ov["empty"], "missing": missing,
        })
    return rows


__all__ = [
    "METRICS", "RATIO_METRICS", "binary_metrics", "case_metrics", "confusion_counts", "foreground_labels", "overlap_metrics",
    "surface_distances",
]


def dice_per_label(pred: np.ndarray, ref: np.ndarray, labels: list[int]) -> list[float]:
    """Dice of each label value (NaN when both are empty)."""
    out = []
    for v in labels:
        p, r = pred == v, ref == v
        denom = p.sum() + r.sum()
        out.append(float(2 * (p & r).sum() / denom) if denom else float("nan"))
    return out
