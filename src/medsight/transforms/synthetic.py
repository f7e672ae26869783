"""``medsight train ... --synthetic DIR --synthetic-ratio R``: synthetic cases in training batches only.

``DIR`` is a folder written by ``medsight synthesize sample`` (its ``synthetic_manifest.json`` names the dataset file),
or any dataset folder of the same task. Its cases are preprocessed with the real run's plan, never enter the splits,
validation, calibration, thresholds or reports, and are drawn by the training sampler: each sample of a training batch
is synthetic with probability ``R`` (``R = 0.5``: half of each batch on average; ``R = 1``: synthetic only, "train on
synthetic, test on real").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from medsight.data.dataset import DatasetSpec, load_dataset
from medsight.errors import require_exists, user_error
from medsight.transforms.cache import preprocess_dataset
from medsight.transforms.classification import ClassificationCache, preprocess_classification
from medsight.transforms.config import ClassificationPreprocessing, SegmentationPreprocessing

log = logging.getLogger(__name__)

MANIFEST = "synthetic_manifest.json"
PREFIX = "synthetic_"


def check_ratio(ratio: float) -> float:
    """``--synthetic-ratio`` must be a share in [0, 1]."""
    if not 0.0 <= ratio <= 1.0:
        raise user_error("--synthetic-ratio in [0, 1] (the share of each training batch that is synthetic)", ratio, None,
                         "e.g. 0.5")
    return float(ratio)


def load_synthetic(path: str | Path, *, task: str) -> DatasetSpec:
    """The synthetic dataset in ``path`` (via its manifest when there is one), checked to be of ``task``."""
    p = require_exists(path, "folder of synthetic cases")
    manifest = p / MANIFEST if p.is_dir() else None
    if manifest is not None and manifest.is_file():
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        spec = load_dataset(p / str(meta.get("dataset_file", ".")))
    else:
        log.warning("%s has no %s; using it as synthetic data as it is", p, MANIFEST)
        spec = load_dataset(p)
    if spec.task != task:
        raise user_error(f"synthetic {task} cases for --synthetic", f"{spec.task} cases", p,
                         f"sample a GAN trained on {task} data")
    if not spec.cases:
        raise user_error("synthetic cases", "none", p, "sample some with 'medsight synthesize sample'")
    return spec


def prepare_synthetic_segmentation(path: str | Path, plan: SegmentationPreprocessing, cache_dir: Path, *, real_ids: list[str],
                                   progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Preprocess the synthetic segmentation cases with the run's plan into ``cache_dir``; returns their ids."""
    spec = load_synthetic(path, task="segmentation")
    extra = sorted(set(spec.labels.values()) - set(plan.labels.values()))
    if extra:
        raise user_error(f"synthetic label values among the run's {sorted(plan.labels.values())}", extra, path,
                         "sample from a GAN trained on this dataset")
    clash = sorted({c.case_id for c in spec.cases} & set(real_ids))
    if clash:
        raise user_error("synthetic case ids distinct from the real ones", clash[:3], path, "rename the synthetic files")
    ids = preprocess_dataset(spec, plan, cache_dir, progress=progress)
    log.info("%d synthetic cases from %s join the training batches only", len(ids), path)
    return ids


def prepare_synthetic_classification(path: str | Path, plan: ClassificationPreprocessing, cache_dir: Path) -> ClassificationCache:
    """Preprocess the synthetic classification cases with the run's plan into ``cache_dir``; their labels are mapped
    to the run's class indices by name."""
    if plan.multilabel or plan.tabular:
        raise user_error("a single-label image-only classification run for --synthetic",
                         "a multi-label run" if plan.multilabel else "tabular columns", path, "drop --synthetic")
    spec = load_synthetic(path, task="classification")
    names = sorted(spec.labels, key=spec.labels.__getitem__)
    unknown = [n for n in names if n not in plan.class_names]
    if unknown:
        raise user_error(f"synthetic classes among {plan.class_names}", unknown, path, "sample from a GAN trained on this dataset")
    cache = preprocess_classification(spec, plan, cache_dir)
    lut = np.asarray([plan.class_names.index(n) for n in names], dtype=np.int64)
    log.info("%d synthetic cases from %s join the training batches only", len(cache.ids), path)
    return replace(cache, labels=lut[cache.labels])
