"""Fixed, saved cross-validation splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medsight.core.atomic import write_text
from medsight.errors import user_error


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


def stratified_kfold(case_ids: list[str], strata: list[str], *, k: int = 5, seed: int = 12345) -> list[dict[str, list[str]]]:
    """``k`` folds in which every stratum (e.g. class) is spread evenly: each stratum's seeded shuffle is dealt
    round-robin over the folds, continuing where the previous stratum stopped."""
    if len(case_ids) < 2:
        raise user_error("at least 2 labelled cases for cross-validation", f"{len(case_ids)}", None, "add cases or use --fold all")
    k = min(k, len(case_ids))
    rng = np.random.default_rng(seed)
    by: dict[str, list[str]] = {}
    for cid, s in sorted(zip(case_ids, strata)):
        by.setdefault(s, []).append(cid)
    folds: list[list[str]] = [[] for _ in range(k)]
    start = 0
    for s in sorted(by):
        ids = by[s]
        for j, i in enumerate(rng.permutation(len(ids))):
            folds[(start + j) % k].append(ids[i])
        start += len(ids)
    every = sorted(case_ids)
    return [{"train": sorted(set(every) - set(f)), "val": sorted(f)} for f in folds]


def load_or_create_splits(path: Path, case_ids: list[str], *, k: int = 5, seed: int = 12345,
                          strata: list[str] | None = None,
                          predefined: dict[str, list[str]] | None = None) -> list[dict[str, list[str]]]:
    """Read ``splits.json`` if present (cases no longer in the dataset are dropped), else create and save it.

    ``strata`` (one per case) makes the folds stratified; ``predefined`` (``{"train": [...], "val": [...]}``, e.g.
    MedMNIST's official split) is used as the only fold.
    """
    if path.is_file():
        try:
            splits = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise user_error("a valid splits.json", "invalid JSON", path, "delete it to make a new split") from exc
        known = set(case_ids)
        return [{"train": [c for c in s["train"] if c in known], "val": [c for c in s["val"] if c in known]} for s in splits]
    if predefined:
        splits = [{"train": sorted(predefined["train"]), "val": sorted(predefined["val"])}]
    elif strata is not None:
        splits = stratified_kfold(case_ids, strata, k=k, seed=seed)
    else:
        splits = kfold(case_ids, k=k, seed=seed)
    write_text(path, json.dumps(splits, indent=1))
    return splits


def fold_list(folds: list[int] | str | int) -> list[int | str]:
    """``"all"`` or fold indices as the training loops iterate them."""
    return ["all"] if folds == "all" else [int(f) for f in (folds if isinstance(folds, list) else [folds])]


def fold_cases(fold: int | str, ids: list[str], splits: list[dict[str, list[str]]], where: Path) -> tuple[list[str], list[str]]:
    """(training, validation) case ids of a fold; ``"all"`` trains on every case without validation."""
    if fold == "all":
        return list(ids), []
    if not 0 <= int(fold) < len(splits):
        raise user_error(f"a fold in 0..{len(splits) - 1} or 'all'", fold, where, "choose an existing fold")
    return splits[int(fold)]["train"], splits[int(fold)]["val"]
