"""Classification plots as PNG files: ROC and precision-recall curves per class, the reliability diagram and the
confusion matrix (matplotlib's object API, no global state)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.atomic import write_with
from medsight.errors import user_error
from medsight.metrics.auc import roc_auc
from medsight.metrics.classification import (
    average_precision,
    calibration_bins,
    check_bins,
    class_names_or_default,
    confidence_pairs,
    ece_of_pairs,
    pr_points,
    prepare_scores,
    roc_curve_points,
    safe_div,
    scored_columns,
)


# ---------------------------------------------------------------------------------------------- plots
def _figure(size: tuple[float, float]) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=100)


def _save(fig: Any, out_png: str | Path) -> Path:
    fig.tight_layout()
    return write_with(out_png, lambda tmp: fig.savefig(tmp, format="png"))


def _class_curves(
    y: Any, probs: Any, class_names: Sequence[str], multilabel: bool
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, binary truth, score) per plotted class: the positive class for binary, each class otherwise."""
    truth, p, kind = prepare_scores(y, probs, multilabel)
    names = class_names_or_default(class_names, p.shape[1])
    return [(names[j], truth[:, j], p[:, j]) for j in scored_columns(kind, p.shape[1])]


def _curve_axes(fig: Any, title: str, xlabel: str, ylabel: str) -> Any:
    ax = fig.subplots()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    return ax


def _legend(ax: Any, loc: str, empty_note: str) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc=loc)
    else:
        ax.text(0.5, 0.5, empty_note, ha="center", va="center", transform=ax.transAxes, color="0.5")


def plot_roc(y: Any, probs: Any, class_names: Sequence[str], out_png: str | Path, *, multilabel: bool = False) -> Path:
    """ROC curves (one-vs-rest per class; the positive class for binary tasks) with the AUC in the legend.

    Args:
        y: ``(N,)`` class indices, or ``(N, K)`` 0/1 for multi-label.
        probs: ``(N, K)`` probabilities.
        class_names: ``K`` names in column order.
        out_png: PNG written atomically.
        multilabel: ``K`` independent sigmoid outputs.

    Returns:
        ``out_png``; a class absent from (or alone in) the truth has no curve.
    """
    fig = _figure((5.5, 5))
    ax = _curve_axes(fig, "ROC", "1 - specificity (false positive rate)", "sensitivity (true positive rate)")
    ax.plot([0, 1], [0, 1], ":", color="0.6", lw=1)
    for name, t, s in _class_curves(y, probs, class_names, multilabel):
        auc = roc_auc(s, t)
        if math.isfinite(auc):
            fpr, tpr, _ = roc_curve_points(t, s)
            ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC = {auc:.3f})")
    _legend(ax, "lower right", "no curve: a single class in the truth")
    return _save(fig, out_png)


def plot_precision_recall(
    y: Any, probs: Any, class_names: Sequence[str], out_png: str | Path, *, multilabel: bool = False
) -> Path:
    """Precision-recall curves (per class; the positive class for binary tasks, with its prevalence as a
    dotted baseline) with the average precision in the legend. Arguments as :func:`plot_roc`."""
    fig = _figure((5.5, 5))
    ax = _curve_axes(fig, "Precision-recall", "recall (sensitivity)", "precision (PPV)")
    curves = _class_curves(y, probs, class_names, multilabel)
    for name, t, s in curves:
        if t.any():
            recall, precision = pr_points(t, s)  # precision P_n holds on (R_{n-1}, R_n], as AP sums it
            line = ax.plot(recall, precision, lw=1.5, drawstyle="steps-pre",
                           label=f"{name} (AP = {average_precision(t, s):.3f})")
            if len(curves) == 1:
                ax.axhline(t.mean(), ls=":", lw=1, color=line[0].get_color(), label=f"prevalence {t.mean():.3f}")
    _legend(ax, "lower left", "no curve: no positive cases")
    return _save(fig, out_png)


def plot_reliability(
    y: Any, probs: Any, out_png: str | Path, *, bins: int = 15, multilabel: bool = False, probs_before: Any = None
) -> Path:
    """Reliability diagram (observed frequency against mean confidence per bin) over a histogram of confidences.

    What is plotted is what :func:`expected_calibration_error` measures (binary: the positive-class
    probability; multi-class: the top-label confidence; multi-label: all classes pooled, while the ECE in
    the legend is the mean over classes).

    Args:
        y: ``(N,)`` class indices, or ``(N, K)`` 0/1 for multi-label.
        probs: ``(N, K)`` probabilities (after temperature scaling when ``probs_before`` is given).
        out_png: PNG written atomically.
        bins: number of equal-width bins.
        multilabel: ``K`` independent sigmoid outputs.
        probs_before: optional ``(N, K)`` probabilities before temperature scaling, drawn for comparison.

    Returns:
        ``out_png``.
    """
    bins = check_bins(bins)
    shown = [("before temperature scaling", probs_before, "0.55", "--")] if probs_before is not None else []
    shown.append(("after temperature scaling" if shown else "model", probs, "C0", "-"))
    prepared = [(prepare_scores(y, pr, multilabel), label, colour, style) for label, pr, colour, style in shown]
    fig = _figure((5.5, 6.5))
    ax, ax_hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    ax.plot([0, 1], [0, 1], ":", color="0.6", lw=1, label="perfect calibration")
    for (truth, p, kind), label, colour, style in prepared:
        pairs = confidence_pairs(truth, p, kind)
        conf, outcome = np.concatenate([c for c, _ in pairs]), np.concatenate([o for _, o in pairs])
        count, mean_conf, freq = calibration_bins(conf, outcome, bins)
        ok = count > 0
        ax.plot(mean_conf[ok], freq[ok], style, color=colour, marker="o", ms=4,
                label=f"{label} (ECE = {ece_of_pairs(pairs, bins):.3f})")
        ax_hist.stairs(safe_div(count, count.sum()), np.linspace(0, 1, bins + 1), color=colour, ls=style, lw=1.5)
    what = {"binary": "positive-class probability", "multiclass": "confidence (top-label probability)",
            "multilabel": "predicted probability (all classes)"}[prepared[0][0][2]]
    ax.set(title="Reliability", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax_hist.set(xlabel=what, ylabel="fraction of cases")
    ax_hist.grid(alpha=0.3)
    return _save(fig, out_png)


def plot_confusion(matrix: Any, class_names: Sequence[str], out_png: str | Path) -> Path:
    """Confusion matrix: counts in the cells, colour by the fraction of the row (rows = truth).

    Args:
        matrix: ``(K, K)`` counts, rows = truth, columns = prediction (``classification_metrics(...)
            ["confusion_matrix"]``; for one multi-label class, its ``[[tn, fp], [fn, tp]]`` with names
            such as ``["absent", "present"]``).
        class_names: ``K`` names.
        out_png: PNG written atomically.

    Returns:
        ``out_png``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    k = len(class_names)
    if m.shape != (k, k) or not np.all(np.isfinite(m)) or (m < 0).any():
        raise user_error(f"a ({k}, {k}) matrix of counts for {k} class names", f"shape {m.shape}", None,
                         "pass the confusion_matrix of classification_metrics and its class_names")
    frac = safe_div(m, m.sum(axis=1, keepdims=True))
    frac = np.where(np.isfinite(frac), frac, 0.0)
    side = max(4.0, 0.6 * k + 2.5)
    fig = _figure((side + 1.0, side))
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the row (truth)")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=9,
                    color="white" if frac[i, j] > 0.5 else "black")
    ticks = np.arange(k)
    ax.set_xticks(ticks, [str(c) for c in class_names], rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(ticks, [str(c) for c in class_names])
    ax.set(xlabel="predicted", ylabel="truth", title="Confusion matrix")
    return _save(fig, out_png)
