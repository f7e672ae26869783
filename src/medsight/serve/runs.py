"""The run folders a server shows: discovery, metrics, report files and validation cases.

A run is a folder with ``plans.json`` (``medsight train`` writes one). Each ``RUN_DIR`` given to ``medsight serve``
is a run, or a folder whose sub-folders are runs. Runs are named by their folder (``name-2`` on a clash).

Validation cases of a segmentation run are the predictions in ``fold_<k>/validation/``; their images and reference
label maps come from the dataset the run recorded in ``config.json``, and only the files that dataset lists.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsight.data.dataset import load_dataset
from medsight.engine.run import BEST, fold_name, fold_paths, plan_task
from medsight.errors import MedsightError, user_error
from medsight.io import full_suffix, strip_suffix
from medsight.io.cases import UNCERTAINTY_SUFFIX
from medsight.transforms.postprocess import rules_of

log = logging.getLogger(__name__)

#: Files of a run folder the server may hand out (reports and what they link to); never checkpoints.
RUN_FILE_SUFFIXES = (".html", ".png", ".svg", ".csv", ".json", ".txt")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def discover_runs(paths: Sequence[Path]) -> dict[str, Path]:
    """Run name -> resolved run folder, for run folders and folders of runs.

    Raises:
        MedsightError: a path that is not a folder, or a folder holding no run.
    """
    found: list[Path] = []
    for p in (Path(x) for x in paths):
        if not p.is_dir():
            raise user_error("a run folder", "no such folder", p, "check the path, or train a model with 'medsight train'")
        if (p / "plans.json").is_file():
            found.append(p.resolve())
            continue
        children = sorted(c.resolve() for c in p.iterdir() if c.is_dir() and (c / "plans.json").is_file())
        if not children:
            raise user_error("a run folder (with plans.json) or a folder of runs", "a folder without plans.json", p,
                             "point at the folder 'medsight train --out' wrote")
        found.extend(children)
    runs: dict[str, Path] = {}
    for path in found:
        if path in runs.values():
            continue
        name, n = path.name, 1
        while name in runs:
            n += 1
            name = f"{path.name}-{n}"
        runs[name] = path
    return runs


def run_facts(path: Path) -> dict[str, Any]:
    """Task, labels or classes, trained folds, metrics and report files of a run (JSON-ready)."""
    plans = _read_json(path / "plans.json")
    summary = _read_json(path / "summary.json")
    task = plan_task(plans)
    facts: dict[str, Any] = {
        "task": task, "dataset": plans.get("dataset", ""), "dims": plans.get("dims"),
        "folds": sorted(p.parent.name for p in fold_paths(path, BEST)),
        "reports": sorted(p.name for p in path.glob("*.html")),
        "metrics": summary.get("cross_validation") or {},
        "postprocessing": {str(v): r.as_dict() for v, r in rules_of(summary.get("postprocessing") or {}).items()},
        "trained": summary.get("time"),
    }
    if task == "classification":
        facts["classes"] = list(plans.get("class_names") or [])
    else:
        facts["labels"] = dict(plans.get("labels") or {})
    return facts


@dataclass(frozen=True)
class RunCase:
    """One validation case of a segmentation run: prediction, probabilities, voxel uncertainty, image and reference
    files."""

    case_id: str
    fold: str
    prediction: Path
    probabilities: Path | None
    image: Path | None
    reference: Path | None
    uncertainty: Path | None = None

    def as_json(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "fold": self.fold, "has_image": self.image is not None,
                "has_reference": self.reference is not None, "has_probabilities": self.probabilities is not None,
                "has_uncertainty": self.uncertainty is not None}


class RunCatalog:
    """The served runs, with their validation cases looked up once per run."""

    def __init__(self, runs: dict[str, Path]) -> None:
        self.runs = dict(runs)
        self._cases: dict[str, list[RunCase]] = {}
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        """The folder of run ``name``; raises ``KeyError`` when it is not served."""
        return self.runs[name]

    def cases(self, name: str) -> list[RunCase]:
        with self._lock:
            if name not in self._cases:
                self._cases[name] = _find_cases(self.runs[name])
            return self._cases[name]

    def case(self, name: str, case_id: str) -> RunCase:
        """One validation case; raises ``KeyError`` when unknown."""
        for c in self.cases(name):
            if c.case_id == case_id:
                return c
        raise KeyError(case_id)


def _dataset_files(run: Path) -> dict[str, tuple[Path | None, Path | None]]:
    """case id -> (first image file, label file) of the dataset recorded in ``config.json`` ({} when unavailable)."""

    recorded = _read_json(run / "config.json").get("dataset")
    if not recorded:
        return {}
    try:
        spec = load_dataset(recorded)
    except (MedsightError, OSError) as exc:
        log.warning("run %s: its dataset could not be loaded (%s); cases are shown without images",
                    run.name, type(exc).__name__)
        return {}
    return {c.case_id: (c.images[0] if c.images else None, c.label) for c in (*spec.cases, *spec.test_cases)}


def _find_cases(run: Path) -> list[RunCase]:
    if plan_task(_read_json(run / "plans.json")) != "segmentation":
        return []
    preds = sorted(p for p in fold_paths(run, "validation/*") if p.is_file() and full_suffix(p) in (".nii.gz", ".nii")
                   and not p.name.startswith(".") and not strip_suffix(p).endswith(UNCERTAINTY_SUFFIX))
    if not preds:
        return []
    files = _dataset_files(run)
    out = []
    for p in preds:
        cid = strip_suffix(p)
        prob = p.parent / f"{cid}_probabilities.npz"
        unc = p.parent / f"{cid}{UNCERTAINTY_SUFFIX}.nii.gz"
        image, ref = files.get(cid, (None, None))
        out.append(RunCase(case_id=cid, fold=fold_name(p.parent.parent), prediction=p,
                           probabilities=prob if prob.is_file() else None,
                           image=image if image is not None and image.exists() else None,
                           reference=ref if ref is not None and ref.exists() else None,
                           uncertainty=unc if unc.is_file() else None))
    return out


__all__ = ["RUN_FILE_SUFFIXES", "RunCase", "RunCatalog", "discover_runs", "run_facts"]
