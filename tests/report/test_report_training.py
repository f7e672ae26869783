"""What the report and the model card derive from metrics.csv: the fold's time (the last cumulative value, never the
sum), time per epoch, the best epoch by the trainer's selection column, and the "train longer" rule."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medsight.report.html import fmt_seconds
from medsight.report.run import training_section, write_report
from medsight.report.training import (
    MIN_GAIN,
    fold_csvs,
    read_fold_training,
    selection_column,
    still_improving,
)

from .conftest import METRICS, metrics_csv


def _fold(tmp_path: Path, text: str, name: str = "fold_0") -> Path:
    path = tmp_path / "run" / name / "metrics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_fold_time_is_the_last_cumulative_value(tmp_path: Path) -> None:
    f = read_fold_training(_fold(tmp_path, metrics_csv([(1, 0.9, 0.8, 0.5, 79), (2, 0.7, 0.6, 0.6, 134),
                                                       (3, 0.6, 0.5, 0.7, 178)])))
    assert f.total_seconds == 178.0 and f.epochs == 3
    assert f.epoch_seconds.tolist() == [79.0, 55.0, 44.0] and sum(f.epoch_seconds) == f.total_seconds
    assert f.seconds_per_epoch == pytest.approx(178 / 3)
    html = training_section(tmp_path / "run")
    assert f"{fmt_seconds(178)}" in html and f"{fmt_seconds(79 + 134 + 178)}" not in html and "59.3 s" in html


def test_best_epoch_skips_unvalidated_epochs_and_keeps_the_first_maximum(tmp_path: Path) -> None:
    """With val_every > 1 the score is blank on most rows; the trainer keeps the first epoch reaching the best."""
    text = ("epoch,train_loss,val_loss,val_dice,lr,seconds\n1,1.0,,,0.01,5\n2,0.9,0.8,0.6,0.01,11\n3,0.8,,,0.01,16\n"
            "4,0.7,0.7,0.7,0.01,22\n5,0.6,,,0.01,27\n6,0.5,0.6,0.7,0.01,33\n")
    f = read_fold_training(_fold(tmp_path, text))
    assert f.best_epoch == 4 and f.best_score == 0.7 and f.epochs == 6 and f.total_seconds == 33
    assert f.last(f.val_loss) == 0.6


def test_multitask_best_epoch_follows_val_score_not_val_dice(tmp_path: Path) -> None:
    """Multi-task checkpoints are selected by val_score (mean of Dice and AUC): the best epoch is that column's."""
    text = ("epoch,train_loss,val_loss,val_dice,val_auc,val_score,lr,seconds\n"
            "1,1.0,0.9,0.80,0.50,0.65,0.01,4\n2,0.9,0.8,0.70,0.90,0.80,0.01,8\n3,0.8,0.7,0.75,0.70,0.725,0.01,12\n")
    f = read_fold_training(_fold(tmp_path, text))
    assert f.score_column == "val_score" and f.best_epoch == 2 and f.best_score == 0.8
    assert selection_column({"val_auc", "val_loss"}) == "val_auc" and selection_column({"val_loss"}) is None


def test_fold_files_sort_by_number(tmp_path: Path) -> None:
    for k in (10, 2, 0):
        _fold(tmp_path, metrics_csv(METRICS[0]), f"fold_{k}")
    assert [p.parent.name for p in fold_csvs(tmp_path / "run")] == ["fold_0", "fold_2", "fold_10"]


@pytest.mark.parametrize(("scores", "expected"), [
    ([0.3, 0.4, 0.5, 0.58, 0.65, 0.71], True),            # still rising
    ([0.5, 0.7, 0.8, 0.801, 0.799, 0.800], False),        # flat over the last half
    ([0.5, 0.7, 0.8, 0.78, 0.76, 0.74], False),           # falling (over-fitting)
    ([0.5, 0.6], None),                                   # too few validated epochs to tell
])
def test_train_longer_rule(scores: list[float], expected: bool | None) -> None:
    trend = still_improving(np.arange(1, len(scores) + 1), scores)
    assert trend.improving is expected
    if expected is not None:
        assert trend.gain is not None and (trend.gain >= MIN_GAIN) is expected


def test_train_longer_rule_uses_validated_epochs_only() -> None:
    epochs = np.arange(1, 13)
    scores = np.full(12, math.nan)
    scores[1::2] = [0.5, 0.6, 0.7, 0.75, 0.8, 0.85]  # validated every second epoch, still rising
    trend = still_improving(epochs, scores)
    assert trend.improving is True and trend.epochs == 3
    assert "train longer" in trend.sentence("fold_0")


def test_report_states_the_rule_and_the_verdict_per_fold(tmp_path: Path) -> None:
    for k in (0, 1):
        _fold(tmp_path, metrics_csv(METRICS[k]), f"fold_{k}")
    html = write_report(tmp_path / "run").read_text()
    assert "fold_0: validation was still improving at the end" in html and "train longer" in html
    assert "fold_1: validation had levelled off" in html and "Rule: validation counts as still improving" in html
    # per fold 75 s and 60 s; the folds together 2m 15s
    assert f"{fmt_seconds(75)}" in html and f"{fmt_seconds(60)}" in html and f"{fmt_seconds(135)}" in html
    assert (tmp_path / "run" / "curves.png").is_file() and 'alt="training curves against epochs and wall time"' in html
