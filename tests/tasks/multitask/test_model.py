"""Contract of the multi-task network: shapes, gradients, 2D and 3D, heads chosen by ``tasks``, save and load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medsight.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from medsight.errors import MedsightError
from medsight.models.multitask import HEATMAP_PRIOR_BIAS, ClassificationView, MultitaskUNet, SegmentationView
from medsight.models.registry import create_model

TOPOLOGY = {
    2: {"kernels": [[3, 3]] * 3, "strides": [[1, 1], [2, 2], [2, 2]], "filters": [4, 8, 16]},
    3: {"kernels": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]], "filters": [4, 8, 16]},
}
SIZE = {2: (16, 20), 3: (8, 12, 16)}


def _args(dims: int, **extra) -> dict:
    return {"spatial_dims": dims, "in_channels": 1, "out_channels": 3, "num_classes": 2, "deep_supervision": True,
            "deep_supr_num": 1, **TOPOLOGY[dims], **extra}


@pytest.mark.parametrize("dims", [2, 3])
def test_forward_backward_every_head(dims: int) -> None:
    torch.manual_seed(0)
    model = create_model("multitask_dynunet", **_args(dims, tasks=["segmentation", "classification", "heatmap"],
                                                     learned_weights=True))
    x = torch.randn(2, 1, *SIZE[dims])
    out = model(x)
    assert isinstance(out.segmentation, list) and len(out.segmentation) == 2  # deep supervision while training
    assert all(o.shape == (2, 3, *SIZE[dims]) for o in out.segmentation)
    assert out.classification.shape == (2, 2) and out.heatmap.shape == (2, 1, *SIZE[dims])
    loss = sum(o.mean() for o in out.segmentation) + out.classification.sum() + out.heatmap.mean()
    loss.backward()
    encoder = model.unet.net.input_block.conv1.conv.weight
    assert encoder.grad is not None and encoder.grad.abs().sum() > 0
    assert model.head[1].weight.grad is not None and model.log_variances.shape == (3,)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.segmentation.shape == (2, 3, *SIZE[dims])
    assert float(torch.sigmoid(out.heatmap).mean()) < 0.5  # the CenterNet prior: few peaks before training


def test_classification_only_runs_the_encoder_alone() -> None:
    model = MultitaskUNet(**_args(2, tasks=["classification"]))
    out = model(torch.randn(2, 1, *SIZE[2]))
    assert out.segmentation is None and out.heatmap is None and out.classification.shape == (2, 2)
    out.classification.sum().backward()
    assert model.unet.net.output_block.conv.conv.weight.grad is None  # the decoder never ran
    assert model.log_variances is None


def test_views_share_the_network() -> None:
    model = MultitaskUNet(**_args(2)).eval()
    x = torch.randn(1, 1, *SIZE[2])
    with torch.no_grad():
        full = model(x)
        assert torch.allclose(SegmentationView(model)(x), full.segmentation)
        assert torch.allclose(ClassificationView(model)(x), full.classification, atol=1e-6)


def test_input_not_divisible_by_stride_is_refused() -> None:
    model = MultitaskUNet(**_args(2))
    with pytest.raises(MedsightError, match="divisible by \\[4, 4\\]"):
        model(torch.randn(1, 1, 15, 20))
    with pytest.raises(MedsightError, match="heatmap"):
        MultitaskUNet(**_args(2, tasks=["classification", "heatmap"]))


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    args = _args(3, tasks=["segmentation", "classification"], learned_weights=True, dropout=0.2)
    model = create_model("multitask_dynunet", **args).eval()
    with torch.no_grad():
        model.log_variances.fill_(0.3)
    path = save_checkpoint(tmp_path / "m.pt", model=model, architecture="multitask_dynunet", init_args=args,
                           plan={"task": "multitask"})
    again = model_from_checkpoint(load_checkpoint(path))
    x = torch.randn(1, 1, *SIZE[3])
    with torch.no_grad():
        a, b = model(x), again(x)
    assert torch.equal(a.segmentation, b.segmentation) and torch.equal(a.classification, b.classification)
    assert torch.allclose(again.log_variances, torch.full((2,), 0.3))


def test_a_strided_first_stage_keeps_every_head_at_full_resolution() -> None:
    """An edited plan with ``strides[0] = [2, 2]``: the heat-map prior sits on the full-resolution head's output."""
    topology = {"kernels": [[3, 3]] * 3, "strides": [[2, 2], [2, 2], [2, 2]], "filters": [4, 8, 16]}
    model = create_model("multitask_dynunet", **{**_args(2, tasks=["segmentation", "classification", "heatmap"]), **topology})
    assert float(model.unet.head.out.conv.conv.bias[3]) == pytest.approx(HEATMAP_PRIOR_BIAS)
    out = model(torch.randn(2, 1, 16, 24))
    assert all(o.shape == (2, 3, 16, 24) for o in out.segmentation) and out.heatmap.shape == (2, 1, 16, 24)
