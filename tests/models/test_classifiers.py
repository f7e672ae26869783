"""Contract tests for the classification networks: one base class, one small subclass per architecture.

Every architecture: forward in 2D and/or 3D with logits (B, K), finite gradients, tabular fusion, rebuild from
JSON-plain init args with identical outputs, a frozen encoder, and fine-tuning onto another class count.
"""

from __future__ import annotations

import io
import json
from typing import Any, ClassVar

import pytest
import torch

from medsight.errors import MedsightError
from medsight.models.classifiers import Classifier, vit_patch_size
from medsight.models.registry import create_model

BATCH = 2
CLASSES = 3
SIZE_2D = [28, 28]
SIZE_3D = [16, 32, 32]
#: The MONAI CNNs are slow on a CPU; smaller inputs (still "small", so the stride-1 stem) exercise every layer.
SIZE_2D_HEAVY = [16, 16]
SIZE_3D_HEAVY = [8, 16, 16]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dims" in metafunc.fixturenames and metafunc.cls is not None:
        metafunc.parametrize("dims", metafunc.cls.dims)


class ClassifierContract:
    """Subclasses set ``name`` and, where needed, ``dims``, ``size_3d`` and builder ``options``."""

    name: ClassVar[str]
    dims: ClassVar[tuple[int, ...]] = (2, 3)
    size_2d: ClassVar[list[int]] = SIZE_2D
    size_3d: ClassVar[list[int]] = SIZE_3D
    options: ClassVar[dict[str, Any]] = {}

    def init_args(self, dims: int, **extra: Any) -> dict[str, Any]:
        size = self.size_2d if dims == 2 else self.size_3d
        return {"spatial_dims": dims, "in_channels": 1, "num_classes": CLASSES, "input_size": size,
                **self.options, **extra}

    def build(self, dims: int, **extra: Any) -> tuple[Classifier, torch.Tensor]:
        torch.manual_seed(0)
        args = self.init_args(dims, **extra)
        model = create_model(self.name, **args)
        assert isinstance(model, Classifier)
        return model, torch.randn(BATCH, 1, *args["input_size"])

    def test_forward_backward(self, dims: int) -> None:
        model, x = self.build(dims)
        logits = model(x)
        assert logits.shape == (BATCH, CLASSES)
        torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), \
            [n for n, g in grads.items() if g is None or not torch.isfinite(g).all()]
        assert any(g.abs().sum() > 0 for n, g in grads.items() if n.startswith("encoder."))

    def test_tabular_fusion(self) -> None:
        dims = self.dims[0]
        model, x = self.build(dims, tabular_features=3)
        model.eval()
        tab = torch.tensor([[60.0, 1.0, 0.5], [30.0, 0.0, 0.1]])
        feats = model.features(x, tab)
        assert feats.shape == (BATCH, model.encoder(x).shape[1] + 32) == (BATCH, model.head[1].in_features)
        out = model(x, tab)
        assert out.shape == (BATCH, CLASSES)
        assert not torch.allclose(out, model(x, tab * 2.0))
        with pytest.raises(MedsightError, match="tabular"):
            model(x)

    def test_rebuild_from_init_args(self, tmp_path) -> None:
        dims = self.dims[0]
        model, x = self.build(dims, dropout=0.2)
        model.train()
        model(x)  # update BatchNorm running statistics so they must round-trip too
        init_args = json.loads(json.dumps(self.init_args(dims, dropout=0.2)))
        buf = io.BytesIO()
        torch.save({"init_args": init_args, "state_dict": model.state_dict()}, buf)
        buf.seek(0)
        saved = torch.load(buf, weights_only=True)
        rebuilt = create_model(self.name, **saved["init_args"])
        rebuilt.load_state_dict(saved["state_dict"])
        model.eval()
        rebuilt.eval()
        with torch.no_grad():
            torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=1e-6)

    def test_freeze_encoder(self) -> None:
        model, x = self.build(self.dims[0])
        model.freeze_encoder()
        model.train()
        assert not model.encoder.training and model.head.training
        before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
        model(x).sum().backward()
        assert all(p.grad is None for p in model.encoder.parameters())
        assert all(p.grad is not None for p in model.head.parameters())
        after = model.encoder.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), "a frozen encoder changed its buffers"

    def test_load_pretrained_other_class_count(self) -> None:
        dims = self.dims[0]
        source, _ = self.build(dims)
        target = create_model(self.name, **self.init_args(dims, num_classes=CLASSES + 2))
        skipped = target.load_pretrained(source.state_dict())
        assert skipped == ["head.1.bias", "head.1.weight"]
        for k, v in source.encoder.state_dict().items():
            assert torch.equal(target.encoder.state_dict()[k], v), k


class TestSmallCNN(ClassifierContract):
    name = "smallcnn"
    options = {"channels": [8, 16, 32, 32]}


class TestResNet18(ClassifierContract):
    name = "resnet18"
    size_2d = SIZE_2D_HEAVY
    size_3d = SIZE_3D_HEAVY


@pytest.mark.slow
class TestResNet50(ClassifierContract):
    name = "resnet50"
    size_2d = SIZE_2D_HEAVY
    size_3d = SIZE_3D_HEAVY


@pytest.mark.slow
class TestDenseNet121(ClassifierContract):
    name = "densenet121"
    size_2d = SIZE_2D_HEAVY
    size_3d = SIZE_3D_HEAVY


class TestCNNLSTM(ClassifierContract):
    name = "cnnlstm"
    dims = (3,)
    options = {"channels": [8, 16, 16], "hidden": 16}


class TestViT(ClassifierContract):
    name = "vit"


def test_cam_layers_name_real_modules() -> None:
    for name, dims in [("smallcnn", 2), ("resnet18", 2), ("resnet50", 2), ("densenet121", 2), ("cnnlstm", 3)]:
        model = create_model(name, spatial_dims=dims, in_channels=1, num_classes=2, input_size=[16] * dims)
        assert model.cam_layer in dict(model.named_modules()), name
    assert create_model("vit", spatial_dims=2, in_channels=1, num_classes=2, input_size=[28, 28]).cam_layer is None


def test_small_inputs_get_a_stride_one_stem() -> None:
    small = create_model("resnet18", spatial_dims=2, in_channels=1, num_classes=2, input_size=[28, 28])
    large = create_model("resnet18", spatial_dims=2, in_channels=1, num_classes=2, input_size=[224, 224])
    assert small.encoder.conv1.stride == (1, 1) and small.encoder.conv1.kernel_size == (3, 3)
    assert small.encoder.no_max_pool and not large.encoder.no_max_pool
    assert large.encoder.conv1.stride == (2, 2) and large.encoder.conv1.kernel_size == (7, 7)
    dense = create_model("densenet121", spatial_dims=2, in_channels=1, num_classes=2, input_size=[28, 28])
    assert dense.encoder.features.conv0.stride == (1, 1)
    assert isinstance(dense.encoder.features.pool0, torch.nn.Identity)


def test_vit_patch_size_divides_the_input() -> None:
    assert vit_patch_size([28, 28]) == 4
    assert vit_patch_size([224, 224]) == 16
    assert vit_patch_size([16, 32, 32]) == 4
    with pytest.raises(MedsightError, match="multiple of 4"):
        vit_patch_size([27, 27])


@pytest.mark.parametrize(("name", "kwargs", "match"), [
    ("cnnlstm", {"spatial_dims": 2, "input_size": [28, 28]}, "3D dataset"),
    ("vit", {"spatial_dims": 2, "input_size": [28, 28], "patch_size": 8}, "patch_size"),
    ("vit", {"spatial_dims": 2, "input_size": [28, 28], "hidden": 100}, "hidden"),
    ("smallcnn", {"spatial_dims": 4, "input_size": [8] * 4}, "spatial_dims"),
    ("smallcnn", {"spatial_dims": 2, "input_size": [28, 28, 28]}, "input_size"),
    ("smallcnn", {"spatial_dims": 2, "input_size": [28, 28], "norm": "group"}, "norm"),
    ("resnet18", {"spatial_dims": 2, "input_size": [28, 28], "num_classes": 0}, "num_classes"),
])
def test_impossible_combinations_raise_a_clear_error(name: str, kwargs: dict[str, Any], match: str) -> None:
    args = {"in_channels": 1, "num_classes": 2, **kwargs}
    with pytest.raises(MedsightError, match=match):
        create_model(name, **args)


def test_wrong_input_shapes_are_reported() -> None:
    lstm = create_model("cnnlstm", spatial_dims=3, in_channels=1, num_classes=2, input_size=[4, 16, 16],
                        channels=[4, 8], hidden=4)
    with pytest.raises(MedsightError, match="cnnlstm"):
        lstm(torch.randn(1, 1, 16, 16))
    vit = create_model("vit", spatial_dims=2, in_channels=1, num_classes=2, input_size=[28, 28], layers=1)
    with pytest.raises(MedsightError, match=r"\[28, 28\]"):
        vit(torch.randn(1, 1, 32, 32))
    plain = create_model("smallcnn", spatial_dims=2, in_channels=1, num_classes=2, input_size=[16, 16], channels=[4])
    with pytest.raises(MedsightError, match="tabular_features=0"):
        plain(torch.randn(1, 1, 16, 16), torch.randn(1, 2))


def test_load_pretrained_refuses_another_architecture() -> None:
    lstm = create_model("cnnlstm", spatial_dims=3, in_channels=1, num_classes=2, input_size=[4, 16, 16],
                        channels=[4, 8], hidden=4)
    with pytest.raises(MedsightError, match="same architecture"):
        lstm.load_pretrained({"conv.weight": torch.zeros(3, 3)})
