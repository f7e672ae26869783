"""Learned registration: a few training steps on tiny phantoms, save/load, and applying the network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from medsight.cli.app import main
from medsight.data.synthetic import write_phantom_dataset
from medsight.engine.config import RunOptions
from medsight.tasks.registration.learned import (
    RegistrationPlan,
    jacobian_of_ddf,
    load_registration_model,
    network_grid,
    predict_transform,
    train_registration,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Five 14x18x15 phantoms and a run trained by ``medsight train --task registration`` for 2 epochs of 2 steps."""
    tmp_path = tmp_path_factory.mktemp("learned")
    data = write_phantom_dataset(tmp_path / "phantoms", num_cases=5, shape=(14, 18, 15), seed=3)
    run = tmp_path / "run"
    assert main(["-q", "train", str(data), "--task", "registration", "--out", str(run), "--epochs", "2", "--iterations", "2"]) == 0
    return data, run


def test_resume_after_the_last_epoch_trains_no_more(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = tiny_run
    before = (run / "fold_0" / "metrics.csv").read_text()
    summary = train_registration(data, run, config=RunOptions(epochs=2, iterations_per_epoch=2, resume=True), folds=[0])
    assert summary["trained_now"]["0"]["epochs"] == 2 and (run / "fold_0" / "metrics.csv").read_text() == before


def test_training_steps_give_finite_loss_and_a_loadable_checkpoint(tiny_run: tuple[Path, Path]) -> None:
    data, run = tiny_run
    plan = json.loads((run / "plans.json").read_text())
    assert plan["task"] == "registration" and plan["shape"] == [16, 24, 16]  # the largest case, rounded up to 8
    assert plan["atlas"] in json.loads((run / "splits.json").read_text())[0]["train"]
    rows = (run / "fold_0" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3
    losses = [float(r.split(",")[1]) for r in rows[1:]]
    assert all(np.isfinite(losses))
    model, loaded = load_registration_model(run)
    assert isinstance(loaded, RegistrationPlan) and loaded.atlas == plan["atlas"]
    x = torch.zeros(1, 1, *loaded.shape)
    warped, ddf = model(x, x)
    assert warped.shape == x.shape and ddf.shape == (1, 3, *loaded.shape)


def test_predicted_transform_is_a_displacement_field_on_the_network_grid(tiny_run: tuple[Path, Path]) -> None:
    from medsight.io import read_image

    data, run = tiny_run
    model, plan = load_registration_model(run / "fold_0" / "checkpoint_best.pt")
    fixed = read_image(data / "imagesTr" / "case_000_0000.nii.gz")
    moving = read_image(data / "imagesTr" / "case_001_0000.nii.gz")
    transform, similarity = predict_transform(model, plan, fixed, moving)
    assert np.isfinite(similarity)
    comp = sitk.CompositeTransform(transform)
    field = sitk.DisplacementFieldTransform(comp.GetNthTransform(1)).GetDisplacementField()
    assert field.GetSize() == tuple(plan.shape[::-1])
    grid = network_grid(fixed, plan.shape, plan.spacing)
    assert np.allclose(field.GetOrigin(), grid.origin)
    # the fixed grid's centre maps to the moving image's centre plus the predicted displacement (bounded)
    centre = fixed.affine @ np.append((np.asarray(fixed.shape) - 1) / 2, 1)
    moved = np.asarray(transform.TransformPoint(tuple(centre[:3])))
    target = moving.affine @ np.append((np.asarray(moving.shape) - 1) / 2, 1)
    assert np.linalg.norm(moved - target[:3]) < 5.0


def test_register_with_model_and_warp_the_saved_field(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = tiny_run
    fixed, moving = data / "imagesTr" / "case_002_0000.nii.gz", data / "imagesTr" / "case_003_0000.nii.gz"
    out = tmp_path / "reg"
    assert main(["register", "--model", str(run), str(fixed), str(moving), str(out),
                 "--moving-labels", str(data / "labelsTr" / "case_003.nii.gz"),
                 "--fixed-labels", str(data / "labelsTr" / "case_002.nii.gz")]) == 0
    report = json.loads((out / "registration.json").read_text())
    assert report["method"] == "learned" and report["transform"] == "transform.h5" and 0 <= report["folding_fraction"] <= 1
    assert set(report["dice"]) <= {"1", "2"}
    assert main(["warp", str(out / "transform.h5"), str(data / "labelsTr" / "case_003.nii.gz"), str(tmp_path / "w.nii.gz"),
                 "--reference", str(fixed), "--labels"]) == 0
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "w.nii.gz")))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "registered_labels.nii.gz")))
    assert np.array_equal(a, b)


def test_jacobian_of_a_pure_stretch_is_its_scale() -> None:
    z = np.arange(10, dtype=float)
    ddf = np.zeros((3, 10, 10, 10))
    ddf[0] = 0.5 * z[:, None, None]  # x -> 1.5 x along axis 0
    assert np.allclose(jacobian_of_ddf(ddf), 1.5)
    ddf[0] = -2.0 * z[:, None, None]  # folds: x -> -x
    assert np.all(jacobian_of_ddf(ddf) < 0)
