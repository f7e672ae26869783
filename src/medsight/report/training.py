"""What a report and a model card derive from a fold's ``metrics.csv``: epochs, training time, best epoch, and
whether validation was still improving when training stopped.

``metrics.csv`` has one row per epoch; its ``seconds`` column is the *cumulative* wall time of the fold at the end of
that epoch (training and validation, carried over a resume), so the fold's time is its last value and an epoch's
time is the difference to the row before. Summing the column counts the early epochs again and again (79 + 134 +
178 s is not a 6 min fold but a 2 min 58 s one).

The score is the column the trainer selected ``checkpoint_best.pt`` by (``val_score`` for multi-task runs, then
``val_dice``, ``val_auc``, ``val_coverage``); validation may run every N epochs only, so blank scores are skipped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsight.engine.curves import read_metrics_csv
from medsight.engine.run import fold_paths

#: selection columns in the order a trainer uses them (the first one present picks checkpoint_best.pt)
SELECTION_SCORES: dict[str, str] = {"val_score": "validation score (mean of the tasks' scores)", "val_dice": "Dice",
                                    "val_auc": "AUC", "val_coverage": "coverage"}

#: the "train longer" rule: over the last TAIL_FRACTION of the validated epochs (at least MIN_TAIL of them), a
#: least-squares line through the score rises by at least MIN_GAIN (score units) from the first to the last of them
TAIL_FRACTION = 0.5
MIN_TAIL = 3
MIN_GAIN = 0.01
RULE = (f"validation counts as still improving when a straight line fitted to the score over the last "
        f"{int(TAIL_FRACTION * 100)} % of the validated epochs (at least {MIN_TAIL}) rises by {MIN_GAIN} or more "
        "across them")


@dataclass(frozen=True)
class FoldTraining:
    """One fold's training as ``metrics.csv`` records it (arrays are per row; NaN where a cell is blank)."""

    fold: str
    epoch: np.ndarray
    seconds: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    score: np.ndarray
    score_column: str

    @property
    def epochs(self) -> int:
        """Epochs trained: the last epoch number (the row count when the column is missing)."""
        ok = self.epoch[np.isfinite(self.epoch)]
        return int(ok[-1]) if ok.size else int(self.score.size)

    @property
    def total_seconds(self) -> float | None:
        """Wall time of the fold: the last cumulative value, never the sum."""
        ok = self.seconds[np.isfinite(self.seconds)]
        return float(ok[-1]) if ok.size else None

    @property
    def epoch_seconds(self) -> np.ndarray:
        """Wall time of each epoch (differences of the cumulative column; the first epoch is its own value)."""
        return np.diff(self.seconds, prepend=0.0)

    @property
    def seconds_per_epoch(self) -> float | None:
        total = self.total_seconds
        return total / self.epochs if total is not None and self.epochs else None

    @property
    def best_index(self) -> int | None:
        """Row of the best score: the first maximum, as the trainer keeps the first epoch that reached it."""
        return int(np.nanargmax(self.score)) if np.isfinite(self.score).any() else None

    @property
    def best_epoch(self) -> int | None:
        i = self.best_index
        if i is None:
            return None
        return int(self.epoch[i]) if math.isfinite(self.epoch[i]) else i + 1

    @property
    def best_score(self) -> float | None:
        i = self.best_index
        return None if i is None else float(self.score[i])

    def last(self, values: np.ndarray) -> float | None:
        ok = values[np.isfinite(values)]
        return float(ok[-1]) if ok.size else None

    @property
    def score_name(self) -> str:
        return SELECTION_SCORES.get(self.score_column, self.score_column)


def selection_column(columns: Sequence[str] | set[str]) -> str | None:
    """The score column of a ``metrics.csv`` with these columns (None when it has no validation score)."""
    return next((c for c in SELECTION_SCORES if c in columns), None)


def read_fold_training(path: str | Path) -> FoldTraining:
    """Read a fold's ``metrics.csv`` (raises :class:`~medsight.errors.MedsightError` when it cannot be read)."""
    path = Path(path)
    d = read_metrics_csv(path)
    n = max((len(v) for v in d.values()), default=0)
    nan = np.full(n, np.nan)
    column = selection_column(set(d))
    epoch = d.get("epoch", np.arange(1, n + 1, dtype=float))
    return FoldTraining(fold=path.parent.name, epoch=epoch, seconds=d.get("seconds", nan), train_loss=d.get("train_loss", nan),
                        val_loss=d.get("val_loss", nan), score=d[column] if column else nan, score_column=column or "")


def fold_csvs(run_dir: str | Path) -> list[Path]:
    """The run's ``fold_*/metrics.csv`` files in fold order (``fold_2`` before ``fold_10``)."""

    def key(p: Path) -> tuple[int, str]:
        m = re.search(r"(\d+)$", p.parent.name)
        return (int(m.group(1)) if m else 10**6, p.parent.name)

    return sorted((p for p in fold_paths(Path(run_dir), "metrics.csv") if p.is_file()), key=key)


@dataclass(frozen=True)
class Trend:
    """The verdict of the "train longer" rule on one fold: ``improving`` is None when there are too few points."""

    improving: bool | None
    gain: float | None
    epochs: int

    def sentence(self, fold: str) -> str:
        if self.improving is None:
            return (f"{fold}: only {self.epochs} validated epoch(s), too few to tell whether validation had levelled "
                    "off; train longer to see.")
        if self.improving:
            return (f"{fold}: validation was still improving at the end (+{self.gain:.3f} over the last "
                    f"{self.epochs} validated epochs): train longer.")
        return (f"{fold}: validation had levelled off ({self.gain:+.3f} over the last {self.epochs} validated "
                "epochs): more epochs are unlikely to help much.")


def still_improving(epochs: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray) -> Trend:
    """Apply the "train longer" rule (:data:`RULE`) to a validation curve (blank scores skipped).

    Args:
        epochs: epoch numbers.
        scores: validation scores, higher is better (NaN where not validated).

    Returns:
        The :class:`Trend`: ``gain`` is the fitted line's rise across the tail, in score units.
    """
    e, s = np.asarray(epochs, dtype=float), np.asarray(scores, dtype=float)
    ok = np.isfinite(e) & np.isfinite(s)
    e, s = e[ok], s[ok]
    tail = max(MIN_TAIL, int(math.ceil(TAIL_FRACTION * e.size)))
    if e.size < MIN_TAIL:
        return Trend(None, None, int(e.size))
    e, s = e[-tail:], s[-tail:]
    slope = float(np.polyfit(e, s, 1)[0]) if np.ptp(e) > 0 else 0.0
    gain = slope * float(e[-1] - e[0])
    return Trend(gain >= MIN_GAIN, gain, int(e.size))


__all__ = ["RULE", "SELECTION_SCORES", "FoldTraining", "Trend", "fold_csvs", "read_fold_training", "selection_column",
           "still_improving"]
