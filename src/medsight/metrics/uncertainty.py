"""Uncertainty of an ensemble's prediction, per voxel and per case, and how well it finds failed cases.

The voxel measure is the predictive entropy of the ensemble's mean probability (mirror TTA flips x fold networks),
divided by ``log K`` so that it lies in ``[0, 1]`` for any number of classes ``K``: 0 where every member gives one
class probability 1, 1 where the mean is uniform. It needs only the mean probabilities, which the sliding window
already blends into one buffer and validation already saves, so no member volume is kept (see ``docs/uncertainty.md``
for why this measure rather than the members' mutual information).

The case score is the mean voxel uncertainty over the predicted foreground grown by ``MARGIN`` (2) voxels: the
prediction and the rim just outside it, where a wrong boundary shows. Certain background far from the structure does
not dilute it, and an uncertain rim weighs more around a small structure than around a large one, as the Dice error
it foreshadows does. It lies in ``[0, 1]``; an empty prediction scores its most uncertain voxel (0 when confidently
empty). The definition was chosen among seven on the Hippocampus validation fold (``docs/uncertainty.md``).

For validation: Spearman's rank correlation between score and Dice, the AUROC of the score for detecting the cases
whose Dice is below a level (:func:`medsight.metrics.auc.roc_auc`), and the review threshold on the score chosen for
that goal (:func:`review_threshold`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from medsight.metrics.auc import roc_auc

MEASURE = "predictive entropy of the mean probability over TTA flips and folds, / log K"
MARGIN = 2  # voxels the predicted foreground is grown by for the case score
CASE_SCORE = f"mean voxel uncertainty over the predicted foreground dilated by {MARGIN} voxels"
_CHUNK = 1 << 22  # voxels per chunk of the entropy computation: bounded float32 temporaries for large volumes


def normalised_entropy(probs: np.ndarray, *, binary: bool = False) -> np.ndarray:
    """Entropy of class probabilities ``(K, *rest)`` over the first axis, divided by ``log K``, as float32 ``(*rest)``.

    Probabilities are renormalised to sum 1 first (float16 archives do not quite); ``binary`` treats each of the ``K``
    entries as an independent yes/no probability (multi-label sigmoid outputs) and returns the mean binary entropy
    divided by ``log 2``. With ``K < 2`` (softmax) everything is certain: zeros.
    """
    p = np.asarray(probs)
    if p.ndim < 1:
        raise ValueError(f"Expected probabilities (K, ...), got shape {p.shape}")
    k = p.shape[0]
    flat = p.reshape(k, -1)
    out = np.zeros(flat.shape[1], dtype=np.float32)
    if k < 2 and not binary:
        return out.reshape(p.shape[1:])
    step = max(1, _CHUNK // max(k, 1))
    for a in range(0, flat.shape[1], step):
        q = np.clip(flat[:, a:a + step].astype(np.float32), 0.0, 1.0)
        if binary:
            h = _plogp(q) + _plogp(1.0 - q)
            out[a:a + step] = -h.mean(0) / math.log(2.0)
        else:
            q /= np.maximum(q.sum(0, keepdims=True), np.float32(1e-12))
            out[a:a + step] = -_plogp(q).sum(0) / math.log(k)
    return np.clip(out, 0.0, 1.0).reshape(p.shape[1:])


def _plogp(q: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0).astype(np.float32)


def case_score(uncertainty: np.ndarray, labels: np.ndarray, *, margin: int = MARGIN) -> float:
    """Mean voxel uncertainty over the predicted foreground grown by ``margin`` voxels; see the module docstring.

    Args:
        uncertainty: voxel map in ``[0, 1]`` (:func:`normalised_entropy`), the label map's shape.
        labels: predicted label map (0 = background), after postprocessing.
        margin: voxels the foreground is dilated by (face connectivity), so that the uncertain rim just outside the
            predicted boundary counts.

    Returns:
        The score in ``[0, 1]``; for an empty prediction the largest voxel uncertainty (0 when confidently empty).
    """
    from scipy.ndimage import binary_dilation

    u = np.asarray(uncertainty, dtype=np.float32)
    fg = np.asarray(labels) != 0
    if u.shape != fg.shape:
        raise ValueError(f"Expected an uncertainty map of the label map's shape {fg.shape}, got {u.shape}")
    if not fg.any():
        return float(u.max()) if u.size else 0.0
    region = binary_dilation(fg, iterations=margin) if margin > 0 else fg
    return float(u[region].mean(dtype=np.float64))


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Spearman's rank correlation (ties averaged, :func:`scipy.stats.spearmanr`); ``None`` when undefined."""
    from scipy.stats import spearmanr

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return None
    rho = float(spearmanr(a[keep], b[keep]).statistic)
    return rho if math.isfinite(rho) else None


def failure_auroc(scores: Sequence[float] | np.ndarray, failed: Sequence[bool] | np.ndarray) -> float | None:
    """AUROC of the score for telling failed cases from the others; ``None`` when only one kind is present."""
    auc = roc_auc(np.asarray(scores, dtype=float), np.asarray(failed, dtype=bool))
    return auc if math.isfinite(auc) else None


def review_threshold(scores: Sequence[float] | np.ndarray, failed: Sequence[bool] | np.ndarray, *,
                     sensitivity: float | None = None) -> float:
    """The score above which a case is flagged for review (``review = score > threshold``), chosen on validation cases.

    Candidates are the validation scores themselves (and one below all of them, which flags everything). Without
    ``sensitivity``: the candidate maximising Youden's J (sensitivity + specificity - 1) for flagging the failed cases,
    the highest one on ties (fewest flags). With ``sensitivity``: the highest candidate that flags at least that
    fraction of the failed cases. Without any failed case: the highest validation score (only cases more uncertain
    than every validation case are flagged).
    """
    s = np.asarray(scores, dtype=float)
    f = np.asarray(failed, dtype=bool)
    if s.shape != f.shape or s.size == 0:
        raise ValueError(f"Expected as many scores as failure flags (at least one), got {s.size} and {f.size}")
    if not f.any():
        return float(s.max())
    candidates = np.concatenate([[s.min() - 1e-6], np.unique(s)])
    flagged = s[None, :] > candidates[:, None]
    sens = (flagged & f).sum(1) / f.sum()
    if sensitivity is not None:
        if not 0.0 < sensitivity <= 1.0:
            raise ValueError(f"Expected a sensitivity in (0, 1], got {sensitivity}")
        ok = np.flatnonzero(sens >= sensitivity - 1e-12)
        return float(candidates[ok.max()])
    spec = ((~flagged) & ~f).sum(1) / max(int((~f).sum()), 1) if (~f).any() else np.ones(len(candidates))
    j = sens + spec - 1.0
    best = np.flatnonzero(j >= j.max() - 1e-12)
    return float(candidates[best.max()])


__all__ = ["CASE_SCORE", "MARGIN", "MEASURE", "case_score", "failure_auroc", "normalised_entropy", "review_threshold", "spearman"]
