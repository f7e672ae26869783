"""Joint segmentation + classification: plan -> preprocess -> train folds -> validate -> calibrate -> report.

Run-folder layout::

    RUN/plans.json  splits.json  config.json  preprocessed/ (the segmentation cache)
        fold_<k>/{checkpoint_best.pt, checkpoint_last.pt, metrics.csv, curves.png, calibration.json,
                  validation/{<case>.nii.gz, per_case.csv, summary.json, predictions.csv}}
        validation/{per_case.csv, summary.json (segmentation), metrics.json, predictions.csv, roc.png, ... (classification)}
        calibration.json  summary.json  report.html

After each fold its validation cases are predicted at native geometry (mirror TTA): masks are scored as in
segmentation, and a temperature is fitted to the class logits. When folds have finished, the masks are pooled and
the connected-component postprocessing decided per label (as in segmentation); the calibrated class probabilities are pooled
and the decision threshold chosen (as in classification).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.atomic import write_text
from medsight.core.tables import json_safe
from medsight.data.dataset import load_case
from medsight.data.fingerprint import compute_fingerprint
from medsight.data.splits import load_or_create_splits
from medsight.engine.config import RunOptions
from medsight.engine.folds import train_folds
from medsight.engine.run import BEST, fold_temperatures
from medsight.engine.run import fold_dir as run_fold_dir
from medsight.errors import user_error
from medsight.io import read_image, strip_suffix, write_image
from medsight.metrics.auc import macro_auc
from medsight.metrics.classification import fit_temperature
from medsight.metrics.summary import SegmentationEvaluator, rows_to_csv
from medsight.tasks.classification.pipeline import (
    decide_thresholds,
    predictions_csv,
    read_predictions,
    write_evaluation,
)
from medsight.tasks.classification.trainer import probabilities
from medsight.tasks.multitask.data import MultitaskDataset, load_multitask_dataset
from medsight.tasks.multitask.plan import MultitaskPlan, load_multitask_plan, make_multitask_plan
from medsight.tasks.multitask.predict import MultitaskPredictor
from medsight.tasks.multitask.report import write_multitask_report
from medsight.tasks.multitask.sampler import MultitaskCache
from medsight.tasks.multitask.trainer import MultitaskTrainer
from medsight.tasks.segmentation.pipeline import default_base_filters, mean_dice_of
from medsight.transforms.cache import preprocess_dataset
from medsight.transforms.postprocess import decide_component_rules, postprocess_labels

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


def plan_multitask(dataset: str | Path, out: str | Path, *, label_from_name: str | None = None, base_filters: int | None = None,
                   max_size: int | None = None, loss_weighting: str = "uncertainty", heatmap: bool = False,
                   tasks: list[str] | None = None, progress: Callable[[int, int], None] | None = None) -> MultitaskPlan:
    """Fingerprint a multi-task dataset and write ``out/plans.json`` (``out`` is a run folder or a .json path).

    Args:
        dataset: a dataset folder or dataset.json with masks and classes (see :mod:`medsight.tasks.multitask.data`).
        out: run folder or plans.json path.
        label_from_name: take the classes from the file names with this pattern.
        base_filters: DynUNet width (default 32 with a GPU, 16 on a CPU).
        max_size: longest side of the network input in voxels (default by dimensionality and device).
        loss_weighting: ``uncertainty`` (learned) or ``fixed``.
        heatmap: also train the lesion-centre heat-map head.
        tasks: the heads to train (overrides ``heatmap``); default segmentation and classification.
        progress: ``progress(done, total)`` while fingerprinting.
    """
    import torch

    data = load_multitask_dataset(dataset, label_from_name=label_from_name)
    fp = compute_fingerprint(data.spec, progress=progress)
    counts = [int(c) for c in np.bincount(list(data.classes.values()), minlength=len(data.class_names))]
    tasks = tasks or ["segmentation", "classification", *(["heatmap"] if heatmap else [])]
    plan = make_multitask_plan(fp, dataset=data.spec.name, labels=data.spec.labels, class_names=data.class_names,
                               class_counts=counts, binary_masks=data.spec.binary_masks,
                               base_filters=base_filters or default_base_filters(), max_size=max_size,
                               gpu=torch.cuda.is_available(), tasks=tasks, loss_weighting=loss_weighting,
                               label_from_name=label_from_name, supervision=data.supervision())
    out = Path(out)
    plan.save(out if out.suffix == ".json" else out / "plans.json")
    return plan


def _run_plan(dataset: str | Path, run: Path, plan_path: str | Path | None, planning: dict[str, Any]) -> MultitaskPlan:
    target = run / "plans.json"
    if plan_path is not None:
        plan = load_multitask_plan(plan_path)
        plan.save(target)
        return plan
    if target.is_file():
        return load_multitask_plan(target)
    return plan_multitask(dataset, run, **planning)


def train_multitask(dataset: str | Path, run_dir: str | Path, *, folds: list[int] | str = "0", config: RunOptions | None = None,
                    plan_path: str | Path | None = None, num_folds: int = 5, progress: Progress | None = None,
                    **planning: Any) -> dict[str, Any]:
    """Train one or more folds of a multi-task dataset into ``run_dir``; returns the run summary.

    Args:
        dataset: a dataset with masks and classes (see :mod:`medsight.tasks.multitask.data`).
        run_dir: output folder; ``plans.json`` and ``splits.json`` are created or reused there.
        folds: fold indices, or ``"all"`` (every case, no validation).
        config: run-time options (epochs or time budget, seed, device, resume).
        plan_path: use this plans.json instead of planning.
        num_folds: folds of the cross-validation split (stratified by class and by mask presence).
        progress: callback receiving progress events.
        **planning: options of :func:`plan_multitask` when the run has no plan yet.
    """

    config = config or RunOptions()
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    plan = _run_plan(dataset, run, plan_path, planning)
    data = load_multitask_dataset(dataset, label_from_name=plan.label_from_name)
    if data.class_names != plan.class_names or set(data.spec.labels.values()) != set(plan.labels.values()):
        raise user_error(f"the plan's classes {plan.class_names} and labels {plan.labels}",
                         f"{data.class_names} and {data.spec.labels}", run / "plans.json", "re-plan for this dataset (delete plans.json)")

    def pp(done: int, total: int) -> None:
        if progress:
            progress({"kind": "preprocess", "done": done, "total": total})

    ids = preprocess_dataset(data.spec, plan.segmentation_plan(), run / "preprocessed", progress=pp)
    strata = [f"{data.classes.get(c, -1)}/{data.has_mask(c)}" for c in ids]
    splits = load_or_create_splits(run / "splits.json", ids, k=num_folds, strata=strata)
    write_text(run / "config.json", json.dumps({"dataset": str(Path(dataset).resolve()), "task": "multitask",
                                                "train": asdict(config)}, indent=2))
    cache = MultitaskCache(run / "preprocessed", ids, data.classes)

    def train_one(fold: int | str, where: Path, train_ids: list[str], val_ids: list[str]) -> dict[str, Any]:
        res = MultitaskTrainer(plan, cache, train_ids, val_ids, where, config, progress=progress).fit()
        if val_ids:
            res["validation"] = validate_fold(data, run, where, val_ids, device=config.device)
        return res

    results = train_folds(run, folds, ids, splits, train_one, progress=progress)
    summary = finalize_multitask(data, run, num_folds=len(splits))
    summary["trained_now"] = results
    return summary


def validate_fold(data: MultitaskDataset, run: Path, fold_dir: Path, val_ids: list[str], *,
                  device: str | None = None) -> dict[str, Any]:
    """Predict the fold's validation cases at native geometry (mirror TTA): masks scored, temperature fitted."""

    plan = load_multitask_plan(run / "plans.json")
    plan = plan.with_changes(postprocessing={**plan.postprocessing, "largest_component": [], "components": {}})  # raw masks
    pred = MultitaskPredictor.from_checkpoints([fold_dir / BEST], plan=plan, device=device)
    out = fold_dir / "validation"
    out.mkdir(parents=True, exist_ok=True)
    ev = SegmentationEvaluator(plan.labels)
    logits, y, names = [], [], []
    for cid in val_ids:
        case = load_case(data.spec, data.spec.case(cid))
        res = pred.predict_case(case)
        if res.labels is not None:
            write_image(res.labels, out / f"{cid}.nii.gz")
            if case.label_array is not None:
                ev.add(cid, res.labels.array[0], case.label_array, spacing=case.image.spacing)
        if res.logits is not None and cid in data.classes:
            logits.append(res.logits[0])
            y.append(data.classes[cid])
            names.append(cid)
    result: dict[str, Any] = {"cases": len(val_ids)}
    if len(ev):
        write_text(out / "per_case.csv", rows_to_csv(ev.rows))
        seg_summary = ev.summary()
        write_text(out / "summary.json", json.dumps(json_safe(seg_summary), indent=2))
        result["mean_dice"] = mean_dice_of(seg_summary)
    temperature = 1.0
    if names:
        z, t = np.stack(logits), np.asarray(y)
        temperature = fit_temperature(z, t)
        probs = probabilities(z, False, temperature)
        view = plan.classification_view()
        write_text(out / "predictions.csv", predictions_csv(names, probs, view, labels=t, thresholds=None, logits=z))
        result["auc"] = macro_auc(t, probs, False)
    write_text(fold_dir / "calibration.json", json.dumps({"temperature": temperature, "cases": len(names)}, indent=2))
    result["temperature"] = temperature
    return result


def _pool_segmentation(data: MultitaskDataset, run: Path, plan: MultitaskPlan, done: list[int]) -> tuple[MultitaskPlan, dict[str, Any]]:

    pooled, spacing = {}, {}
    for k in done:
        for f in sorted((run_fold_dir(run, k) / "validation").glob("*.nii.gz")):
            cid = strip_suffix(f)
            if cid in {c.case_id for c in data.spec.cases} and data.has_mask(cid):
                case = load_case(data.spec, data.spec.case(cid))
                if case.label_array is not None:
                    pooled[cid] = (read_image(f).array[0], case.label_array)
                    spacing[cid] = case.image.spacing
    decision = decide_component_rules(pooled.values(), [v for v in plan.labels.values() if v != 0],
                                      allowed=bool(plan.postprocessing.get("allowed", True)))
    plan = plan.with_changes(postprocessing=decision)
    ev = SegmentationEvaluator(plan.labels)
    for cid, (p, r) in pooled.items():
        ev.add(cid, postprocess_labels(p, decision), r, spacing=spacing[cid])
    write_text(run / "validation" / "per_case.csv", rows_to_csv(ev.rows))
    summary = ev.summary()
    write_text(run / "validation" / "summary.json", json.dumps(json_safe(summary), indent=2))
    per_label = {name: lab["metrics"]["dice"]["mean"] for name, lab in summary.get("labels", {}).items()}
    return plan, {"cases": len(pooled), "mean_dice": mean_dice_of(summary), "per_label_dice": per_label, "postprocessing": decision}


def _pool_classification(run: Path, plan: MultitaskPlan, done: list[int]) -> dict[str, Any]:

    view = plan.classification_view()
    folds = [read_predictions(run_fold_dir(run, k) / "validation" / "predictions.csv", view) for k in done]
    ids = [case for fold in folds for case in fold[0]]
    P, Y = np.concatenate([fold[1] for fold in folds]), np.concatenate([fold[2] for fold in folds])
    thresholds = decide_thresholds(view, P, Y)
    metrics = write_evaluation(run / "validation", ids, P, Y, view, thresholds)
    return {"thresholds": thresholds, **{k: metrics.get(k) for k in ("n", "auc", "accuracy", "balanced_accuracy", "f1",
                                                                       "sensitivity", "specificity", "ece", "ci95")}}


def finalize_multitask(data: MultitaskDataset, run: Path, *, num_folds: int) -> dict[str, Any]:
    """Pool the folds' validation predictions: postprocessing, thresholds, metrics of both tasks, summary, report."""

    plan = load_multitask_plan(run / "plans.json")
    seg_done = [k for k in range(num_folds) if (run_fold_dir(run, k) / "validation" / "summary.json").is_file()]
    cls_done = [k for k in range(num_folds) if (run_fold_dir(run, k) / "validation" / "predictions.csv").is_file()]
    summary: dict[str, Any] = {"dataset": plan.dataset, "task": "multitask", "tasks": plan.tasks, "num_folds": num_folds,
                               "folds_with_validation": sorted(set(seg_done) | set(cls_done)), "plan": str(run / "plans.json"),
                               "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    temps = fold_temperatures(run)
    calibration: dict[str, Any] = {"temperature": temps, "thresholds": None, "method": plan.threshold_method}
    if seg_done:
        plan, summary["segmentation"] = _pool_segmentation(data, run, plan, seg_done)
        plan.save(run / "plans.json")
    if cls_done:
        summary["classification"] = _pool_classification(run, plan, cls_done)
        calibration["thresholds"] = summary["classification"]["thresholds"]
    write_text(run / "calibration.json", json.dumps(json_safe(calibration), indent=2))
    write_text(run / "summary.json", json.dumps(json_safe(summary), indent=2))
    write_multitask_report(run)
    return summary


__all__ = ["finalize_multitask", "plan_multitask", "train_multitask", "validate_fold"]
