"""The time-to-quality curves read each tool's own record: medsight's metrics.csv, nnU-Net's training log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from time_to_quality import load_curve, main, medsight_curve, nnunet_curve  # noqa: E402

# the lines nnU-Net v2.8 writes per epoch (nnUNetTrainer.on_epoch_end), timestamps shortened
NNUNET_LOG = """\
2026-12-02 18:00:01.1: Epoch 0
2026-12-02 18:00:01.2: Current learning rate: 0.00998
2026-12-02 18:01:10.3: train_loss 0.0512
2026-12-02 18:01:10.4: val_loss -0.1021
2026-12-02 18:01:10.5: Pseudo dice [np.float32(0.4123), np.float32(0.2877)]
2026-12-02 18:01:10.6: Epoch time: 69.5 s
2026-12-02 18:01:10.7: Yayy! New best EMA pseudo Dice: 0.35
2026-12-02 18:01:11.1: Epoch 1
2026-12-02 18:02:15.5: Pseudo dice [np.float32(0.6), np.float32(nan)]
2026-12-02 18:02:15.6: Epoch time: 64.25 s
"""


def test_nnunet_curve_sums_epoch_times_and_averages_the_labels_it_scored() -> None:
    curve = nnunet_curve(NNUNET_LOG)
    assert [p["seconds"] for p in curve] == [69.5, 133.8]
    assert curve[0]["val_dice"] == pytest.approx(0.35)
    assert curve[1]["val_dice"] == pytest.approx(0.6)  # a label without a score (nan) is left out of the mean


def test_medsight_curve_keeps_the_epochs_that_validated() -> None:
    text = "epoch,train_loss,val_loss,val_dice,lr,seconds\n1,1.7,nan,nan,0.002,160.5\n2,1.2,0.9,0.41,0.0017,330.1\n"
    assert medsight_curve(text) == [{"seconds": 330.1, "epoch": 2, "val_dice": 0.41}]


def test_plot_and_record_from_a_benchmark_json(tmp_path: Path) -> None:
    bench = tmp_path / "benchmark.json"
    bench.write_text(json.dumps({"curve": [{"seconds": 60.0, "steps": 10, "val_dice": 0.5},
                                           {"seconds": 120.0, "steps": 20, "val_dice": 0.6}]}))
    log = tmp_path / "training_log.txt"
    log.write_text(NNUNET_LOG)
    png, record = tmp_path / "ttq.png", tmp_path / "ttq.json"
    assert main(["Demo", "--curve", f"monai={bench}", "--curve", f"nnunet={log}", "--final", "monai=125:0.61",
                 "--out", str(png), "--json", str(record)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(record.read_text())
    assert [p["val_dice"] for p in saved["curves"]["monai"]] == [0.5, 0.6]
    assert saved["finals"] == {"monai": {"seconds": 125.0, "dice": 0.61}}


def test_a_json_without_a_curve_says_which_option_records_it(tmp_path: Path) -> None:
    bench = tmp_path / "benchmark.json"
    bench.write_text(json.dumps({"curve": None}))
    with pytest.raises(SystemExit, match="no 'curve' for monai"):
        load_curve("monai", bench)
