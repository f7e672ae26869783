"""Model cards: ``MODEL_CARD.md`` + ``model_card.json`` per run, and the weights check behind ``predict --verify``.

A card is built only from files the run already holds: ``plans.json`` (task, labels, and the training fingerprint:
counts, spacing, label distribution), ``summary.json`` and ``validation/`` (cross-validated metrics with bootstrap
95 % intervals), ``config.json`` (training options), ``fold_K/metrics.csv`` (epochs) and the checkpoints (SHA-256).
It is written at the end of training and by ``medsight card RUN``.

The card also records the *model digest* (:mod:`medsight.report.digest`): one SHA-256 over the files a prediction
loads (weights of the folds, ``plans.json``, calibration, ``export.json``). Pin that digest somewhere the model's
folder cannot change (``predict --expect-sha256``, ``$MEDSIGHT_MODEL_SHA256``): the card itself lies beside the
weights, and whoever swaps the weights can rewrite it, so comparing files with the card (``predict --verify``) is a
consistency check only.
"""

from __future__ import annotations

import json
import logging
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from medsight import __version__
from medsight.core.atomic import write_text
from medsight.core.hashing import sha256_file, utc_timestamp
from medsight.core.tables import json_safe
from medsight.engine.run import fold_name, fold_paths
from medsight.errors import MedsightError, user_error
from medsight.report.digest import CARD_JSON, MANIFEST_HEADER, ModelFiles, read_model
from medsight.report.training import fold_csvs, read_fold_training

log = logging.getLogger(__name__)

CARD_MD = "MODEL_CARD.md"
CARD_VERSION = 2  # 2: the model digest
_PACKAGES = ("torch", "monai", "numpy", "onnx", "onnxruntime", "SimpleITK", "nibabel", "pydicom")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise user_error("valid JSON", f"a parse error ({exc.msg} at line {exc.lineno})", path, "re-create the file by training again") from exc
    return data if isinstance(data, dict) else {}


def software_versions() -> dict[str, str | None]:
    """medsight, Python, the platform and the installed versions of the libraries a prediction depends on."""
    out: dict[str, str | None] = {"medsight": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def weights_checksums(run: Path) -> list[dict[str, Any]]:
    """``{"fold", "file", "sha256", "bytes"}`` for every ``fold_K/checkpoint_*.pt`` of a run."""
    rows = []
    for path in fold_paths(run, "checkpoint_*.pt"):
        rows.append({"fold": fold_name(path), "file": path.relative_to(run).as_posix(),
                     "sha256": sha256_file(path), "bytes": path.stat().st_size})
    return rows


def _training_data(plan: Any) -> dict[str, Any]:
    fp = plan.fingerprint if isinstance(plan.fingerprint, dict) else {}
    summary = dict(fp.get("summary") or {})
    full = fp.get("full") or {}
    out: dict[str, Any] = {"dataset": plan.dataset, **summary}
    if full.get("label_cases"):
        out["label_cases"] = {str(k): int(v) for k, v in full["label_cases"].items()}
    if full.get("channels"):
        out["intensity_p0.5_p99.5"] = {c["name"]: [round(float(c["p00_5"]), 4), round(float(c["p99_5"]), 4)] for c in full["channels"]}
    return out


def _segmentation_validation(run: Path, summary: dict[str, Any]) -> dict[str, Any]:
    pooled = _read_json(run / "validation" / "summary.json")
    if not pooled:
        return {}
    per_label = {}
    for name, lab in (pooled.get("labels") or {}).items():
        per_label[name] = {m: _interval(s) for m, s in (lab.get("metrics") or {}).items() if m in ("dice", "hd95", "iou")}
    return {"method": _method(summary), "cases": pooled.get("n_cases"), "ci": "bootstrap 95 % CI of the mean over cases",
            "mean_foreground_dice": _interval((pooled.get("foreground_mean") or {}).get("dice") or {}),
            "per_label": per_label, "postprocessing": summary.get("postprocessing")}


def _method(summary: dict[str, Any]) -> str:
    done = summary.get("folds_with_validation") or []
    return (f"cross-validation: pooled out-of-fold predictions of fold(s) {', '.join(map(str, done))} "
            f"of a {summary.get('num_folds', '?')}-fold split")


def _interval(stats: dict[str, Any]) -> dict[str, Any]:
    return {"mean": stats.get("mean"), "ci95": [stats.get("ci_low"), stats.get("ci_high")], "n": stats.get("n")}


def _classification_validation(run: Path, summary: dict[str, Any]) -> dict[str, Any]:
    metrics = _read_json(run / "validation" / "metrics.json")
    if not metrics:
        return {}
    keys = ("auc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity", "ece")
    return {"method": _method(summary) + " (temperature-calibrated)", "cases": metrics.get("n"), "ci": "stratified percentile bootstrap 95 % CI", "thresholds": metrics.get("thresholds"),
            "metrics": {k: {"value": metrics.get(k), "ci95": (metrics.get("ci95") or {}).get(k)} for k in keys if k in metrics}}


def _training(run: Path) -> dict[str, Any]:
    """Options and, per fold, what ``metrics.csv`` records (:mod:`medsight.report.training`: the fold's time is the
    last value of the cumulative ``seconds`` column; the best epoch is the one the trainer's selection metric picked)."""
    config = _read_json(run / "config.json")
    folds = {}
    for path in fold_csvs(run):
        f = read_fold_training(path)
        seconds = f.total_seconds
        folds[fold_name(path)] = {"epochs": f.epochs, "seconds": round(seconds, 1) if seconds is not None else None,
                                  "best_epoch": f.best_epoch, "best_" + (f.score_column or "score"): f.best_score}
    return {"options": config.get("train"), "folds": folds}


def _modalities(plan: Any) -> str:
    """The recorded modalities (``CT/MR``), or ``""`` when the training data did not say (``other``)."""
    return "/".join(sorted({m for m in plan.modalities if m != "other"}))


def _describe(plan: Any) -> tuple[str, str]:
    """(what the model does, what its input is), in words."""
    mods = _modalities(plan)
    inputs = f"{plan.dims}D {mods + ' ' if mods else ''}images ({len(plan.channel_names)} channel(s): {', '.join(plan.channel_names)})"
    if plan.task == "classification":
        kind = "multi-label classification" if plan.multilabel else "classification"
        return f"{kind} into {', '.join(plan.class_names)}", inputs
    return f"segmentation of {', '.join(k for k, v in plan.labels.items() if v != 0)}", inputs


def _limits(plan: Any, data: dict[str, Any], validation: dict[str, Any]) -> list[str]:
    n = data.get("cases")
    limits = [f"Trained on {n} cases of one dataset ({plan.dataset}); performance on other scanners, sites, protocols or "
              "populations is unknown until measured there."]
    if validation:
        limits.append("Validated on held-out folds of the training dataset only (cross-validation, or the dataset's own "
                      "validation split), not on an external test set.")
    else:
        limits.append("No validation metrics: no fold with validation cases has finished (e.g. trained with --fold all).")
    if isinstance(n, int) and n < 50:
        limits.append(f"Small training set ({n} cases): the confidence intervals are wide.")
    spacing = data.get("spacing_range_mm")
    if spacing and not getattr(plan, "resize", False):
        other = f" or of another modality than {_modalities(plan)}" if _modalities(plan) else ""
        limits.append(f"Inputs outside the training spacing range {spacing} mm{other} are flagged by 'medsight predict' "
                      "(refused with --strict).")
    if plan.task == "classification":
        limits.append(f"The decision threshold ({plan.threshold_method}) was chosen on validation data; a population with "
                      "another prevalence needs a new threshold.")
    limits.append("Research software, not a certified medical device: outputs need review by a qualified reader.")
    return limits


def build_model_card(run_dir: str | Path, plan: Any) -> dict[str, Any]:
    """The model card of a run as a JSON-ready dict (see the module docstring for its sources); ``plan`` is the run's
    plan object as its task loads it (segmentation, classification or multitask)."""
    run = Path(run_dir)
    summary = _read_json(run / "summary.json")
    what, inputs = _describe(plan)
    data = _training_data(plan)
    validation = _classification_validation(run, summary) if plan.task == "classification" else _segmentation_validation(run, summary)
    model: dict[str, Any] = {"name": run.resolve().name, "task": plan.task, "dims": plan.dims, "channels": plan.channel_names,
                             "modalities": plan.modalities}
    if plan.task == "classification":
        model.update(architecture=plan.network, classes=plan.class_names, input_size=plan.input_size)
    else:
        model.update(architecture=plan.network.name, labels=plan.labels, patch_size=plan.patch_size,
                     target_spacing_mm=plan.target_spacing)
    card = {
        "card_version": CARD_VERSION, "created": utc_timestamp(), "model": model,
        "intended_use": {"task": what, "inputs": inputs,
                         "use": f"Research use: {what} in {inputs} resembling the training data ({plan.dataset}).",
                         "not_for": "Unsupervised clinical decisions; inputs unlike the training data (see known limits)."},
        "training_data": data, "training": _training(run), "validation": validation,
        "known_limits": _limits(plan, data, validation), "software": software_versions(), "weights": weights_checksums(run),
    }
    try:
        card["model_digest"] = digest_section(read_model(run))
    except MedsightError:  # no trained fold yet: nothing to pin
        card["model_digest"] = None
    return json_safe(card)


def digest_section(model: ModelFiles) -> dict[str, Any]:
    """The card's ``model_digest``: the digest to pin, the folds it covers and the SHA-256 of each file."""
    return {"sha256": model.digest, "folds": model.folds, "manifest": MANIFEST_HEADER, "files": model.rows(),
            "pin": "pin this digest outside the model folder (predict --expect-sha256, $MEDSIGHT_MODEL_SHA256): "
                   "this card lies beside the files and cannot vouch for them"}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict) and "mean" in v:
        ci = v.get("ci95") or [None, None]
        return f"{_fmt(v['mean'])} (95 % CI {_fmt(ci[0])}–{_fmt(ci[1])})" if ci[0] is not None else _fmt(v["mean"])
    if isinstance(v, dict) and "value" in v:
        ci = v.get("ci95")
        return f"{_fmt(v['value'])} (95 % CI {_fmt(ci[0])}–{_fmt(ci[1])})" if ci else _fmt(v["value"])
    return "n/a" if v is None else str(v)


def render_markdown(card: dict[str, Any]) -> str:
    """``MODEL_CARD.md`` text for a card from :func:`build_model_card`."""
    m, use, data, val = card["model"], card["intended_use"], card["training_data"], card.get("validation") or {}
    lines = [f"# Model card: {m['name']}", "", f"Created {card['created']} by medsight {card['software']['medsight']}.", "",
             "## Model", "", "| field | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in m.items()]
    lines += ["", "## Intended use", "", use["use"], "", f"Not for: {use['not_for']}", "", "## Training data", "",
              "| field | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in data.items()]
    lines += ["", "## Validation", ""]
    if not val:
        lines.append("No validation metrics (no fold with validation cases).")
    else:
        lines += [f"{val['method']}; {val['cases']} cases; {val['ci']}.", "", "| metric | value |", "|---|---|"]
        if "metrics" in val:
            lines += [f"| {k} | {_fmt(v)} |" for k, v in val["metrics"].items()]
            lines.append(f"| thresholds | {_fmt(val.get('thresholds'))} |")
        else:
            lines.append(f"| mean foreground Dice | {_fmt(val['mean_foreground_dice'])} |")
            lines += [f"| {label} {metric} | {_fmt(s)} |" for label, ms in val["per_label"].items() for metric, s in ms.items()]
    lines += ["", "## Known limits", ""] + [f"- {t}" for t in card["known_limits"]]
    lines += ["", "## Software", "", ", ".join(f"{k} {v}" for k, v in card["software"].items() if v), "",
              "## Weights (SHA-256)", "", "| fold | file | SHA-256 | bytes |", "|---|---|---|---|"]
    lines += [f"| {w['fold']} | {w['file']} | `{w['sha256']}` | {w['bytes']} |" for w in card["weights"]]
    digest = card.get("model_digest")
    if digest:
        lines += ["", "## Model digest (SHA-256, to pin)", "", f"`{digest['sha256']}` (folds {', '.join(digest['folds'])})",
                  "", "Pin it where the model folder cannot change it (`medsight predict --expect-sha256 DIGEST`, or "
                  "`MEDSIGHT_MODEL_SHA256`): this card lies beside the weights, and whoever swaps them can rewrite it.",
                  "", "| file | SHA-256 | bytes |", "|---|---|---|"]
        lines += [f"| {w['file']} | `{w['sha256']}` | {w['bytes']} |" for w in digest["files"]]
    if card.get("export"):
        lines += ["", f"Exported as {card['export']['format']} ({card['export']['quantization'] or 'float32'}) "
                      f"on {card['export']['created']}; source checkpoints:", ""]
        lines += [f"- {w['file']}: `{w['sha256']}`" for w in card.get("source_weights", [])]
    return "\n".join(lines) + "\n"


def write_card(card: dict[str, Any], folder: str | Path) -> list[Path]:
    """Atomically write ``model_card.json`` and ``MODEL_CARD.md`` into ``folder``."""
    folder = Path(folder)
    return [write_text(folder / CARD_JSON, json.dumps(card, indent=2) + "\n"), write_text(folder / CARD_MD, render_markdown(card))]


def write_model_card(run_dir: str | Path, plan: Any, *, announce: bool = True) -> list[Path]:
    """Build and write the card of a run (``RUN/MODEL_CARD.md`` and ``RUN/model_card.json``); ``announce`` logs the
    model digest (training does; ``medsight card`` prints it itself)."""
    card = build_model_card(run_dir, plan)
    if announce and card.get("model_digest"):
        log.info("model digest (SHA-256, pin it with predict --expect-sha256): %s", card["model_digest"]["sha256"])
    return write_card(card, run_dir)
