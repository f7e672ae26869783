"""The marginal Dice + CE loss for partial labels: equal to MONAI's DiceCELoss without absent classes, and never
pushing the logits of a class that was not annotated down on that case's background voxels."""

from __future__ import annotations

import numpy as np
import torch
from monai.losses import DiceCELoss

from medsight.tasks.segmentation.loss import (
    SegmentationLoss,
    marginal_log_probs,
    partial_dice_ce,
    whole_case_loss,
)


def _batch(seed: int = 0, k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k, 6, 7, 5, generator=gen)
    target = torch.randint(0, k, (2, 1, 6, 7, 5), generator=gen)
    return logits, target


def test_equals_monai_dice_ce_without_absent_classes() -> None:
    logits, target = _batch()
    monai = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True, smooth_nr=1e-5,
                       smooth_dr=1e-5)
    assert torch.allclose(partial_dice_ce(logits, target), monai(logits, target), atol=1e-6)
    none_absent = torch.zeros(2, 4, dtype=torch.bool)
    assert torch.allclose(partial_dice_ce(logits, target, none_absent), monai(logits, target), atol=1e-6)


def test_absent_class_logits_are_not_pushed_down_on_background() -> None:
    """Case 0 lacks class 2 (unlabelled); case 1 annotates everything. On case 0's background voxels the gradient of
    class 2's logit must not be positive (gradient descent would lower it); plain Dice + CE makes it positive."""
    logits, target = _batch(seed=1, k=3)
    target[0][target[0] == 2] = 0  # an unannotated organ is absent from the label map: its voxels read background
    absent = torch.tensor([[False, False, True], [False, False, False]])
    background = target[0, 0] == 0

    def grad(mask: torch.Tensor | None) -> torch.Tensor:
        x = logits.clone().requires_grad_(True)
        partial_dice_ce(x, target, mask).backward()
        assert x.grad is not None
        return x.grad

    marginal = grad(absent)[0, 2][background]
    plain = grad(None)[0, 2][background]
    assert (marginal <= 1e-9).all()
    assert (plain > 0).all()  # the plain loss suppresses the organ where it was simply not contoured
    # the annotated classes are still pushed down on those background voxels
    assert (grad(absent)[0, 1][background] > 0).all()


def test_marginal_background_merges_absent_probabilities() -> None:
    logits, _ = _batch(seed=2)
    absent = torch.tensor([[False, True, False, True], [False, False, False, False]])
    logp = marginal_log_probs(logits, absent)
    p = torch.softmax(logits, 1)
    assert torch.allclose(logp[0, 0].exp(), p[0, 0] + p[0, 1] + p[0, 3], atol=1e-6)
    assert torch.allclose(logp[1, 0].exp(), p[1, 0], atol=1e-6)
    assert torch.allclose(logp[:, 2], torch.log_softmax(logits, 1)[:, 2])


def test_dice_leaves_out_a_class_absent_in_every_sample() -> None:
    """A class not annotated anywhere in the batch contributes no Dice term (not a term pushing it to zero)."""
    logits, target = _batch(seed=3, k=3)
    target[target == 2] = 0
    absent = torch.tensor([[False, False, True], [False, False, True]])
    loss = partial_dice_ce(logits, target, absent)
    ce = torch.nn.functional.nll_loss(marginal_log_probs(logits, absent), target[:, 0])
    p1, y1 = torch.softmax(logits, 1)[:, 1], (target[:, 0] == 1).float()
    dice1 = 1 - (2 * (p1 * y1).sum() + 1e-5) / (p1.sum() + y1.sum() + 1e-5)
    assert torch.allclose(loss, ce + dice1, atol=1e-6)


def test_deep_supervision_and_whole_case_loss() -> None:
    logits, target = _batch(seed=4, k=3)
    absent = torch.tensor([[False, False, True], [False, False, False]])
    both = SegmentationLoss()([logits, logits * 0.5], target, absent)
    expected = (2 / 3) * partial_dice_ce(logits, target, absent) + (1 / 3) * partial_dice_ce(logits * 0.5, target, absent)
    assert torch.allclose(both, expected, atol=1e-6)
    probs = torch.softmax(logits[0], 0)
    ref = target[0, 0].clone()
    ref[ref == 2] = 0
    plain, partial = whole_case_loss(probs, ref, [1, 2]), whole_case_loss(probs, ref, [1, 2], absent=[2])
    assert np.isfinite(plain) and np.isfinite(partial) and partial < plain
