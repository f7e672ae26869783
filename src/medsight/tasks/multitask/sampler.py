"""The case cache and batch sampler of multi-task training: the segmentation ones, with masks optional and a class
per case.

Cases are preprocessed by :func:`medsight.transforms.cache.preprocess_dataset` (mask-less cases simply have no
``<case>_seg.npy``); batches are drawn and augmented by the segmentation sampler's code (whole images when the patch
covers them), and carry which items have a mask and which class (-1: none).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.tasks.multitask.heatmap import batch_heatmaps
from medsight.transforms.augment import augment_batch, draw_params
from medsight.transforms.cache import CaseCache
from medsight.transforms.config import AugmentConfig
from medsight.transforms.sampler import PatchSampler, crop_padded


class MultitaskCache(CaseCache):
    """A :class:`CaseCache` whose cases may have no mask (``labels`` and ``fg`` then lack them).

    Args:
        folder: the cache folder.
        case_ids: the cases to open.
        classes: case id -> class index, for the cases with a class.
    """

    def __init__(self, folder: str | Path, case_ids: list[str], classes: dict[str, int]) -> None:
        self.folder = Path(folder)
        self.case_ids = list(case_ids)
        self.classes = {c: int(v) for c, v in classes.items() if c in set(case_ids)}
        self.images = {c: np.load(self.folder / f"{c}.npy", mmap_mode="r") for c in self.case_ids}
        masked = [c for c in self.case_ids if (self.folder / f"{c}_seg.npy").is_file()]
        self.labels = {c: np.load(self.folder / f"{c}_seg.npy", mmap_mode="r") for c in masked}
        # foreground samples are rows (label, *index): (0, 1 + spatial dims) for a case without a mask
        self.fg = {c: np.load(self.folder / f"{c}_fg.npy") if c in self.labels else np.zeros((0, self.images[c].ndim), np.int32)
                   for c in self.case_ids}
        self.props = {c: json.loads((self.folder / f"{c}.json").read_text()) for c in self.case_ids}

    def has_mask(self, case_id: str) -> bool:
        return case_id in self.labels

    def class_of(self, case_id: str) -> int:
        """The class index, or -1 when the case has none."""
        return self.classes.get(case_id, -1)


class MultitaskSampler(PatchSampler):
    """Draws augmented batches ``{"image", "label", "has_mask", "class"[, "heatmap"]}`` from a :class:`MultitaskCache`.

    Args:
        cache: the preprocessed cases.
        case_ids: cases to draw from (each with a mask or a class).
        patch: network input size (the whole image in a multi-task plan).
        batch_size: items per batch.
        augment: augmentation settings (``None``: none).
        foreground_fraction: share of items centred on a foreground voxel (cases with masks only).
        heatmap_sigma: draw lesion-centre targets of this SD (voxels); ``None``: no heat-map targets.
        seed: seed of the sampler's generators.
    """

    cache: MultitaskCache

    def __init__(self, cache: MultitaskCache, case_ids: list[str], patch: tuple[int, ...], batch_size: int, *,
                 augment: AugmentConfig | None, foreground_fraction: float = 0.0, heatmap_sigma: float | None = None,
                 seed: int = 0) -> None:
        super().__init__(cache, case_ids, patch, batch_size, augment=augment, foreground_fraction=foreground_fraction, seed=seed)
        self.heatmap_sigma = heatmap_sigma

    def next_batch(self) -> dict[str, Any]:  # type: ignore[override]
        n_fg = int(round(self.batch_size * self.foreground_fraction))
        cids = [self.case_ids[self.rng.integers(len(self.case_ids))] for _ in range(self.batch_size)]
        imgs, labs = [], []
        for i, cid in enumerate(cids):
            centre = self._centre(cid, force_fg=i >= self.batch_size - n_fg)
            imgs.append(crop_padded(self.cache.images[cid], centre, self.context))
            lab = self.cache.labels.get(cid)
            labs.append(crop_padded(lab[None], centre, self.context) if lab is not None else
                        np.zeros((1, *self.context), dtype=np.uint8))
        image = torch.from_numpy(np.stack(imgs)).float()
        label = torch.from_numpy(np.stack(labs).astype(np.int64))
        if self.augment is not None:
            image, label = augment_batch(image, label, self.patch, draw_params(self.batch_size, self.patch, self.augment, self.gen),
                                         self.gen)
        batch: dict[str, Any] = {
            "image": image, "label": label,
            "has_mask": torch.tensor([self.cache.has_mask(c) for c in cids]),
            "class": torch.tensor([self.cache.class_of(c) for c in cids], dtype=torch.int64),
        }
        if self.heatmap_sigma is not None:

            batch["heatmap"] = batch_heatmaps(label, self.heatmap_sigma)
        return batch


__all__ = ["MultitaskCache", "MultitaskSampler"]
