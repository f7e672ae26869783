"""The plan: every setting derived from the data, saved as an editable, versioned ``plans.json``.

Rules (after nnU-Net v2, adapted to CPU budgets):

* target spacing: the median spacing; for anisotropic data (max/min > 3) the coarse axis uses the 10th
  percentile of its spacings so thin structures are not blurred away;
* normalisation per channel: CT clips to the foreground 0.5-99.5 percentiles and z-scores with the foreground
  mean/SD; RGB scales each channel by the dataset mean/SD; MR and others z-score each image;
* patch size: the median (resampled, cropped) shape rounded up to a multiple of the network's total stride,
  shrunk along the largest axis until ``patch voxels x batch`` fits the voxel budget;
* network: a DynUNet whose stages halve each axis while it stays >= 4 voxels (axes with spacing more than
  twice the finest are not pooled until they catch up), at most 5 down-samplings, filters doubling from
  ``base_filters`` up to ``8 x base_filters``; in 2D the first stage already pools (stride 2, as MONAI's ``UNet``)
  and a light head brings the logits back to full resolution with the image as its skip connection: the same
  depth at about half the step time, measured better on two 2D validation folds (docs/benchmarks.md, "A strided
  first stage in 2D"); 3D keeps nnU-Net's full-resolution first stage (a strided one at twice the widths was
  level with it on Hippocampus and below it on OpenKBP when both ran on one day: docs/benchmarks.md,
  "A strided first stage in 3D");
* mirroring (augmentation and test-time flips): every axis, unless the labels hold a left/right pair of one organ
  (``LeftParotid``/``RightParotid``): a flipped image shows the left organ where the right one belongs, so such
  plans do not mirror at all (as TotalSegmentator trains nnU-Net without mirroring), and rotate by at most
  ``ORIENTED_ROTATION_DEG`` in 2D (a half turn would swap the sides as well);
* 2D orientation: only the mirrors, and the rotations up to 180 degrees, that the labels' atlas shows to be
  consistent with the data (:mod:`medsight.data.orientation`): an upright chest X-ray is mirrored left-right only and
  rotated by at most ``ORIENTED_ROTATION_DEG``, a fundus photograph or a micrograph any way; 3D: rotations up to
  30 degrees, mirroring along every axis.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.atomic import write_text
from medsight.data.fingerprint import Fingerprint
from medsight.data.orientation import CONSISTENT_RATIO, ORIENTATION_KEY, consistent_transforms
from medsight.data.structure_names import lateral_pairs
from medsight.engine.config import TrainingConfig
from medsight.engine.run import read_plan_json
from medsight.errors import MedsightError, user_error
from medsight.transforms.config import AugmentConfig, Normalization, augment_from_dict, normalization_text

PLAN_VERSION = 1

# voxels x batch per step that keeps a CPU step around a second with base 32 filters; GPUs can go far higher.
DEFAULT_VOXEL_BUDGET = {2: 4 * 256 * 256, 3: 2 * 64 * 64 * 64}
# the largest rotation of 2D images with a canonical orientation (or with labels named by side)
ORIENTED_ROTATION_DEG = 15.0
# 2D networks whose first stage pools, as MONAI's UNet: no convolution block at full resolution but the output head's
STRIDED_FIRST_2D = True


@dataclass(frozen=True)
class NetworkConfig:
    """DynUNet topology. ``kernels``/``strides`` have one entry per stage (the first stride is all ones)."""

    name: str
    kernels: list[list[int]]
    strides: list[list[int]]
    filters: list[int]
    deep_supervision: bool = True
    deep_supr_num: int = 2


@dataclass(frozen=True)
class Plan:
    """Everything preprocessing, training and prediction need; serialised to ``plans.json``."""

    dataset: str
    dims: int
    channel_names: list[str]
    modalities: list[str]
    labels: dict[str, int]
    target_spacing: list[float]
    normalization: list[Normalization]
    patch_size: list[int]
    batch_size: int
    network: NetworkConfig
    training: TrainingConfig = field(default_factory=TrainingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    crop_nonzero: bool = True
    binary_masks: bool = False
    output_format: str = ".nii.gz"
    postprocessing: dict[str, Any] = field(default_factory=lambda: {"largest_component": [], "allowed": True, "decided": False})
    fingerprint: dict[str, Any] = field(default_factory=dict)
    version: int = PLAN_VERSION
    task: str = "segmentation"
    #: partial labels: case id -> label values not annotated in that case (unlabelled, not background); the loss
    #: merges them into background for that case and validation does not score them (docs/segmentation.md).
    absent_labels: dict[str, list[int]] = field(default_factory=dict)

    def absent_of(self, case_id: str) -> list[int]:
        """Label values not annotated in ``case_id`` (empty for a fully annotated or unknown case)."""
        return list(self.absent_labels.get(case_id, []))

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str | Path = "plans.json") -> Plan:
        try:
            if int(d.get("version", 0)) > PLAN_VERSION:
                raise user_error(f"plan version <= {PLAN_VERSION}", d.get("version"), where, "upgrade medsight")
            return cls(
                **{k: v for k, v in d.items() if k not in ("normalization", "network", "training", "augment")},
                normalization=[Normalization(**n) for n in d["normalization"]],
                network=NetworkConfig(**d["network"]),
                training=TrainingConfig(**d.get("training", {})),
                augment=augment_from_dict(d.get("augment", {})),
            )
        except MedsightError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise user_error("a medsight plans.json", f"an invalid field ({exc})", where, "re-create it with 'medsight plan'") from exc

    def save(self, path: str | Path) -> Path:
        return write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        return cls.from_dict(read_plan_json(path), where=Path(path))

    def with_changes(self, **changes: Any) -> Plan:
        return replace(self, **changes)

    def table(self) -> list[tuple[str, str]]:
        """Rows (setting, value) for a readable display."""
        net = self.network
        rows = [
            ("dataset", self.dataset),
            ("dimensions", f"{self.dims}D"),
            ("channels", ", ".join(f"{n} [{m}]" for n, m in zip(self.channel_names, self.modalities))),
            ("labels", ", ".join(f"{v}={k}" for k, v in self.labels.items())),
            ("target spacing (mm)", " x ".join(f"{s:g}" for s in self.target_spacing)),
            ("normalisation", "; ".join(normalization_text(n) for n in self.normalization)),
            ("patch size", " x ".join(str(p) for p in self.patch_size)),
            ("batch size", str(self.batch_size)),
            ("network", f"{net.name}, {len(net.filters)} stages, filters {net.filters}"
                        + (", first stage strided (a light full-resolution head)" if any(int(x) != 1 for x in net.strides[0]) else "")),
            ("strides", " ".join("x".join(map(str, s)) for s in net.strides)),
            ("deep supervision", str(net.deep_supervision)),
            ("optimiser", f"{self.training.optimizer} lr {self.training.learning_rate:g}, {self.training.schedule}"),
            ("augmentation", self.augmentation_text()),
            ("crop to non-zero", str(self.crop_nonzero)),
            ("partial labels", f"{len(self.absent_labels)} case(s) lack some labels (unlabelled, not background)"
             if self.absent_labels else "none (every case fully annotated)"),
            ("postprocessing", "connected-component rules per label allowed (decided after cross-validation)" if self.postprocessing.get("allowed") else "none"),
        ]
        fp = self.fingerprint.get("summary") if isinstance(self.fingerprint, dict) else None
        if fp:
            rows.insert(1, ("cases", str(fp.get("cases"))))
            rows.insert(5, ("median shape (cropped)", " x ".join(map(str, fp.get("median_shape", [])))))
        return rows

    def augmentation_text(self) -> str:
        """The spatial augmentation in words, with the 2D orientation scores it came from."""
        aug = self.augment
        axes = ", ".join(str(a) for a in aug.mirror_axes) or "none"
        text = f"rotation up to {aug.rotate_deg:g} degrees, mirroring axes {axes}"
        full = self.fingerprint.get("full") if isinstance(self.fingerprint, dict) else None
        scores = (full or {}).get("extra", {}).get(ORIENTATION_KEY)
        if self.dims == 2 and scores:
            text += (f" (label atlas vs itself mirrored up-down {scores['flip0']:.2f}, left-right {scores['flip1']:.2f},"
                     f" turned 90 degrees {scores['rot90']:.2f}; kept at >= {CONSISTENT_RATIO})")
        return text


def target_spacing_of(fp: Fingerprint) -> np.ndarray:
    sp = np.asarray(fp.spacings, dtype=float)
    target = np.median(sp, axis=0)
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    if others and target[worst] > 3 * max(target[i] for i in others):
        target[worst] = max(np.percentile(sp[:, worst], 10), 3 * max(target[i] for i in others))
    return target


def _topology(patch: np.ndarray, spacing: np.ndarray, max_pools: int = 5, min_size: int = 4,
              strided_first: bool = False) -> tuple[list[list[int]], list[list[int]]]:
    """Kernels and strides: pool an axis while it stays >= min_size*2 and its spacing is within 2x the finest.
    ``strided_first``: the first stage already pools (it counts towards ``max_pools``), unless that leaves fewer
    than 3 stages."""
    d = len(patch)
    size = patch.astype(float).copy()
    sp = spacing.astype(float).copy()

    def pooled() -> list[int]:
        return [2 if (size[i] >= 2 * min_size and sp[i] <= 2 * sp.min()) else 1 for i in range(d)]

    kernels: list[list[int]] = [[3 if sp[i] <= 2 * sp.min() else 1 for i in range(d)]]
    strides: list[list[int]] = [pooled() if strided_first else [1] * d]
    size, sp = size / np.asarray(strides[0]), sp * np.asarray(strides[0])
    for _ in range(max_pools - (1 if any(x == 2 for x in strides[0]) else 0)):
        s = pooled()
        if not any(x == 2 for x in s):
            break
        strides.append(s)
        size = size / np.asarray(s)
        sp = sp * np.asarray(s)
        kernels.append([3 if sp[i] <= 2 * sp.min() else 1 for i in range(d)])
    if strided_first and len(strides) < 3:  # too small to pool first: DynUNet needs 3 stages
        return _topology(patch, spacing, max_pools, min_size, strided_first=False)
    return kernels, strides


def augmentation_of(fp: Fingerprint, labels: dict[str, int]) -> AugmentConfig:
    """The spatial augmentation a dataset allows. Mirroring never where labels are named by side (left/right lung:
    a mirrored image would need swapped labels). In 2D, only the mirrors that the labels' atlas shows to be consistent
    with the data (:mod:`medsight.data.orientation`), and rotations up to 180 degrees only when both mirrors and the
    90-degree turn are (a fundus photograph, not an upright chest X-ray); otherwise up to ``ORIENTED_ROTATION_DEG``.
    3D: rotations up to 30 degrees about each axis (nnU-Net's), mirroring along every axis."""
    d = fp.dims
    lateral = bool(lateral_pairs(n for n, v in labels.items() if v != 0))
    if d == 3:
        return AugmentConfig(mirror_axes=() if lateral else (0, 1, 2), rotate_deg=30.0)
    allowed = consistent_transforms(fp.extra.get(ORIENTATION_KEY, {}))
    mirror = () if lateral else tuple(ax for ax in (0, 1) if f"flip{ax}" in allowed)
    any_way = not lateral and len(mirror) == 2 and "rot90" in allowed
    return AugmentConfig(mirror_axes=mirror, rotate_deg=180.0 if any_way else ORIENTED_ROTATION_DEG)


def make_plan(
    fp: Fingerprint,
    *,
    dataset: str,
    labels: dict[str, int],
    binary_masks: bool = False,
    voxel_budget: int | None = None,
    base_filters: int = 32,
    max_batch: int = 12,
    min_batch: int = 2,
    strided_first_stage: bool | None = None,
) -> Plan:
    """Derive a plan from a fingerprint (see the module docstring for the rules).

    Args:
        fp: the dataset fingerprint.
        dataset: dataset name.
        labels: label name -> value, background included.
        binary_masks: raster masks with {0, 255} values.
        voxel_budget: patch voxels x batch size per step; defaults by dimensionality (CPU-friendly).
        base_filters: filters of the first stage (32 like nnU-Net; 16 for quick CPU runs).
        max_batch: largest batch size to choose.
        min_batch: the patch shrinks until this many patches fit the voxel budget (2 like nnU-Net; a CPU default
            of 8 in 2D was measured on validation folds and rejected: docs/benchmarks.md, "Patch size or batch size").
        strided_first_stage: the network's first stage pools (stride 2) and a light head brings the logits back to
            full resolution (:class:`medsight.models.unet.FullResolutionHead`); default ``STRIDED_FIRST_2D`` in 2D,
            never in 3D.
    """
    d = fp.dims
    budget = voxel_budget or DEFAULT_VOXEL_BUDGET[d]
    target = target_spacing_of(fp)
    med_spacing = fp.median_spacing
    shapes = np.asarray(fp.shapes, dtype=float) * np.asarray(fp.spacings, dtype=float) / target
    median_shape = np.median(shapes, axis=0)
    patch = np.maximum(median_shape, 8)
    # shrink the largest axis until ``min_batch`` patches fit
    while np.prod(patch) * min_batch > budget:
        i = int(np.argmax(patch / np.maximum(target / target.min(), 1)))
        patch[i] *= 0.9
    strided = (STRIDED_FIRST_2D and d == 2) if strided_first_stage is None else strided_first_stage
    kernels, strides = _topology(patch, target, strided_first=strided)
    total_stride = np.prod(np.asarray(strides), axis=0)
    patch_i = [int(math.ceil(p / s) * s) for p, s in zip(patch, total_stride)]
    batch = int(max(min_batch, min(max_batch, budget // int(np.prod(patch_i)))))
    # small datasets: no more than ~5 % of all voxels per step
    total_vox = float(np.prod(median_shape)) * fp.num_cases
    batch = int(max(2, min(batch, round(0.05 * total_vox / np.prod(patch_i)) or 2)))
    filters = [min(base_filters * 2**i, base_filters * 8) for i in range(len(strides))]
    norms = []
    modalities = [c.modality for c in fp.channels]
    for c in fp.channels:
        if c.modality == "CT":
            norms.append(Normalization("ct", clip_low=c.fg_p00_5, clip_high=c.fg_p99_5, mean=c.fg_mean, std=max(c.fg_std, 1e-6)))
        elif c.modality == "RGB" or (fp.image_format in ("png", "tiff", "jpeg", "bmp", "gif") and len(fp.channels) == 3):
            norms.append(Normalization("rgb", mean=c.mean, std=max(c.std, 1e-6)))
        else:
            norms.append(Normalization("zscore"))
    fmt = {"png": ".png", "tiff": ".png", "gif": ".png", "bmp": ".png", "jpeg": ".png"}.get(fp.image_format, ".nii.gz")
    aug = augmentation_of(fp, labels)
    fg_labels = [v for v in labels.values() if v != 0]
    single_component_likely = all(fp.label_cases.get(v, 0) >= 0.9 * fp.annotated_cases(v) for v in fg_labels)
    return Plan(
        dataset=dataset, dims=d, channel_names=[c.name for c in fp.channels], modalities=modalities, labels=dict(labels),
        target_spacing=[round(float(x), 5) for x in target], normalization=norms, patch_size=patch_i, batch_size=batch,
        network=NetworkConfig(name="dynunet", kernels=kernels, strides=strides, filters=filters,
                              deep_supervision=len(strides) > 2, deep_supr_num=min(2, len(strides) - 2) or 1),
        augment=aug, binary_masks=binary_masks, output_format=fmt,
        crop_nonzero=fp.crop_fraction < 0.95,
        postprocessing={"largest_component": [], "allowed": bool(single_component_likely), "decided": False},
        fingerprint={"summary": fp.summary(), "median_spacing": [float(x) for x in med_spacing], "full": fp.to_dict()},
        absent_labels={k: list(v) for k, v in fp.absent_labels.items()},
    )
