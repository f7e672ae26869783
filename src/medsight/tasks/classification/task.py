"""The classification :class:`~medsight.tasks.task.Task`: image or volume -> class probabilities (ResNet, DenseNet, a small
CNN, CNN-LSTM over slices, Vision Transformer), calibrated, with a threshold chosen on validation data."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medsight.engine.run import fold_name, fold_temperatures
from medsight.errors import user_error
from medsight.tasks.classification.explain import explain_classification
from medsight.tasks.classification.pipeline import (
    plan_classification,
    predict_classification,
    train_classification,
)
from medsight.tasks.classification.plan import ClassificationPlan, load_plan
from medsight.tasks.classification.report import write_classification_report
from medsight.tasks.task import (
    CaseProgress,
    Options,
    PredictRequest,
    Task,
    TrainRequest,
    fold_summary_line,
    number,
)


def columns(text: str | None) -> list[str] | None:
    """``"age, sex"`` -> ``["age", "sex"]`` (``--tabular``)."""
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def _plan(dataset: str, out: Path, options: Options, progress: CaseProgress | None) -> ClassificationPlan:
    return plan_classification(dataset, out, network=options.get("model"), tabular=columns(options.get("tabular")),
                               progress=progress)


def _train(request: TrainRequest, options: Options) -> dict[str, Any]:
    sensitivity, init_from = options.get("target_sensitivity"), options.get("init_from")
    if sensitivity is not None and not 0 < sensitivity < 1:
        raise user_error("--target-sensitivity in (0, 1)", sensitivity, None, "e.g. 0.9")
    if init_from and not Path(init_from).is_file():
        raise user_error("an existing checkpoint for --init-from", "no such file", init_from, "check the path")
    if sensitivity is not None and not (request.run / "plans.json").is_file() and not request.plan_path:
        plan = plan_classification(request.dataset, request.run, network=options.get("model"),
                                   tabular=columns(options.get("tabular")))
        plan.with_changes(target_sensitivity=sensitivity, threshold_method="sensitivity").save(request.run / "plans.json")
    return train_classification(request.dataset, request.run, folds=request.folds, config=request.config,
                                plan_path=request.plan_path, network=options.get("model"),
                                tabular=columns(options.get("tabular")), init_from=init_from,
                                freeze_encoder=bool(options.get("freeze_encoder")), progress=request.progress,
                                synthetic=options.get("synthetic"), synthetic_ratio=options.get("synthetic_ratio", 0.5),
                                devices=request.devices)


def training_lines(summary: Mapping[str, Any], run: Path) -> list[str]:
    lines = []
    for fold, res in summary.get("trained_now", {}).items():
        val = res.get("validation") or {}
        auc = val.get("auc")
        lines.append(fold_summary_line(fold, res, f"; validation AUC {auc:.4f} on {val.get('cases')} cases, temperature "
                                       f"{val.get('temperature'):.2f}" if auc is not None else ""))
    cv = summary.get("cross_validation")
    if cv:
        lines.append(f"validation ({cv.get('n')} cases, folds {summary['folds_with_validation']}): AUC {number(cv.get('auc'))}  "
                     f"accuracy {number(cv.get('accuracy'))}  balanced accuracy {number(cv.get('balanced_accuracy'))}  "
                     f"thresholds {summary.get('thresholds')}")
    lines.append(f"run folder: {run}  (report: {run / 'report.html'})")
    return lines


def _predict(request: PredictRequest, options: Options) -> list[Path]:
    return predict_classification(request.run, request.input, request.output, split=options.get("split"),
                                  folds=request.folds, device=request.device, tta=request.tta,
                                  series_uid=request.series_uid, progress=request.progress, engine=request.engine,
                                  strict=request.strict, overwrite=request.overwrite, uncertainty=request.uncertainty)


def _explain(state: dict[str, Any], checkpoint: Path, inp: Path, out: Path, options: Options) -> list[Path]:
    """Grad-CAM and/or occlusion; probabilities in the titles calibrated with the fold's temperature."""
    t = fold_temperatures(checkpoint.parent.parent).get(fold_name(checkpoint), 1.0)
    return explain_classification(state, inp, out, target=options.get("target"), method=options.get("method") or "both",
                                  device=options.get("device"), temperature=t)


def _report(run: Path, options: Options) -> Path:
    return write_classification_report(run, load_plan(run / "plans.json"))


TASK = Task(
    name="classification",
    summary="class probabilities per image or volume",
    load_plan=load_plan,
    plan=_plan,
    train=_train,
    training_lines=training_lines,
    predict=_predict,
    report=_report,
    explain=_explain,
    plan_options=frozenset({"model", "tabular"}),
    train_options=frozenset({"model", "tabular", "init_from", "freeze_encoder", "target_sensitivity", "synthetic",
                             "synthetic_ratio"}),
    predict_options=frozenset({"split"}),
    parallel_folds=True,
)

__all__ = ["TASK", "columns", "training_lines"]
