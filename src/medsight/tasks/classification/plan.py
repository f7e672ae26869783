"""The classification plan: input size, normalisation, network, batch size and imbalance handling from the data.

Rules:

* 2D images are resized to one input size: the median image size, scaled down (aspect kept) so the longer side is
  at most 224 pixels on a CPU (384 with a GPU), rounded to a multiple of 4 (to 16 above 64 pixels) so every
  network, the Vision Transformer's patches included, divides it;
* 3D volumes are resampled to the median spacing and centre-cropped or padded to the median resampled size,
  capped at 96 voxels per axis on a CPU (128 with a GPU) - physical size is kept, which matters when the answer
  depends on the size of a structure;
* normalisation per channel as for segmentation: CT clips to the 0.5-99.5 percentiles and z-scores with the
  dataset's statistics (Hounsfield units mean the same everywhere); everything else is z-scored per image, which
  travels better across scanners and hospitals than dataset statistics;
* network: ResNet-18 (MONAI), with a stride-1 stem for 2D inputs of 64 pixels or less (3D: 32 voxels);
* class imbalance (largest / smallest class > 1.5): the loss weights classes by inverse square-root frequency
  (multi-label: positive weight per class); ``"sampler"`` balances batches instead;
* one epoch is one pass over the training cases; early stopping on the validation AUC.
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
from medsight.engine.config import TrainingConfig
from medsight.engine.run import plan_task, read_plan_json
from medsight.errors import MedsightError, did_you_mean, user_error
from medsight.transforms.config import AugmentConfig, Normalization, augment_from_dict, normalization_text

CLASSIFICATION_PLAN_VERSION = 1
ARCHITECTURES = ("resnet18", "resnet50", "densenet121", "smallcnn", "cnnlstm", "vit")


@dataclass(frozen=True)
class ClassificationPlan:
    """Everything classification preprocessing, training and prediction need; saved as ``plans.json``."""

    dataset: str
    dims: int
    channel_names: list[str]
    modalities: list[str]
    class_names: list[str]
    multilabel: bool
    input_size: list[int]
    resize: bool
    target_spacing: list[float]
    normalization: list[Normalization]
    network: str
    network_args: dict[str, Any]
    batch_size: int
    class_counts: list[int]
    imbalance: str = "weighted_loss"
    class_weights: list[float] = field(default_factory=list)
    tabular: dict[str, Any] = field(default_factory=dict)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    patience: int = 20
    threshold_method: str = "youden"
    target_sensitivity: float | None = None
    freeze_encoder: bool = False
    fingerprint: dict[str, Any] = field(default_factory=dict)
    version: int = CLASSIFICATION_PLAN_VERSION
    task: str = "classification"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labels(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.class_names)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str | Path = "plans.json") -> ClassificationPlan:
        try:
            if int(d.get("version", 0)) > CLASSIFICATION_PLAN_VERSION:
                raise user_error(f"plan version <= {CLASSIFICATION_PLAN_VERSION}", d.get("version"), where, "upgrade medsight")
            plan = cls(**{k: v for k, v in d.items() if k not in ("normalization", "training", "augment")},
                       normalization=[Normalization(**n) for n in d["normalization"]],
                       training=TrainingConfig(**d.get("training", {})), augment=augment_from_dict(d.get("augment", {})))
        except MedsightError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise user_error("a medsight classification plans.json", f"an invalid field ({exc})", where,
                             "re-create it with 'medsight plan DATASET --task classification'") from exc
        if plan.network not in ARCHITECTURES:
            raise user_error(f"a network among {', '.join(ARCHITECTURES)}", plan.network, where, "fix 'network' in plans.json")
        return plan

    def save(self, path: str | Path) -> Path:
        return write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def with_changes(self, **changes: Any) -> ClassificationPlan:
        return replace(self, **changes)

    def table(self) -> list[tuple[str, str]]:
        """Rows (setting, value) for a readable display."""
        fp = self.fingerprint.get("summary", {}) if isinstance(self.fingerprint, dict) else {}
        counts = ", ".join(f"{n}: {c}" for n, c in zip(self.class_names, self.class_counts))
        rows = [
            ("dataset", self.dataset),
            ("cases", str(fp.get("cases", sum(self.class_counts) if not self.multilabel else "?"))),
            ("dimensions", f"{self.dims}D"),
            ("channels", ", ".join(f"{n} [{m}]" for n, m in zip(self.channel_names, self.modalities))),
            ("classes", f"{'multi-label ' if self.multilabel else ''}{counts}"),
            ("input size", " x ".join(map(str, self.input_size)) + (" (resized)" if self.resize else " (resampled, cropped/padded)")),
            ("normalisation", "; ".join(normalization_text(n) for n in self.normalization)),
            ("network", f"{self.network} {self.network_args}" if self.network_args else self.network),
            ("batch size", str(self.batch_size)),
            ("imbalance", self.imbalance + (f" (weights {[round(w, 3) for w in self.class_weights]})" if self.class_weights else "")),
            ("tabular columns", ", ".join(self.tabular.get("columns", [])) or "none"),
            ("optimiser", f"{self.training.optimizer} lr {self.training.learning_rate:g}, {self.training.schedule}"),
            ("early stopping", f"validation AUC, patience {self.patience} epochs"),
            ("threshold", self.threshold_method + (f" (sensitivity {self.target_sensitivity})" if self.target_sensitivity else "")),
        ]
        return rows


def _round_size(n: float, small: int = 4, large: int = 16) -> int:
    step = small if n <= 64 else large
    return int(max(step, round(n / step) * step))


def class_counts(labels: list[int | tuple[int, ...]], num_classes: int, multilabel: bool) -> list[int]:
    if multilabel:
        arr = np.asarray(labels, dtype=np.int64).reshape(len(labels), num_classes)
        return [int(x) for x in arr.sum(0)]
    return [int(x) for x in np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)]


def make_classification_plan(
    fp: Fingerprint,
    *,
    dataset: str,
    class_names: list[str],
    labels: list[int | tuple[int, ...]],
    multilabel: bool = False,
    network: str | None = None,
    gpu: bool = False,
    tabular: dict[str, Any] | None = None,
) -> ClassificationPlan:
    """Derive a classification plan from a fingerprint and the training labels (see the module docstring)."""
    d = fp.dims
    counts = class_counts(labels, len(class_names), multilabel)
    if not multilabel and sum(c > 0 for c in counts) < 2:
        raise MedsightError(f"Expected at least two classes with cases in {dataset}, got counts {dict(zip(class_names, counts))}; "
                            "add cases of the missing class")
    med_shape = np.median(np.asarray(fp.shapes, dtype=float), axis=0)
    if d == 2:
        cap = 384 if gpu else 224
        scale = min(1.0, cap / float(med_shape.max()))
        size = [_round_size(s * scale) for s in med_shape]
        spacing: list[float] = []
        resize = True
    else:
        sp = np.asarray(fp.spacings, dtype=float)
        target = np.median(sp, axis=0)
        shapes = np.asarray(fp.shapes, dtype=float) * sp / target
        cap = 128 if gpu else 96
        size = [min(_round_size(s, 4, 8), cap) for s in np.median(shapes, axis=0)]
        spacing = [round(float(x), 5) for x in target]
        resize = False
    norms = []
    for c in fp.channels:
        if c.modality == "CT":
            norms.append(Normalization("ct", clip_low=c.p00_5, clip_high=c.p99_5, mean=c.mean, std=max(c.std, 1e-6)))
        else:
            norms.append(Normalization("zscore"))
    name = network or "resnet18"
    if name not in ARCHITECTURES:

        raise did_you_mean(name, ARCHITECTURES, "network")
    if name == "cnnlstm" and d != 3:
        raise MedsightError(f"Expected 3D volumes for the CNN-LSTM (it reads a volume slice by slice), got 2D images in {dataset}; "
                            "choose --model resnet18 or another 2D network")
    pixels = float(np.prod(size))
    batch = 64 if pixels <= 64**2 else 32 if pixels <= 128**2 else 16
    if d == 3:
        batch = 16 if pixels <= 48**3 else 8 if pixels <= 64**3 else 4
    positives = np.asarray(counts, dtype=float)
    n = len(labels)
    if multilabel:
        ratio = float(np.max(np.maximum(n - positives, 1) / np.maximum(positives, 1)))
        weights = [round(float(math.sqrt(max(n - p, 1) / max(p, 1))), 4) for p in positives] if ratio > 1.5 else []
    else:
        present = positives[positives > 0]
        ratio = float(present.max() / present.min())
        weights = [round(float(math.sqrt(positives.max() / max(p, 1))), 4) for p in positives] if ratio > 1.5 else []
    iters = max(1, math.ceil(n / batch))
    augment = AugmentConfig(p_rotate=0.3, rotate_deg=15.0, p_scale=0.3, scale_range=(0.85, 1.15), p_elastic=0.0,
                            mirror_axes=(d - 1,) if d == 2 else tuple(range(d)), p_brightness=0.2, p_contrast=0.2,
                            p_gamma=0.2, p_noise=0.1, p_blur=0.1)
    training = TrainingConfig(optimizer="adamw", learning_rate=1e-3, weight_decay=1e-4, schedule="cosine", warmup_fraction=0.03,
                              iterations_per_epoch=iters, epochs=100, foreground_fraction=0.0, val_max_cases=10**9)
    return ClassificationPlan(
        dataset=dataset, dims=d, channel_names=[c.name for c in fp.channels], modalities=[c.modality for c in fp.channels],
        class_names=list(class_names), multilabel=multilabel, input_size=size, resize=resize, target_spacing=spacing,
        normalization=norms, network=name, network_args={}, batch_size=batch, class_counts=counts,
        imbalance="weighted_loss" if weights else "none", class_weights=weights, tabular=dict(tabular or {}),
        training=training, augment=augment,
        fingerprint={"summary": {**fp.summary(), "class_counts": dict(zip(class_names, counts))},
                     "median_spacing": [float(x) for x in fp.median_spacing]},
    )


def load_plan(path: str | Path) -> ClassificationPlan:
    """The ``plans.json`` of a classification run; a plan of another task is one clear error."""
    data = read_plan_json(path)
    if plan_task(data) != "classification":
        raise user_error("a classification plans.json", f"a {plan_task(data)} plan", path,
                         "use another --out (or --plan) for this task")
    return ClassificationPlan.from_dict(data, where=path)
