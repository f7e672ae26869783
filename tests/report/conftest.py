"""A run folder built from synthetic files for the report tests: phantom images and references, predictions that
miss a little of each structure, per-case and pooled validation metrics from the real evaluator, the per-fold
``metrics.csv`` (cumulative ``seconds``), the plan, the run summary and the split. No training: seconds to build."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from medsight.core.atomic import write_text
from medsight.core.tables import json_safe
from medsight.data.synthetic import write_phantom_dataset
from medsight.io import read_image, write_image
from medsight.metrics.summary import SegmentationEvaluator, rows_to_csv
from medsight.report.html import case_index

LABELS = {"background": 0, "structure_1": 1, "structure_2": 2}
SHAPE = (12, 20, 16)
CASES = 8

#: fold_0 still rising at the end, fold_1 flat for its last half; seconds are cumulative (the fold's time is the last)
METRICS = {
    0: [(1, 1.2, 1.1, 0.30, 12.0), (2, 1.0, 0.9, 0.40, 25.0), (3, 0.8, 0.8, 0.50, 37.5), (4, 0.7, 0.7, 0.58, 50.0),
        (5, 0.6, 0.6, 0.65, 62.0), (6, 0.5, 0.55, 0.71, 75.0)],
    1: [(1, 1.2, 1.1, 0.50, 10.0), (2, 0.9, 0.8, 0.70, 20.0), (3, 0.7, 0.7, 0.80, 30.0), (4, 0.65, 0.65, 0.801, 40.0),
        (5, 0.62, 0.64, 0.799, 50.0), (6, 0.6, 0.63, 0.800, 60.0)],
}


@dataclass
class SyntheticRun:
    run: Path
    images: dict[str, Path]
    references: dict[str, Path]
    case_dice: dict[str, float]


def metrics_csv(rows: Sequence[Sequence[float]], *, columns: str = "epoch,train_loss,val_loss,val_dice,lr,seconds") -> str:
    lines = [columns] + [f"{e},{tl},{vl},{d},0.001,{s}" for e, tl, vl, d, s in rows]
    return "\n".join(lines) + "\n"


def _plans() -> dict:
    return {
        "dataset": "phantoms", "dims": 3, "channel_names": ["MRI"], "modalities": ["MR"], "labels": LABELS,
        "target_spacing": [1.0, 1.0, 1.0], "normalization": [{"scheme": "zscore"}], "patch_size": [12, 16, 16],
        "batch_size": 2, "network": {"name": "dynunet", "filters": [8, 16, 32], "deep_supervision": True},
        "training": {"optimizer": "adamw", "learning_rate": 0.002, "schedule": "cosine"},
        "postprocessing": {"largest_component": [1], "allowed": True, "decided": True},
        "fingerprint": {
            "summary": {"cases": CASES, "dims": 3, "median_spacing_mm": [1.0, 1.0, 1.0],
                        "spacing_range_mm": [[1.0, 1.0]] * 3, "median_shape": list(SHAPE),
                        "shape_range": [[s, s] for s in SHAPE], "channels": ["MRI (MR)"],
                        "label_fraction": {"0": 0.9, "1": 0.06, "2": 0.04}},
            "full": {"channels": [{"name": "MRI", "modality": "MR", "mean": 100.0, "std": 20.0, "p00_5": 50.0,
                                   "p99_5": 180.0}],
                     "label_voxels": {"0": 9000, "1": 600, "2": 400}, "label_cases": {"0": CASES, "1": CASES, "2": CASES},
                     "spacings": [[1.0, 1.0, 1.0]] * CASES},
        },
        "task": "segmentation",
    }


def build_run(root: Path, *, uncertainty: bool = False, heat: bool = False) -> SyntheticRun:
    """A two-fold run of :data:`CASES` phantoms under ``root`` (see the module docstring)."""
    ds = write_phantom_dataset(root / "ds", num_cases=CASES, shape=SHAPE, seed=3)
    images, references = case_index(ds / "imagesTr"), case_index(ds / "labelsTr")
    run = root / "run"
    ids = sorted(references)
    folds = {0: ids[0::2], 1: ids[1::2]}
    pooled = SegmentationEvaluator(LABELS, distances=True)
    for k, val in folds.items():
        vdir = run / f"fold_{k}" / "validation"
        vdir.mkdir(parents=True)
        ev = SegmentationEvaluator(LABELS, distances=True)
        for i, cid in enumerate(val):
            ref = read_image(references[cid])
            pred = ref.array[0].copy()
            zs = np.flatnonzero(pred.any(axis=(1, 2)))
            pred[zs[0]: zs[0] + 1 + i + k] = 0  # miss the first slices of the structures, more in later cases
            write_image(ref.with_array(pred[None]), vdir / f"{cid}.nii.gz")
            if heat:
                write_image(ref.with_array((pred[None] > 0).astype(np.float32) * 0.5 + 0.1), vdir / f"{cid}_uncertainty.nii.gz")
            for e in (ev, pooled):
                e.add(cid, pred, ref.array[0], spacing=ref.spacing)
        write_text(vdir / "per_case.csv", rows_to_csv(ev.rows))
        write_text(vdir / "summary.json", json.dumps(json_safe(ev.summary(bootstrap=100)), indent=2))
        write_text(run / f"fold_{k}" / "metrics.csv", metrics_csv(METRICS[k]))
    write_text(run / "validation" / "per_case.csv", rows_to_csv(pooled.rows))
    pooled_summary = pooled.summary(bootstrap=200)
    write_text(run / "validation" / "summary.json", json.dumps(json_safe(pooled_summary), indent=2))
    write_text(run / "plans.json", json.dumps(_plans(), indent=2))
    write_text(run / "splits.json", json.dumps([{"train": folds[1 - k], "val": folds[k]} for k in (0, 1)]))
    decision = {"largest_component": [1], "allowed": True, "decided": True,
                "dice_without": {"1": 0.80, "2": 0.78}, "dice_with": {"1": 0.82, "2": 0.77}}
    write_text(run / "summary.json", json.dumps({"dataset": "phantoms", "folds_with_validation": [0, 1], "num_folds": 2,
                                                 "postprocessing": decision}))
    dice: dict[str, list[float]] = {}
    for r in pooled.rows:
        dice.setdefault(str(r["case"]), []).append(float(r["dice"]))
    case_dice = {c: float(np.mean(v)) for c, v in dice.items()}
    if uncertainty:
        cases = [{"case": c, "fold": str(0 if c in folds[0] else 1), "score": round(1.0 - d, 4), "dice": d,
                  "review": 1.0 - d > 0.3} for c, d in case_dice.items()]
        write_text(run / "uncertainty.json", json.dumps(
            {"measure": "mean voxel entropy", "goal": {"dice_below": 0.7}, "threshold": 0.3, "spearman": -1.0,
             "auroc": 1.0, "n_failed": sum(d < 0.7 for d in case_dice.values()), "cases": cases}))
    return SyntheticRun(run, images, references, case_dice)


@pytest.fixture
def synthetic_run(tmp_path: Path) -> SyntheticRun:
    return build_run(tmp_path)


@pytest.fixture(scope="package")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 2D segmentation run: 3 epochs of 1 step on six 64x64 PNG phantoms, fold 0 (report and card written by
    training). One torch thread: on a shared CPU more threads wait on each other."""
    import torch

    from medsight.engine.config import RunOptions
    from medsight.tasks.segmentation.pipeline import train

    root = tmp_path_factory.mktemp("tiny")
    ds = write_phantom_dataset(root / "phantom2d", num_cases=6, shape=(64, 64), seed=100, file_ending=".png")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(ds, root / "run", folds=[0], config=RunOptions(epochs=3, iterations_per_epoch=1, seed=0, device="cpu"),
              base_filters=4)
    finally:
        torch.set_num_threads(threads)
    return root / "run"
