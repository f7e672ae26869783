"""The model card's training facts come from the same metrics.csv derivation as the report's (a real tiny run)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from medsight.report.html import fmt_seconds
from medsight.report.training import read_fold_training

pytestmark = pytest.mark.slow


def test_card_and_report_give_the_fold_time_as_the_last_cumulative_seconds(tiny_run: Path) -> None:
    with (tiny_run / "fold_0" / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    seconds = [float(r["seconds"]) for r in rows]
    assert len(rows) == 3 and seconds == sorted(seconds)  # cumulative
    card = json.loads((tiny_run / "model_card.json").read_text())
    fold = card["training"]["folds"]["0"]
    f = read_fold_training(tiny_run / "fold_0" / "metrics.csv")
    assert fold["epochs"] == 3 and fold["seconds"] == round(seconds[-1], 1) and fold["seconds"] < round(sum(seconds), 1)
    assert fold["best_epoch"] == f.best_epoch and fold["best_val_dice"] == f.best_score
    html = (tiny_run / "report.html").read_text()
    assert f"{fmt_seconds(seconds[-1])}" in html and 'id="headline"' in html
