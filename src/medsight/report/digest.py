"""The model digest: one SHA-256 over every file a prediction loads, for the user to pin.

A prediction of a run folder loads the weights of the folds it uses (``fold_K/checkpoint_best.pt``, or
``checkpoint_last.pt`` for a fold without a best), ``plans.json`` (labels, normalisation, postprocessing) and the
calibration files (``calibration.json``, ``fold_K/calibration.json``: temperatures, decision thresholds); an export
folder's prediction loads its ``fold_K/model.onnx`` (or ``model.pt``), ``plans.json``, ``calibration.json`` and
``export.json``. The *manifest* lists them, one ``<sha256>  <name>`` line each (the ``sha256sum`` format, names
relative to the folder, sorted), after the line ``medsight model manifest v1``; the *model digest* is the SHA-256 of
the manifest's UTF-8 text. It can be recomputed without medsight::

    (echo "medsight model manifest v1"; cd RUN && sha256sum plans.json fold_0/checkpoint_best.pt | LC_ALL=C sort -k2) | sha256sum

Why a digest the user pins, and not the card: ``model_card.json`` lies beside the weights, so whoever can swap the
weights can rewrite the card too. Comparing the files with the card (:func:`check_consistent_with_card`,
``predict --verify``) only finds accidents (a truncated copy, a stale card); only a digest kept elsewhere (in the
deployment's configuration, ``--expect-sha256`` or ``$MEDSIGHT_MODEL_SHA256``) establishes that the model is the one
that was validated (:func:`check_pinned_digest`).

:func:`read_model` reads each file once; :func:`medsight.core.pinned.pinned` then serves those very bytes to the
loaders, so what was hashed is what is loaded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsight.core.pinned import pinned, sha256_bytes
from medsight.engine.run import CALIBRATION, PLANS
from medsight.engine.runtime import MANIFEST, fold_files
from medsight.errors import user_error

MANIFEST_HEADER = "medsight model manifest v1"
DIGEST_ENV = "MEDSIGHT_MODEL_SHA256"
CARD_JSON = "model_card.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ModelFiles:
    """The files of one prediction's model, read once: name (relative to ``root``, POSIX) -> bytes."""

    root: Path
    folds: list[str]
    blobs: dict[str, bytes] = field(repr=False)
    weights: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> dict[str, str]:
        """Name -> hex SHA-256, sorted by name."""
        return {name: sha256_bytes(self.blobs[name]) for name in sorted(self.blobs)}

    @property
    def manifest(self) -> str:
        """The canonical manifest text (see the module docstring)."""
        return "".join([f"{MANIFEST_HEADER}\n", *(f"{d}  {n}\n" for n, d in self.sha256.items())])

    @property
    def digest(self) -> str:
        """The model digest: SHA-256 of :attr:`manifest`."""
        return sha256_bytes(self.manifest.encode("utf-8"))

    def rows(self) -> list[dict[str, Any]]:
        """``{"file", "sha256", "bytes"}`` per file, as the card lists them."""
        return [{"file": n, "sha256": d, "bytes": len(self.blobs[n])} for n, d in self.sha256.items()]

    def pinned(self) -> Any:
        """A context in which the loaders read these bytes instead of the disk (:func:`medsight.core.pinned.pinned`)."""
        return pinned({self.root / n: b for n, b in self.blobs.items()})


def read_model(root: str | Path, *, folds: list[int] | None = None) -> ModelFiles:
    """Read the files a prediction of ``root`` (a run or an export folder) with ``folds`` loads, each once.

    ``export.json`` is read first and the fold files are found from those bytes, so the list and the files cannot
    come from two different versions of the manifest.
    """
    root = Path(root)
    blobs: dict[str, bytes] = {}
    if (root / MANIFEST).is_file():
        blobs[MANIFEST] = (root / MANIFEST).read_bytes()
    with pinned({root / n: b for n, b in blobs.items()}):
        weights = fold_files(root, folds=folds)
    names = [p.relative_to(root).as_posix() for p in weights.values()]
    extra = [PLANS, CALIBRATION]
    if MANIFEST not in blobs:  # a run: the per-fold temperatures of the folds used
        extra += [(p.parent / CALIBRATION).relative_to(root).as_posix() for p in weights.values()]
    for name in names + [n for n in extra if (root / n).is_file()]:
        blobs.setdefault(name, (root / name).read_bytes())
    return ModelFiles(root=root, folds=list(weights), blobs=blobs, weights=names)


def model_digest(root: str | Path, *, folds: list[int] | None = None) -> str:
    """The model digest of ``root`` for a prediction with ``folds`` (default every fold)."""
    return read_model(root, folds=folds).digest


def normalise_digest(text: str, where: str = "--expect-sha256") -> str:
    """``text`` as 64 lower-case hex digits (a ``sha256:`` prefix and surrounding spaces allowed)."""
    value = text.strip().lower().removeprefix("sha256:")
    if not _HEX64.fullmatch(value):
        raise user_error(f"a SHA-256 model digest (64 hex digits) in {where}", repr(text[:80]), None,
                         "copy the 'model digest' line that 'medsight card RUN' or 'medsight export' prints")
    return value


def check_pinned_digest(model: ModelFiles, expected: str, where: str = "--expect-sha256") -> None:
    """Refuse the model unless its digest is ``expected`` (the digest the user pinned).

    Raises:
        MedsightError: ``expected`` is not a SHA-256, or the digest differs (the message names the files that also
            differ from the card beside them, as a hint only: the card proves nothing).
    """
    want = normalise_digest(expected, where)
    got = model.digest
    if got == want:
        return
    hint = ""
    recorded = card_files(model.root)
    changed = [n for n, d in model.sha256.items() if recorded.get(n) not in (None, d)]
    if changed:
        hint = f" (differing from model_card.json: {', '.join(changed)})"
    folds = ",".join(model.folds)
    raise user_error(f"the model digest pinned with {where} ({want[:16]}…)", f"{got[:16]}… over folds {folds}{hint}",
                     model.root, "do not use this model: one of its files changed; if the change is intended, pin the "
                     "digest 'medsight card' prints for it (it depends on --folds)")


def card_files(root: str | Path) -> dict[str, str]:
    """File -> SHA-256 as ``root/model_card.json`` records them (the model files, and every listed weights file)."""
    path = Path(root) / CARD_JSON
    if not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise user_error("a valid model_card.json", f"a file that is not JSON ({type(exc).__name__})", path,
                         "re-create it with 'medsight card RUN'") from exc
    if not isinstance(card, dict):
        return {}
    out = {w["file"]: w["sha256"] for w in card.get("weights", []) if isinstance(w, dict) and "file" in w}
    for w in (card.get("model_digest") or {}).get("files", []):
        if isinstance(w, dict) and "file" in w:
            out[w["file"]] = w["sha256"]
    return out


def check_consistent_with_card(model: ModelFiles) -> None:
    """Refuse files that differ from ``model_card.json`` beside them: a **consistency** check (a truncated copy, a
    stale card), not an integrity check, since the card can be rewritten together with the files.

    Every weights file must be listed; ``plans.json``, ``export.json`` and the calibration files are compared when
    the card lists them (cards written before medsight hashed them list the weights only).

    Raises:
        MedsightError: no card, a weights file the card does not list, or a file whose SHA-256 differs.
    """
    path = model.root / CARD_JSON
    recorded = card_files(model.root)
    if not recorded:
        raise user_error("a model_card.json to compare with", "none", model.root,
                         "write one with 'medsight card RUN', or drop --verify")
    for name, digest in model.sha256.items():
        if name not in recorded:
            if name not in model.weights:
                continue
            raise user_error("weights listed in model_card.json", f"{name}, which the card does not list", path,
                             "re-create the card with 'medsight card RUN' if these weights are intended")
        if digest != recorded[name]:
            raise user_error(f"{name} with the SHA-256 in model_card.json ({recorded[name][:12]}…)", f"{digest[:12]}…",
                             model.root / name, "the file changed after the card was written: restore it, or "
                             "re-create the card with 'medsight card RUN' if the change is intended")


__all__ = [
    "DIGEST_ENV",
    "MANIFEST_HEADER",
    "ModelFiles",
    "card_files",
    "check_consistent_with_card",
    "check_pinned_digest",
    "model_digest",
    "normalise_digest",
    "read_model",
]
