"""Fine-tuning a segmentation network from a checkpoint (``medsight train --init-from CKPT``).

The new network is built from the new plan; every tensor of the checkpoint whose name and shape match one of the
network's is copied (:func:`medsight.engine.checkpoint.load_matching_weights`): the encoder and the decoder stages
that have the same widths, the output head too when the label set is the same. When the labels differ (other names,
values or count) the head (``output_block`` or, in a network with a strided first stage, the full-resolution head's
output layer, and the deep-supervision heads) starts fresh even where shapes would
match, since its channels would mean other structures. ``--freeze-encoder-epochs N`` keeps the encoder
(input block, down-sampling stages, bottleneck) fixed for the first N epochs, so the fresh head and decoder adapt to
the features before they are changed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from medsight.engine.checkpoint import load_checkpoint, load_matching_weights
from medsight.errors import user_error

log = logging.getLogger(__name__)

#: Per architecture: (encoder module prefixes, head module prefixes) in the network's ``state_dict`` names.
PARTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "dynunet": (("net.input_block.", "net.downsamples.", "net.bottleneck."),
                ("net.output_block.", "net.deep_supervision_heads.", "head.out.")),
}


def _parts(architecture: str, where: str | Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if architecture not in PARTS:
        raise user_error(f"a network of {', '.join(PARTS)} for fine-tuning", architecture, where,
                         "fine-tune a dynunet plan (the segmentation default)")
    return PARTS[architecture]


def encoder_parameters(model: nn.Module, architecture: str) -> Iterator[nn.Parameter]:
    """The encoder's parameters (input block, down-sampling stages, bottleneck)."""
    encoder, _ = _parts(architecture, "the plan")
    for name, p in model.named_parameters():
        if name.startswith(encoder):
            yield p


def init_from_checkpoint(model: nn.Module, path: str | Path, *, architecture: str,
                         labels: Mapping[str, int]) -> dict[str, Any]:
    """Copy a checkpoint's matching weights into ``model`` and log what was loaded and skipped, in one line.

    Args:
        model: the network built from the new plan.
        path: a medsight segmentation checkpoint (``checkpoint_best.pt`` of a run).
        architecture: the new network's registry name.
        labels: the new plan's labels; when they differ from the checkpoint's, the head is not copied.

    Returns:
        ``{"checkpoint", "loaded", "skipped", "fresh_head", "loaded_by_part": {part: [loaded, total]}}``.

    Raises:
        MedsightError: the file is missing or not a checkpoint, its network is another architecture, or no tensor
            matches.
    """
    path = Path(path)
    state = load_checkpoint(path)
    if state["architecture"] != architecture:
        raise user_error(f"a {architecture} checkpoint to fine-tune the plan's network", state["architecture"], path,
                         "use a checkpoint of a segmentation run with the same network")
    encoder, head = _parts(architecture, path)
    old_labels = (state.get("plan") or {}).get("labels")
    fresh_head = dict(old_labels or {}) != dict(labels)
    loaded, skipped = load_matching_weights(model, state["state_dict"], skip_prefixes=head if fresh_head else ())
    if not loaded:
        raise user_error("a checkpoint sharing weights with the planned network", "no tensor of matching name and shape",
                         path, "fine-tune from a run of the same network family (dynunet) and input channels")
    parts: dict[str, list[int]] = {}
    for name in (*loaded, *skipped):
        part = "encoder" if name.startswith(encoder) else "head" if name.startswith(head) else "decoder"
        counts = parts.setdefault(part, [0, 0])
        counts[0] += name in loaded
        counts[1] += 1
    report = {"checkpoint": str(path), "loaded": loaded, "skipped": skipped, "fresh_head": fresh_head,
              "loaded_by_part": parts}
    log.info("init-from %s: loaded %d of %d tensors (%s)%s; skipped: %s", path, len(loaded), len(loaded) + len(skipped),
                ", ".join(f"{k} {a}/{b}" for k, (a, b) in sorted(parts.items())),
                "; new head (labels differ)" if fresh_head else "",
                ", ".join(skipped[:8]) + (f" ... ({len(skipped)})" if len(skipped) > 8 else "") if skipped else "none")
    return report


__all__ = ["PARTS", "encoder_parameters", "init_from_checkpoint"]
