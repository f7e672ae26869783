"""Explanations on synthetic tasks whose answer is known: the class-1 evidence is a bright square (classification)
or a bright disk (segmentation); the heat must concentrate there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from medsight.errors import MedsightError
from medsight.explain import grad_cam, montage_3d, occlusion, overlay_heatmap, segmentation_saliency
from medsight.explain.render import montage_slices
from medsight.models.registry import create_model

SIZE = 48
SQUARE = 8
MARGIN = 4  # squares stay this far from the border, where zero padding makes the task harder to learn quickly
HELD_OUT = 6


def square_batch(n: int, gen: torch.Generator, *, positive: bool | None = None):
    """Noise images ``(n, 1, 48, 48)``; class 1 has a +3 square of 8 px at a random place. Returns x, y, boxes
    (top-left corners)."""
    x = torch.randn(n, 1, SIZE, SIZE, generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen) if positive is None else torch.full((n,), int(positive))
    boxes = [tuple(torch.randint(MARGIN, SIZE - SQUARE - MARGIN + 1, (2,), generator=gen).tolist()) for _ in range(n)]
    for i, (r, c) in enumerate(boxes):
        if y[i] == 1:
            x[i, 0, r:r + SQUARE, c:c + SQUARE] += 3.0
    return x, y, boxes


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tests train tiny networks; one thread is faster than several on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def square_task():
    """A smallcnn trained for 60 steps on the square task, and held-out positives with their squares."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = create_model("smallcnn", spatial_dims=2, in_channels=1, num_classes=2, input_size=[SIZE, SIZE],
                         channels=[8, 16, 32])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        x, y, _ = square_batch(16, gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, _, boxes = square_batch(HELD_OUT, torch.Generator().manual_seed(1), positive=True)
    assert (model(x).argmax(1) == 1).all(), "the model did not learn the square task"
    return model, x, boxes


def inside_outside_ratio(heat: np.ndarray, box: tuple[int, int], size: int) -> float:
    inside = np.zeros(heat.shape, bool)
    inside[box[0]:box[0] + size, box[1]:box[1] + size] = True
    return float(heat[inside].mean() / max(heat[~inside].mean(), 1e-6))


def assert_unit_map(heat: np.ndarray, shape: tuple[int, ...]) -> None:
    assert heat.shape == shape and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0


@pytest.mark.parametrize("method", [grad_cam, occlusion])
def test_heat_concentrates_on_the_discriminative_square(square_task, method) -> None:
    model, x, boxes = square_task
    for i, box in enumerate(boxes):
        heat = method(model, x[i:i + 1], 1)
        assert_unit_map(heat, (SIZE, SIZE))
        assert inside_outside_ratio(heat, box, SQUARE) > 2.0, f"case {i}: heat not on the square at {box}"


def test_grad_cam_cleans_up_and_keeps_the_mode(square_task) -> None:
    model, x, _ = square_task
    model.train()
    grad_cam(model, x[:1], 1)
    assert model.training
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    model.eval()


def test_grad_cam_works_with_a_frozen_encoder_and_tabular_input() -> None:
    torch.manual_seed(0)
    model = create_model("smallcnn", spatial_dims=3, in_channels=2, num_classes=3, input_size=[8, 16, 16],
                         channels=[4, 8], tabular_features=2)
    model.freeze_encoder()
    heat = grad_cam(model, torch.randn(1, 2, 8, 16, 16), 2, tabular=torch.tensor([[0.3, 1.0]]))
    assert_unit_map(heat, (8, 16, 16))
    assert heat.max() == 1.0


@pytest.mark.parametrize("name", ["resnet18", pytest.param("resnet50", marks=pytest.mark.slow),
                                  pytest.param("densenet121", marks=pytest.mark.slow)])
def test_grad_cam_on_the_monai_networks(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, spatial_dims=2, in_channels=1, num_classes=4, input_size=[16, 16]).eval()
    # The CAM layer's output is post-ReLU (>= 0) and pooled by a global average before the head, so with
    # non-negative head weights for class 1 its Grad-CAM is non-negative with positive mass: the map reaches 1.
    with torch.no_grad():
        model.head[1].weight[1].abs_()
    heat = grad_cam(model, torch.randn(1, 1, 16, 16), 1)
    assert_unit_map(heat, (16, 16))
    assert heat.max() == 1.0


def test_cnnlstm_grad_cam_gives_one_map_per_slice() -> None:
    torch.manual_seed(0)
    model = create_model("cnnlstm", spatial_dims=3, in_channels=1, num_classes=2, input_size=[6, 16, 16],
                         channels=[4, 8], hidden=8)
    heat = grad_cam(model, torch.randn(1, 1, 6, 16, 16), 1)
    assert_unit_map(heat, (6, 16, 16))
    assert heat.max() == 1.0


def test_vit_has_no_grad_cam_but_occlusion_works() -> None:
    torch.manual_seed(0)
    model = create_model("vit", spatial_dims=2, in_channels=1, num_classes=2, input_size=[16, 16], hidden=24,
                         layers=1, heads=2)
    image = torch.randn(1, 1, 16, 16)
    with pytest.raises(MedsightError, match="occlusion"):
        grad_cam(model, image, 0)
    assert_unit_map(occlusion(model, image, 0, patch=4, stride=4, batch=5), (16, 16))


def test_occlusion_3d_single_logit_model() -> None:
    torch.manual_seed(0)
    model = create_model("smallcnn", spatial_dims=3, in_channels=1, num_classes=1, input_size=[8, 12, 12],
                         channels=[4])
    image = torch.randn(1, 1, 8, 12, 12)
    image[0, 0, 2:5, 3:7, 3:7] += 3.0
    heat = occlusion(model, image, 0, patch=[4, 6, 6], stride=[2, 3, 3], batch=4)
    assert_unit_map(heat, (8, 12, 12))
    with pytest.raises(MedsightError, match="patch"):
        occlusion(model, image, 0, patch=[9, 6, 6])


def test_bad_inputs_are_reported(square_task) -> None:
    model, x, _ = square_task
    with pytest.raises(MedsightError, match="batch axis"):
        grad_cam(model, x[0], 1)
    with pytest.raises(MedsightError, match="target class"):
        occlusion(model, x[:1], 5)
    with pytest.raises(MedsightError, match="did you mean"):
        grad_cam(model, x[:1], 1, layer="encoder.block.2")


def disk_batch(n: int, gen: torch.Generator, size: int = 32):
    """Noise images with a bright disk of radius 5 labelled 1. Returns x ``(n, 1, s, s)``, y ``(n, s, s)``."""
    x = torch.randn(n, 1, size, size, generator=gen) * 0.5
    y = torch.zeros(n, size, size, dtype=torch.long)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in range(n):
        r, c = torch.randint(8, size - 8, (2,), generator=gen).tolist()
        disk = (rows - r) ** 2 + (cols - c) ** 2 <= 25
        x[i, 0][disk] += 2.0
        y[i][disk] = 1
    return x, y


def test_segmentation_saliency_highlights_the_structure() -> None:
    torch.manual_seed(0)
    model = create_model("dynunet", spatial_dims=2, in_channels=1, out_channels=2, kernels=[[3, 3]] * 3,
                         strides=[[1, 1], [2, 2], [2, 2]], filters=[8, 16, 32], deep_supervision=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        x, y = disk_batch(8, gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = disk_batch(4, torch.Generator().manual_seed(1))
    for i in range(len(x)):
        heat = segmentation_saliency(model, x[i:i + 1], 1, layer="net.upsamples.0")
        assert_unit_map(heat, (32, 32))
        disk = y[i].numpy() == 1
        assert heat[disk].mean() > 2.0 * heat[~disk].mean()

    class ListOutput(nn.Module):  # a network that returns deep-supervision lists even in eval mode
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
            out = self.net(image)
            return [out, out[..., ::2, ::2]]

    wrapped = ListOutput(model)
    torch.testing.assert_close(segmentation_saliency(wrapped, x[:1], 1, layer="net.net.upsamples.0"),
                               segmentation_saliency(model, x[:1], 1, layer="net.upsamples.0"))
    with pytest.raises(MedsightError, match="label"):
        segmentation_saliency(model, x[:1], 4, layer="net.bottleneck")


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_overlay_and_montage_write_pngs_atomically(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(32, 40)).astype(np.float32)
    heat = np.clip(rng.random((32, 40)), 0, 1)
    out = overlay_heatmap(torch.from_numpy(image)[None, None], heat, tmp_path / "a" / "overlay.png", title="class 1")
    assert out == tmp_path / "a" / "overlay.png" and min(_png_size(out)) > 100
    volume = rng.normal(size=(20, 16, 16))
    vol_heat = np.zeros((20, 16, 16))
    vol_heat[[3, 11], 4:8, 4:8] = 1.0
    assert montage_slices(vol_heat, 6).tolist() == [0, 1, 2, 3, 4, 11]
    assert montage_slices(vol_heat[:5], 6).tolist() == [0, 1, 2, 3, 4]
    out3d = montage_3d(volume, vol_heat, tmp_path / "montage.png", max_slices=6)
    assert min(_png_size(out3d)) > 100
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["montage.png", "overlay.png"]
    with pytest.raises(MedsightError, match="heat map"):
        overlay_heatmap(image, heat[:30], tmp_path / "bad.png")
    with pytest.raises(MedsightError, match="volume"):
        montage_3d(image, heat, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
