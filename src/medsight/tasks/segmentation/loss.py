"""Dice + cross-entropy for segmentation, aware of partial labels (the *marginal* loss).

A case in which organ ``k`` was not annotated has ``k``'s voxels labelled background. Plain Dice + CE would teach
the network that ``k`` is background there and fight the cases where ``k`` was contoured. Two standard remedies:

* mask the loss: drop ``k``'s Dice term for that case and leave the case's background voxels out of the CE. Safe,
  but it throws away what those voxels do say: they are none of the *annotated* organs;
* the **marginal loss** (Shi et al., "Marginal loss and exclusion loss for partially supervised multi-organ
  segmentation", Medical Image Analysis 2021; also Fang & Yan, "Multi-organ segmentation over partially labeled
  datasets with multi-scale feature abstraction", IEEE TMI 2020): for that case, merge the probabilities of the
  absent classes into background (``p_bg' = p_bg + sum_k p_k``) before the loss, so "background" means "none of the
  annotated organs". A background voxel then penalises only the annotated organs; the absent logits are not pushed
  down (their gradient on such voxels is ``-p_k (1 - p_bg - p_k) / (p_bg + p_k) <= 0``: descent never lowers them).

medsight uses the marginal CE (it keeps the supervision of every voxel for the annotated organs) and excludes an
absent class from the batch Dice for the samples of that case (its merged channel is background, which the Dice
term leaves out as before). With no absent classes the loss equals MONAI's ``DiceCELoss(to_onehot_y=True,
softmax=True, include_background=False, batch=True, smooth_nr=smooth_dr=1e-5)``, the loss used before (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def marginal_log_probs(logits: torch.Tensor, absent: torch.Tensor | None) -> torch.Tensor:
    """Log-probabilities ``(B, K, *spatial)`` with, per sample, the absent classes' probability merged into background.

    Args:
        logits: ``(B, K, *spatial)``.
        absent: ``(B, K)`` bool, ``True`` where class ``k`` was not annotated in sample ``b``'s case (column 0 ignored);
            ``None``: every class annotated.

    Returns:
        ``log_softmax(logits)`` where channel 0 is ``log(p_bg + sum of absent p_k)``; the absent channels are left as
        they are (no target voxel has an absent class, so they are never gathered).
    """
    logp = F.log_softmax(logits.float(), dim=1)
    if absent is None or not bool(absent[:, 1:].any()):
        return logp
    merge = absent.clone().bool()
    merge[:, 0] = True
    shape = (*merge.shape, *([1] * (logits.ndim - 2)))
    masked = logp.masked_fill(~merge.view(shape), float("-inf"))
    background = torch.logsumexp(masked, dim=1, keepdim=True)
    return torch.cat([background, logp[:, 1:]], dim=1)


def partial_dice_ce(logits: torch.Tensor, target: torch.Tensor, absent: torch.Tensor | None = None, *,
                    smooth: float = 1e-5) -> torch.Tensor:
    """Marginal cross-entropy + (1 - batch soft Dice over the annotated foreground classes).

    Args:
        logits: ``(B, K, *spatial)``.
        target: ``(B, 1, *spatial)`` or ``(B, *spatial)`` integer labels.
        absent: ``(B, K)`` bool mask of classes not annotated per sample (see :func:`marginal_log_probs`).
        smooth: added to the Dice numerator and denominator (as MONAI's ``smooth_nr``/``smooth_dr``).
    """
    y = target[:, 0] if target.ndim == logits.ndim else target
    y = y.long()
    logp = marginal_log_probs(logits, absent)
    ce = F.nll_loss(logp, y)
    k = logits.shape[1]
    if k < 2:
        return ce
    probs = torch.softmax(logits.float(), dim=1)[:, 1:]
    onehot = F.one_hot(y, k).movedim(-1, 1)[:, 1:].to(probs.dtype)
    dims = tuple(range(2, logits.ndim))
    inter, p_sum, y_sum = (probs * onehot).sum(dims), probs.sum(dims), onehot.sum(dims)  # (B, K - 1)
    keep = torch.ones_like(inter) if absent is None else (~absent[:, 1:].bool()).to(inter.dtype)
    inter, p_sum, y_sum = (inter * keep).sum(0), (p_sum * keep).sum(0), (y_sum * keep).sum(0)
    scored = keep.sum(0) > 0  # classes annotated in at least one sample of the batch
    if not bool(scored.any()):
        return ce
    dice = 1 - (2 * inter + smooth) / (p_sum + y_sum + smooth)
    return ce + dice[scored].mean()


class SegmentationLoss(torch.nn.Module):
    """:func:`partial_dice_ce`, summed over deep-supervision outputs (full resolution first) with halving weights."""

    def forward(self, outputs: torch.Tensor | list[torch.Tensor], target: torch.Tensor,
                absent: torch.Tensor | None = None) -> torch.Tensor:
        outs = outputs if isinstance(outputs, list) else [outputs]
        weights = torch.tensor([0.5**i for i in range(len(outs))])
        weights = weights / weights.sum()
        total = torch.zeros((), device=outs[0].device)
        for w, o in zip(weights.tolist(), outs):
            total = total + w * partial_dice_ce(o, target, absent)
        return total


def whole_case_loss(probs: torch.Tensor, ref: torch.Tensor, foreground: list[int], absent: list[int] | None = None) -> float:
    """The training loss on a whole case from probabilities: marginal CE + (1 - mean soft Dice of annotated labels).

    Args:
        probs: ``(K, *spatial)`` class probabilities.
        ref: ``(*spatial)`` integer labels.
        foreground: label values scored by the Dice term.
        absent: label values not annotated in this case (merged into background, left out of the Dice).
    """
    gone = [v for v in (absent or []) if 0 < v < probs.shape[0]]
    merged = probs
    if gone:
        merged = probs.clone()
        merged[0] = probs[[0, *gone]].sum(0)
    ce = F.nll_loss(torch.log(merged.clamp_min(1e-8))[None], ref[None])
    dices = []
    for v in foreground:
        if v in gone:
            continue
        p, y = probs[v], (ref == v).float()
        dices.append((2 * (p * y).sum() + 1e-5) / (p.sum() + y.sum() + 1e-5))
    return float(ce + 1 - torch.stack(dices).mean()) if dices else float(ce)


__all__ = ["SegmentationLoss", "marginal_log_probs", "partial_dice_ce", "whole_case_loss"]
