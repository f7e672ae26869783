"""Fixed, saved cross-validation splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medsight.errors import user_error
from medsight.io.atomic import write_text


def kfold(case_ids: list[str], *, k: int = 5, seed: int = 12345) -> list[dict[str, list[str]]]:
    """``k`` folds of a seeded shuffle of the sorted ids; each case is validated exactly once."""
    ids = sorted(case_ids)
    if len(ids) < 2:
        raise user_error("at least 2 labelled cases for cross-validation", f"{len(ids)}", None, "add cases or use --fold all")
    k = min(k, len(ids))
    order = np.random.default_rng(seed).permutation(len(ids))
    chunks = np.array_split(order, k)
    return [{"train": sorted(ids[j] for c in chunks[:i] + chunks[i + 1:] for j in c), "val": sorted(ids[j] for j in chunks[i])}
            for i in range(k)]


def load_or_create_splits(path: Path, case_ids: list[str], *, k: int = 5, seed: int = 12345) -> list[dict[str, list[str]]]:
    """Read ``splits.json`` if present (cases no longer in the dataset are dropped), else create and save it."""
    if path.is_file():
        try:
            splits = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise user_error("a valid splits.json", "invalid JSON", path, "delete it to make a new split") from exc
        known = set(case_ids)
        return [{"train": [c for c in s["train"] if c in known], "val": [c for c in s["val"] if c in known]} for s in splits]
    splits = kfold(case_ids, k=k, seed=seed)
    write_text(path, json.dumps(splits, indent=1))
    return splits
