"""Tiny synthetic datasets and tiny GAN plans, so GAN tests run in seconds on a CPU."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from medsight.core.image import Image
from medsight.data.dataset import load_dataset
from medsight.data.synthetic import make_phantom
from medsight.engine.config import RunOptions
from medsight.io import write_image
from medsight.tasks.synthesis.pipeline import gan_splits
from medsight.tasks.synthesis.plan import GanPlan, make_gan_plan

#: One thread: on a shared CPU more threads make these tiny networks slower, not faster.
FAST = RunOptions(epochs=1, iterations_per_epoch=2, seed=0, device="cpu", num_threads=1)


def _shapes_image(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """Class 0: a bright disk; class 1: a bright square; both on noise, uint8 ``(size, size)``."""
    yy, xx = np.mgrid[:size, :size]
    c = rng.uniform(size * 0.35, size * 0.65, 2)
    r = rng.uniform(size * 0.15, size * 0.3)
    shape = (np.hypot(yy - c[0], xx - c[1]) <= r) if label == 0 else ((np.abs(yy - c[0]) <= r) & (np.abs(xx - c[1]) <= r))
    img = 40 + 160 * shape + rng.normal(0, 10, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_tiny_npz(path: Path, *, n_train: int = 24, n_val: int = 8, n_test: int = 8, size: int = 16, seed: int = 0) -> Path:
    """A MedMNIST-style ``.npz`` of two shape classes (train/val/test splits)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        labels = np.arange(n) % 2
        arrays[f"{split}_images"] = np.stack([_shapes_image(int(y), rng, size) for y in labels])
        arrays[f"{split}_labels"] = labels.astype(np.uint8)[:, None]
    np.savez(path, **arrays)
    return path


def write_roi_folders(root: Path) -> Path:
    """A DRIVE-like folder dataset: ``images/`` (8-bit RGB PNG), ``labels/`` (0/255), ``mask/`` (field of view)."""
    for sub in ("images", "labels", "mask"):
        (root / sub).mkdir(parents=True)
    yy, xx = np.mgrid[:40, :48]
    fov = (np.hypot(yy - 20, xx - 24) <= 19).astype(np.uint8)
    for i in range(4):
        case = make_phantom((40, 48), num_labels=1, seed=10 + i)
        lab = case.label_array.astype(np.uint8) * fov
        gray = np.clip(case.image.array[0] / 2.0, 0, 255) * fov
        rgb = np.stack([gray, gray * 0.6, gray * 0.3]).astype(np.uint8)
        write_image(Image(rgb), root / "images" / f"{i:02d}_training.png")
        write_image(Image((lab * 255)[None]), root / "labels" / f"{i:02d}_manual.png")
        write_image(Image((fov * 255)[None]), root / "mask" / f"{i:02d}_fov.png")
    return root


def tiny_plan(dataset: Path, out: Path) -> GanPlan:
    """The planned GAN for ``dataset`` with very small networks and batches, saved as ``out/plans.json``."""
    spec = load_dataset(dataset)
    plan = make_gan_plan(spec, gan_splits(spec)["train"])
    if plan.kind == "class":
        plan = plan.with_changes(generator={**plan.generator, "width": 8, "latent_dim": 8},
                                 discriminator={**plan.discriminator, "width": 8}, batch_size=4)
    else:
        plan = plan.with_changes(generator={**plan.generator, "channels": [4, 8, 16]},
                                 discriminator={**plan.discriminator, "channels": 4, "num_layers": 2}, batch_size=2,
                                 size=[min(s, 32) for s in plan.size])
    plan = plan.with_changes(training=replace(plan.training, val_max_cases=8))
    out.mkdir(parents=True, exist_ok=True)
    plan.save(out / "plans.json")
    return plan
