"""Training precision: bfloat16 autocast trains (on a CPU too); float16 is refused without a GPU."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from medsight.cli.app import main
from medsight.engine.config import RunOptions
from medsight.engine.precision import autocast_dtype, cpu_flags, cpu_has_bf16
from medsight.errors import MedsightError
from medsight.tasks.segmentation.pipeline import train


def test_precision_names_map_to_autocast_dtypes() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("auto", gpu) is torch.float16
    assert autocast_dtype("auto", cpu, cpu_bf16=True) is (torch.bfloat16 if cpu_has_bf16() else None)
    assert autocast_dtype("auto", gpu, cpu_bf16=True) is torch.float16
    assert autocast_dtype("bf16", cpu) is torch.bfloat16 and autocast_dtype("fp32", gpu) is None
    with pytest.raises(MedsightError, match="a GPU for --precision fp16"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(MedsightError, match="a precision in auto, fp32, bf16, fp16"):
        autocast_dtype("half", cpu)


def test_bf16_training_on_the_cpu(phantom3d_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(phantom3d_dataset, run, folds=[0], base_filters=4,
          config=RunOptions(epochs=1, iterations_per_epoch=2, seed=0, device="cpu", precision="bf16"))
    rows = list(csv.DictReader((run / "fold_0" / "metrics.csv").open()))
    assert math.isfinite(float(rows[0]["train_loss"])) and math.isfinite(float(rows[0]["val_dice"]))


def test_fp16_on_a_cpu_is_one_clear_line(phantom3d_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: fp16 is allowed")
    code = main(["-q", "train", str(phantom3d_dataset), "--out", str(tmp_path / "run"), "--epochs", "1", "--iterations", "1",
                 "--base-filters", "4", "--precision", "fp16", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "Expected a GPU for --precision fp16" in err and "Traceback" not in err


def test_bf16_instructions_are_read_from_the_cpu_flags() -> None:
    epyc = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n"
    old = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"
    assert "avx512_bf16" in cpu_flags(epyc) and "avx512_bf16" not in cpu_flags(old)
    assert cpu_flags("no flags here") == set()


def test_auto_precision_trains_segmentation_in_bf16_where_the_cpu_has_it(phantom3d_dataset: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("auto means float16 on a GPU")
    run = tmp_path / "run"
    result = train(phantom3d_dataset, run, folds=[0], base_filters=4,
                   config=RunOptions(epochs=1, iterations_per_epoch=1, seed=0, device="cpu"))
    assert result["trained_now"]["0"]["precision"] == ("bf16" if cpu_has_bf16() else "fp32")
