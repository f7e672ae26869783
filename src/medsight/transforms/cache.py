"""Preprocess cases to the plan and cache them: one ``.npy`` per case (memory-mappable) plus its properties.

Layout of a cache folder::

    <case>.npy          float32 (C, *spatial), normalised, on the plan's grid
    <case>_seg.npy      uint8 (*spatial) labels (absent for unlabelled cases)
    <case>.json         properties: original shape/geometry, crop box, resampled shape, foreground samples' file, key
    <case>_fg.npy       int32 (N, 1 + d): sampled foreground voxel locations as (label, *index), for oversampling

A case is re-done only when its input files (size, mtime) or the preprocessing part of the plan change.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medsight.core.atomic import atomic_path, write_text
from medsight.core.case import Case
from medsight.core.guard import check_allocation
from medsight.data.dataset import CaseRef, DatasetSpec, load_case
from medsight.data.fingerprint import nonzero_bbox
from medsight.transforms.config import PreprocessConfig, SegmentationPreprocessing
from medsight.transforms.intensity import normalize
from medsight.transforms.spatial import needs_resampling, new_shape, resize_image, resize_labels

log = logging.getLogger(__name__)

_FG_SAMPLES = 10_000


@dataclass(frozen=True)
class Preprocessed:
    """One case on the plan's grid, with what is needed to map predictions back."""

    case_id: str
    image: np.ndarray  # (C, *spatial) float32
    label: np.ndarray | None  # (*spatial) uint8
    properties: dict[str, Any]


def plan_key(plan: SegmentationPreprocessing) -> str:
    """Hash of the plan fields that change preprocessing output."""
    fields = {"spacing": plan.target_spacing, "norm": [n.__dict__ for n in plan.normalization], "crop": plan.crop_nonzero,
              "labels": plan.labels, "binary": plan.binary_masks, "v": 1}
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def _files_key(ref: CaseRef) -> str:
    parts = []
    for f in ref.files:
        try:
            st = Path(f).stat()
            parts.append(f"{f}:{st.st_size}:{int(st.st_mtime)}")
        except OSError:
            parts.append(f"{f}:missing")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]


def preprocess_case(case: Case, plan: SegmentationPreprocessing, *, seed: int = 0) -> Preprocessed:
    """Crop to the non-zero region, resample to the plan's spacing and normalise. Pure function of its inputs."""
    img = case.image
    if img.num_channels != len(plan.normalization):
        raise ValueError(
            f"Expected {len(plan.normalization)} channel(s) as planned, got {img.num_channels} in case {case.case_id} "
            f"({img.source.path}); use images with the training data's channels"
        )
    arr = np.asarray(img.array, dtype=np.float32)
    lab = case.label_array
    bbox = nonzero_bbox(arr) if plan.crop_nonzero else tuple(slice(0, s) for s in img.shape)
    arr = arr[(slice(None), *bbox)]
    if lab is not None:
        lab = lab[bbox]
    arr = normalize(arr, plan.normalization)
    target = tuple(plan.target_spacing)
    shape_after = new_shape(arr.shape[1:], img.spacing, target) if needs_resampling(img.spacing, target) else arr.shape[1:]
    arr = resize_image(arr, shape_after).numpy()
    if lab is not None:
        lab = resize_labels(lab, shape_after, plan.num_classes)
    props = {
        "case_id": case.case_id,
        "original_shape": list(img.shape),
        "original_spacing": list(img.spacing),
        "origin": list(img.origin),
        "direction": np.asarray(img.direction).tolist(),
        "bbox": [[s.start, s.stop] for s in bbox],
        "cropped_shape": [s.stop - s.start for s in bbox],
        "shape": list(arr.shape[1:]),
        "source": img.source.path,
        "format": img.source.format,
    }
    return Preprocessed(case.case_id, arr, lab.astype(np.uint8) if lab is not None else None, props)


def foreground_locations(label: np.ndarray, *, seed: int = 0, per_label: int = _FG_SAMPLES) -> np.ndarray:
    """Sample up to ``per_label`` voxel indices of each foreground label: ``(N, 1 + d)`` int32 rows (label, *index)."""
    rng = np.random.default_rng(seed)
    rows = []
    for v in np.unique(label):
        if v == 0:
            continue
        idx = np.argwhere(label == v)
        if len(idx) > per_label:
            idx = idx[rng.choice(len(idx), per_label, replace=False)]
        rows.append(np.concatenate([np.full((len(idx), 1), v), idx], axis=1))
    d = label.ndim
    return np.concatenate(rows).astype(np.int32) if rows else np.zeros((0, 1 + d), dtype=np.int32)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, arr, allow_pickle=False)


def _work(args: tuple[DatasetSpec, CaseRef, PreprocessConfig, str, str]) -> str:
    spec, ref, plan, out_dir, key = args
    out = Path(out_dir)
    pre = preprocess_case(load_case(spec, ref), plan)
    _save_npy(out / f"{ref.case_id}.npy", pre.image)
    if pre.label is not None:
        _save_npy(out / f"{ref.case_id}_seg.npy", pre.label)
        _save_npy(out / f"{ref.case_id}_fg.npy", foreground_locations(pre.label))
    write_text(out / f"{ref.case_id}.json", json.dumps({**pre.properties, "key": key}, indent=1))
    return ref.case_id


def preprocess_dataset(
    spec: DatasetSpec,
    plan: SegmentationPreprocessing,
    out_dir: str | Path,
    *,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Preprocess every training case into ``out_dir``; skip cases whose cache is current. Returns the case ids."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pkey = plan_key(plan)
    todo = []
    for ref in spec.cases:
        key = f"{pkey}-{_files_key(ref)}"
        meta = out / f"{ref.case_id}.json"
        if meta.is_file() and (out / f"{ref.case_id}.npy").is_file():
            try:
                if json.loads(meta.read_text()).get("key") == key:
                    continue
            except (json.JSONDecodeError, OSError):
                pass
        todo.append((spec, ref, PreprocessConfig.of(plan), str(out), key))
    done = len(spec.cases) - len(todo)
    if progress:
        progress(done, len(spec.cases))
    if not todo:
        return [r.case_id for r in spec.cases]
    log.info("preprocessing %d case(s) (%d already cached) into %s", len(todo), done, out)
    if workers > 1 and len(todo) > 4:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(_work, todo, chunksize=4):
                done += 1
                if progress:
                    progress(done, len(spec.cases))
    else:
        for item in todo:
            _work(item)
            done += 1
            if progress:
                progress(done, len(spec.cases))
    return [r.case_id for r in spec.cases]


class CaseCache:
    """Read access to a cache folder; arrays are memory-mapped, so many cases cost little RAM."""

    def __init__(self, folder: str | Path, case_ids: list[str], *, in_memory: bool = False) -> None:
        self.folder = Path(folder)
        self.case_ids = list(case_ids)
        mode: Literal["r"] | None = None if in_memory else "r"
        if in_memory:

            size = sum((self.folder / f"{c}{s}.npy").stat().st_size for c in case_ids for s in ("", "_seg"))
            check_allocation(size, self.folder, "in-memory case cache")
        self.images = {c: np.load(self.folder / f"{c}.npy", mmap_mode=mode) for c in case_ids}
        self.labels = {c: np.load(self.folder / f"{c}_seg.npy", mmap_mode=mode) for c in case_ids}
        self.fg = {c: np.load(self.folder / f"{c}_fg.npy") for c in case_ids}
        self.props = {c: json.loads((self.folder / f"{c}.json").read_text()) for c in case_ids}
