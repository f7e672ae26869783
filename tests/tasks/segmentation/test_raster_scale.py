"""Pictures without a pixel size (fundus photographs from another camera) are brought to the training scale, the
labels mapped back to their own grid, and nothing is foreground outside the field of view."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from medsight.core.case import Case
from medsight.engine.config import RunOptions
from medsight.io import read_image
from medsight.tasks.segmentation.pipeline import plan_dataset, predict, train
from medsight.tasks.segmentation.plan import Plan
from medsight.tasks.segmentation.predictor import Predictor


def _fundus(size: int, diameter: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey disc on a dark surround with bright 'vessels' (lines a few pixels wide, scaled with the disc)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    inside = np.hypot(yy - size / 2, xx - size / 2) < diameter / 2
    width = max(1.0, diameter / 40)
    vessels = np.zeros((size, size), bool)
    for _ in range(3):
        angle, offset = rng.uniform(0, np.pi), rng.uniform(-diameter / 4, diameter / 4)
        dist = np.abs((xx - size / 2) * np.sin(angle) - (yy - size / 2) * np.cos(angle) - offset)
        vessels |= dist < width
    vessels &= inside
    img = np.where(inside, 90 + 80 * vessels + rng.normal(0, 4, (size, size)), 4).clip(0, 255).astype(np.uint8)
    return img, vessels.astype(np.uint8)


@pytest.fixture
def fundus_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "fundus"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(4):
        img, lab = _fundus(64, 56, seed=i)
        PILImage.fromarray(img).save(root / "imagesTr" / f"case_{i:03d}_0000.png")
        PILImage.fromarray(lab).save(root / "labelsTr" / f"case_{i:03d}.png")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "fundus"},
                                                   "labels": {"background": 0, "vessel": 1},
                                                   "numTraining": 4, "file_ending": ".png"}))
    return root


def test_the_plan_records_the_field_of_view_and_prediction_rescales(fundus_dataset: Path, tmp_path: Path) -> None:
    plan = plan_dataset(fundus_dataset, tmp_path / "run")
    assert plan == Plan.load(tmp_path / "run" / "plans.json")
    extent = plan.fingerprint["full"]["extra"]["raster_extent"]
    assert extent["measure"] == "fov" and extent["pixels"] == pytest.approx(56, abs=2)
    predictor = Predictor(plan=plan, models=[], device=torch.device("cpu"))
    big, _ = _fundus(110, 95, seed=9)  # another camera: 1.7 times the resolution
    path = tmp_path / "big.png"
    PILImage.fromarray(big).save(path)
    case = Case(case_id="big", image=read_image(path), channel_names=("fundus",))
    scaled, region = predictor.to_training_scale(case)
    assert scaled.image.spacing[0] == pytest.approx(plan.target_spacing[0] * 56 / 95, rel=0.03)
    assert case.image.spacing == read_image(path).spacing  # the caller's case is not changed
    assert region is not None and not region[2, 2] and region[55, 55]
    same, _ = predictor.to_training_scale(Case(case_id="s", image=read_image(fundus_dataset / "imagesTr" /
                                                                              "case_000_0000.png"), channel_names=("f",)))
    assert same.image.spacing == read_image(fundus_dataset / "imagesTr" / "case_000_0000.png").spacing


@pytest.mark.slow
def test_a_photograph_at_another_resolution_comes_back_on_its_own_grid_with_nothing_outside_its_fov(
        fundus_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(fundus_dataset, run, folds=[0], config=RunOptions(epochs=1, iterations_per_epoch=2, seed=0, device="cpu"),
          base_filters=4)
    big, _ = _fundus(110, 95, seed=9)
    PILImage.fromarray(big).save(tmp_path / "big.png")
    (out,) = predict(run, tmp_path / "big.png", tmp_path / "pred")
    labels = read_image(out).array[0]
    assert labels.shape == (110, 110)
    yy, xx = np.mgrid[:110, :110]
    assert not labels[np.hypot(yy - 55, xx - 55) > 95 / 2].any()
