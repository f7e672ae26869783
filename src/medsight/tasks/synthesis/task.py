"""The synthesis :class:`~medsight.tasks.task.Task`: a conditional GAN trained on a dataset (``medsight synthesize
train``, or ``medsight train --task synthesis``); ``medsight synthesize sample`` draws new cases from it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medsight.tasks.synthesis.pipeline import train_gan
from medsight.tasks.synthesis.plan import load_gan_plan
from medsight.tasks.task import Options, Task, TrainRequest


def _train(request: TrainRequest, options: Options) -> dict[str, Any]:
    return train_gan(request.dataset, request.run, config=request.config, plan_path=request.plan_path,
                     progress=request.progress, prepare_progress=request.case_progress)


def training_lines(summary: Mapping[str, Any], run: Path) -> list[str]:
    return [f"{summary['kind']}-conditional GAN: {summary['epochs']} epochs in {summary['seconds']:.0f}s on "
            f"{summary['train_cases']} cases; sample grids in {run / 'samples'}", f"next: medsight synthesize sample {run} N OUT"]


TASK = Task(
    name="synthesis",
    summary="a conditional GAN that samples new cases for training",
    load_plan=load_gan_plan,
    train=_train,
    training_lines=training_lines,
)

__all__ = ["TASK", "training_lines"]
