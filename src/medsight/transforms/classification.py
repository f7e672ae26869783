"""Classification preprocessing: every image to the plan's input size and normalisation, cached in one array.

The cache is ``preprocessed/images.npy`` (``(N, C, *input_size)`` float32, memory-mapped) with ``index.json``
(case ids, labels, tabular features and a key of everything that shaped the arrays); a run re-uses it while the
key matches and rebuilds it otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medsight.core.atomic import atomic_path, write_text
from medsight.core.guard import check_disk
from medsight.core.image import Image
from medsight.data.dataset import CaseRef, DatasetSpec, load_case
from medsight.errors import user_error
from medsight.transforms.config import ClassificationPreprocessing
from medsight.transforms.intensity import normalize

log = logging.getLogger(__name__)


def adapt_channels(arr: np.ndarray, channels: int, where: str | Path) -> np.ndarray:
    """Match the planned channel count: RGB of a grey picture -> one channel (mean); grey -> repeated RGB."""
    if arr.shape[0] == channels:
        return arr
    if channels == 1 and arr.shape[0] in (3, 4):
        return arr[:3].mean(axis=0, keepdims=True)
    if channels == 3 and arr.shape[0] == 1:
        return np.repeat(arr, 3, axis=0)
    raise user_error(f"{channels} channel(s) as in training", f"{arr.shape[0]}", where, "give images like the training images")


def centre_crop_or_pad(arr: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """``(C, *spatial)`` cut or zero-padded symmetrically to ``size``."""
    out = np.zeros((arr.shape[0], *size), dtype=arr.dtype)
    src, dst = [slice(None)], [slice(None)]
    for n, m in zip(arr.shape[1:], size):
        if n >= m:
            a = (n - m) // 2
            src.append(slice(a, a + m))
            dst.append(slice(0, m))
        else:
            a = (m - n) // 2
            src.append(slice(0, n))
            dst.append(slice(a, a + n))
    out[tuple(dst)] = arr[tuple(src)]
    return out


def prepare_image(image: Image, plan: ClassificationPreprocessing) -> np.ndarray:
    """One image as the network sees it: ``(C, *input_size)`` float32 (see the plan module for the rules)."""
    where = image.source.path or "image"
    if image.ndim != plan.dims:
        if image.ndim == 3 and plan.dims == 2 and image.shape[1] == 1:
            image = Image(image.array[:, 0], spacing=image.spacing[1:], source=image.source)  # a one-slice volume
        else:
            raise user_error(f"a {plan.dims}D image as in training", f"a {image.ndim}D image of shape {image.shape}", where,
                             "use a model trained on this kind of image")
    arr = adapt_channels(np.asarray(image.array, dtype=np.float32), len(plan.channel_names), where)
    arr = normalize(arr, plan.normalization)
    size = tuple(plan.input_size)
    t = torch.from_numpy(np.ascontiguousarray(arr))[None]
    if plan.resize:
        if tuple(t.shape[2:]) != size:
            down = any(a > b for a, b in zip(t.shape[2:], size))
            mode = "bilinear" if len(size) == 2 else "trilinear"
            t = F.interpolate(t, size=size, mode=mode, align_corners=False, antialias=down and len(size) == 2)
        return t[0].numpy().astype(np.float32)
    spacing = np.asarray(image.spacing, dtype=float)
    target = np.asarray(plan.target_spacing, dtype=float)
    shape = tuple(max(1, int(round(s))) for s in np.asarray(arr.shape[1:]) * spacing / target)
    if shape != tuple(arr.shape[1:]):
        t = F.interpolate(t, size=shape, mode="trilinear" if len(shape) == 3 else "bilinear", align_corners=False)
    return centre_crop_or_pad(t[0].numpy().astype(np.float32), size)


# ---------------------------------------------------------------------------------------------- tabular
def fit_tabular(cases: list[CaseRef], columns: list[str], where: str | Path) -> dict[str, Any]:
    """Encoding of the chosen CSV columns: numeric ones z-scored, others one-hot over the values seen."""
    if not columns:
        return {}
    numeric: dict[str, list[float]] = {}
    categorical: dict[str, list[str]] = {}
    for col in columns:
        values = [dict(c.columns).get(col) for c in cases]
        if all(v is None for v in values):
            known = sorted({k for c in cases for k, _ in c.columns})
            raise user_error(f"a CSV column named {col!r} for --tabular", f"columns {known}", where, "fix the column name")
        present = [v for v in values if v not in (None, "")]
        try:
            nums = np.asarray([float(v) for v in present], dtype=float)
            numeric[col] = [float(nums.mean()) if nums.size else 0.0, float(nums.std()) if nums.size > 1 else 1.0]
        except ValueError:
            categorical[col] = sorted({str(v) for v in present})
    return {"columns": list(columns), "numeric": numeric, "categorical": categorical}


def tabular_width(spec: dict[str, Any]) -> int:
    return len(spec.get("numeric", {})) + sum(len(v) for v in spec.get("categorical", {}).values())


def encode_tabular(values: dict[str, str], spec: dict[str, Any]) -> np.ndarray:
    """One case's feature vector; a missing number becomes the mean (0), an unseen category all zeros."""
    out: list[float] = []
    for col, (mean, std) in spec.get("numeric", {}).items():
        v = values.get(col, "")
        try:
            out.append((float(v) - mean) / max(std, 1e-6) if v not in (None, "") else 0.0)
        except ValueError:
            out.append(0.0)
    for col, cats in spec.get("categorical", {}).items():
        v = str(values.get(col, ""))
        out.extend(1.0 if v == c else 0.0 for c in cats)
    return np.asarray(out, dtype=np.float32)


# ---------------------------------------------------------------------------------------------- cache
@dataclass
class ClassificationCache:
    """Preprocessed cases: ``images`` ``(N, C, *size)``, ``labels`` (N,) int or (N, K) float, ``tabular`` (N, F)."""

    ids: list[str]
    images: np.ndarray
    labels: np.ndarray
    tabular: np.ndarray

    def rows(self, ids: list[str]) -> np.ndarray:
        pos = {c: i for i, c in enumerate(self.ids)}
        return np.asarray([pos[c] for c in ids], dtype=np.int64)


def label_array(labels: list[Any], num_classes: int, multilabel: bool) -> np.ndarray:
    if multilabel:
        return np.asarray(labels, dtype=np.float32).reshape(len(labels), num_classes)
    return np.asarray(labels, dtype=np.int64)


def _cache_key(spec: DatasetSpec, plan: ClassificationPreprocessing) -> str:
    files = []
    for c in spec.cases:
        for f in c.files:
            try:
                st = f.stat()
                files.append((str(f), st.st_size, int(st.st_mtime)))
            except OSError:
                files.append((str(f), -1, -1))
    what = {"ids": [c.case_id for c in spec.cases], "files": sorted(set(files)), "size": plan.input_size,
            "resize": plan.resize, "spacing": plan.target_spacing, "norm": [asdict(n) for n in plan.normalization],
            "channels": len(plan.channel_names), "tabular": plan.tabular}
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()


def preprocess_classification(spec: DatasetSpec, plan: ClassificationPreprocessing, cache_dir: str | Path, *,
                              progress: Callable[[int, int], None] | None = None) -> ClassificationCache:
    """Preprocess every case of ``spec`` into ``cache_dir`` (or re-use the cache when nothing changed)."""
    cache_dir = Path(cache_dir)
    key = _cache_key(spec, plan)
    index_path, images_path = cache_dir / "index.json", cache_dir / "images.npy"
    if index_path.is_file() and images_path.is_file():
        try:
            index = json.loads(index_path.read_text())
            if index.get("key") == key:
                return ClassificationCache(
                    ids=index["ids"], images=np.load(images_path, mmap_mode="r"),
                    labels=label_array(index["labels"], plan.num_classes, plan.multilabel),
                    tabular=np.asarray(index["tabular"], dtype=np.float32).reshape(len(index["ids"]), -1))
        except (json.JSONDecodeError, KeyError, ValueError):
            log.warning("rebuilding the unreadable cache in %s", cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    n = len(spec.cases)
    shape = (n, len(plan.channel_names), *plan.input_size)
    need = math.prod(shape) * 4

    check_disk(need, cache_dir, "preprocessed image cache")
    if need > 16 * 2**30:
        log.warning("the preprocessed cache needs %.1f GB on disk (memory-mapped)", need / 2**30)
    labels, tab = [], []
    with atomic_path(images_path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        for i, ref in enumerate(spec.cases):
            case = load_case(spec, ref)
            out[i] = prepare_image(case.image, plan)
            labels.append(case.label)
            tab.append(encode_tabular(dict(ref.columns), plan.tabular) if plan.tabular else np.zeros(0, np.float32))
            if progress:
                progress(i + 1, n)
        out.flush()
        del out
    tabular = np.stack(tab) if tab else np.zeros((0, 0), np.float32)
    write_text(index_path, json.dumps({"key": key, "ids": [c.case_id for c in spec.cases], "labels": labels,
                                       "tabular": tabular.tolist()}))
    return ClassificationCache(ids=[c.case_id for c in spec.cases], images=np.load(images_path, mmap_mode="r"),
                               labels=label_array(labels, plan.num_classes, plan.multilabel), tabular=tabular.reshape(n, -1))
