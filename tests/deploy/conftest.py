"""Tiny runs trained once for the deployment tests (a few optimiser steps on synthetic data).

Tests that change a run copy it first (:func:`copy_run`). PyTorch runs on one thread here: on a CPU shared with other
processes its OpenMP threads wait on each other (a 2D forward pass took 1.4 s with 2 threads, 0.04 s with 1), which
would make these tests slow without testing anything more.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from medsight.data.synthetic import write_phantom_dataset
from medsight.engine.config import RunOptions

FAST = RunOptions(epochs=1, iterations_per_epoch=2, seed=0, device="cpu")


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a session run (for tests that tamper with it)."""
    shutil.copytree(run, dest)
    return dest


@pytest.fixture(scope="package")
def phantom3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 3D phantoms ``(16, 24, 20)`` (MR-like NIfTI, labels {0, 1, 2})."""
    return write_phantom_dataset(tmp_path_factory.mktemp("d3") / "phantom3d", num_cases=6, shape=(16, 24, 20), seed=0)


@pytest.fixture(scope="package")
def seg3d_run(phantom3d: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3D DynUNet (4 base filters) trained 2 steps on :func:`phantom3d`, fold 0."""
    from medsight.tasks.segmentation.pipeline import train

    run = tmp_path_factory.mktemp("r3") / "run"
    train(phantom3d, run, folds=[0], config=FAST, base_filters=4)
    return run


@pytest.fixture(scope="package")
def seg2d_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2D DynUNet trained 2 steps on six 64x64 PNG phantoms."""
    from medsight.tasks.segmentation.pipeline import train

    root = tmp_path_factory.mktemp("d2")
    ds = write_phantom_dataset(root / "phantom2d", num_cases=6, shape=(64, 64), seed=100, file_ending=".png")
    train(ds, root / "run", folds=[0], config=FAST, base_filters=4)
    return root / "run"


@pytest.fixture(scope="package")
def cls_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV of 24 grey 24x24 PNGs (a bright square or not) with an ``age`` column fused as a tabular input."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("cls")
    with (root / "cases.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label", "age"])
        for i in range(24):
            img = rng.normal(80, 12, (24, 24))
            if i % 2:
                y, x = rng.integers(2, 16, 2)
                img[y:y + 6, x:x + 6] += 90
            PILImage.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"img{i:02d}.png")
            w.writerow([f"img{i:02d}.png", "lesion" if i % 2 else "normal", 30 + i])
    return root / "cases.csv"


@pytest.fixture(scope="package")
def cls_run(cls_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN with a tabular branch trained 2 steps on :func:`cls_csv`, fold 0 (calibrated, thresholded)."""
    from medsight.tasks.classification.pipeline import train_classification

    run = tmp_path_factory.mktemp("rc") / "run"
    train_classification(cls_csv, run, folds=[0], config=FAST, network="smallcnn", tabular=["age"])
    return run
