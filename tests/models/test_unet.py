"""The DynUNet with a strided first stage: logits at the input's size, every weight trained, never planned in 3D,
and fine-tuned with a new output layer when the labels differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medsight.data.fingerprint import ChannelStats, Fingerprint
from medsight.engine.checkpoint import save_checkpoint
from medsight.models.registry import create_model
from medsight.tasks.segmentation.finetune import init_from_checkpoint
from medsight.tasks.segmentation.loss import SegmentationLoss
from medsight.tasks.segmentation.plan import make_plan


def _net(first: list[int], out_channels: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("dynunet", spatial_dims=2, in_channels=2, out_channels=out_channels, kernels=[[3, 3]] * 4,
                        strides=[first, [2, 2], [2, 2], [2, 2]], filters=[8, 16, 32, 32], deep_supervision=True,
                        deep_supr_num=2)


def test_a_strided_first_stage_predicts_at_full_resolution_and_trains_every_weight() -> None:
    model = _net([2, 2])
    x = torch.randn(2, 2, 64, 48)
    model.train()
    outs = model(x)
    assert isinstance(outs, list) and len(outs) == 3
    assert all(o.shape == (2, 3, 64, 48) for o in outs)
    SegmentationLoss()(outs, torch.randint(0, 3, (2, 1, 64, 48))).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused  # DDP needs every parameter in the graph
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 3, 64, 48)
    # full resolution: the head's block alone, fed half the first stage's width (at least 8) and the image itself
    assert model.head.block.conv1.conv.in_channels == 8 + 2


def _fingerprint(shape: list[int], cases: int = 20) -> Fingerprint:
    channel = ChannelStats("gray", "MR", 0.0, 1.0, -2.0, 2.0, 0.5, 1.0, -1.0, 2.0)
    return Fingerprint(dims=len(shape), num_cases=cases, spacings=[[1.0] * len(shape)] * cases, shapes=[shape] * cases,
                       channels=[channel], label_voxels={1: 1000 * cases}, label_cases={1: cases}, image_format="png")


def test_the_planner_pools_in_the_first_stage_only_when_asked_and_keeps_the_total_stride() -> None:
    labels = {"background": 0, "a": 1}
    fp = _fingerprint([384, 352])
    plain = make_plan(fp, dataset="d", labels=labels, base_filters=16, strided_first_stage=False)
    strided = make_plan(fp, dataset="d", labels=labels, base_filters=16, strided_first_stage=True)
    assert plain.network.strides[0] == [1, 1] and strided.network.strides[0] == [2, 2]
    total = [np.prod(np.asarray(p.network.strides), axis=0).tolist() for p in (plain, strided)]
    assert total[0] == total[1]  # the same depth in pixels: one stage fewer, each one level coarser
    assert len(strided.network.filters) == len(plain.network.filters) - 1
    assert strided.patch_size == plain.patch_size
    assert "first stage strided" in dict(strided.table())["network"]
    volume = make_plan(_fingerprint([64, 64, 64]), dataset="d", labels=labels, base_filters=16)
    assert volume.network.strides[0] == [1, 1, 1]
    tiny = make_plan(_fingerprint([16, 16]), dataset="d", labels=labels, base_filters=16, strided_first_stage=True)
    assert tiny.network.strides == [[1, 1], [2, 2], [2, 2]]  # pooling first would leave 2 stages: not done


def test_fine_tuning_a_strided_network_with_new_labels_replaces_only_the_output_layer(tmp_path: Path) -> None:
    source = _net([2, 2], out_channels=3, seed=1)
    path = save_checkpoint(tmp_path / "s.pt", model=source, architecture="dynunet", init_args={},
                           plan={"labels": {"background": 0, "a": 1, "b": 2}})
    target = _net([2, 2], out_channels=2, seed=2)
    report = init_from_checkpoint(target, path, architecture="dynunet", labels={"background": 0, "x": 1})
    assert report["fresh_head"]
    assert all(n.startswith(("head.out.", "net.deep_supervision_heads.")) for n in report["skipped"])
    assert torch.equal(target.state_dict()["head.block.conv1.conv.weight"], source.state_dict()["head.block.conv1.conv.weight"])
