"""Training curves: ``metrics.csv`` read back, and ``curves.png`` (loss and validation metrics against epochs) drawn
from one or more folds' files."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medsight.core.atomic import write_with
from medsight.core.tables import csv_float, read_csv_rows

log = logging.getLogger(__name__)


def read_metrics_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a trainer ``metrics.csv`` as float arrays (NaN for blanks); columns absent are left out."""
    rows = read_csv_rows(path, what="metrics.csv", fix="check the training run")
    columns = {k.strip() for r in rows for k in r if k}
    return {c: np.asarray([csv_float(r.get(c)) for r in rows], dtype=float) for c in columns}


# ---------------------------------------------------------------------------------------------- curves
def plot_curves(metrics_csv_paths: Sequence[str | Path], out_png: str | Path) -> Path:
    """Plot loss (train solid, validation dashed) and the validation score (Dice, or AUC for classification) against epoch, one colour per fold.

    Args:
        metrics_csv_paths: trainer ``metrics.csv`` files (columns ``epoch, train_loss, val_loss, val_dice,
            lr, seconds``; missing columns and blank cells are skipped). The legend names each by its folder.
        out_png: PNG written atomically.

    Returns:
        ``out_png``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), dpi=100)
    ax_loss, ax_dice = fig.subplots(1, 2)
    colours = [f"C{i}" for i in range(10)]
    plotted = 0
    tables = [(Path(p), read_metrics_csv(p)) for p in metrics_csv_paths]
    score = next((c for c in VAL_SCORES if any(c in d for _, d in tables)), "val_dice")
    for i, (p, data) in enumerate(tables):
        name = p.parent.name or p.stem
        n = max((len(v) for v in data.values()), default=0)
        epoch = data.get("epoch", np.arange(n, dtype=float))
        c = colours[i % len(colours)]
        for key, ax, style, tag in (("train_loss", ax_loss, "-", "train"), ("val_loss", ax_loss, "--", "val"),
                                    (score, ax_dice, "-", "")):
            y = data.get(key)
            if y is None:
                continue
            ok = np.isfinite(y) & np.isfinite(epoch)
            if ok.any():
                ax.plot(epoch[ok], y[ok], style, color=c, label=f"{name} {tag}".strip(), marker="." if ok.sum() < 30 else None)
                plotted += 1
    for ax, title, ylabel in ((ax_loss, "Loss", "loss"), (ax_dice, f"Validation {VAL_SCORES[score]}", VAL_SCORES[score])):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes, color="0.5")
    fig.tight_layout()
    log.debug("plotted %d curve(s) from %d file(s) to %s", plotted, len(metrics_csv_paths), out_png)
    return write_with(out_png, lambda tmp: fig.savefig(tmp, format="png"))


# the validation score plotted beside the losses: the first of these a metrics.csv has
VAL_SCORES = {"val_dice": "Dice", "val_auc": "AUC"}
