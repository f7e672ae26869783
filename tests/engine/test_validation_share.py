"""Under a wall-time budget, in-training validation takes at most ``VALIDATION_SHARE`` of the time trained so far;
the last epoch is always validated, and a fixed epoch count validates every ``val_every`` epochs as before."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from medsight.data.dataset import load_dataset
from medsight.data.synthetic import write_phantom_dataset
from medsight.engine.config import RunOptions
from medsight.tasks.segmentation.pipeline import plan_dataset
from medsight.tasks.segmentation.trainer import SegmentationTrainer
from medsight.transforms.cache import CaseCache, preprocess_dataset


def _validated_epochs(tmp_path: Path, config: RunOptions, validation_s: float, monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], int]:
    ds = write_phantom_dataset(tmp_path / "ds", num_cases=4, shape=(16, 20, 18), seed=3)
    run = tmp_path / "run"
    plan = plan_dataset(ds, run, base_filters=4)
    ids = preprocess_dataset(load_dataset(ds), plan, run / "preprocessed", workers=1)
    trainer = SegmentationTrainer(plan, CaseCache(run / "preprocessed", ids), ids[:3], ids[3:], run / "fold_0", config)
    validated: list[int] = []

    def slow_validation() -> dict[str, float]:  # a validation that costs as much as whole CTs would
        validated.append(trainer.epoch)
        time.sleep(validation_s)
        return {"val_loss": 1.0, "val_dice": 0.5}

    monkeypatch.setattr(trainer, "validate", slow_validation)
    trainer.fit()
    assert trainer.history[-1]["epoch"] in validated  # the last epoch is always validated
    return validated, len(trainer.history)


def test_a_budget_keeps_costly_validation_to_its_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = RunOptions(time_budget_s=4.0, iterations_per_epoch=1, seed=0, device="cpu", precision="fp32")
    validated, epochs = _validated_epochs(tmp_path, config, 0.6, monkeypatch)
    assert validated[0] == 1 and len(validated) == 2  # the first epoch (its cost unknown before) and the last
    assert epochs >= 3  # the epochs between were trained, not validated


def test_fixed_epochs_validate_every_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = RunOptions(epochs=3, iterations_per_epoch=1, seed=0, device="cpu", precision="fp32")
    assert _validated_epochs(tmp_path, config, 0.3, monkeypatch) == ([1, 2, 3], 3)
