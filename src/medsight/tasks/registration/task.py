"""The registration :class:`~medsight.tasks.task.Task` (``medsight train --task registration``): a VoxelMorph-style
deformable network, atlas to subject. Classical registration and warping are ``medsight register`` and ``warp``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medsight.tasks.registration.learned import load_registration_plan, train_registration
from medsight.tasks.task import Options, Task, TrainRequest, fold_summary_line


def _train(request: TrainRequest, options: Options) -> dict[str, Any]:
    return train_registration(request.dataset, request.run, config=request.config, folds=request.folds,
                              plan_path=request.plan_path, progress=request.progress,
                              prepare_progress=request.case_progress)


def training_lines(summary: Mapping[str, Any], run: Path) -> list[str]:
    lines = [fold_summary_line(fold, {**res, "stopped_early": False},
                               f"; best validation Dice {res['best_val_dice']:.4f} (atlas {summary['atlas']})")
             for fold, res in summary["trained_now"].items()]
    lines.append(f"run folder: {run}  (apply: medsight register --model {run} FIXED MOVING OUT_DIR)")
    return lines


TASK = Task(
    name="registration",
    summary="a deformable registration network (atlas to subject)",
    load_plan=load_registration_plan,
    train=_train,
    training_lines=training_lines,
)

__all__ = ["TASK", "training_lines"]
