"""The segmentation :class:`~medsight.tasks.task.Task`: a self-configuring 2D/3D U-Net (nnU-Net style)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from medsight.errors import user_error
from medsight.report.html import case_index
from medsight.report.segmentation import write_segmentation_report
from medsight.tasks.segmentation.explain import explain_segmentation
from medsight.tasks.segmentation.pipeline import plan_dataset, predict, train
from medsight.tasks.segmentation.plan import Plan
from medsight.tasks.task import (
    CaseProgress,
    Options,
    PredictRequest,
    Task,
    TrainRequest,
    fold_summary_line,
    number,
)


def _plan(dataset: str, out: Path, options: Options, progress: CaseProgress | None) -> Plan:
    return plan_dataset(dataset, out, base_filters=options.get("base_filters"), voxel_budget=options.get("voxel_budget"),
                        progress=progress)


def _train(request: TrainRequest, options: Options) -> dict[str, Any]:
    config = request.config
    init_from, frozen = options.get("init_from"), options.get("freeze_encoder_epochs")
    if frozen and not init_from:
        raise user_error("--freeze-encoder-epochs together with --init-from", "no --init-from", None,
                         "add --init-from CKPT or drop --freeze-encoder-epochs")
    if frozen is not None and int(frozen) < 0:
        raise user_error("--freeze-encoder-epochs >= 0", frozen, None, "give a number of epochs")
    if init_from:
        if not Path(init_from).is_file():
            raise user_error("an existing checkpoint for --init-from", "no such file", init_from, "check the path")
        config = replace(config, init_from=str(init_from), freeze_encoder_epochs=int(frozen or 0))
    return train(request.dataset, request.run, folds=request.folds, config=config, plan_path=request.plan_path,
                 base_filters=options.get("base_filters"), progress=request.progress, synthetic=options.get("synthetic"),
                 synthetic_ratio=options.get("synthetic_ratio", 0.5), devices=request.devices)


def training_lines(summary: Mapping[str, Any], run: Path) -> list[str]:
    lines = []
    for fold, res in summary.get("trained_now", {}).items():
        val = res.get("validation") or {}
        md = val.get("mean_dice")
        lines.append(fold_summary_line(fold, res, f"; validation mean Dice {md:.4f} on {val.get('cases')} cases"
                                       if md is not None else ""))
    cv = summary.get("cross_validation")
    if cv and cv.get("mean_dice") is not None:
        lines.append(f"validation (folds {summary['folds_with_validation']}): mean Dice {number(cv['mean_dice'])} "
                     f"{cv['per_label_dice']}")
    lines.append(f"run folder: {run}  (report: {run / 'report.html'})")
    return lines


def _predict(request: PredictRequest, options: Options) -> list[Path]:
    return predict(request.run, request.input, request.output, tta=request.tta, folds=request.folds, device=request.device,
                   save_probabilities=bool(options.get("save_probabilities")), series_uid=request.series_uid,
                   progress=request.progress, dicom_seg=bool(options.get("dicom_seg")), engine=request.engine,
                   strict=request.strict, rtstruct=bool(options.get("rtstruct")), overwrite=request.overwrite,
                   uncertainty=request.uncertainty)


def _explain(state: dict[str, Any], checkpoint: Path, inp: Path, out: Path, options: Options) -> list[Path]:
    return explain_segmentation(state, inp, out, label=options.get("label"), device=options.get("device"))


def _report(run: Path, options: Options) -> Path:
    images = case_index(options["images"]) if options.get("images") else None
    references = case_index(options["references"]) if options.get("references") else None
    return write_segmentation_report(run, images=images, references=references)


def _load_plan(path: Path) -> Plan:
    return Plan.load(path)


TASK = Task(
    name="segmentation",
    summary="label maps per voxel (2D/3D U-Net, self-configured)",
    load_plan=_load_plan,
    plan=_plan,
    train=_train,
    training_lines=training_lines,
    predict=_predict,
    report=_report,
    explain=_explain,
    plan_options=frozenset({"base_filters", "voxel_budget"}),
    train_options=frozenset({"base_filters", "synthetic", "synthetic_ratio", "init_from", "freeze_encoder_epochs"}),
    predict_options=frozenset({"save_probabilities", "dicom_seg", "rtstruct"}),
    report_options=frozenset({"images", "references"}),
    parallel_folds=True,
)

__all__ = ["TASK", "training_lines"]
