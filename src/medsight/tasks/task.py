"""What every task offers the commands above it, as one record: :class:`Task`.

A task is a folder under ``medsight/tasks/`` with the same files (``plan``, ``trainer``, ``pipeline``, ``predict`` or
``predictor``, ``report``, ``explain`` where it has them, and ``task.py``, which builds its :class:`Task`), and one entry
in :data:`medsight.tasks.TASKS`. The command line asks that table for the task of a dataset or a run and calls the
functions below; it never compares task names.

Options that only some tasks take (``--model``, ``--heatmap``, ``--dicom-seg``, ...) reach a task as a plain mapping
``options`` holding the ones the user gave; a task lists the names it accepts in ``plan_options``, ``train_options``
and ``predict_options``, and :func:`refuse_options` turns any other into one clear line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsight.engine.config import RunOptions
from medsight.errors import MedsightError

Options = Mapping[str, Any]
CaseProgress = Callable[[int, int], None]
TrainingProgress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainRequest:
    """One ``medsight train`` call, as the task receives it."""

    dataset: str
    run: Path
    folds: list[int] | str
    config: RunOptions
    plan_path: str | None = None
    devices: list[str] | None = None
    progress: TrainingProgress | None = None
    case_progress: CaseProgress | None = None


@dataclass(frozen=True)
class PredictRequest:
    """One ``medsight predict`` call, as the task receives it."""

    run: Path
    input: Path
    output: Path
    folds: list[int] | None = None
    device: str | None = None
    tta: bool = True
    series_uid: str | None = None
    engine: str = "torch"
    strict: bool = False
    overwrite: bool = False
    progress: CaseProgress | None = None
    uncertainty: bool = False  # also write uncertainty maps / scores and the review flag (segmentation, classification)


@dataclass(frozen=True)
class Task:
    """The entry points of one task.

    Attributes:
        name: the ``--task`` value and the ``task`` field of the run's ``plans.json``.
        summary: one line for ``--help`` and error messages.
        load_plan: ``plans.json`` path -> the task's plan object.
        train: ``(request, options) -> summary``; ``summary["trained_now"]`` maps fold -> result.
        training_lines: ``(summary, run) -> lines`` printed after training.
        plan: ``(dataset, out, options, progress) -> plan`` with a ``table()`` of (setting, value) rows, or ``None``
            when the task plans inside ``train``.
        predict: ``(request, options) -> files written``, or ``None``.
        report: ``(run, options) -> report.html``, or ``None``.
        explain: ``(checkpoint state, checkpoint path, input, out, options) -> files written``, or ``None``.
        plan_options, train_options, predict_options, report_options: the task-specific option names (``argparse`` dests) accepted.
        parallel_folds: whether ``--devices`` (folds side by side) is supported.
        synthetic: whether ``--synthetic`` (GAN samples in training batches) is supported.
    """

    name: str
    summary: str
    load_plan: Callable[[Path], Any]
    train: Callable[[TrainRequest, Options], dict[str, Any]]
    training_lines: Callable[[dict[str, Any], Path], list[str]]
    plan: Callable[[str, Path, Options, CaseProgress | None], Any] | None = None
    predict: Callable[[PredictRequest, Options], list[Path]] | None = None
    report: Callable[[Path, Options], Path] | None = None
    explain: Callable[[dict[str, Any], Path, Path, Path, Options], list[Path]] | None = None
    plan_options: frozenset[str] = frozenset()
    train_options: frozenset[str] = frozenset()
    predict_options: frozenset[str] = frozenset()
    report_options: frozenset[str] = frozenset()
    parallel_folds: bool = False


def refuse_options(task: Task, given: Options, accepted: Iterable[str], tasks: Iterable[Task], where: str) -> None:
    """One line for the first option in ``given`` that ``task`` does not take, naming the tasks that do."""
    allowed = set(accepted)
    for name in given:
        if name not in allowed:
            flag = "--" + name.replace("_", "-")
            takers = [t.name for t in tasks if name in t.plan_options | t.train_options | t.predict_options | t.report_options]
            raise MedsightError(f"Expected {flag} only with {' or '.join(takers) or 'no task'} in {where}, got it for a "
                                f"{task.name} task; drop {flag}" + (f" or pass --task {takers[0]}" if len(takers) == 1 else ""))


def fold_summary_line(fold: str, result: Mapping[str, Any], extra: str = "") -> str:
    """``fold 0: 12 epochs in 95s`` plus the task's validation figures."""
    stop = " (early stop)" if result.get("stopped_early") else ""
    return f"fold {fold}: {result['epochs']} epochs{stop} in {result['seconds']:.0f}s{extra}"


def number(value: Any) -> str:
    """A metric for a summary line: 4 decimals, ``macro`` of a per-class dict, or ``n/a``."""
    if isinstance(value, dict):
        value = value.get("macro")
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"
