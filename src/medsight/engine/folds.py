"""The one fold loop of every task that cross-validates (segmentation, classification, multitask, registration)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from medsight.data.splits import fold_cases, fold_list
from medsight.engine import distributed
from medsight.engine.run import fold_dir

TrainOne = Callable[[int | str, Path, list[str], list[str]], dict[str, Any]]


def train_folds(run: str | Path, folds: list[int] | str | int, ids: list[str], splits: list[dict[str, list[str]]],
                train_one: TrainOne, *, progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, dict[str, Any]]:
    """Train each fold of ``folds`` in turn.

    Args:
        run: the run folder; fold ``k`` trains into ``RUN/fold_k`` (``fold_all`` for ``"all"``).
        folds: fold indices, or ``"all"`` (every case, no validation).
        ids: the case ids of the training pool; splits: the run's ``splits.json``.
        train_one: ``(fold, fold_dir, train_ids, val_ids) -> result`` (the task's trainer, then its validation).
        progress: receives ``{"kind": "fold", "fold", "train", "val"}`` before each fold.

    Returns:
        Fold name -> result, without the per-epoch ``history`` (it is in ``metrics.csv``). Under torchrun every rank
        runs every fold and waits for the others after each.
    """
    results: dict[str, dict[str, Any]] = {}
    for fold in fold_list(folds):
        train_ids, val_ids = fold_cases(fold, ids, splits, Path(run) / "splits.json")
        if progress:
            progress({"kind": "fold", "fold": fold, "train": len(train_ids), "val": len(val_ids)})
        result = train_one(fold, fold_dir(run, fold), train_ids, val_ids)
        result.pop("history", None)
        results[str(fold)] = result
        distributed.barrier()
    return results
