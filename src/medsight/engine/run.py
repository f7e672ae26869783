"""The run folder: the one place that knows its layout.

::

    RUN/plans.json  splits.json  config.json  preprocessed/  summary.json  report.html  MODEL_CARD.md
        fold_<k>/checkpoint_best.pt  checkpoint_last.pt  metrics.csv  curves.png  calibration.json  validation/

Every layer that reads or writes a run (the trainer, the predictors, deploy, serve, the report) asks this module for
paths instead of spelling them out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsight.core.pinned import is_pinned, read_text
from medsight.errors import user_error

PLANS = "plans.json"
BEST = "checkpoint_best.pt"
LAST = "checkpoint_last.pt"
CALIBRATION = "calibration.json"
FOLD_PREFIX = "fold_"


def fold_dir(run: str | Path, fold: int | str) -> Path:
    """``RUN/fold_<fold>`` (``fold`` is 0..4 or ``"all"``)."""
    return Path(run) / f"{FOLD_PREFIX}{fold}"


def fold_name(path: str | Path) -> str:
    """The fold of a ``fold_<k>`` folder, or of a file inside one (``"3"``, ``"all"``)."""
    p = Path(path)
    if not p.name.startswith(FOLD_PREFIX) and p.parent.name.startswith(FOLD_PREFIX):
        p = p.parent
    return p.name.removeprefix(FOLD_PREFIX)


def fold_dirs(run: str | Path) -> list[Path]:
    """The run's fold folders, sorted by name."""
    return sorted(p for p in Path(run).glob(f"{FOLD_PREFIX}*") if p.is_dir())


def fold_paths(run: str | Path, relative: str) -> list[Path]:
    """``RUN/fold_*/<relative>`` that exist, sorted (``relative`` may hold a glob pattern, e.g. ``validation/*``)."""
    return sorted(p for p in Path(run).glob(f"{FOLD_PREFIX}*/{relative}") if p.exists())


def checkpoints(run: str | Path, *, folds: Sequence[int | str] | None = None, fallback_last: bool = True,
                what: str = "a trained fold") -> dict[str, Path]:
    """Fold name -> the weights file a prediction uses: ``checkpoint_best.pt`` (``checkpoint_last.pt`` for a fold that
    has no best yet, when ``fallback_last``). ``folds`` keeps only those folds, each of which must exist; a run with no
    trained fold is one clear error."""
    run = Path(run)
    found: dict[str, Path] = {}
    for fd in fold_dirs(run):
        for name in (BEST, LAST) if fallback_last else (BEST,):
            if (fd / name).is_file():
                found[fold_name(fd)] = fd / name
                break
    found = select_folds(found, folds, run)
    if not found:
        raise user_error(f"{what} ({FOLD_PREFIX}*/{BEST})", "none", run, "train at least one fold first, or check the path")
    return found


def select_folds(found: dict[str, Path], folds: Sequence[int | str] | None, where: Path,
                 what: str = "trained folds") -> dict[str, Path]:
    """``found`` limited to ``folds`` (all when ``None``); a fold that is not there is one clear error."""
    if folds is None:
        return found
    missing = [str(f) for f in folds if str(f) not in found]
    if missing:
        raise user_error(f"{what} {', '.join(sorted(found)) or '(none)'}", f"--folds {','.join(missing)}", where,
                         "choose folds that exist")
    return {str(f): found[str(f)] for f in folds}


def read_plan_json(path: str | Path) -> dict[str, Any]:
    """The parsed plans.json of any task (a run folder or the file itself), with one clear error for a missing
    file or invalid JSON."""
    p = Path(path)
    if p.is_dir():
        p = p / PLANS
    if not is_pinned(p) and not p.is_file():
        raise user_error("a plans.json file", "none", p, "run 'medsight plan DATASET' (or train) first")
    try:
        data = json.loads(read_text(p))  # the bytes a prediction hashed, when it pinned them (core.pinned)
    except json.JSONDecodeError as exc:
        raise user_error("valid JSON", f"a parse error ({exc.msg} at line {exc.lineno})", p, "fix the edit or re-plan") from exc
    if not isinstance(data, dict):
        raise user_error("a JSON object in plans.json", type(data).__name__, p, "re-create it with 'medsight plan'")
    return data


def plan_task(plan: dict[str, Any]) -> str:
    """The task a plan was made for (plans written before the field existed are segmentation plans)."""
    return str(plan.get("task") or "segmentation")


def run_task(run: str | Path) -> str:
    """The task of a run folder (or of a plans.json), from its plan."""
    return plan_task(read_plan_json(run))


def run_dataset_json(run: str | Path) -> Path | None:
    """The ``dataset.json`` of the dataset a run was trained on (recorded in ``RUN/config.json`` by training), if
    there is one."""
    config = Path(run) / "config.json"
    if not config.is_file():
        return None
    recorded = Path(str(json.loads(config.read_text(encoding="utf-8")).get("dataset", "")))
    found = recorded if recorded.suffix == ".json" else recorded / "dataset.json"
    return found if found.is_file() else None


def fold_temperatures(run: str | Path) -> dict[str, float]:
    """Fold name -> the temperature fitted on that fold's validation data (``fold_<k>/calibration.json``)."""
    out: dict[str, float] = {}
    for fd in fold_dirs(run):
        path = fd / CALIBRATION
        if is_pinned(path) or path.is_file():
            value = json.loads(read_text(path)).get("temperature")
            if isinstance(value, (int, float)):
                out[fold_name(fd)] = float(value)
    return out
