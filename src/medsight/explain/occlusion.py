"""Occlusion sensitivity: how much the probability of a class drops when a region of the image is masked.

Works for any classifier (also transformers, which have no Grad-CAM layer), 2D and 3D. A box of ``patch`` pixels
slides over the image with ``stride``; the box is filled with each channel's mean intensity; masked copies are run in
batches. A pixel's importance is the mean drop in the target probability over the boxes that cover it. MONAI's
``OcclusionSensitivity`` is not used because it always applies softmax (wrong for single-logit binary and
multi-label models) and reports the masked probability rather than the drop.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from medsight.errors import user_error
from medsight.explain.gradcam import check_image, check_target, model_device


def _per_axis(value: int | Sequence[int] | None, size: tuple[int, ...], default: Sequence[int], name: str) -> list[int]:
    if value is None:
        return list(default)
    out = [int(value)] * len(size) if isinstance(value, int) else [int(v) for v in value]
    if len(out) != len(size) or any(v < 1 or v > s for v, s in zip(out, size)):
        raise user_error(f"{name} of 1..size per axis for an image of size {list(size)}", value, None,
                         f"pass a smaller {name}, e.g. {max(1, min(size) // 4)}")
    return out


def _starts(size: int, patch: int, stride: int) -> list[int]:
    """Box start positions along one axis; the last box always touches the far edge."""
    starts = list(range(0, size - patch + 1, stride))
    return starts if starts[-1] == size - patch else [*starts, size - patch]


def _probability(logits: torch.Tensor, target: int, multilabel: bool) -> torch.Tensor:
    if multilabel or logits.shape[1] == 1:
        return torch.sigmoid(logits[:, target])
    return torch.softmax(logits, dim=1)[:, target]


@torch.no_grad()
def occlusion(model: nn.Module, image: torch.Tensor, target: int, *, tabular: torch.Tensor | None = None,
              patch: int | Sequence[int] | None = None, stride: int | Sequence[int] | None = None, batch: int = 32,
              multilabel: bool = False) -> np.ndarray:
    """Occlusion sensitivity map of class ``target`` for one image.

    Args:
        model: a classifier returning logits ``(B, K)``.
        image: ``(1, C, *S)`` with ``S`` = ``(H, W)`` or ``(D, H, W)``.
        target: class index.
        tabular: ``(1, T)`` when the model fuses tabular values (repeated for every masked copy).
        patch: box size in pixels, one int or one per axis; default a quarter of each side (at least 1).
        stride: step between boxes; default half the patch (at least 1).
        batch: masked copies per forward pass (memory vs. speed).
        multilabel: score with a sigmoid per class instead of a softmax over classes (a single-logit model always
            uses the sigmoid).

    Returns:
        A float32 map of shape ``S`` in [0, 1]: the mean probability drop clipped at 0 and divided by its maximum
        (higher = masking there lowers the target probability more; all zeros when no box lowers it).
    """
    check_image(image)
    check_target(model, target)
    size = tuple(int(s) for s in image.shape[2:])
    patch_ = _per_axis(patch, size, [max(1, s // 4) for s in size], "patch")
    stride_ = _per_axis(stride, size, [max(1, p // 2) for p in patch_], "stride")
    if batch < 1:
        raise user_error("batch >= 1", batch, None, "pass the number of masked copies per forward pass, e.g. 32")
    was_training = model.training
    model.eval()
    try:
        device = model_device(model)
        x = image.detach().to(device, torch.float32)
        fill = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)[0]
        tab = None if tabular is None else tabular.to(device)
        base = _probability(model(x) if tab is None else model(x, tab), target, multilabel)[0]
        boxes = list(itertools.product(*(_starts(s, p, st) for s, p, st in zip(size, patch_, stride_))))
        drop = torch.zeros(size, device=device)
        count = torch.zeros(size, device=device)
        for i in range(0, len(boxes), batch):
            chunk = boxes[i:i + batch]
            masked = x.repeat(len(chunk), *([1] * (x.ndim - 1)))
            regions = [tuple(slice(s, s + p) for s, p in zip(box, patch_)) for box in chunk]
            for j, region in enumerate(regions):
                index: tuple[int | slice, ...] = (j, slice(None), *region)
                masked[index] = fill
            logits = model(masked) if tab is None else model(masked, tab.expand(len(chunk), -1))
            for region, d in zip(regions, base - _probability(logits, target, multilabel)):
                drop[region] += d
                count[region] += 1
    finally:
        model.train(was_training)
    heat = (drop / count).clamp(min=0)
    peak = heat.max()
    return (heat / peak if peak > 0 else heat).cpu().numpy().astype(np.float32)
