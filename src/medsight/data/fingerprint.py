"""Dataset fingerprint: spacings, sizes, intensities (overall and inside the foreground), label statistics.

The fingerprint is all the planner needs; it is computed once, one case at a time, and saved in ``plans.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from medsight.data.dataset import DatasetSpec, load_case
from medsight.data.field_of_view import RASTER_EXTENT_KEY, combine
from medsight.data.field_of_view import measure as measure_extent
from medsight.data.orientation import ORIENTATION_KEY, LabelAtlas

log = logging.getLogger(__name__)

_SAMPLES_PER_CASE = 10_000


@dataclass(frozen=True)
class ChannelStats:
    """Intensity statistics of one channel; ``fg_*`` are measured inside the labelled foreground."""

    name: str
    modality: str
    mean: float
    std: float
    p00_5: float
    p99_5: float
    fg_mean: float
    fg_std: float
    fg_p00_5: float
    fg_p99_5: float


@dataclass(frozen=True)
class Fingerprint:
    """What the planner knows about a dataset.

    Attributes:
        dims: 2 or 3 spatial dimensions.
        num_cases: cases measured.
        spacings: per-case spacing (mm, per array axis).
        shapes: per-case spatial shape after cropping to the non-zero region.
        channels: per-channel intensity statistics.
        label_voxels: label value -> total voxel count.
        label_cases: label value -> number of cases containing it.
        image_format: format of the first image (``nifti``, ``png`` ...), to choose output formats.
        crop_fraction: median fraction of voxels kept by the non-zero crop.
        absent_labels: partial labels: case id -> label values not annotated in that case (from
            :attr:`~medsight.data.spec.DatasetSpec.absent`); ``label_cases`` counts only annotated cases.
    """

    dims: int
    num_cases: int
    spacings: list[list[float]]
    shapes: list[list[int]]
    channels: list[ChannelStats]
    label_voxels: dict[int, int]
    label_cases: dict[int, int]
    image_format: str
    crop_fraction: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)
    absent_labels: dict[str, list[int]] = field(default_factory=dict)

    @property
    def median_spacing(self) -> np.ndarray:
        return np.median(np.asarray(self.spacings), axis=0)

    @property
    def median_shape(self) -> np.ndarray:
        return np.median(np.asarray(self.shapes), axis=0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["label_voxels"] = {str(k): v for k, v in self.label_voxels.items()}
        d["label_cases"] = {str(k): v for k, v in self.label_cases.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fingerprint:
        return cls(
            dims=int(d["dims"]), num_cases=int(d["num_cases"]), spacings=d["spacings"], shapes=d["shapes"],
            channels=[ChannelStats(**c) for c in d["channels"]],
            label_voxels={int(k): int(v) for k, v in d["label_voxels"].items()},
            label_cases={int(k): int(v) for k, v in d["label_cases"].items()},
            image_format=d.get("image_format", ""), crop_fraction=float(d.get("crop_fraction", 1.0)), extra=d.get("extra", {}),
            absent_labels={str(k): [int(x) for x in v] for k, v in d.get("absent_labels", {}).items()},
        )

    def annotated_cases(self, value: int) -> int:
        """Cases in which label ``value`` was annotated (all cases minus those where it is absent)."""
        return self.num_cases - sum(value in v for v in self.absent_labels.values())

    def summary(self) -> dict[str, Any]:
        """Small, human-readable facts for the plan table and model cards."""
        sp = np.asarray(self.spacings)
        sh = np.asarray(self.shapes)
        return {
            "cases": self.num_cases,
            "dims": self.dims,
            "median_spacing_mm": [round(float(x), 4) for x in np.median(sp, axis=0)],
            "spacing_range_mm": [[round(float(a), 4), round(float(b), 4)] for a, b in zip(sp.min(0), sp.max(0))],
            "median_shape": [int(x) for x in np.median(sh, axis=0)],
            "shape_range": [[int(a), int(b)] for a, b in zip(sh.min(0), sh.max(0))],
            "anisotropy": round(float(np.max(np.median(sp, 0)) / np.min(np.median(sp, 0))), 3),
            "channels": [f"{c.name} ({c.modality})" for c in self.channels],
            "label_fraction": {
                str(k): round(v / max(sum(self.label_voxels.values()), 1), 5) for k, v in sorted(self.label_voxels.items())
            },
        }


def nonzero_bbox(image: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of voxels that are non-zero in any channel of ``(C, *spatial)``; the full extent if none."""
    nz = np.any(image != 0, axis=0)
    if not nz.any():
        return tuple(slice(0, s) for s in nz.shape)
    out = []
    for ax in range(nz.ndim):
        other = tuple(i for i in range(nz.ndim) if i != ax)
        hit = np.where(nz.any(axis=other))[0]
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)


def guess_modality(channel_name: str, source_modality: str) -> str:
    """``"CT"``, ``"MR"``, ``"RGB"`` or ``"other"`` from a channel name (nnU-Net style) or DICOM modality."""
    name = channel_name.strip().upper()
    if name == "CT" or source_modality.upper() == "CT":
        return "CT"
    if name in ("R", "G", "B", "RGB"):
        return "RGB"
    if name.startswith(("MR", "T1", "T2", "FLAIR", "ADC", "DWI", "PD")) or source_modality.upper() == "MR":
        return "MR"
    return "other"


def compute_fingerprint(spec: DatasetSpec, *, progress: Callable[[int, int], None] | None = None, seed: int = 0) -> Fingerprint:
    """Measure a segmentation dataset, one case at a time.

    Args:
        spec: the dataset.
        progress: called as ``progress(done, total)`` after each case.
        seed: seed of the local generator that samples intensities.
    """
    rng = np.random.default_rng(seed)
    spacings, shapes, dims_seen = [], [], set()
    n_ch: int | None = None
    all_samples: list[list[np.ndarray]] = []
    fg_samples: list[list[np.ndarray]] = []
    label_voxels: dict[int, int] = {}
    label_cases: dict[int, int] = {}
    crop_fracs = []
    first_format, names, modalities = "", [], []
    extents: list[tuple[float, float | None]] = []  # raster 2D images: their side and field of view
    atlas = LabelAtlas()  # 2D: where the labels lie, for the orientation the augmentation keeps
    foreground = [v for v in spec.labels.values() if v != 0]
    total = len(spec.cases)
    for i, ref in enumerate(spec.cases):
        case = load_case(spec, ref)
        img = case.image
        arr = np.asarray(img.array, dtype=np.float32)
        if n_ch is None:
            n_ch = img.num_channels
            first_format = img.source.format
            names = list(case.channel_names)
            modalities = [guess_modality(n, img.source.modality) for n in names]
            all_samples = [[] for _ in range(n_ch)]
            fg_samples = [[] for _ in range(n_ch)]
        dims_seen.add(img.ndim)
        bbox = nonzero_bbox(arr)
        crop = arr[(slice(None), *bbox)]
        crop_fracs.append(crop[0].size / max(arr[0].size, 1))
        spacings.append(list(img.spacing))
        shapes.append(list(crop.shape[1:]))
        if img.is_raster and img.ndim == 2:
            extents.append(measure_extent(arr))
        lab = case.label_array
        if lab is not None:
            vals, counts = np.unique(lab, return_counts=True)
            for v, c in zip(vals.tolist(), counts.tolist()):
                label_voxels[v] = label_voxels.get(v, 0) + int(c)
                label_cases[v] = label_cases.get(v, 0) + 1
            fg = lab > 0
            if lab.ndim == 2:
                absent = set(spec.absent_values(ref.case_id))
                atlas.add(fg if spec.binary_masks else lab, i, [1] if spec.binary_masks else
                          [v for v in foreground if v not in absent])
        else:
            fg = np.zeros(arr.shape[1:], dtype=bool)
        for c in range(min(n_ch, arr.shape[0])):
            ch = arr[c]
            flat = ch.ravel()
            take = rng.choice(flat.size, size=min(_SAMPLES_PER_CASE, flat.size), replace=False)
            all_samples[c].append(flat[take])
            fgv = ch[fg]
            if fgv.size:
                take = rng.choice(fgv.size, size=min(_SAMPLES_PER_CASE, fgv.size), replace=False)
                fg_samples[c].append(fgv[take])
        if progress:
            progress(i + 1, total)
    if n_ch is None:
        raise ValueError(f"Dataset {spec.name} has no cases")
    channels = []
    for c in range(n_ch):
        a = np.concatenate(all_samples[c]) if all_samples[c] else np.zeros(1)
        a = a[np.isfinite(a)]
        f = np.concatenate(fg_samples[c]) if fg_samples[c] else a
        f = f[np.isfinite(f)] if f.size else a
        channels.append(ChannelStats(
            name=names[c] if c < len(names) else f"ch{c}", modality=modalities[c] if c < len(modalities) else "other",
            mean=float(a.mean()), std=float(a.std()), p00_5=float(np.percentile(a, 0.5)), p99_5=float(np.percentile(a, 99.5)),
            fg_mean=float(f.mean()), fg_std=float(f.std()), fg_p00_5=float(np.percentile(f, 0.5)), fg_p99_5=float(np.percentile(f, 99.5)),
        ))
    # pictures carry no pixel size: the training scale is their field of view or side (data.field_of_view)
    extra: dict[str, Any] = {RASTER_EXTENT_KEY: combine(extents).as_dict()} if extents and len(extents) == total else {}
    if atlas.sums:
        extra[ORIENTATION_KEY] = atlas.scores()
    return Fingerprint(
        dims=max(dims_seen), num_cases=total, spacings=spacings, shapes=shapes, channels=channels,
        label_voxels=label_voxels, label_cases=label_cases, image_format=first_format,
        crop_fraction=float(np.median(crop_fracs)), absent_labels=spec.absent_label_values, extra=extra,
    )
