"""Fine-tuning (``--init-from``): weights matching by name and shape are copied, a new head when labels differ,
the encoder can be frozen for the first epochs; and one tiny fine-tuning run through the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medsight.cli.app import main
from medsight.engine.checkpoint import load_matching_weights, save_checkpoint
from medsight.errors import MedsightError
from medsight.models.registry import create_model
from medsight.tasks.segmentation.finetune import encoder_parameters, init_from_checkpoint

LABELS = {"background": 0, "a": 1, "b": 2}


def _net(out_channels: int, filters: tuple[int, ...] = (4, 8, 16), seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("dynunet", spatial_dims=3, in_channels=1, out_channels=out_channels,
                        kernels=[[3, 3, 3]] * 3, strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], filters=list(filters),
                        deep_supervision=True, deep_supr_num=1)


def _checkpoint(tmp_path: Path, model: torch.nn.Module, labels: dict[str, int]) -> Path:
    return save_checkpoint(tmp_path / "source.pt", model=model, architecture="dynunet", init_args={}, plan={"labels": labels})


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.equal(a, b))


def test_same_labels_load_every_tensor(tmp_path: Path) -> None:
    source = _net(3, seed=1)
    path = _checkpoint(tmp_path, source, LABELS)
    target = _net(3, seed=2)
    report = init_from_checkpoint(target, path, architecture="dynunet", labels=LABELS)
    assert not report["skipped"] and not report["fresh_head"]
    src, dst = source.state_dict(), target.state_dict()
    assert all(_equal(src[k], dst[k]) for k in dst)  # aliases (DynUNet's skip_layers) included


def test_other_label_count_gets_a_fresh_head(tmp_path: Path) -> None:
    source = _net(3, seed=1)
    path = _checkpoint(tmp_path, source, LABELS)
    target = _net(5, seed=2)
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    report = init_from_checkpoint(target, path, architecture="dynunet",
                                  labels={"background": 0, "a": 1, "b": 2, "c": 3, "d": 4})
    assert report["fresh_head"]
    src, dst = source.state_dict(), target.state_dict()
    head = [k for k in dst if k.startswith(("net.output_block.", "net.deep_supervision_heads."))]
    assert head and all(_equal(dst[k], fresh[k]) for k in head)
    assert set(report["skipped"]) == set(head)
    for k in report["loaded"]:
        assert _equal(dst[k], src[k]), k
    assert report["loaded_by_part"]["encoder"][0] == report["loaded_by_part"]["encoder"][1] > 0
    assert report["loaded_by_part"]["head"][0] == 0


def test_same_count_other_names_is_a_new_head_and_shapes_must_match(tmp_path: Path) -> None:
    source = _net(3, seed=1)
    path = _checkpoint(tmp_path, source, LABELS)
    target = _net(3, seed=2)
    head_before = target.state_dict()["net.output_block.conv.conv.weight"].clone()
    report = init_from_checkpoint(target, path, architecture="dynunet", labels={"background": 0, "x": 1, "y": 2})
    assert report["fresh_head"] and _equal(target.state_dict()["net.output_block.conv.conv.weight"], head_before)
    wider = _net(3, filters=(4, 8, 32), seed=3)  # another bottleneck width: those tensors stay fresh
    loaded, skipped = load_matching_weights(wider, source.state_dict())
    assert loaded and any(k.startswith("net.bottleneck.") for k in skipped)
    with pytest.raises(MedsightError, match="a unet checkpoint"):
        init_from_checkpoint(_net(3), path, architecture="unet", labels=LABELS)


def test_encoder_parameters_are_the_down_path() -> None:
    model = _net(3)
    enc = {id(p) for p in encoder_parameters(model, "dynunet")}
    names = [n for n, p in model.named_parameters() if id(p) in enc]
    assert names and all(n.startswith(("net.input_block.", "net.downsamples.", "net.bottleneck.")) for n in names)
    assert len(enc) < len(list(model.parameters()))


@pytest.mark.slow
def test_fine_tune_run_from_the_command_line(phantom3d_dataset: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Train a source run, then fine-tune one epoch on the same data with the encoder frozen for that epoch: the
    encoder keeps the source's weights, the rest trains."""
    import json

    from medsight.engine.checkpoint import load_checkpoint

    common = ["--fold", "0", "--iterations", "2", "--device", "cpu", "--base-filters", "4"]
    assert main(["-q", "train", str(phantom3d_dataset), "--out", str(tmp_path / "src"), "--epochs", "1", *common]) == 0
    ckpt = tmp_path / "src" / "fold_0" / "checkpoint_best.pt"
    assert main(["train", str(phantom3d_dataset), "--out", str(tmp_path / "ft"), "--epochs", "1", *common,
                 "--init-from", str(ckpt), "--freeze-encoder-epochs", "1"]) == 0
    line = next(li for li in capsys.readouterr().err.splitlines() if li.startswith("init-from"))
    assert "loaded" in line and "encoder" in line and "skipped" in line  # one line: what was loaded and skipped
    config = json.loads((tmp_path / "ft" / "config.json").read_text())["train"]
    assert config["init_from"] == str(ckpt) and config["freeze_encoder_epochs"] == 1
    tuned = load_checkpoint(tmp_path / "ft" / "fold_0" / "checkpoint_last.pt")["state_dict"]
    source = load_checkpoint(ckpt)["state_dict"]
    assert not torch.equal(tuned["net.output_block.conv.conv.weight"], source["net.output_block.conv.conv.weight"])
    encoder = [k for k in tuned if k.startswith(("net.input_block.", "net.downsamples.", "net.bottleneck."))]
    assert encoder and all(torch.equal(tuned[k], source[k]) for k in encoder)
    assert main(["train", str(phantom3d_dataset), "--out", str(tmp_path / "bad"), "--freeze-encoder-epochs", "1",
                 *common]) == 2

