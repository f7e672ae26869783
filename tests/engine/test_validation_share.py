"""Under a wall-time budget, in-training validation takes at most ``VALIDATION_SHARE`` of the time trained so far;
the last epoch is always validated, and a fixed epoch count validates every ``val_every`` epochs as before."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from medsight.data.dataset import load_dataset
from medsight.data.synthetic import write_phantom_dataset
from medsight.engine.config import RunOptions
from medsight.tasks.segmentation.pipeline import plan_dataset
from medsight.tasks.segmentation.trainer import SegmentationTrainer
from medsight.transforms.cache import CaseCache, preprocess_dataset


def _validated_epochs(tmp_path: Path, config: RunOptions, validation_s: float, monkeypatch: pytest.MonkeyPatch,
                      estimate_s: float | None = None) -> tuple[list[int], int]:
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
    if estimate_s is not None:
        monkeypatch.setattr(trainer, "estimate_validation_seconds", lambda: estimate_s)
    else:  # the real estimate: the validation case predicted and timed (not asked with a fixed epoch count)
        monkeypatch.setattr(trainer, "estimate_validation_seconds", lambda: pytest.fail("estimated without a budget"))
    trainer.fit()
    assert trainer.history[-1]["epoch"] in validated  # the last epoch is always validated
    return validated, len(trainer.history)


def test_a_budget_keeps_costly_validation_to_its_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = RunOptions(time_budget_s=4.0, iterations_per_epoch=1, seed=0, device="cpu", precision="fp32")
    validated, epochs = _validated_epochs(tmp_path, config, 0.6, monkeypatch, estimate_s=1e-6)
    assert validated[0] == 1 and len(validated) == 2  # the first epoch (estimated free) and the last
    assert epochs >= 3  # the epochs between were trained, not validated


def test_a_costly_first_validation_is_skipped_on_its_estimate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = RunOptions(time_budget_s=3.0, iterations_per_epoch=1, seed=0, device="cpu", precision="fp32")
    validated, epochs = _validated_epochs(tmp_path, config, 0.6, monkeypatch, estimate_s=5.0)  # whole CTs, say
    assert validated == [epochs] and epochs >= 2  # only the last epoch: the budget went into training


def test_the_estimate_times_one_case_and_scales_by_voxels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = write_phantom_dataset(tmp_path / "ds", num_cases=4, shape=(16, 20, 18), seed=3)
    run = tmp_path / "run"
    plan = plan_dataset(ds, run, base_filters=4)
    ids = preprocess_dataset(load_dataset(ds), plan, run / "preprocessed", workers=1)
    cache = CaseCache(run / "preprocessed", ids)
    config = RunOptions(time_budget_s=3.0, seed=0, device="cpu", precision="fp32")
    trainer = SegmentationTrainer(plan, cache, ids[:2], ids[2:], run / "fold_0", config)
    assert trainer.estimate_validation_seconds() > 0  # a real prediction of the first case, timed
    clock = iter(range(100))  # a clock that moves 1 s per reading: the sample takes exactly 1 s
    monkeypatch.setattr("medsight.tasks.segmentation.trainer.time.perf_counter", lambda: float(next(clock)))
    voxels = [math.prod(cache.images[c].shape[1:]) for c in ids[2:]]
    assert trainer.estimate_validation_seconds() == pytest.approx(sum(voxels) / voxels[0])


def test_fixed_epochs_validate_every_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = RunOptions(epochs=3, iterations_per_epoch=1, seed=0, device="cpu", precision="fp32")
    assert _validated_epochs(tmp_path, config, 0.3, monkeypatch) == ([1, 2, 3], 3)
