"""Per-image uncertainty of a classification run and the review flag of its predictions.

The uncertainty of an image is the normalised entropy of its calibrated class probabilities averaged over the folds
(each fold's logits already averaged over the flip TTA): :func:`medsight.metrics.uncertainty.normalised_entropy`
(softmax: entropy / log K; multi-label: mean binary entropy / log 2), in ``[0, 1]``. The review threshold is chosen on
the run's pooled out-of-fold validation predictions (``RUN/validation/predictions.csv``): the entropy above which a
validation image was wrongly classified, by Youden's J (:func:`medsight.metrics.uncertainty.review_threshold`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.core.tables import read_csv_rows
from medsight.metrics.uncertainty import normalised_entropy, review_threshold
from medsight.tasks.classification.plan import ClassificationPlan


def image_uncertainty(probs: np.ndarray, multilabel: bool) -> np.ndarray:
    """Normalised entropy per image of probabilities ``(N, K)``: float ``(N,)`` in ``[0, 1]``."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"Expected probabilities (N, K), got shape {p.shape}")
    return normalised_entropy(p.T, binary=multilabel).astype(np.float64)


def classification_review_threshold(run: Path, plan: ClassificationPlan) -> float | None:
    """The validation-chosen uncertainty threshold of a run, or ``None`` without pooled validation predictions."""
    path = Path(run) / "validation" / "predictions.csv"
    if not path.is_file():
        return None
    rows = read_csv_rows(path, what="validation predictions.csv", fix="re-run 'medsight train' to pool the folds")
    if not rows or "label" not in rows[0] or "pred" not in rows[0]:
        return None
    probs = np.asarray([[float(r[f"prob_{n}"]) for n in plan.class_names] for r in rows], dtype=float)
    wrong = np.asarray([r["pred"] != r["label"] for r in rows], dtype=bool)
    return review_threshold(image_uncertainty(probs, plan.multilabel), wrong)


__all__ = ["classification_review_threshold", "image_uncertainty"]
