"""Classification predict keeps an earlier predictions.csv unless ``--overwrite`` (issue 20, item 2; segmentation
predict has its own test in tests/tasks/segmentation/test_segmentation_pipeline.py), and its model digest covers the
calibration (item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsight.cli.app import main
from medsight.report.digest import read_model


def test_classification_predict_keeps_existing_outputs(cls_run: Path, cls_csv: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pred"
    argv = ["-q", "predict", str(cls_run), str(cls_csv), str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    before = (out / "predictions.csv").read_bytes()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "predictions.csv" in err[0] and "--overwrite" in err[0]
    assert (out / "predictions.csv").read_bytes() == before
    assert main([*argv, "--overwrite"]) == 0


def test_classification_digest_covers_calibration(cls_run: Path) -> None:
    """Temperatures and decision thresholds change predictions: they are part of the model digest."""
    model = read_model(cls_run)
    assert set(model.blobs) == {"fold_0/checkpoint_best.pt", "plans.json", "calibration.json", "fold_0/calibration.json"}
    assert json.loads((cls_run / "model_card.json").read_text())["model_digest"]["sha256"] == model.digest


def test_classification_calibration_is_read_from_the_hashed_bytes(cls_run: Path, cls_csv: Path, tmp_path: Path) -> None:
    """calibration.json (thresholds) swapped while a checked prediction runs: the hashed version is the one used."""
    import shutil

    from medsight.deploy.audit import audited_prediction
    from medsight.tasks.classification.pipeline import predict_classification

    run = tmp_path / "run"
    shutil.copytree(cls_run, run)
    digest = read_model(run).digest
    out = tmp_path / "pred"
    with audited_prediction(run, cls_csv, out, folds=None, engine="torch", expect_sha256=digest) as written:
        (run / "calibration.json").write_text("{not json")
        (run / "fold_0" / "calibration.json").write_text("{not json")
        written += predict_classification(run, cls_csv, out)
    assert (out / "predictions.csv").is_file()
