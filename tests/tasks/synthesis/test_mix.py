"""``--synthetic``: synthetic cases reach training batches only, never splits, validation or reports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medsight.cli.app import main
from medsight.core.image import Image
from medsight.data.synthetic import write_phantom_dataset
from medsight.engine.config import RunOptions
from medsight.errors import MedsightError
from medsight.tasks.classification.trainer import ClassificationSampler
from medsight.transforms.classification import ClassificationCache
from medsight.transforms.sampler import PatchSampler
from medsight.transforms.synthetic import check_ratio, load_synthetic

from .tiny import FAST, tiny_plan


class _Cache:
    """A stand-in for :class:`~medsight.transforms.cache.CaseCache`: real cases hold 0s, synthetic ones 1s."""

    def __init__(self, real: list[str], synthetic: list[str]) -> None:
        self.images = {c: np.full((1, 12, 12), float(c in synthetic), np.float32) for c in real + synthetic}
        self.labels = {c: np.zeros((12, 12), np.uint8) for c in real + synthetic}
        self.fg = {c: np.zeros((0, 3), np.int32) for c in real + synthetic}


def _classification_cache(n: int, value: float, ids: str) -> ClassificationCache:
    return ClassificationCache(ids=[f"{ids}{i}" for i in range(n)], images=np.full((n, 1, 8, 8), value, np.float32),
                               labels=np.arange(n, dtype=np.int64) % 2, tabular=np.zeros((n, 0), np.float32))


def test_patch_sampler_mixes_synthetic_cases_by_ratio() -> None:
    real, syn = ["r0", "r1"], ["synthetic_0", "synthetic_1"]
    cache = _Cache(real, syn)
    plain = PatchSampler(cache, real, (8, 8), 4, augment=None, seed=5)  # type: ignore[arg-type]
    zero = PatchSampler(cache, real, (8, 8), 4, augment=None, seed=5, synthetic_ids=syn, synthetic_ratio=0.0)  # type: ignore[arg-type]
    for _ in range(3):  # ratio 0 draws exactly the batches of a run without --synthetic
        assert torch.equal(plain.next_batch()[0], zero.next_batch()[0])
    only = PatchSampler(cache, real, (8, 8), 4, augment=None, seed=5, synthetic_ids=syn, synthetic_ratio=1.0)  # type: ignore[arg-type]
    assert all(bool((only.next_batch()[0] == 1).all()) for _ in range(3))
    half = PatchSampler(cache, real, (8, 8), 8, augment=None, seed=5, synthetic_ids=syn, synthetic_ratio=0.5)  # type: ignore[arg-type]
    share = np.mean([float(half.next_batch()[0].amax(dim=(1, 2, 3)).mean()) for _ in range(40)])
    assert 0.35 < share < 0.65


def test_classification_sampler_mixes_synthetic_cases_by_ratio() -> None:
    real, syn = _classification_cache(6, 0.0, "r"), _classification_cache(4, 1.0, "s")
    plain = ClassificationSampler(real, np.arange(6), 8, augment=None, seed=2)
    zero = ClassificationSampler(real, np.arange(6), 8, augment=None, seed=2, synthetic=syn, synthetic_ratio=0.0)
    assert torch.equal(plain.next_batch()[0], zero.next_batch()[0])
    mixed = ClassificationSampler(real, np.arange(6), 8, augment=None, seed=2, synthetic=syn, synthetic_ratio=0.5)
    image, target, tab = mixed.next_batch()
    assert image.shape == (8, 1, 8, 8) and target.shape == (8,) and tab.shape == (8, 0)
    only = ClassificationSampler(real, np.arange(6), 8, augment=None, seed=2, synthetic=syn, synthetic_ratio=1.0)
    assert bool((only.next_batch()[0] == 1).all())


def test_ratio_and_task_are_checked(tmp_path: Path, tiny_npz: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_ratio(0.25) == 0.25
    with pytest.raises(MedsightError, match="synthetic-ratio"):
        check_ratio(1.5)
    with pytest.raises(MedsightError, match="synthetic segmentation cases"):
        load_synthetic(tiny_npz, task="segmentation")
    assert main(["train", str(tiny_npz), "--synthetic", str(tiny_npz), "--synthetic-ratio", "2", "--out",
                 str(tmp_path / "run"), "--epochs", "1"]) == 2
    assert "--synthetic-ratio in [0, 1]" in capsys.readouterr().err


@pytest.mark.slow
def test_segmentation_training_keeps_synthetic_cases_out_of_validation(tmp_path: Path) -> None:
    from medsight.tasks.segmentation.pipeline import train
    from medsight.tasks.synthesis.pipeline import train_gan
    from medsight.tasks.synthesis.sample import sample_gan

    data = write_phantom_dataset(tmp_path / "p2", num_cases=5, shape=(32, 32), seed=100, file_ending=".png")
    tiny_plan(data, tmp_path / "gan")
    train_gan(data, tmp_path / "gan", config=FAST)
    sample_gan(tmp_path / "gan", 3, tmp_path / "syn", seed=0)
    run = tmp_path / "run"
    train(data, run, folds=[0], config=RunOptions(epochs=1, iterations_per_epoch=2, device="cpu", num_threads=1),
          synthetic=tmp_path / "syn", synthetic_ratio=1.0)
    split = json.loads((run / "splits.json").read_text())[0]
    assert not any(c.startswith("synthetic_") for c in split["train"] + split["val"])
    validated = sorted(p.name for p in (run / "fold_0" / "validation").glob("*.nii.gz")
                       if not p.name.endswith("_uncertainty.nii.gz"))  # the voxel uncertainty beside each
    assert validated == sorted(f"{c}.nii.gz" for c in split["val"])
    assert json.loads((run / "config.json").read_text())["synthetic"]["cases"] == 3
    with (run / "validation" / "per_case.csv").open() as fh:
        assert not any(r["case"].startswith("synthetic_") for r in csv.DictReader(fh))


@pytest.mark.slow
def test_classification_trainer_draws_synthetic_cases_for_training_only(tiny_npz: Path, tmp_path: Path) -> None:
    from medsight.data.dataset import load_dataset
    from medsight.io import write_image
    from medsight.tasks.classification.pipeline import plan_classification
    from medsight.tasks.classification.trainer import ClassificationTrainer
    from medsight.transforms.classification import preprocess_classification
    from medsight.transforms.synthetic import prepare_synthetic_classification

    syn = tmp_path / "syn"
    (syn / "images").mkdir(parents=True)
    rows = ["image,label"]
    for i in range(6):  # a hand-made synthetic CSV dataset (no manifest) of class "1" only
        write_image(Image(np.full((1, 16, 16), 40 * i, np.uint8)), syn / "images" / f"synthetic_{i}.png")
        rows.append(f"images/synthetic_{i}.png,1")
    (syn / "cases.csv").write_text("\n".join(rows) + "\n")
    plan = plan_classification(tiny_npz, tmp_path / "run", network="smallcnn")
    spec = load_dataset(tiny_npz)
    cache = preprocess_classification(spec, plan, tmp_path / "run" / "preprocessed")
    synthetic = prepare_synthetic_classification(syn / "cases.csv", plan, tmp_path / "run" / "preprocessed_synthetic")
    assert synthetic.labels.tolist() == [1] * 6  # mapped to the run's class index by name, not by its own order
    split = spec.predefined_split or {}
    trainer = ClassificationTrainer(plan, cache, split["train"], split["val"], tmp_path / "run" / "fold_0",
                                    RunOptions(epochs=1, iterations_per_epoch=2, device="cpu", num_threads=1),
                                    synthetic=synthetic, synthetic_ratio=1.0)
    image, target, _ = trainer.sampler.next_batch()
    assert set(target.tolist()) == {1} and float(image.abs().sum()) > 0  # training batches: synthetic only
    seen: list[int] = []
    original = cache.rows

    def spy(ids: list[str]) -> np.ndarray:
        seen.extend(ids)
        return original(ids)

    cache.rows = spy  # type: ignore[method-assign]
    trainer.fit()
    assert seen and set(seen) == set(split["val"])  # validation reads the real validation cases, nothing else
    assert not any(c.startswith("synthetic") for c in seen)
