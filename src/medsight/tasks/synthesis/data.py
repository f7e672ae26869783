"""Cases as GAN arrays in ``[-1, 1]``, the conditions a generator sees, and the two training samplers.

* class GAN: every image resized to the plan's size, with its class index;
* mask GAN: every case on its own voxel grid: image ``(C, *S)``, label indices ``(*S)`` (0..K-1 in the order of the
  plan's label values), optional region of interest ``(*S)`` and the image geometry (for writing samples back).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medsight.data.dataset import DatasetSpec, load_case
from medsight.errors import user_error
from medsight.tasks.synthesis.plan import GanPlan
from medsight.transforms.augment import augment_batch, draw_params
from medsight.transforms.augment_spatial import context_shape
from medsight.transforms.classification import adapt_channels
from medsight.transforms.config import AugmentConfig
from medsight.transforms.sampler import crop_padded

#: Joint geometric augmentation of (image, mask) pairs when training the mask GAN: no intensity changes, so the
#: generator learns the real intensity distribution.
PAIR_AUGMENT = AugmentConfig(p_rotate=0.3, rotate_deg=15.0, p_scale=0.3, scale_range=(0.9, 1.1), p_elastic=0.0,
                             mirror_axes=(), p_brightness=0.0, p_contrast=0.0, p_gamma=0.0, p_noise=0.0, p_blur=0.0)


# ---------------------------------------------------------------------------------------------- intensities
def _range(arr: np.ndarray, intensity: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    c = arr.shape[0]
    if intensity["mode"] == "fixed":
        return np.asarray(intensity["low"], float)[:c], np.asarray(intensity["high"], float)[:c]
    p = np.asarray([np.percentile(arr[k], [0.5, 99.5]) for k in range(c)], float)
    return p[:, 0], p[:, 1]


def to_unit(arr: np.ndarray, intensity: dict[str, Any]) -> np.ndarray:
    """Image ``(C, *S)`` -> float32 in ``[-1, 1]`` by the plan's intensity rule (clipped)."""
    lo, hi = _range(arr, intensity)
    shape = (-1,) + (1,) * (arr.ndim - 1)
    out = (arr.astype(np.float32) - lo.reshape(shape)) / np.maximum(hi - lo, 1e-6).reshape(shape)
    return np.clip(out * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)


def from_unit(arr: np.ndarray, intensity: dict[str, Any]) -> np.ndarray:
    """Generated ``(C, *S)`` in ``[-1, 1]`` -> the training images' range and dtype (rounded for integer types)."""
    shape = (-1,) + (1,) * (arr.ndim - 1)
    lo = np.asarray(intensity["low"], float)[: arr.shape[0]].reshape(shape)
    hi = np.asarray(intensity["high"], float)[: arr.shape[0]].reshape(shape)
    out = (np.clip(arr, -1.0, 1.0) + 1.0) / 2.0 * (hi - lo) + lo
    dtype = np.dtype(intensity.get("dtype", "float32"))
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return out.astype(np.float32 if dtype.kind != "f" else dtype)


# ---------------------------------------------------------------------------------------------- conditions
def label_indices(values: np.ndarray, label_values: list[int], where: str) -> np.ndarray:
    """Label map values -> indices 0..K-1 in the order of ``label_values``; unknown values are refused."""
    lut = np.asarray(label_values)
    idx = np.searchsorted(lut, values)
    bad = (idx >= len(lut)) | (lut[np.minimum(idx, len(lut) - 1)] != values)
    if bad.any():
        raise user_error(f"label values among {label_values}", sorted(np.unique(values[bad]).tolist())[:8], where,
                         "fix the label map or the dataset's labels")
    return idx.astype(np.uint8)


def condition_tensor(mask: torch.Tensor, roi: torch.Tensor | None, num_labels: int) -> torch.Tensor:
    """The generator's condition ``(B, K [+ 1], *S)`` float: one-hot label indices ``(B, 1, *S)`` and the ROI."""
    onehot = F.one_hot(mask[:, 0].long(), num_labels).movedim(-1, 1).float()
    return torch.cat([onehot, roi.float()], dim=1) if roi is not None else onehot


@dataclass
class GanData:
    """Training (and validation) cases for a GAN; see the module docstring for the arrays."""

    ids: list[str]
    images: list[np.ndarray]
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    masks: list[np.ndarray] = field(default_factory=list)
    rois: list[np.ndarray | None] = field(default_factory=list)
    geometry: list[dict[str, Any]] = field(default_factory=list)

    def rows(self, ids: list[str]) -> list[int]:
        pos = {c: i for i, c in enumerate(self.ids)}
        return [pos[c] for c in ids]

    def subset(self, ids: list[str]) -> GanData:
        """The cases ``ids`` only."""
        rows = self.rows(ids)

        def pick(values: list[Any]) -> list[Any]:
            return [values[r] for r in rows] if values else []

        return GanData(ids=list(ids), images=pick(self.images), classes=self.classes[rows] if self.classes.size else self.classes,
                       masks=pick(self.masks), rois=pick(self.rois), geometry=pick(self.geometry))


def _resize(arr: np.ndarray, size: list[int]) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]
    if list(t.shape[2:]) == list(size):
        return arr.astype(np.float32)
    down = any(a > b for a, b in zip(t.shape[2:], size))
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=down)[0].numpy()


def prepare_gan_data(spec: DatasetSpec, plan: GanPlan, ids: list[str], *,
                     progress: Callable[[int, int], None] | None = None) -> GanData:
    """Read the cases ``ids`` of ``spec`` into :class:`GanData` (class or mask GAN, as planned)."""
    by_id = {c.case_id: c for c in spec.cases}
    data = GanData(ids=list(ids), images=[])
    classes = []
    for i, cid in enumerate(ids):
        case = load_case(spec, by_id[cid])
        where = case.image.source.path or cid
        arr = adapt_channels(np.asarray(case.image.array), plan.channels, where)
        if case.image.ndim != plan.dims:
            raise user_error(f"{plan.dims}D images as planned", f"a {case.image.ndim}D image", where, "use one kind of image")
        if plan.kind == "class":
            data.images.append(_resize(to_unit(arr, plan.intensity), plan.size))
            classes.append(int(case.label))  # type: ignore[arg-type]
        else:
            lab = case.label_array
            if lab is None:
                raise user_error("a label map for every case", "none", where, "add the missing label file")
            data.images.append(to_unit(arr, plan.intensity))
            data.masks.append(label_indices(lab, plan.label_values, str(by_id[cid].label)))
            data.rois.append((case.mask.array[0] > 0).astype(np.uint8) if plan.roi and case.mask is not None else
                             (np.ones(case.image.shape, np.uint8) if plan.roi else None))
            data.geometry.append({"spacing": list(case.image.spacing), "origin": list(case.image.origin),
                                  "direction": np.asarray(case.image.direction).tolist()})
        if progress:
            progress(i + 1, len(ids))
    data.classes = np.asarray(classes, dtype=np.int64)
    return data


# ---------------------------------------------------------------------------------------------- samplers
class _Seeded:
    """A NumPy and a torch generator, saved and restored for an exact resume."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"numpy": self.rng.bit_generator.state, "torch": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["numpy"]
        self.gen.set_state(state["torch"])


class ClassSampler(_Seeded):
    """Batches ``(images (B, C, *size), classes (B,))`` of real training images for the class GAN."""

    def __init__(self, data: GanData, rows: list[int], batch_size: int, *, seed: int = 0) -> None:
        super().__init__(seed)
        self.images = np.stack([data.images[r] for r in rows])
        self.classes = data.classes[rows]
        self.batch_size = batch_size

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        pick = self.rng.choice(len(self.classes), size=self.batch_size, replace=len(self.classes) < self.batch_size)
        return torch.from_numpy(self.images[pick]), torch.from_numpy(self.classes[pick])


class PairSampler(_Seeded):
    """Batches ``(images (B, C, *patch), conditions (B, K [+ 1], *patch))`` of aligned random patches.

    Image and condition are cut and augmented together (rotation, scaling: :data:`PAIR_AUGMENT`); the image is
    padded with -1 (black), the label map with background and the ROI with 0.
    """

    def __init__(self, data: GanData, rows: list[int], patch: list[int], batch_size: int, *, num_labels: int,
                 augment: AugmentConfig | None = PAIR_AUGMENT, seed: int = 0) -> None:
        super().__init__(seed)
        self.data, self.rows, self.patch, self.batch_size = data, list(rows), tuple(patch), batch_size
        self.num_labels, self.augment = num_labels, augment
        self.context = context_shape(self.patch, rotate=True, scale_max=1.1) if augment is not None else self.patch

    def _centre(self, shape: tuple[int, ...]) -> np.ndarray:
        half = np.asarray(self.patch) // 2
        lo = np.minimum(half, np.asarray(shape) // 2)
        hi = np.maximum(np.asarray(shape) - half, np.asarray(shape) // 2 + 1)
        return np.asarray([self.rng.integers(a, b) for a, b in zip(lo, hi)])

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, codes = [], []
        k = self.num_labels
        for _ in range(self.batch_size):
            r = self.rows[self.rng.integers(len(self.rows))]
            image, mask, roi = self.data.images[r], self.data.masks[r], self.data.rois[r]
            centre = self._centre(mask.shape)
            code = mask.astype(np.int64) + (k * roi.astype(np.int64) if roi is not None else 0)  # one map: warped together
            images.append(crop_padded(image + 1.0, centre, self.context))
            codes.append(crop_padded(code[None], centre, self.context))
        img, code_t = torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(codes))
        if self.augment is not None:
            params = draw_params(self.batch_size, self.patch, self.augment, self.gen)
            img, code_t = augment_batch(img, code_t, self.patch, params, self.gen)
        roi_t = (code_t // k) if self.data.rois and self.data.rois[0] is not None else None
        return img - 1.0, condition_tensor(code_t % k, roi_t, k)
