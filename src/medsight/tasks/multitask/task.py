"""The multitask :class:`~medsight.tasks.task.Task`: one shared U-Net encoder for segmentation and classification
(and lesion-centre heat maps)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medsight.errors import MedsightError
from medsight.tasks.multitask.pipeline import plan_multitask, train_multitask
from medsight.tasks.multitask.plan import MultitaskPlan, load_multitask_plan
from medsight.tasks.multitask.predict import predict_multitask
from medsight.tasks.multitask.report import write_multitask_report
from medsight.tasks.task import (
    CaseProgress,
    Options,
    PredictRequest,
    Task,
    TrainRequest,
    fold_summary_line,
    number,
)

PLANNING = ("label_from_name", "base_filters", "max_size", "loss_weighting", "heatmap")


def _planning(options: Options) -> dict[str, Any]:
    size = options.get("max_size")
    if size is not None and size < 8:
        raise MedsightError(f"Expected --max-size of at least 8 voxels, got {size}; e.g. --max-size 128")
    out: dict[str, Any] = {k: options[k] for k in PLANNING if options.get(k) is not None}
    out["heatmap"] = bool(options.get("heatmap"))
    out.setdefault("loss_weighting", "uncertainty")
    return out


def _plan(dataset: str, out: Path, options: Options, progress: CaseProgress | None) -> MultitaskPlan:
    return plan_multitask(dataset, out, **_planning(options), progress=progress)


def _train(request: TrainRequest, options: Options) -> dict[str, Any]:
    return train_multitask(request.dataset, request.run, folds=request.folds, config=request.config,
                           plan_path=request.plan_path, progress=request.progress, **_planning(options))


def training_lines(summary: Mapping[str, Any], run: Path) -> list[str]:
    lines = []
    for fold, res in summary.get("trained_now", {}).items():
        val = res.get("validation") or {}
        lines.append(fold_summary_line(fold, {**res, "stopped_early": False},
                                       f"; validation mean Dice {number(val.get('mean_dice'))}, AUC {number(val.get('auc'))} "
                                       f"on {val.get('cases')} cases" if val else ""))
    seg, cls = summary.get("segmentation") or {}, summary.get("classification") or {}
    if seg or cls:
        lines.append(f"validation (folds {summary['folds_with_validation']}): mean Dice {number(seg.get('mean_dice'))}  "
                     f"AUC {number(cls.get('auc'))}  accuracy {number(cls.get('accuracy'))}  thresholds {cls.get('thresholds')}")
    lines.append(f"run folder: {run}  (report: {run / 'report.html'})")
    return lines


def _predict(request: PredictRequest, options: Options) -> list[Path]:
    for flag, given in (("--engine onnx", request.engine != "torch"), ("--strict", request.strict),
                        ("--uncertainty", request.uncertainty)):
        if given:
            raise MedsightError(f"Expected {flag} only for segmentation or classification runs, got it for a multitask run; "
                                "drop it")
    return predict_multitask(request.run, request.input, request.output, folds=request.folds, device=request.device,
                             tta=request.tta, series_uid=request.series_uid,
                             save_probabilities=bool(options.get("save_probabilities")), progress=request.progress,
                             overwrite=request.overwrite)


def _report(run: Path, options: Options) -> Path:
    return write_multitask_report(run)


TASK = Task(
    name="multitask",
    summary="a mask and a class per case from one shared encoder",
    load_plan=load_multitask_plan,
    plan=_plan,
    train=_train,
    training_lines=training_lines,
    predict=_predict,
    report=_report,
    plan_options=frozenset(PLANNING),
    train_options=frozenset(PLANNING),
    predict_options=frozenset({"save_probabilities"}),
)

__all__ = ["TASK", "training_lines"]
