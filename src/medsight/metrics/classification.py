"""Classification metrics: AUC, threshold metrics, calibration, bootstrap CIs and plots.

Inputs, for ``N`` cases and ``K`` classes:

* ``y``: int class indices ``(N,)`` for binary and multi-class tasks, or a 0/1 array ``(N, K)`` for
  multi-label tasks (``multilabel=True``);
* ``probs``: ``(N, K)`` probabilities: softmax columns for binary (``K = 2``, the positive class is column 1)
  and multi-class tasks, ``K`` independent sigmoid probabilities for multi-label tasks;
* ``logits``: ``(N, K)`` pre-softmax (or pre-sigmoid) scores;
* ``class_names``: ``K`` names.

The task is binary when ``K == 2`` and not multi-label. Hard predictions (:func:`predicted_labels`): binary
``p[:, 1] >= threshold`` (default 0.5), multi-class ``argmax``, multi-label ``p[:, k] >= thresholds[k]``
(default 0.5 each).

Conventions: a metric that is undefined (a class absent from the truth, so no sensitivity or AUC) is NaN,
``None`` in the JSON-safe dict of :func:`classification_metrics`; macro averages leave undefined classes out.
Nothing here warns: degenerate inputs give NaN values and null confidence intervals.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from medsight.core.tables import json_safe
from medsight.errors import did_you_mean, user_error
from medsight.metrics.auc import roc_auc, weighted_auc

log = logging.getLogger(__name__)

#: Metrics that get a bootstrap 95 % interval in :func:`classification_metrics` (``ci95``).
CI_METRICS: tuple[str, ...] = ("auc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity")
THRESHOLD_METHODS: tuple[str, ...] = ("youden", "sensitivity")
_LOG_T_BOUNDS = (math.log(1e-2), math.log(1e2))
_CHUNK_ELEMENTS = 4_000_000  # bootstrap resamples are processed in chunks of about this many weights


# ---------------------------------------------------------------------------------------------- inputs
def _matrix(values: Any, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] < 1:
        raise user_error(f"{name} of shape (N, K)", f"shape {a.shape}", None,
                         "pass one column per class (binary: two softmax columns; one sigmoid output: reshape(-1, 1))")
    if not np.all(np.isfinite(a)):
        raise user_error(f"finite {name}", "NaN/Inf values", None, "check the model outputs")
    return a


def _probabilities(probs: Any) -> np.ndarray:
    p = _matrix(probs, "probs")
    if p.size and (p.min() < -1e-6 or p.max() > 1 + 1e-6):
        raise user_error("probabilities in [0, 1]", f"values from {p.min():.4g} to {p.max():.4g}", None,
                         "convert logits with apply_temperature (or a softmax/sigmoid) first")
    return np.clip(p, 0.0, 1.0)


def _truth(y: Any, n: int, k: int, multilabel: bool) -> np.ndarray:
    """Truth as a boolean ``(N, K)`` matrix (one-hot for single-label tasks)."""
    a = np.asarray(y)
    if multilabel:
        if a.shape != (n, k) or not np.isin(a, (0, 1)).all():
            raise user_error(f"multi-label y of 0/1 values with shape {(n, k)}", f"shape {a.shape}", None,
                             "pass one 0/1 column per class")
        return a.astype(bool)
    if a.shape != (n,):
        raise user_error(f"y of class indices with shape {(n,)}", f"shape {a.shape}", None,
                         "pass integer labels (argmax of a one-hot array), or set multilabel=True")
    if a.size and (a.dtype.kind not in "iub" and not np.all(np.mod(a, 1) == 0) or a.min() < 0 or a.max() >= k):
        raise user_error(f"integer class indices in [0, {k - 1}]", f"values {np.unique(a)[:10].tolist()}", None,
                         "map labels to column indices of probs")
    return np.arange(k)[None, :] == a.astype(np.int64)[:, None]


def prepare_scores(y: Any, probs: Any, multilabel: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """(truth ``(N, K)`` bool, probabilities ``(N, K)``, task: "binary", "multiclass" or "multilabel")."""
    p = _probabilities(probs)
    n, k = p.shape
    if not multilabel and k < 2:
        raise user_error("at least two probability columns", f"{k}", None,
                         "pass softmax probabilities of both classes, np.stack([1 - p, p], axis=1)")
    kind = "multilabel" if multilabel else "binary" if k == 2 else "multiclass"
    return _truth(y, n, k, multilabel), p, kind


def class_names_or_default(class_names: Sequence[str], k: int) -> list[str]:
    names = [str(c) for c in class_names]
    if len(names) != k:
        raise user_error(f"{k} class names (one per probability column)", f"{len(names)}: {names}", None,
                         "pass class_names in column order")
    return names


def _thresholds(thresholds: float | Sequence[float] | None, k: int, kind: str) -> np.ndarray | None:
    """Per-column thresholds ``(K,)`` (binary: only column 1's is used), ``None`` for multi-class (argmax)."""
    if kind == "multiclass":
        if thresholds is not None:
            log.debug("thresholds are not used for multi-class predictions (argmax)")
        return None
    t = np.asarray(0.5 if thresholds is None else thresholds, dtype=np.float64).ravel()
    want = 1 if kind == "binary" else k
    if t.size == 1:
        t = np.full(k, float(t[0]))
    elif t.size != want:
        raise user_error(f"one threshold or {want}", f"{t.size}", None, "pass one threshold per class")
    if not np.all(np.isfinite(t)):
        raise user_error("finite thresholds", t.tolist(), None, "pass probabilities such as 0.5")
    return t


def _predictions(p: np.ndarray, kind: str, t: np.ndarray | None) -> np.ndarray:
    """Hard predictions as a boolean ``(N, K)`` matrix."""
    if kind == "multilabel":
        assert t is not None
        return p >= t[None, :]
    if kind == "binary":
        assert t is not None
        pos = p[:, 1] >= t[1]
        return np.stack([~pos, pos], axis=1)
    return np.arange(p.shape[1])[None, :] == np.argmax(p, axis=1)[:, None]


def predicted_labels(
    probs: Any, *, multilabel: bool = False, thresholds: float | Sequence[float] | None = None
) -> np.ndarray:
    """Hard predictions from probabilities.

    Args:
        probs: ``(N, K)`` probabilities.
        multilabel: ``K`` independent sigmoid outputs.
        thresholds: binary: the positive-class threshold (default 0.5); multi-label: one per class or one for
            all (default 0.5); multi-class: unused (argmax).

    Returns:
        Class indices ``(N,)`` (binary: 1 where ``p[:, 1] >= threshold``), or 0/1 ``(N, K)`` for multi-label.
    """
    p = _probabilities(probs)
    kind = "multilabel" if multilabel else "binary" if p.shape[1] == 2 else "multiclass"
    pred = _predictions(p, kind, _thresholds(thresholds, p.shape[1], kind))
    return pred.astype(np.int64) if multilabel else np.argmax(pred, axis=1)


# ---------------------------------------------------------------------------------------------- arithmetic
def safe_div(num: Any, den: Any) -> np.ndarray:
    """``num / den`` with NaN where ``den`` is 0, without warnings."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    return np.divide(num, den, out=out, where=den > 0)


def _nanmean(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over the finite values along ``axis`` (NaN where there are none), without warnings."""
    ok = np.isfinite(a)
    return safe_div(np.where(ok, a, 0.0).sum(axis=axis), ok.sum(axis=axis))


# ---------------------------------------------------------------------------------------------- temperature
def _scaled_nll(logits: np.ndarray, truth: np.ndarray, multilabel: bool, temperature: float) -> float:
    from scipy.special import logsumexp

    z = logits / temperature
    if multilabel:  # binary cross-entropy, mean over cases and classes
        return float(np.mean(np.logaddexp(0.0, z) - truth * z))
    return float(np.mean(logsumexp(z, axis=1) - z[truth]))


def fit_temperature(logits: Any, y: Any, *, multilabel: bool = False) -> float:
    """Temperature scaling (Guo et al. 2017): the ``T > 0`` minimising the NLL of ``logits / T``.

    Fit it on validation logits, then use :func:`apply_temperature` on test logits. The NLL is softmax
    cross-entropy, or binary cross-entropy (mean over cases and classes) for multi-label tasks. It is
    unimodal in ``log T``, searched by bounded Brent in ``T`` in [0.01, 100].

    Args:
        logits: ``(N, K)`` validation logits.
        y: ``(N,)`` class indices, or ``(N, K)`` 0/1 for multi-label.
        multilabel: sigmoid outputs with binary cross-entropy.

    Returns:
        The temperature, or 1.0 (no change, logged as a warning) for degenerate inputs: no cases, logits that
        do not vary, validation cases perfectly separated (every one on the right side, where the NLL keeps
        falling as ``T -> 0``), or an optimum at the search bound (logits with no information, where the NLL
        falls as ``T -> inf``).
    """
    from scipy.optimize import minimize_scalar

    z = _matrix(logits, "logits")
    truth = _truth(y, z.shape[0], z.shape[1], multilabel)
    if z.shape[0] == 0 or np.ptp(z) == 0:
        log.warning("temperature scaling skipped (no cases or constant logits); using T = 1")
        return 1.0
    # every case on the right side (the true logit the largest; each sigmoid logit of the label's sign): the
    # NLL falls all the way as T -> 0, so there is no optimum to find
    separated = np.all((2 * truth - 1) * z >= 0) if multilabel else np.all(z[truth] >= z.max(axis=1))
    if separated:
        log.warning("temperature scaling skipped: the validation cases are perfectly separated; using T = 1")
        return 1.0
    res = minimize_scalar(lambda lt: _scaled_nll(z, truth, multilabel, math.exp(lt)), bounds=_LOG_T_BOUNDS,
                          method="bounded", options={"xatol": 1e-5})
    log_t = float(res.x)
    at_bound = min(log_t - _LOG_T_BOUNDS[0], _LOG_T_BOUNDS[1] - log_t) < 1e-3
    if not res.success or at_bound or res.fun > _scaled_nll(z, truth, multilabel, 1.0):
        log.warning("temperature scaling found no interior optimum (T -> %.3g); using T = 1", math.exp(log_t))
        return 1.0
    log.debug("fitted temperature %.4f (NLL %.4f at T = 1 -> %.4f)", math.exp(log_t),
              _scaled_nll(z, truth, multilabel, 1.0), res.fun)
    return math.exp(log_t)


def apply_temperature(logits: Any, temperature: float, *, multilabel: bool = False) -> np.ndarray:
    """Probabilities ``(N, K)`` from ``logits / temperature``: softmax, or sigmoid per class for multi-label."""
    from scipy.special import expit, softmax

    z = _matrix(logits, "logits")
    if not (math.isfinite(temperature) and temperature > 0):
        raise user_error("a positive finite temperature", temperature, None, "use the value of fit_temperature")
    z = z / temperature
    return expit(z) if multilabel else softmax(z, axis=1)


# ---------------------------------------------------------------------------------------------- calibration
def confidence_pairs(truth: np.ndarray, p: np.ndarray, kind: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(confidence, outcome) pairs whose reliability is measured: one for binary (the positive class)
    and multi-class (top label) tasks, one per class for multi-label tasks."""
    if kind == "binary":
        return [(p[:, 1], truth[:, 1])]
    if kind == "multiclass":
        top = np.argmax(p, axis=1)
        return [(p[np.arange(len(p)), top], truth[np.arange(len(p)), top])]
    return [(p[:, j], truth[:, j]) for j in range(p.shape[1])]


def calibration_bins(conf: np.ndarray, outcome: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin ``(lo, hi]`` of [0, 1] (0 falls in the first; edges ``np.linspace(0, 1, bins + 1)``
    as in Guo et al.'s code): count, mean confidence and observed frequency (NaN for empty bins)."""
    idx = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], conf, side="left")
    count = np.bincount(idx, minlength=bins).astype(np.float64)
    mean_conf = safe_div(np.bincount(idx, weights=conf, minlength=bins), count)
    freq = safe_div(np.bincount(idx, weights=outcome.astype(np.float64), minlength=bins), count)
    return count, mean_conf, freq


def ece_of_pairs(pairs: list[tuple[np.ndarray, np.ndarray]], bins: int) -> float:
    values = []
    for conf, outcome in pairs:
        count, mean_conf, freq = calibration_bins(conf, outcome, bins)
        gap = np.where(count > 0, np.abs(freq - mean_conf), 0.0)
        values.append(float(safe_div(np.sum(count * gap), count.sum())))
    return float(_nanmean(np.asarray(values))) if values else math.nan


def check_bins(bins: int) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise user_error("a positive integer number of bins", repr(bins), None, "use e.g. bins=15")
    return int(bins)


def expected_calibration_error(y: Any, probs: Any, *, bins: int = 15, multilabel: bool = False) -> float:
    """Expected calibration error: ``sum_b n_b / N * |frequency_b - mean confidence_b|`` over equal-width bins.

    What is measured: binary tasks, the positive-class probability ``p[:, 1]`` against ``y == 1`` (so a model
    that is over-confident about negatives shows); multi-class tasks, the top-label confidence ``max p``
    against ``argmax p == y``; multi-label tasks, each class's probability against its label, averaged over
    classes.

    Args:
        y: ``(N,)`` class indices, or ``(N, K)`` 0/1 for multi-label.
        probs: ``(N, K)`` probabilities.
        bins: number of equal-width bins on [0, 1].
        multilabel: ``K`` independent sigmoid outputs.

    Returns:
        ECE in [0, 1]; NaN without cases.
    """
    truth, p, kind = prepare_scores(y, probs, multilabel)
    return ece_of_pairs(confidence_pairs(truth, p, kind), check_bins(bins))


# ---------------------------------------------------------------------------------------------- curves
def _binary_target(y_binary: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(y_binary).ravel()
    if s.shape != t.shape:
        raise user_error("scores and labels of one length", f"{s.size} and {t.size}", None, "pass matching arrays")
    if not np.all(np.isfinite(s)):
        raise user_error("finite scores", "NaN/Inf values", None, "check the model outputs")
    if not np.isin(t, (0, 1)).all():
        raise user_error("binary labels (0/1 or bool)", f"values {np.unique(t)[:10].tolist()}", None,
                         "pass y == positive_class")
    return t.astype(bool), s


def _cumulative(t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores in decreasing order with the true and false positives at ``score >= threshold``."""
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1] if s.size else np.zeros(0, np.int64)
    tps = np.cumsum(t)[last].astype(np.float64)
    return s[last], tps, (last + 1) - tps


def roc_curve_points(y_binary: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve: one point per distinct score, predicting positive where ``score >= threshold``.

    Args:
        y_binary: ``(N,)`` 0/1 or bool labels.
        scores: ``(N,)`` scores, higher meaning more likely positive.

    Returns:
        ``(fpr, tpr, thresholds)``, starting at ``(0, 0)`` with threshold ``inf`` and thresholds decreasing
        (as scikit-learn's ``roc_curve(..., drop_intermediate=False)``); a rate is NaN when its class is absent.
    """
    t, s = _binary_target(y_binary, scores)
    thr, tps, fps = _cumulative(t, s)
    tpr = safe_div(np.r_[0.0, tps], t.sum())
    fpr = safe_div(np.r_[0.0, fps], (~t).sum())
    return fpr, tpr, np.r_[np.inf, thr]


def pr_points(t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision), starting at recall 0 with precision 1."""
    _, tps, fps = _cumulative(t, s)
    return np.r_[0.0, safe_div(tps, t.sum())], np.r_[1.0, safe_div(tps, tps + fps)]


def average_precision(y_binary: Any, scores: Any) -> float:
    """Average precision ``sum_n (R_n - R_{n-1}) P_n`` over distinct-score thresholds (scikit-learn's
    ``average_precision_score``, no interpolation); NaN without positives."""
    t, s = _binary_target(y_binary, scores)
    if not t.any():
        return math.nan
    recall, precision = pr_points(t, s)
    return float(np.sum(np.diff(recall) * precision[1:]))


# ---------------------------------------------------------------------------------------------- thresholds
def choose_threshold(
    y_binary: Any, p_pos: Any, *, method: str = "youden", target_sensitivity: float | None = None
) -> float:
    """Operating threshold for ``p_pos >= threshold`` chosen on validation data.

    Args:
        y_binary: ``(N,)`` 0/1 labels.
        p_pos: ``(N,)`` positive-class probabilities.
        method: ``"youden"``: the threshold maximising sensitivity + specificity - 1 on the ROC (ties: the
            highest such threshold); ``"sensitivity"``: the highest threshold whose sensitivity reaches
            ``target_sensitivity``.
        target_sensitivity: in (0, 1], required by (and only used with) ``method="sensitivity"``.

    Returns:
        A score value of the validation set (so the validation operating point is reproduced exactly), or
        0.5 when ``y_binary`` holds a single class (logged as a warning).
    """
    if method not in THRESHOLD_METHODS:
        raise did_you_mean(str(method), THRESHOLD_METHODS, "threshold method")
    if method == "sensitivity":
        if target_sensitivity is None or not 0 < float(target_sensitivity) <= 1:
            raise user_error("target_sensitivity in (0, 1] with method='sensitivity'", target_sensitivity, None,
                             "pass e.g. target_sensitivity=0.9")
    elif target_sensitivity is not None:
        raise user_error("no target_sensitivity with method='youden'", target_sensitivity, None,
                         "pass method='sensitivity' to use a target sensitivity")
    t, s = _binary_target(y_binary, p_pos)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        log.warning("threshold not chosen: the labels hold a single class (%d positive, %d negative); using 0.5",
                    n_pos, n_neg)
        return 0.5
    thr, tps, fps = _cumulative(t, s)
    if method == "youden":
        return float(thr[np.argmax(tps / n_pos - fps / n_neg)])
    assert target_sensitivity is not None
    reached = tps >= float(target_sensitivity) * n_pos - 1e-9 * n_pos
    return float(thr[np.argmax(reached)])  # tps only grows as the threshold falls; the last one reaches 1


# ---------------------------------------------------------------------------------------------- scores
def _rates(weights: np.ndarray, truth: np.ndarray, pred: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """Threshold metrics for each row of case weights ``(B, N)`` (ones: the data; counts: a resample).

    Returns:
        ``accuracy``, ``balanced_accuracy``, ``f1``, ``sensitivity``, ``specificity`` as ``(B,)`` arrays
        (binary: the positive class; otherwise macro over defined classes), ``*_per_class`` as ``(B, K)`` and
        the one-vs-rest counts ``tp``, ``fp``, ``fn``, ``tn`` ``(B, K)``.
    """
    y, p = truth.astype(np.float64), pred.astype(np.float64)
    tp, fn, fp = weights @ (y * p), weights @ (y * (1 - p)), weights @ ((1 - y) * p)
    n = weights.sum(axis=1, keepdims=True)
    tn = n - tp - fn - fp
    sens, spec, f1 = safe_div(tp, tp + fn), safe_div(tn, tn + fp), safe_div(2 * tp, 2 * tp + fp + fn)
    if kind == "multilabel":  # per label accuracy, and balanced accuracy over the classes each label has
        accuracy = safe_div(tp + tn, n).mean(axis=1)
        balanced = _nanmean(_nanmean(np.stack([sens, spec], axis=-1)), axis=1)
    else:
        accuracy = safe_div(tp.sum(axis=1), n[:, 0])
        balanced = _nanmean(sens, axis=1)  # mean recall over the classes present
    out = {"accuracy": accuracy, "balanced_accuracy": balanced, "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    for name, per_class in (("f1", f1), ("sensitivity", sens), ("specificity", spec)):
        out[name] = per_class[:, 1] if kind == "binary" else _nanmean(per_class, axis=1)
        out[f"{name}_per_class"] = per_class
    return out


def scored_columns(kind: str, k: int) -> list[int]:
    return [1] if kind == "binary" else list(range(k))


def _strata(truth: np.ndarray, kind: str) -> list[np.ndarray]:
    """Case indices per stratum: per class, or per label combination for multi-label tasks."""
    key = truth.astype(np.int64) @ (1 << np.arange(truth.shape[1], dtype=np.int64)) if kind == "multilabel" \
        else np.argmax(truth, axis=1)
    return [np.flatnonzero(key == v) for v in np.unique(key)]


def _bootstrap(
    truth: np.ndarray, p: np.ndarray, pred: np.ndarray, kind: str, n_bootstrap: int, seed: int
) -> dict[str, np.ndarray]:
    """Each of :data:`CI_METRICS` over ``n_bootstrap`` stratified case resamples, ``(n_bootstrap,)`` each."""
    rng = np.random.default_rng(seed)
    groups = _strata(truth, kind)
    n = truth.shape[0]
    chunk = max(1, _CHUNK_ELEMENTS // n)
    parts: dict[str, list[np.ndarray]] = {m: [] for m in CI_METRICS}
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        idx = np.concatenate([g[rng.integers(0, g.size, size=(b, g.size))] for g in groups], axis=1)
        # times each case is drawn, (N, b): cases along rows keep the sorting and grouping below contiguous
        weights = np.bincount((idx * b + np.arange(b)[:, None]).ravel(), minlength=n * b).reshape(n, b)
        weights = weights.astype(np.float64)
        rates = _rates(weights.T, truth, pred, kind)
        aucs = np.stack([weighted_auc(weights, p[:, j], truth[:, j]) for j in scored_columns(kind, p.shape[1])],
                        axis=1)
        rates["auc"] = _nanmean(aucs, axis=1)
        for m in CI_METRICS:
            parts[m].append(rates[m])
    return {m: np.concatenate(v) for m, v in parts.items()}


def _percentile_interval(values: np.ndarray) -> list[float] | None:
    ok = values[np.isfinite(values)]
    if not ok.size:
        return None
    lo, hi = np.quantile(ok, [0.025, 0.975])
    return [float(lo), float(hi)]


def classification_metrics(
    y: Any,
    probs: Any,
    class_names: Sequence[str],
    *,
    multilabel: bool = False,
    thresholds: float | Sequence[float] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Discrimination, threshold and calibration metrics with bootstrap 95 % intervals, as a JSON-safe dict.

    Args:
        y: ``(N,)`` class indices, or ``(N, K)`` 0/1 for multi-label.
        probs: ``(N, K)`` probabilities (binary: two softmax columns, the positive class is column 1).
        class_names: ``K`` names in column order.
        multilabel: ``K`` independent sigmoid outputs.
        thresholds: binary: the positive-class threshold (default 0.5); multi-label: one per class or one
            for all (default 0.5); multi-class: unused (argmax).
        n_bootstrap: resamples for the intervals (0: none).
        seed: seed of the local random generator (the intervals are reproducible).

    Returns:
        ``task``, ``n``, ``class_names``, ``n_per_class`` (cases per class; positives per class for
        multi-label), ``thresholds`` (binary: a float; multi-label: a list; multi-class: ``None``), ``auc``
        (binary: the positive class; otherwise macro one-vs-rest, with ``auc_per_class``), ``accuracy``
        (multi-label: mean per-label accuracy), ``balanced_accuracy`` (mean recall over the classes present;
        multi-label: its per-class value averaged), ``f1``, ``sensitivity``, ``specificity`` (binary: the
        positive class at the threshold; otherwise macro, with ``*_per_class`` one-vs-rest after the hard
        prediction), ``confusion_matrix`` (rows = truth, columns = prediction; multi-label: per class
        ``[[tn, fp], [fn, tp]]``), ``ece`` (see :func:`expected_calibration_error`, 15 bins), and ``ci95``:
        ``{metric: [low, high] or None}`` for :data:`CI_METRICS`, percentile intervals over case resamples
        stratified by class (multi-label: by label combination), so every resample holds every class of the
        data; ``None`` when the metric is undefined, with fewer than two classes, or ``n_bootstrap=0``.
        NaN values are ``None``.
    """
    truth, p, kind = prepare_scores(y, probs, multilabel)
    n, k = p.shape
    names = class_names_or_default(class_names, k)
    if isinstance(n_bootstrap, bool) or int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise user_error("a non-negative integer n_bootstrap", repr(n_bootstrap), None, "use e.g. 1000 (0: no CI)")
    t = _thresholds(thresholds, k, kind)
    pred = _predictions(p, kind, t)
    rates = _rates(np.ones((1, n)), truth, pred, kind)
    aucs = {j: roc_auc(p[:, j], truth[:, j]) for j in scored_columns(kind, k)}
    out: dict[str, Any] = {
        "task": kind, "n": n, "class_names": names,
        "n_per_class": dict(zip(names, truth.sum(axis=0).tolist())),
        "thresholds": None if t is None else float(t[1]) if kind == "binary" else t.tolist(),
        "auc": float(_nanmean(np.asarray(list(aucs.values())))),
    }
    if kind != "binary":
        out["auc_per_class"] = {names[j]: v for j, v in aucs.items()}
    for m in ("accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity"):
        out[m] = float(rates[m][0])
        if kind != "binary" and m in ("f1", "sensitivity", "specificity"):
            out[f"{m}_per_class"] = dict(zip(names, rates[f"{m}_per_class"][0].tolist()))
    if kind == "multilabel":
        counts = np.stack([rates[c][0] for c in ("tn", "fp", "fn", "tp")], axis=1).astype(np.int64)
        out["confusion_matrix"] = {names[j]: counts[j].reshape(2, 2).tolist() for j in range(k)}
    else:
        out["confusion_matrix"] = confusion_matrix(np.argmax(truth, axis=1), np.argmax(pred, axis=1), k).tolist()
    out["ece"] = ece_of_pairs(confidence_pairs(truth, p, kind), 15)
    out["ci95"] = dict.fromkeys(CI_METRICS)
    out["n_bootstrap"], out["seed"] = int(n_bootstrap), int(seed)
    groups = _strata(truth, kind) if n else []
    if n_bootstrap > 0 and len(groups) >= 2:
        samples = _bootstrap(truth, p, pred, kind, int(n_bootstrap), int(seed))
        out["ci95"] = {m: _percentile_interval(v) if math.isfinite(out[m]) else None for m, v in samples.items()}
    elif n_bootstrap > 0:
        log.debug("no bootstrap intervals: the truth holds fewer than two classes")
    return json_safe(out)


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts, rows = truth, columns = prediction, from class indices ``(N,)``."""
    a, b = np.asarray(y_true, dtype=np.int64).ravel(), np.asarray(y_pred, dtype=np.int64).ravel()
    if a.shape != b.shape or (a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_classes)):
        raise user_error(f"two equal-length arrays of class indices in [0, {n_classes - 1}]",
                         f"sizes {a.size} and {b.size}", None, "pass truth and predicted labels")
    return np.bincount(a * n_classes + b, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


__all__ = [
    "CI_METRICS", "THRESHOLD_METHODS", "apply_temperature", "average_precision", "choose_threshold",
    "classification_metrics", "confusion_matrix", "expected_calibration_error", "fit_temperature",
    "predicted_labels",
    "roc_curve_points",
]
