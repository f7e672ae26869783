"""Partial supervision and loss weighting: each item contributes only the terms it has labels for."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsight.models.multitask import MultitaskOutput
from medsight.tasks.multitask.heatmap import centre_focal_loss, centre_heatmap, find_peaks
from medsight.tasks.multitask.losses import MultitaskLoss, task_weights
from medsight.tasks.multitask.plan import MultitaskPlan
from medsight.tasks.segmentation.plan import NetworkConfig
from medsight.tasks.segmentation.trainer import SegmentationLoss
from medsight.transforms.config import Normalization


def _plan(**changes) -> MultitaskPlan:
    return MultitaskPlan(dataset="t", dims=2, channel_names=["ch0"], modalities=["other"], labels={"background": 0, "fg": 1},
                         target_spacing=[1.0, 1.0], normalization=[Normalization("zscore")], patch_size=[8, 8], batch_size=4,
                         network=NetworkConfig("dynunet", [[3, 3]], [[1, 1]], [4]), class_names=["a", "b"],
                         class_counts=[2, 2], **changes)


def _batch(has_mask: list[bool], cls: list[int]) -> tuple[MultitaskOutput, dict]:
    g = torch.Generator().manual_seed(0)
    n = len(cls)
    seg = torch.randn(n, 2, 8, 8, generator=g, requires_grad=True)
    logits = torch.randn(n, 2, generator=g, requires_grad=True)
    label = (torch.rand(n, 1, 8, 8, generator=g) > 0.5).long()
    return MultitaskOutput(seg, logits, None), {"label": label, "has_mask": torch.tensor(has_mask),
                                                "class": torch.tensor(cls)}


def test_items_contribute_only_their_labelled_terms() -> None:
    loss = MultitaskLoss(_plan(loss_weighting="fixed"))
    out, batch = _batch([True, False, True, False], [0, 1, -1, -1])
    terms = loss.terms(out, batch)
    keep = batch["has_mask"]
    assert torch.allclose(terms["segmentation"], SegmentationLoss()(out.segmentation[keep], batch["label"][keep]))
    assert torch.allclose(terms["classification"], torch.nn.functional.cross_entropy(out.classification[:2], batch["class"][:2]))
    loss(out, batch).backward()
    assert torch.all(out.segmentation.grad[~keep] == 0) and torch.any(out.segmentation.grad[keep] != 0)
    assert torch.all(out.classification.grad[2:] == 0) and torch.any(out.classification.grad[:2] != 0)


def test_a_batch_without_masks_has_no_segmentation_term() -> None:
    loss = MultitaskLoss(_plan(loss_weighting="fixed", loss_weights={"segmentation": 1.0, "classification": 0.5}))
    out, batch = _batch([False, False], [1, 0])
    terms = loss.terms(out, batch)
    assert set(terms) == {"classification"}
    assert torch.allclose(loss(out, batch), 0.5 * terms["classification"])
    with pytest.raises(ValueError, match="labelled item"):
        loss.combine({}, None)


def test_uncertainty_weighting_follows_kendall() -> None:
    loss = MultitaskLoss(_plan())
    s = torch.tensor([0.5, -1.0], requires_grad=True)
    terms = {"segmentation": torch.tensor(2.0), "classification": torch.tensor(0.4)}
    expected = math.exp(-0.5) * 2.0 + 0.25 + math.exp(1.0) * 0.4 - 0.5
    total = loss.combine(terms, s)
    assert float(total.detach()) == pytest.approx(expected, rel=1e-6)
    total.backward()  # d/ds = -exp(-s) L + 1/2: the learned weights move towards 1 / (2 L)
    assert s.grad.tolist() == pytest.approx([-math.exp(-0.5) * 2.0 + 0.5, -math.exp(1.0) * 0.4 + 0.5], rel=1e-5)
    only_cls = loss.combine({"classification": torch.tensor(0.4)}, s)  # an absent term drops its regulariser too
    assert float(only_cls.detach()) == pytest.approx(math.exp(1.0) * 0.4 - 0.5, rel=1e-6)
    assert task_weights(s, ["segmentation", "classification"]) == pytest.approx({"segmentation": math.exp(-0.5),
                                                                                 "classification": math.exp(1.0)})


def test_heatmap_targets_loss_and_peaks_2d_3d() -> None:
    lab = np.zeros((20, 24), np.uint8)
    lab[2:7, 3:8] = 1
    lab[12:17, 14:21] = 1
    heat = centre_heatmap(lab, sigma=1.5)
    assert heat[4, 5] == 1.0 and heat[14, 17] == 1.0 and heat.max() == 1.0 and heat[10, 0] < 1e-3
    assert {ix for ix, _ in find_peaks(heat)} == {(4, 5), (14, 17)}
    vol = np.zeros((8, 10, 12), np.uint8)
    vol[2:5, 3:6, 4:9] = 1
    assert find_peaks(centre_heatmap(vol, 1.0))[0][0] == (3, 4, 6)
    target = torch.from_numpy(heat)[None, None]
    good = torch.logit(target.clamp(1e-3, 1 - 1e-3))
    assert float(centre_focal_loss(good, target)) < float(centre_focal_loss(torch.zeros_like(good), target))
    assert centre_heatmap(np.zeros((4, 4)), 1.0).sum() == 0
