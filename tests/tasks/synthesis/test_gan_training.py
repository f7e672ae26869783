"""Tiny GANs train a few steps on the shared trainer: finite losses, both networks learn, checkpoints, grids, resume."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from medsight.engine.checkpoint import load_checkpoint
from medsight.errors import MedsightError
from medsight.tasks.synthesis.networks import build_gan
from medsight.tasks.synthesis.pipeline import train_gan
from medsight.tasks.synthesis.plan import load_gan_plan, upsamplings

from .tiny import FAST, tiny_plan


def _rows(gan: Path) -> list[dict[str, str]]:
    with (gan / "metrics.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_class_gan_trains_with_finite_losses_and_resumes(tiny_npz: Path, tmp_path: Path) -> None:
    gan = tmp_path / "gan"
    plan = tiny_plan(tiny_npz, gan)
    assert plan.kind == "class" and plan.class_names == ["0", "1"] and plan.size == [16, 16]
    init = build_gan(plan.architecture, generator=plan.generator, discriminator=plan.discriminator).state_dict()
    summary = train_gan(tiny_npz, gan, config=FAST)
    assert summary["epochs"] == 1 and summary["val_cases"] == 8  # the file's own val split validates
    row = _rows(gan)[-1]
    for key in ("train_loss", "val_loss", "train_d_loss"):
        assert math.isfinite(float(row[key])), key
    assert 0.0 <= float(row["val_coverage"]) <= 1.0
    assert (gan / "samples" / "epoch_0001.png").is_file() and (gan / "curves.png").is_file()
    trained = load_checkpoint(gan / "checkpoint_last.pt")["state_dict"]
    # one optimiser, alternating steps: generator and discriminator both moved; the moving average follows the generator
    for key in ("generator.fc.weight", "discriminator.linear.parametrizations.weight.original", "generator_ema.fc.weight"):
        assert not torch.equal(trained[key], init[key]), key
    resumed = train_gan(tiny_npz, gan, config=replace(FAST, epochs=2, resume=True))
    assert resumed["epochs"] == 2 and [r["epoch"] for r in _rows(gan)] == ["1", "2"]


def test_mask_gan_trains_on_folder_pairs_with_roi(roi_folders: Path, tmp_path: Path) -> None:
    gan = tmp_path / "gan"
    plan = tiny_plan(roi_folders, gan)
    assert plan.kind == "mask" and plan.roi and plan.channels == 3 and plan.labels == {"background": 0, "foreground": 1}
    assert plan.output["layout"] == "folders" and plan.intensity["mode"] == "fixed"
    train_gan(roi_folders, gan, config=FAST)
    row = _rows(gan)[-1]
    assert all(math.isfinite(float(row[k])) for k in ("train_loss", "val_loss", "val_l1", "train_d_loss"))
    assert (gan / "conditions.npz").is_file() and (gan / "samples" / "epoch_0001.png").is_file()
    planned = load_gan_plan(gan)
    assert planned.dataset == "fundus" and len(planned.generator["output_mean"]) == 3  # starts at the images' mean colour


def test_gan_folder_of_another_dataset_is_refused(tiny_npz: Path, roi_folders: Path, tmp_path: Path) -> None:
    tiny_plan(tiny_npz, tmp_path / "gan")
    with pytest.raises(MedsightError, match="the dataset the GAN was planned for"):
        train_gan(roi_folders, tmp_path / "gan", config=FAST)


def test_upsamplings_follow_the_image_size() -> None:
    assert upsamplings([28, 28]) == 2 and upsamplings([64, 64]) == 4 and upsamplings([32, 48]) == 3
    with pytest.raises(MedsightError):
        upsamplings([5, 5])
