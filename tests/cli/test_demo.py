"""``medsight demo`` trains a fixed number of seeded steps: two runs give the same weights and the same Dice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medsight.cli.app import main
from medsight.engine.checkpoint import load_checkpoint


def _demo(out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, torch.Tensor], list[str]]:
    assert main(["-q", "demo", "--out", str(out), "--epochs", "1", "--iterations", "2", "--device", "cpu"]) == 0
    printed = [li for li in capsys.readouterr().out.splitlines() if "Dice" in li]
    state = load_checkpoint(out / "run" / "fold_0" / "checkpoint_last.pt")["state_dict"]
    return state, printed


@pytest.mark.slow
def test_two_demo_runs_give_identical_weights_and_dice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, dice_first = _demo(tmp_path / "a", capsys)
    second, dice_second = _demo(tmp_path / "b", capsys)
    assert dice_first and dice_first == dice_second
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    config = json.loads((tmp_path / "a" / "run" / "config.json").read_text())["train"]
    assert config["epochs"] == 1 and config["time_budget_s"] is None and config["deterministic"]
    a, b = (json.loads((tmp_path / x / "evaluation" / "summary.json").read_text()) for x in "ab")
    assert a.pop("pred_dir") != b.pop("pred_dir")  # the only difference: where each run wrote its predictions
    assert a == b and a["labels"]


def test_demo_refuses_a_zero_step_count(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), "--epochs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Expected --epochs and --iterations >= 1, got 0 and 25" in err[0]
