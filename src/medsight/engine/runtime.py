"""The networks of a run folder or of an export folder, for an engine: ``torch`` (PyTorch eager or TorchScript) or
``onnx`` (onnxruntime).

=============  ==================================================  ===========================================
source         ``--engine torch``                                  ``--engine onnx``
=============  ==================================================  ===========================================
run folder     the checkpoints (``fold_K/checkpoint_best.pt``)     the checkpoints exported to ONNX in memory
ONNX export    refused (use ``--engine onnx``)                     ``fold_K/model.onnx``
TorchScript    ``fold_K/model.pt`` (``torch.jit.load``)            refused (export with ``--format onnx``)
=============  ==================================================  ===========================================
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medsight.core.pinned import is_pinned, read_text
from medsight.engine.checkpoint import load_checkpoint, model_from_checkpoint
from medsight.engine.networks import (
    OnnxNetwork,
    OnnxOptions,
    check_engine,
    load_torchscript,
    make_session,
    signature,
    to_onnx,
)
from medsight.engine.run import checkpoints, select_folds
from medsight.errors import user_error

MANIFEST = "export.json"


def read_manifest(root: str | Path) -> dict[str, Any] | None:
    """The ``export.json`` of an export folder, or ``None`` for a run folder."""
    path = Path(root) / MANIFEST
    if not is_pinned(path) and not path.is_file():
        return None
    try:
        data = json.loads(read_text(path))  # the hashed bytes during a checked prediction (core.pinned)
    except json.JSONDecodeError as exc:
        raise user_error("a valid export.json", f"a parse error ({exc.msg} at line {exc.lineno})", path,
                         "export the run again with 'medsight export'") from exc
    if not isinstance(data, dict) or not isinstance(data.get("folds"), dict) or data.get("format") not in ("onnx", "torchscript"):
        raise user_error("an export.json with 'format' and 'folds'", "another JSON document", path, "export the run again")
    return data


def fold_files(root: str | Path, *, folds: list[int] | None = None) -> dict[str, Path]:
    """Fold name -> the weights file a prediction uses.

    A run folder: ``fold_K/checkpoint_best.pt`` (``checkpoint_last.pt`` when a fold has no best yet); an export
    folder: the files its ``export.json`` lists. ``folds`` keeps only those folds (each must exist).
    """
    root = Path(root)
    if not root.is_dir():
        raise user_error("a run folder made by 'medsight train' or an export made by 'medsight export'", "no such folder",
                         root, "check the path")
    manifest = read_manifest(root)
    if manifest is None:
        return checkpoints(root, folds=folds)
    found = {str(k): root / v["file"] for k, v in manifest["folds"].items()}
    found = select_folds(found, folds, root, "exported folds")
    if not found:
        raise user_error("exported folds in export.json", "none", root, "export the run again")
    for path in found.values():
        if not path.is_file():
            raise user_error("the exported network listed in export.json", "a missing file", path, "export the run again")
    return found


def _refuse(manifest: dict[str, Any] | None, engine: str, root: Path) -> None:
    fmt = manifest["format"] if manifest else "checkpoint"
    if engine == "torch" and fmt == "onnx":
        raise user_error("a run folder or a TorchScript export for --engine torch", "an ONNX export", root, "pass --engine onnx")
    if engine == "onnx" and fmt == "torchscript":
        raise user_error("a run folder or an ONNX export for --engine onnx", "a TorchScript export", root,
                         "pass --engine torch, or export with --format onnx")


def load_networks(root: str | Path, *, folds: list[int] | None = None, engine: str = "torch", device: str | torch.device = "cpu",
                  options: OnnxOptions | None = None) -> tuple[list[Path], list[nn.Module]]:
    """The weights files and networks (eval mode) of every chosen fold, for ``engine`` (see the module table)."""

    root = Path(root)
    check_engine(engine)
    manifest = read_manifest(root)
    _refuse(manifest, engine, root)
    files = fold_files(root, folds=folds)
    models: list[nn.Module] = []
    for path in files.values():
        if manifest is not None and engine == "onnx":
            models.append(OnnxNetwork(make_session(path, options)))
        elif manifest is not None:
            models.append(load_torchscript(path, device))
        else:
            state = load_checkpoint(path)
            model = model_from_checkpoint(state)
            models.append(OnnxNetwork(make_session(to_onnx(model, signature(state)), options)) if engine == "onnx"
                          else model.to(device))
    return list(files.values()), models


