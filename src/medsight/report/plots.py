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


# ---------------------------------------------------------------------------------------------- run report figures
def figure_png(fig: Any) -> bytes:
    """PNG bytes of a figure (for pages that embed it, with nothing written to disk)."""
    import io

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_training(folds: Sequence[Any], out_png: str | Path) -> Path:
    """Training curves of a run's folds: loss and validation score against epochs, and the validation score
    against wall time (minutes since the fold started), one colour per fold.

    Args:
        folds: :class:`~medsight.report.training.FoldTraining` of each fold.
        out_png: PNG written atomically.

    Returns:
        ``out_png``.
    """
    fig = _figure((11, 3.6))
    ax_loss, ax_score, ax_time = fig.subplots(1, 3)
    name = next((f.score_name for f in folds if f.score_column), "validation score")
    for i, f in enumerate(folds):
        c = f"C{i % 10}"
        for values, style, tag in ((f.train_loss, "-", "train"), (f.val_loss, "--", "validation")):
            ok = np.isfinite(values) & np.isfinite(f.epoch)
            if ok.any():
                ax_loss.plot(f.epoch[ok], values[ok], style, color=c, label=f"{f.fold} {tag}")
        ok = np.isfinite(f.score) & np.isfinite(f.epoch)
        if ok.any():
            ax_score.plot(f.epoch[ok], f.score[ok], "-", color=c, marker="." if ok.sum() < 30 else None, label=f.fold)
            if f.best_index is not None:
                ax_score.plot([f.epoch[f.best_index]], [f.score[f.best_index]], "*", color=c, ms=10)
        ok &= np.isfinite(f.seconds)
        if ok.any():
            ax_time.plot(f.seconds[ok] / 60.0, f.score[ok], "-", color=c, marker="." if ok.sum() < 30 else None,
                         label=f.fold)
    for ax, title, xlabel, ylabel in ((ax_loss, "Loss", "epoch", "loss"),
                                      (ax_score, f"Validation {name} (star: best)", "epoch", name),
                                      (ax_time, f"Validation {name} against time", "wall time (min)", name)):
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.title.set_fontsize(10)
        ax.grid(alpha=0.3)
        _legend(ax, "best", "no data")
    return _save(fig, out_png)


def plot_uncertainty(scores: Sequence[float], dice: Sequence[float], review: Sequence[bool], threshold: float,
                     goal: float | None, *, measure: str = "uncertainty") -> bytes:
    """Scatter of each validation case's uncertainty score against its Dice, the review threshold as a vertical
    line (cases right of it are flagged) and the Dice goal as a horizontal one; PNG bytes.

    Args:
        scores: case scores (higher: less certain).
        dice: the cases' Dice.
        review: the cases' review flags (drawn as filled red markers).
        threshold: the score above which a case is flagged.
        goal: the Dice below which a case counts as failed (None: not drawn).
        measure: the score's name for the axis label.
    """
    s, d = np.asarray(scores, dtype=float), np.asarray(dice, dtype=float)
    flag = np.asarray(review, dtype=bool)
    fig = _figure((5.2, 3.8))
    ax = fig.subplots()
    ax.scatter(s[~flag], d[~flag], s=18, color="C0", label="not flagged")
    ax.scatter(s[flag], d[flag], s=22, color="C3", marker="D", label="flagged for review")
    ax.axvline(threshold, color="C3", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    if goal is not None:
        ax.axhline(goal, color="0.4", ls=":", lw=1, label=f"Dice goal {goal:.3g}")
    import textwrap

    ax.set(xlabel="\n".join(textwrap.wrap(f"case score: {measure}", 48)), ylabel="Dice",
           title="Uncertainty against Dice (validation cases)")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return figure_png(fig)
