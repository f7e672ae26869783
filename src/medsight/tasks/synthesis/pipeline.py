"""``medsight synthesize train``: plan, read the cases, train the GAN, keep what sampling needs.

GAN folder layout::

    GAN_DIR/plans.json  splits.json  config.json  conditions.npz + conditions.json (mask GAN: the training label
            maps and their geometry, deformed into new conditions by sampling)
            checkpoint_best.pt  checkpoint_last.pt  metrics.csv  curves.png  samples/epoch_NNNN.png  summary.json

Splits: a dataset with its own validation split (MedMNIST) validates on it; otherwise every case trains and the
first cases also serve for validation, so validation figures then measure the fit to the training distribution
(as FID is usually computed), not generalisation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.core.atomic import atomic_path, write_text
from medsight.data.dataset import DatasetSpec, load_dataset
from medsight.engine.config import RunOptions
from medsight.errors import user_error
from medsight.tasks.synthesis.data import GanData, prepare_gan_data
from medsight.tasks.synthesis.plan import GanPlan, load_gan_plan, make_gan_plan
from medsight.tasks.synthesis.trainer import GanTrainer

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


def gan_splits(spec: DatasetSpec) -> dict[str, list[str]]:
    """Training and validation case ids (see the module docstring)."""
    ids = [c.case_id for c in spec.cases]
    if spec.task == "segmentation":
        ids = [c.case_id for c in spec.cases if c.label is not None and c.label.exists()]
        if not ids:
            raise user_error("label maps beside the images", "none", spec.root, "the mask-conditioned GAN needs masks")
    if spec.predefined_split and spec.predefined_split.get("val"):
        return {"train": list(spec.predefined_split["train"]), "val": list(spec.predefined_split["val"])}
    return {"train": ids, "val": list(ids)}


def save_conditions(data: GanData, out: Path) -> None:
    """``conditions.npz`` (``mask_<i>``, ``roi_<i>``) and ``conditions.json`` (ids, geometry) of the mask GAN."""
    arrays: dict[str, np.ndarray] = {}
    for i, (mask, roi) in enumerate(zip(data.masks, data.rois)):
        arrays[f"mask_{i}"] = mask
        if roi is not None:
            arrays[f"roi_{i}"] = roi
    with atomic_path(out / "conditions.npz") as tmp:
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    write_text(out / "conditions.json", json.dumps({"ids": data.ids, "geometry": data.geometry}, indent=1))


def load_conditions(gan_dir: Path) -> tuple[list[str], list[np.ndarray], list[np.ndarray | None], list[dict[str, Any]]]:
    """(case ids, label-index maps, ROIs or None, geometry) saved by :func:`save_conditions`."""
    meta = json.loads((gan_dir / "conditions.json").read_text())
    with np.load(gan_dir / "conditions.npz", allow_pickle=False) as z:
        masks = [np.asarray(z[f"mask_{i}"]) for i in range(len(meta["ids"]))]
        rois = [np.asarray(z[f"roi_{i}"]) if f"roi_{i}" in z.files else None for i in range(len(meta["ids"]))]
    return meta["ids"], masks, rois, meta["geometry"]


def train_gan(dataset: str | Path, out: str | Path, *, config: RunOptions | None = None, plan_path: str | Path | None = None,
              progress: Progress | None = None, prepare_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train a GAN on ``dataset`` into ``out``; returns the training summary (also ``out/summary.json``).

    Args:
        dataset: a classification (2D) or segmentation (2D/3D) dataset, in any layout medsight reads.
        out: the GAN folder (created; ``plans.json`` there is reused, e.g. after editing or with ``resume``).
        config: epochs or time budget, seed, device, resume.
        plan_path: use this edited plans.json.
        progress: training progress events (as for every medsight training).
        prepare_progress: ``f(done, total)`` while the cases are read.
    """
    config = config or RunOptions()
    spec = load_dataset(dataset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = gan_splits(spec)
    existing = Path(plan_path) if plan_path else out / "plans.json"
    plan: GanPlan = load_gan_plan(existing) if existing.is_file() else \
        make_gan_plan(spec, splits["train"], gpu=torch.cuda.is_available() and (config.device or "cuda") != "cpu")
    if plan.dataset != spec.name or (plan.kind == "class") != (spec.task == "classification"):
        raise user_error(f"the dataset the GAN was planned for ({plan.dataset})", spec.name, out / "plans.json",
                         "use another --out, or delete plans.json to plan again")
    ids = list(dict.fromkeys(splits["train"] + splits["val"]))
    data = prepare_gan_data(spec, plan, ids, progress=prepare_progress)
    if plan.kind == "mask":
        save_conditions(data.subset(splits["train"]), out)
        if "output_mean" not in plan.generator:  # the generator starts at the training images' mean colour
            rows = data.rows(splits["train"])
            mean = np.mean([data.images[r].reshape(plan.channels, -1).mean(1) for r in rows], axis=0)
            plan = plan.with_changes(generator={**plan.generator, "output_mean": [round(float(v), 4) for v in mean]})
    plan.save(out / "plans.json")
    write_text(out / "splits.json", json.dumps(splits, indent=1))
    write_text(out / "config.json", json.dumps({"dataset": str(Path(dataset).resolve()), "train": asdict(config)}, indent=2))
    trainer = GanTrainer(plan, data, splits["train"], splits["val"], out, config, progress=progress)
    result = trainer.fit()
    result.pop("history", None)
    summary = {"dataset": spec.name, "kind": plan.kind, "train_cases": len(splits["train"]), "val_cases": len(splits["val"]),
               "checkpoint": str(out / "checkpoint_best.pt"), **result}
    write_text(out / "summary.json", json.dumps(summary, indent=2, default=float))
    return summary
