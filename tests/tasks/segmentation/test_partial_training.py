"""Partial labels through training: the batch carries each sample's absent-class mask, and validation leaves the
structures a case lacks unscored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medsight.data.dataset import load_dataset
from medsight.data.fingerprint import compute_fingerprint
from medsight.engine.config import RunOptions
from medsight.tasks.segmentation.plan import make_plan
from medsight.transforms.cache import CaseCache, preprocess_dataset
from medsight.transforms.sampler import PatchSampler

ABSENT = {"case_001": ["structure_2"], "case_003": ["structure_1"]}


def _partial(dataset: Path) -> Path:
    spec = json.loads((dataset / "dataset.json").read_text())
    spec["absent_structures"] = ABSENT
    (dataset / "dataset.json").write_text(json.dumps(spec))
    return dataset


def test_batches_carry_the_absent_mask(phantom3d_dataset: Path, tmp_path: Path) -> None:
    spec = load_dataset(_partial(phantom3d_dataset))
    plan = make_plan(compute_fingerprint(spec), dataset=spec.name, labels=spec.labels, base_filters=4)
    ids = preprocess_dataset(spec, plan, tmp_path / "pre")
    cache = CaseCache(tmp_path / "pre", ids)
    sampler = PatchSampler(cache, ["case_001", "case_003"], (8, 8, 8), 4, augment=None, seed=0,
                           absent=plan.absent_labels, num_classes=plan.num_classes)
    image, label, mask = sampler.next_batch()
    assert mask.shape == (4, 3) and mask.dtype == torch.bool and not mask[:, 0].any()
    assert all(row.tolist() in ([False, False, True], [False, True, False]) for row in mask)
    plain = PatchSampler(cache, ids, (8, 8, 8), 2, augment=None, seed=0)
    assert len(plain.next_batch()) == 2  # without partial labels the batch is (image, label) as before


@pytest.mark.slow
def test_training_and_validation_with_partial_labels(phantom3d_dataset: Path, tmp_path: Path) -> None:
    from medsight.tasks.segmentation.pipeline import train

    run = tmp_path / "run"
    summary = train(_partial(phantom3d_dataset), run, folds=[0],
                    config=RunOptions(epochs=1, iterations_per_epoch=2, seed=0, device="cpu"), base_filters=4)
    plan = json.loads((run / "plans.json").read_text())
    assert plan["absent_labels"] == {"case_001": [2], "case_003": [1]}
    assert summary["trained_now"]["0"]["validation"]["cases"] >= 1
    val = json.loads((run / "fold_0" / "validation" / "summary.json").read_text())
    val_ids = json.loads((run / "splits.json").read_text())[0]["val"]
    for name, value in (("structure_1", 1), ("structure_2", 2)):
        lacking = sum(value in plan["absent_labels"].get(c, []) for c in val_ids)
        assert val["labels"][name]["unannotated"] == lacking
        assert val["labels"][name]["metrics"]["dice"]["n"] + val["labels"][name]["metrics"]["dice"]["n_nan"] == \
            len(val_ids) - lacking
