"""Checkpoint safety, schedule, sampler and augmentation determinism."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from medsight.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from medsight.engine.schedule import lr_at
from medsight.errors import MedsightError
from medsight.transforms.augment import augment_batch, draw_params
from medsight.transforms.config import AugmentConfig


class _Evil:
    def __reduce__(self):  # noqa: D105
        return (os.system, (f"touch {os.environ.get('MEDSIGHT_EVIL_MARK', '/tmp/medsight_evil_mark')}",))


def test_malicious_checkpoint_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mark = tmp_path / "pwned"
    monkeypatch.setenv("MEDSIGHT_EVIL_MARK", str(mark))
    path = tmp_path / "evil.pt"
    with path.open("wb") as fh:
        pickle.dump({"format_version": 1, "payload": _Evil()}, fh)
    with pytest.raises(MedsightError, match="cannot be loaded safely"):
        load_checkpoint(path)
    assert not mark.exists()


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    from medsight.models.registry import create_model

    args = {"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "kernels": [[3, 3]] * 3, "strides": [[1, 1], [2, 2], [2, 2]],
            "filters": [4, 8, 16], "deep_supervision": False}
    model = create_model("dynunet", **args).eval()
    save_checkpoint(tmp_path / "c.pt", model=model, architecture="dynunet", init_args=args, plan={"x": 1})
    again = model_from_checkpoint(load_checkpoint(tmp_path / "c.pt"))
    x = torch.randn(1, 1, 32, 32)
    assert torch.allclose(model(x), again(x))
    with pytest.raises(MedsightError):
        load_checkpoint(tmp_path / "none.pt")


def test_unknown_model_suggests() -> None:
    from medsight.models.registry import create_model

    with pytest.raises(MedsightError, match="did you mean 'dynunet'"):
        create_model("dynunett", spatial_dims=2, in_channels=1, out_channels=2)


def test_schedule_shapes() -> None:
    assert lr_at(0.0, base=1.0, schedule="cosine", warmup=0.1) == 0.0
    assert lr_at(0.1, base=1.0, schedule="cosine", warmup=0.1) == pytest.approx(1.0)
    assert lr_at(1.0, base=1.0, schedule="poly") == pytest.approx(0.0)
    assert lr_at(1.0, base=1.0, schedule="cosine") == pytest.approx(0.02)
    with pytest.raises(MedsightError):
        lr_at(0.5, base=1.0, schedule="cosin")


@pytest.mark.parametrize("patch", [(16, 20, 12), (32, 24)])
def test_augmentation_replays_and_keeps_alignment(patch: tuple[int, ...]) -> None:
    cfg = AugmentConfig(p_rotate=1.0, p_scale=1.0, p_elastic=1.0, mirror_axes=tuple(range(len(patch))))
    ctx = tuple(int(p * 1.5) for p in patch)
    img = torch.zeros((2, 1, *ctx))
    lab = torch.zeros((2, 1, *ctx), dtype=torch.int64)
    centre = tuple(slice(c // 2 - 3, c // 2 + 3) for c in ctx)
    img[(slice(None), slice(None), *centre)] = 5.0
    lab[(slice(None), slice(None), *centre)] = 1
    outs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(3)
        params = draw_params(2, patch, cfg, g)
        outs.append(augment_batch(img.clone(), lab.clone(), patch, params, g))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    out_img, out_lab = outs[0]
    assert out_img.shape == (2, 1, *patch) and out_lab.shape == (2, 1, *patch)
    # the label still sits on the bright structure
    fg = out_lab.bool()
    assert fg.any()
    assert out_img[fg].mean() > out_img[~fg].mean() + 1.0


def test_identity_augmentation_is_a_centre_crop() -> None:
    cfg = AugmentConfig(p_rotate=0, p_scale=0, p_elastic=0, mirror_axes=(), p_brightness=0, p_contrast=0, p_gamma=0, p_noise=0, p_blur=0)
    x = torch.arange(20 * 20, dtype=torch.float32).view(1, 1, 20, 20)
    g = torch.Generator().manual_seed(0)
    img, lab = augment_batch(x, x.long(), (10, 10), draw_params(1, (10, 10), cfg, g), g)
    assert torch.allclose(img, x[..., 5:15, 5:15]) and torch.equal(lab, x.long()[..., 5:15, 5:15])
    np.testing.assert_array_equal(lab.numpy(), x.long()[..., 5:15, 5:15].numpy())
