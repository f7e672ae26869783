"""The area under the ROC curve, once for every caller: pixel AUC of probability maps, per-class AUC of classifiers,
macro averages, and the case-weighted AUC of the bootstrap.

One kernel: for each positive, the (weighted) count of negatives scoring below it plus half of those scoring the
same (the Mann-Whitney U statistic with ties counted one half), read from cumulative counts of the negatives in
score order.
"""

from __future__ import annotations

import math

import numpy as np

from medsight.errors import MedsightError


def _auc_kernel(scores: np.ndarray, target: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """AUC per column of ``weights`` ``(N, B)`` (one column of ones when ``None``); NaN where a class has no weight."""
    pos, neg = np.flatnonzero(target), np.flatnonzero(~target)
    neg = neg[np.argsort(scores[neg], kind="stable")]
    neg_scores = scores[neg]
    lo = np.searchsorted(neg_scores, scores[pos], "left")
    hi = np.searchsorted(neg_scores, scores[pos], "right")
    if weights is None:
        below = 0.5 * (lo + hi).astype(np.float64)
        den = float(pos.size) * float(neg.size)
        return np.asarray([below.sum() / den if den else math.nan])
    cum = np.zeros((neg.size + 1, weights.shape[1]))
    np.cumsum(weights[neg], axis=0, out=cum[1:])
    w_pos = weights[pos]
    num = np.sum(w_pos * (0.5 * (cum[lo] + cum[hi])), axis=0)
    den = w_pos.sum(axis=0) * cum[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def roc_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Exact area under the ROC curve (ties count one half).

    Args:
        scores: any shape, higher means more likely positive (probabilities).
        targets: same shape, boolean or {0, 1}.

    Returns:
        The AUC in [0, 1], or NaN when ``targets`` has only one class.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(targets).astype(bool).ravel()
    if s.shape != t.shape:
        raise MedsightError(f"Expected scores and targets of one size, got {s.size} and {t.size}; pass matching arrays")
    if not np.all(np.isfinite(s)):
        raise MedsightError("Expected finite scores, got NaN/Inf values; check the probability map")
    if t.all() or not t.any():
        return math.nan
    return float(_auc_kernel(s, t, None)[0])


def weighted_auc(weights: np.ndarray, scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """AUC for each column of case weights ``(N, B)`` (bootstrap resamples as counts); NaN where a class has no weight."""
    return _auc_kernel(np.asarray(scores, dtype=np.float64), np.asarray(target, dtype=bool), np.asarray(weights, float))


def macro_auc(y: np.ndarray, probs: np.ndarray, multilabel: bool) -> float:
    """Binary: AUC of the positive class; multi-class: mean one-vs-rest AUC; multi-label: mean per-class AUC."""
    k = probs.shape[1]
    if not multilabel and k == 2:
        return roc_auc(probs[:, 1], y == 1)
    target = y if multilabel else np.eye(k, dtype=bool)[y]
    aucs = [roc_auc(probs[:, c], target[:, c]) for c in range(k)]
    finite = [a for a in aucs if np.isfinite(a)]
    return float(np.mean(finite)) if finite else float("nan")


__all__ = ["macro_auc", "roc_auc", "weighted_auc"]
