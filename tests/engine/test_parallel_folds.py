"""Folds trained side by side in worker processes (``--devices``): same results as one after another, logs per fold,
one pooled summary, failures named with their log."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from medsight.cli.app import main
from medsight.engine.checkpoint import load_checkpoint
from medsight.engine.config import RunOptions
from medsight.engine.parallel import parse_devices, train_folds_in_parallel
from medsight.errors import MedsightError
from medsight.tasks.segmentation.pipeline import train

FAST = RunOptions(epochs=1, iterations_per_epoch=2, seed=0, device="cpu", deterministic=True, num_threads=1)


def _losses(run: Path, fold: int) -> list[float]:
    return [float(r["train_loss"]) for r in csv.DictReader((run / f"fold_{fold}" / "metrics.csv").open())]


@pytest.mark.slow
def test_two_folds_on_two_cpu_workers_match_a_sequential_run(phantom3d_dataset: Path, tmp_path: Path) -> None:
    seq, par = tmp_path / "seq", tmp_path / "par"
    train(phantom3d_dataset, seq, folds=[0, 1], config=FAST, base_filters=4, num_folds=2)
    events: list[dict] = []
    summary = train(phantom3d_dataset, par, folds=[0, 1], config=FAST, base_filters=4, num_folds=2,
                    devices=["cpu", "cpu"], progress=events.append)
    assert sorted(summary["trained_now"]) == ["0", "1"]
    assert summary["folds_with_validation"] == [0, 1] and summary["cross_validation"]["cases"] == 6
    assert {e["kind"] for e in events} >= {"fold_started", "fold_finished"}
    assert all(e["ok"] for e in events if e["kind"] == "fold_finished")
    for fold in (0, 1):
        assert (par / f"fold_{fold}" / "log.txt").stat().st_size > 0
        assert _losses(par, fold) == pytest.approx(_losses(seq, fold), rel=1e-4)  # same seed, same data: same training
        a = load_checkpoint(seq / f"fold_{fold}" / "checkpoint_last.pt")["state_dict"]
        b = load_checkpoint(par / f"fold_{fold}" / "checkpoint_last.pt")["state_dict"]
        assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    for name in ("summary.json", "report.html", "MODEL_CARD.md", "validation/per_case.csv"):
        assert (par / name).is_file(), name
    assert json.loads((par / "plans.json").read_text())["postprocessing"]["decided"] is True


@pytest.mark.slow
def test_a_failing_fold_is_reported_with_its_log(phantom3d_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(phantom3d_dataset, run, folds=[], config=FAST, base_filters=4, num_folds=2)  # plan + preprocess only
    with pytest.raises(MedsightError, match=r"got 1 failed: fold 1 \(TypeError: .*unexpected.*; log .*fold_1/log.txt\)"):
        train_folds_in_parallel(train, phantom3d_dataset, run, folds=[1], devices=["cpu"],
                                kwargs={"config": FAST, "not_an_option": 1})
    assert "Traceback" in (run / "fold_1" / "log.txt").read_text()


def test_devices_are_checked() -> None:
    assert parse_devices("cpu, cpu") == ["cpu", "cpu"]
    with pytest.raises(MedsightError, match="devices like cpu, cuda:0"):
        parse_devices("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(MedsightError, match="this machine has no GPU"):
            parse_devices("cuda:0,cuda:1")


def test_cli_refuses_devices_for_other_tasks_and_with_device(phantom3d_dataset: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "run")
    assert main(["train", str(phantom3d_dataset), "--task", "registration", "--devices", "cpu,cpu", "--out", out]) == 2
    assert "--devices only for segmentation or classification" in capsys.readouterr().err
    assert main(["train", str(phantom3d_dataset), "--devices", "cpu", "--device", "cpu", "--out", out]) == 2
    assert "either --device" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
