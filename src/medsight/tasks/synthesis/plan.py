"""The synthesis plan, ``GAN_DIR/plans.json``: which GAN, on what data, with which networks and settings.

Rules (CPU defaults; with a GPU the networks are twice as wide and images and patches larger):

* classification data (2D only) -> ``kind = "class"``: every image is resized to one size, the median image size
  scaled (aspect kept) so that its longer side is at most 64 pixels (128 with a GPU), rounded to a multiple of 4;
* segmentation data (2D or 3D) -> ``kind = "mask"``: the generator is trained on patches at the data's own voxel
  grid (no resampling), ``64`` pixels per side in 2D (``256`` with a GPU), or the whole median volume (at most
  ``64`` voxels per axis, ``128`` with a GPU) in 3D, rounded to a multiple of 8; whole images are generated with
  a sliding window of that patch; a region-of-interest mask (DRIVE's field of view), when
  the dataset has one, is an extra condition channel;
* intensities are mapped to ``[-1, 1]``: 8-bit images by ``x / 127.5 - 1``; CT by the dataset's 0.5 / 99.5
  percentiles; everything else (MR, 16-bit) per image by its own percentiles, written back in the training images'
  median range;
* optimisation: Adam(W) with betas ``(0.5, 0.999)``, no weight decay, cosine decay over the epochs or the time
  budget; learning rate 2e-4 (class GAN) or 1e-3 (mask GAN: its L1 term makes it mostly a regression, and a short CPU
  budget leaves pix2pix's 2e-4 far from converged); hinge loss; an exponential moving average of the generator (decay
  0.999) is what ``medsight synthesize sample`` uses; differentiable translation augmentation of the discriminator's
  inputs (DiffAugment) against discriminator over-fitting on scarce data; pix2pix L1 weight 100 for the mask GAN,
  whose output starts at the training images' mean colour.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.atomic import write_text
from medsight.data.dataset import DatasetSpec, load_case
from medsight.engine.config import TrainingConfig
from medsight.errors import user_error
from medsight.io import full_suffix

GAN_PLAN_VERSION = 1
KINDS = ("class", "mask")
#: Architecture names stored in GAN checkpoints (see :func:`medsight.tasks.synthesis.networks.build_gan`).
ARCHITECTURES = {"class": "gan_class", "mask": "gan_mask"}


def _default_training(kind: str) -> TrainingConfig:
    return TrainingConfig(optimizer="adamw", learning_rate=2e-4 if kind == "class" else 1e-3, weight_decay=0.0,
                          schedule="cosine", warmup_fraction=0.0,
                          iterations_per_epoch=100 if kind == "class" else 50, epochs=50,
                          val_max_cases=256 if kind == "class" else 4)


@dataclass(frozen=True)
class GanPlan:
    """Everything GAN training and sampling need; saved as ``GAN_DIR/plans.json`` (editable).

    Attributes:
        dataset: the dataset's name; ``source``: its path.
        kind: ``"class"`` (class-conditional) or ``"mask"`` (mask-conditioned).
        dims: 2 or 3; ``channels``: image channels.
        size: class GAN: the image size; mask GAN: the training patch size (voxels per axis).
        intensity: ``{"mode": "fixed" | "per_image", "low": [...], "high": [...], "dtype": "uint8" | ...}`` per channel.
        class_names, class_counts: class GAN: classes in index order and their training counts.
        labels: mask GAN: label name -> value (the generator sees one channel per label).
        roi: mask GAN: a region-of-interest mask is an extra condition channel.
        output: how samples are written: ``layout``, ``image_suffix``, ``label_suffix``, ``binary_masks``,
            ``channel_names`` (see :mod:`medsight.tasks.synthesis.writers`).
        generator, discriminator: network constructor arguments.
        batch_size, l1_weight, ema_decay, betas, diff_augment: optimisation settings (see the module docstring).
    """

    dataset: str
    source: str
    kind: str
    dims: int
    channels: int
    size: list[int]
    intensity: dict[str, Any]
    output: dict[str, Any]
    generator: dict[str, Any]
    discriminator: dict[str, Any]
    batch_size: int
    class_names: list[str] = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    roi: bool = False
    l1_weight: float = 100.0
    ema_decay: float = 0.999
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    diff_augment: float = 0.125
    training: TrainingConfig = field(default_factory=lambda: _default_training("class"))
    version: int = GAN_PLAN_VERSION
    task: str = "synthesis"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise user_error(f"a GAN kind among {KINDS}", repr(self.kind), "plans.json", "fix 'kind'")

    @property
    def architecture(self) -> str:
        return ARCHITECTURES[self.kind]

    @property
    def label_values(self) -> list[int]:
        """Label values in channel order (mask GAN)."""
        return sorted(self.labels.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str | Path = "plans.json") -> GanPlan:
        if data.get("task") != "synthesis":
            raise user_error("a synthesis plans.json", f"task {data.get('task')!r}", where, "point at a folder written by "
                             "'medsight synthesize train'")
        try:
            d = dict(data)
            d["training"] = TrainingConfig(**d.get("training", {}))
            return cls(**d)
        except TypeError as exc:
            raise user_error("the fields of a synthesis plan", str(exc)[:80], where, "fix or delete plans.json") from exc

    def save(self, path: str | Path) -> Path:
        return write_text(path, json.dumps(self.to_dict(), indent=2))

    def with_changes(self, **changes: Any) -> GanPlan:
        return replace(self, **changes)


def load_gan_plan(path: str | Path) -> GanPlan:
    """Read ``plans.json`` of a GAN folder (or the file itself)."""
    p = Path(path)
    p = p / "plans.json" if p.is_dir() else p
    if not p.is_file():
        raise user_error("a GAN folder with plans.json", "none", p.parent, "train one with 'medsight synthesize train'")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise user_error("valid JSON", f"a parse error ({exc})", p, "fix or delete plans.json") from exc
    return GanPlan.from_dict(data, where=p)


# ---------------------------------------------------------------------------------------------- planning
def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def class_image_size(shapes: list[tuple[int, ...]], *, max_side: int) -> list[int]:
    """Median 2D image size scaled (aspect kept) so the longer side is at most ``max_side``, multiple of 4."""
    med = np.median(np.asarray(shapes, dtype=float), axis=0)
    scale = min(1.0, max_side / float(med.max()))
    return [_round_to(s * scale, 4) for s in med]


def mask_patch_size(shapes: list[tuple[int, ...]], *, gpu: bool) -> list[int]:
    """Training patch of the mask GAN: 64 px (256 GPU) per 2D side; the median 3D volume up to 64 (128 GPU) voxels."""
    med = np.median(np.asarray(shapes, dtype=float), axis=0)
    cap = (256 if gpu else 64) if len(med) == 2 else (128 if gpu else 64)
    if len(med) == 2:
        return [max(8, min(cap, int(s) // 8 * 8)) for s in med]
    return [min(cap, int(np.ceil(s / 8)) * 8) for s in med]


def intensity_rule(arrays: list[np.ndarray], modality: str) -> dict[str, Any]:
    """How images map to ``[-1, 1]`` and back (see the module docstring)."""
    dtype = str(arrays[0].dtype)
    c = arrays[0].shape[0]
    if dtype == "uint8":
        return {"mode": "fixed", "low": [0.0] * c, "high": [255.0] * c, "dtype": dtype}
    per_image = np.asarray([[np.percentile(a[k], [0.5, 99.5]) for k in range(c)] for a in arrays], dtype=float)  # (N, C, 2)
    if modality.upper() == "CT":
        pooled = np.concatenate([a.reshape(c, -1) for a in arrays], axis=1)
        lo, hi = np.percentile(pooled, 0.5, axis=1), np.percentile(pooled, 99.5, axis=1)
        return {"mode": "fixed", "low": lo.tolist(), "high": hi.tolist(), "dtype": dtype}
    med = np.median(per_image, axis=0)
    return {"mode": "per_image", "low": med[:, 0].tolist(), "high": med[:, 1].tolist(), "dtype": dtype}


def output_format(spec: DatasetSpec) -> dict[str, Any]:
    """How samples of ``spec`` are written: the dataset's layout and file suffixes (see :mod:`.writers`)."""
    first = spec.cases[0]
    if first.npz is not None:
        return {"layout": "npz", "image_suffix": ".npz", "label_suffix": "", "binary_masks": False, "channel_names": []}
    image_suffix = full_suffix(first.images[0])
    label_suffix = full_suffix(first.label) if first.label is not None else ""
    if spec.task == "classification":
        layout = "csv"
    else:
        layout = "nnunet" if spec.layout in ("nnunet", "msd") else "folders"
    return {"layout": layout, "image_suffix": image_suffix, "label_suffix": label_suffix, "binary_masks": spec.binary_masks,
            "channel_names": list(spec.channel_names)}


def make_gan_plan(spec: DatasetSpec, train_ids: list[str], *, gpu: bool = False, sample_cases: int = 20) -> GanPlan:
    """Plan a GAN for ``spec`` from (up to ``sample_cases`` of) its training cases."""
    if spec.task == "classification" and spec.extra.get("multilabel"):
        raise user_error("a single-label classification dataset", "a multi-label one", spec.root,
                         "the class-conditional GAN needs one class per image")
    by_id = {c.case_id: c for c in spec.cases}
    pick = np.unique(np.linspace(0, len(train_ids) - 1, min(sample_cases, len(train_ids))).round().astype(int))
    cases = [load_case(spec, by_id[train_ids[i]]) for i in pick]
    arrays = [np.asarray(c.image.array) for c in cases]
    dims = cases[0].image.ndim
    channels = int(arrays[0].shape[0])
    modality = spec.channel_names[0] if spec.channel_names else ""
    width = 2 if gpu else 1
    common: dict[str, Any] = {"dataset": spec.name, "source": str(Path(spec.root).resolve()), "dims": dims, "channels": channels,
                              "intensity": intensity_rule(arrays, modality), "output": output_format(spec)}
    if spec.task == "classification":
        if dims != 2:
            raise user_error("2D images for the class-conditional GAN", f"{dims}D images", spec.root,
                             "synthesize 3D data from a segmentation dataset (mask-conditioned GAN)")
        names = sorted(spec.labels, key=spec.labels.__getitem__)
        counts = np.bincount([int(by_id[c].class_label) for c in train_ids], minlength=len(names))  # type: ignore[arg-type]
        size = class_image_size([c.image.shape for c in cases], max_side=128 if gpu else 64)
        ups = upsamplings(size)
        return GanPlan(kind="class", size=size, class_names=names, class_counts=counts.tolist(), batch_size=64 if gpu else 32,
                       generator={"spatial_dims": 2, "out_channels": channels, "num_classes": len(names), "size": size,
                                  "latent_dim": 64, "width": 32 * width, "upsamplings": ups},
                       discriminator={"spatial_dims": 2, "in_channels": channels, "num_classes": len(names), "width": 32 * width,
                                      "downsamplings": ups},
                       training=_default_training("class"), **common)
    labels = dict(spec.labels)
    roi = any(c.roi is not None for c in spec.cases)
    size = mask_patch_size([c.image.shape for c in cases], gpu=gpu)
    cond = len(labels) + int(roi)
    levels = 4 if min(size) >= 64 else 3
    return GanPlan(kind="mask", size=size, labels=labels, roi=roi, batch_size=4 if dims == 2 else 2,
                   generator={"spatial_dims": dims, "condition_channels": cond, "out_channels": channels, "noise_channels": 1,
                              "channels": [16 * width * 2**i for i in range(levels)]},
                   discriminator={"spatial_dims": dims, "in_channels": channels + cond, "channels": 32 * width,
                                  "num_layers": 3 if min(size) >= 128 else 2},
                   training=_default_training("mask"), **common)


def upsamplings(size: list[int], *, max_ups: int = 4, min_side: int = 3) -> int:
    """How many 2x up-samplings the class generator needs: the most (<= ``max_ups``) that divide every side and
    leave a start map of at least ``min_side`` pixels (28 -> 2, start 7x7; 64 -> 4, start 4x4)."""
    best = 0
    for u in range(1, max_ups + 1):
        if all(s % 2**u == 0 and s // 2**u >= min_side for s in size):
            best = u
    if best == 0:
        raise user_error("an image size divisible by 2 with sides of at least 6 pixels", size, None,
                         "edit 'size' in plans.json (a multiple of 4)")
    return best
