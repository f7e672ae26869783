"""Multi-task end to end on tiny synthetic data: partial-label batches, train (CLI, 2D; library, 3D), predict both
outputs, evaluate and report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medsight.cli.app import main
from medsight.engine.config import RunOptions
from medsight.io import read_image
from medsight.tasks.multitask.data import load_multitask_dataset
from medsight.tasks.multitask.pipeline import plan_multitask, train_multitask
from medsight.tasks.multitask.predict import predict_multitask
from medsight.tasks.multitask.sampler import MultitaskCache, MultitaskSampler
from medsight.tasks.multitask.synthetic import write_multitask_dataset
from medsight.transforms.cache import preprocess_dataset


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_sampler_marks_missing_labels(tmp_path: Path) -> None:
    root = write_multitask_dataset(tmp_path / "mt", num_cases=4, shape=(24, 24), without_mask=(0,), without_class=(1,))
    plan = plan_multitask(root, tmp_path / "run", base_filters=4, heatmap=True)
    data = load_multitask_dataset(root)
    ids = preprocess_dataset(data.spec, plan.segmentation_plan(), tmp_path / "cache", workers=1)
    cache = MultitaskCache(tmp_path / "cache", ids, data.classes)
    sampler = MultitaskSampler(cache, ids, tuple(plan.patch_size), 12, augment=plan.augment, heatmap_sigma=2.0, seed=0)
    batch = sampler.next_batch()
    assert batch["image"].shape == (12, 1, 24, 24) and batch["label"].shape == (12, 1, 24, 24)
    no_mask, has_class = ~batch["has_mask"], batch["class"] >= 0
    assert no_mask.any() and (~has_class).any()
    assert batch["label"][no_mask].sum() == 0 and batch["heatmap"][no_mask].sum() == 0
    assert batch["heatmap"][batch["has_mask"]].amax() == 1.0  # a peak at each (augmented) structure's centre
    assert set(batch["class"].tolist()) <= {-1, 0, 1}


@pytest.mark.slow
def test_cli_train_predict_report_2d(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_multitask_dataset(tmp_path / "mt", num_cases=7, shape=(32, 32), without_mask=(4,), without_class=(5,))
    run = tmp_path / "run"
    assert main(["-q", "train", str(root), "--task", "multitask", "--out", str(run), "--epochs", "2", "--base-filters", "4",
                 "--heatmap", "--fold", "0"]) == 0
    metrics = _rows(run / "fold_0" / "metrics.csv")
    assert [r["epoch"] for r in metrics] == ["1", "2"]
    assert {"val_dice", "val_auc", "val_score", "weight_segmentation", "weight_classification", "weight_heatmap"} <= set(metrics[0])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "multitask" and summary["segmentation"]["cases"] >= 1 and summary["classification"]["n"] >= 1
    assert (run / "validation" / "metrics.json").is_file() and (run / "validation" / "summary.json").is_file()
    html = (run / "report.html").read_text()
    assert "Grad-CAM of the classification head beside the predicted mask" in html and "Classification: cross-validated" in html
    assert any((run / "validation" / "gradcam").glob("*.png"))

    out = tmp_path / "pred"
    assert main(["-q", "predict", str(run), str(root / "images"), str(out), "--no-tta"]) == 0
    masks = sorted(out.glob("case_*.png"))
    assert [m.name for m in masks] == [f"case_{i:03d}.png" for i in range(7)]
    mask = read_image(masks[0])
    assert mask.shape == (32, 32) and set(np.unique(mask.array)) <= {0, 255}
    rows = _rows(out / "predictions.csv")
    assert len(rows) == 7 and rows[0]["file"].endswith("case_000.png") and rows[0]["pred"] in ("lesion", "normal")
    assert all(abs(float(r["prob_lesion"]) + float(r["prob_normal"]) - 1) < 1e-4 for r in rows)
    assert _rows(out / "lesions.csv") is not None

    scored = tmp_path / "scored"  # a labelled dataset as input: both metric sets
    assert main(["-q", "predict", str(run), str(root), str(scored), "--no-tta"]) == 0
    assert json.loads((scored / "metrics.json").read_text())["n"] == 6
    assert json.loads((scored / "summary.json").read_text())["n_cases"] == 6
    assert len(_rows(scored / "predictions.csv")) == 7  # every case, the one without a class included
    # predict scored the masks already (per_case.csv): evaluating into the same folder replaces it only when asked
    assert main(["-q", "evaluate", str(scored), str(root / "masks"), "--no-distances"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["-q", "evaluate", str(scored), str(root / "masks"), "--no-distances", "--overwrite"]) == 0
    assert main(["-q", "report", str(run)]) == 0
    capsys.readouterr()
    assert main(["-q", "explain", str(run), str(root / "images"), str(tmp_path / "explained")]) == 2  # not its task
    assert "Expected a segmentation or classification run, got a multitask run" in capsys.readouterr().err
    assert not (tmp_path / "explained").exists()


@pytest.mark.slow
def test_train_predict_3d_with_fixed_weights(tmp_path: Path) -> None:
    root = write_multitask_dataset(tmp_path / "mt3d", num_cases=6, shape=(12, 16, 16))
    run = tmp_path / "run"
    summary = train_multitask(root, run, folds=[0], num_folds=3, config=RunOptions(epochs=1, seed=0, device="cpu"),
                              base_filters=4, loss_weighting="fixed")
    assert summary["trained_now"]["0"]["validation"]["cases"] == 2
    assert "weight_segmentation" not in _rows(run / "fold_0" / "metrics.csv")[0]
    image = root / "images" / "case_001.nii.gz"
    written = predict_multitask(run, image, tmp_path / "pred", tta=False)
    pred, src = read_image(tmp_path / "pred" / "case_001.nii.gz"), read_image(image)
    assert pred.shape == src.shape and pred.same_geometry(src) and set(np.unique(pred.array)) <= {0, 1}
    assert written[0].name == "predictions.csv" and len(_rows(written[0])) == 1
