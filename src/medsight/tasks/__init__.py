"""The tasks, one folder each with the same files, and the one table the commands above ask: :data:`TASKS`.

To add a task: write ``medsight/tasks/<name>/`` (its plan, trainer, pipeline, predict, report as it needs them, and a
``task.py`` that builds a :class:`~medsight.tasks.task.Task`), then add one line below. See docs/architecture.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsight.data.dataset import load_dataset
from medsight.engine.run import plan_task, read_plan_json
from medsight.errors import did_you_mean
from medsight.tasks.classification.task import TASK as CLASSIFICATION
from medsight.tasks.multitask.task import TASK as MULTITASK
from medsight.tasks.registration.task import TASK as REGISTRATION
from medsight.tasks.segmentation.task import TASK as SEGMENTATION
from medsight.tasks.synthesis.task import TASK as SYNTHESIS
from medsight.tasks.task import Task

TASKS: dict[str, Task] = {
    task.name: task for task in (SEGMENTATION, CLASSIFICATION, MULTITASK, REGISTRATION, SYNTHESIS)
}


def get_task(name: str) -> Task:
    """The task called ``name``, or a did-you-mean error."""
    if name not in TASKS:
        raise did_you_mean(name, TASKS, "task")
    return TASKS[name]


def task_of_dataset(dataset: str | Path) -> Task:
    """The task a dataset's labels call for (label maps -> segmentation, classes -> classification)."""
    return get_task(load_dataset(dataset).task)


def task_of_run(run: str | Path) -> Task:
    """The task a run (or an export of one) was trained for, from its ``plans.json``."""
    return get_task(plan_task(read_plan_json(run)))


def load_run_plan(run_or_plan: str | Path) -> Any:
    """The plan object of a run folder or a ``plans.json``, as its task loads it."""
    path = Path(run_or_plan)
    path = path / "plans.json" if path.is_dir() else path
    return task_of_run(path).load_plan(path)


__all__ = ["TASKS", "Task", "get_task", "load_run_plan", "task_of_dataset", "task_of_run"]
