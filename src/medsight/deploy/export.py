"""``medsight export RUN --format onnx|torchscript OUT``: every fold's network plus what prediction needs.

Export folder::

    OUT/export.json        format, task, opset, inputs, per fold: file, SHA-256, source checkpoint and its SHA-256
        plans.json         the plan the networks were trained with, with the run's postprocessing decision
        calibration.json   classification: per-fold temperatures and the decision thresholds
        config.json        the run's training configuration (when present)
        uncertainty.json   segmentation: the review threshold chosen on the validation folds (when present)
        fold_K/model.onnx  (or model.pt for TorchScript; model.onnx holds int8 weights with --int8)
        MODEL_CARD.md  model_card.json   the run's card, with the exported files' checksums

The folder is built beside ``OUT`` under a temporary name and renamed into place, so ``OUT`` is either the complete
previous export or the complete new one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from medsight import __version__
from medsight.core.atomic import write_text
from medsight.core.hashing import sha256_file, utc_timestamp
from medsight.core.outputs import refuse_output_holding_input
from medsight.engine.checkpoint import load_checkpoint, model_from_checkpoint
from medsight.engine.networks import FORMATS, OPSET, quantize_int8, signature, to_onnx, to_torchscript
from medsight.engine.run import FOLD_PREFIX
from medsight.engine.runtime import MANIFEST, fold_files, read_manifest
from medsight.errors import did_you_mean, user_error
from medsight.report.card import build_model_card, digest_section, write_card
from medsight.report.digest import read_model
from medsight.tasks import load_run_plan

_FILE = {"onnx": "model.onnx", "torchscript": "model.pt"}


def _check_target(out: Path, run: Path, overwrite: bool) -> None:
    """OUT is replaced as a whole: never the run or a folder holding it; an earlier export only with ``overwrite``;
    never a file or a folder with other content."""
    refuse_output_holding_input(out, [run])
    if out.exists() and not (out.is_dir() and (read_manifest(out) is not None or not any(out.iterdir()))):
        raise user_error("a new folder or an earlier medsight export as OUT", "an existing file or folder with other content",
                         out, "choose another OUT (only an earlier export is replaced, with --overwrite)")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise user_error("a new export folder", "an earlier export", out,
                         "choose another OUT, or pass --overwrite to replace it once the new export is complete")


def _plan_dict(run: Path, first_checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The plan prediction uses: segmentation, the checkpoint's with the run's postprocessing; classification, the run's."""
    run_plan = load_run_plan(run)
    if run_plan.task == "classification":
        return dict(run_plan.to_dict())
    plan = dict(first_checkpoint["plan"])
    plan["postprocessing"] = run_plan.postprocessing
    return plan


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` folder to ``out``; an earlier export there is removed only after the new one is in place."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_run(run_dir: str | Path, out: str | Path, *, fmt: str = "onnx", int8: bool = False,
               folds: list[int] | None = None, overwrite: bool = False) -> Path:
    """Export the folds of a trained run (see the module docstring); returns ``out``.

    Args:
        run_dir: a run folder made by ``medsight train``.
        out: the export folder (created; an earlier export there is replaced only with ``overwrite``; never the run
            or a folder holding it).
        fmt: ``onnx`` or ``torchscript``.
        int8: ONNX only: dynamic int8 quantisation of the weights (see :func:`medsight.engine.networks.quantize_int8`).
        folds: export only these folds (default every trained fold).
        overwrite: replace an earlier export in ``out`` (once the new one is complete).
    """

    run, out = Path(run_dir), Path(out)
    if fmt not in FORMATS:
        raise did_you_mean(fmt, FORMATS, "export format")
    if int8 and fmt != "onnx":
        raise user_error("--int8 with --format onnx", f"--format {fmt}", None, "drop --int8 or export to ONNX")
    if read_manifest(run) is not None:
        raise user_error("a run folder made by 'medsight train'", "an export folder", run, "export from the run folder")
    checkpoints = fold_files(run, folds=folds)
    _check_target(out, run, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        entries: dict[str, Any] = {}
        first: dict[str, Any] | None = None
        for fold, ckpt in checkpoints.items():
            state = load_checkpoint(ckpt)
            first = first or state
            sig = signature(state)
            rel = f"{FOLD_PREFIX}{fold}/{_FILE[fmt]}"
            target = tmp / rel
            target.parent.mkdir(parents=True)
            model = model_from_checkpoint(state)
            if fmt == "torchscript":
                to_torchscript(model, sig, target)
            elif int8:
                to_onnx(model, sig, target.with_suffix(".fp32.onnx"))
                quantize_int8(target.with_suffix(".fp32.onnx"), target)
                target.with_suffix(".fp32.onnx").unlink()
            else:
                to_onnx(model, sig, target)
            entries[fold] = {"file": rel, "sha256": sha256_file(target), "bytes": target.stat().st_size,
                             "checkpoint": str(ckpt.relative_to(run)), "checkpoint_sha256": sha256_file(ckpt),
                             "architecture": state["architecture"], "inputs": sig.to_dict()}
        assert first is not None  # fold_files returns at least one fold
        plan = _plan_dict(run, first)
        manifest = {
            "format": fmt, "task": plan.get("task", "segmentation"), "quantization": "dynamic-int8" if int8 else None,
            "opset": OPSET if fmt == "onnx" else None, "medsight_version": __version__,
            "created": utc_timestamp(), "source_run": str(run.resolve()), "folds": entries,
        }
        write_text(tmp / "plans.json", json.dumps(plan, indent=2) + "\n")
        for name in ("calibration.json", "config.json", "uncertainty.json"):
            if (run / name).is_file():
                shutil.copyfile(run / name, tmp / name)
        write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        card = build_model_card(run, load_run_plan(run))
        card["source_weights"] = card["weights"]
        card["weights"] = [{"fold": k, "file": v["file"], "sha256": v["sha256"], "bytes": v["bytes"]} for k, v in entries.items()]
        card["export"] = {k: manifest[k] for k in ("format", "quantization", "opset", "created")}
        card["model_digest"] = digest_section(read_model(tmp))  # export.json, plans.json, calibration, fold files
        write_card(card, tmp)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
