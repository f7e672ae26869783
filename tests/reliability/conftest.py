"""Tiny trained runs shared by the reliability tests (trained once per session, a few seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsight.data.synthetic import write_phantom_dataset
from medsight.engine.config import RunOptions
from medsight.tasks.segmentation.pipeline import train


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``run3d``/``run2d``: one-epoch runs on phantoms; ``ref3d``: their 3D label folder; ``good3d``: a good image."""
    root = tmp_path_factory.mktemp("tiny_runs")
    ds3 = write_phantom_dataset(root / "ph3", num_cases=4, shape=(16, 20, 18), seed=3)
    ds2 = write_phantom_dataset(root / "ph2", num_cases=4, shape=(48, 48), seed=3, file_ending=".png")
    cfg = RunOptions(epochs=1, iterations_per_epoch=1, seed=0, device="cpu")
    train(ds3, root / "run3d", folds=[0], config=cfg, base_filters=4)
    train(ds2, root / "run2d", folds=[0], config=cfg, base_filters=4)
    return {"run3d": root / "run3d", "run2d": root / "run2d", "ref3d": ds3 / "labelsTr",
            "good3d": ds3 / "imagesTr" / "case_000_0000.nii.gz", "dataset3d": ds3}
