"""Model cards (written by training and by ``medsight card``), ``predict --verify``, and the audit trail."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from medsight.cli.app import main
from medsight.core.hashing import sha256_file
from medsight.deploy.audit import AUDIT_ENV, append_record, audit_log_path
from medsight.report.card import build_model_card
from medsight.tasks import load_run_plan

from .conftest import copy_run


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_training_writes_a_model_card(seg3d_run: Path) -> None:
    card = json.loads((seg3d_run / "model_card.json").read_text())
    assert card["model"]["task"] == "segmentation" and card["model"]["architecture"] == "dynunet"
    assert card["training_data"]["cases"] == 6 and card["training_data"]["label_cases"] == {"0": 6, "1": 6, "2": 6}
    assert len(card["training_data"]["median_spacing_mm"]) == 3 and "label_fraction" in card["training_data"]
    dice = card["validation"]["mean_foreground_dice"]
    assert dice["ci95"][0] <= dice["mean"] <= dice["ci95"][1]
    assert {w["file"] for w in card["weights"]} == {"fold_0/checkpoint_best.pt", "fold_0/checkpoint_last.pt"}
    for w in card["weights"]:
        assert w["sha256"] == sha256_file(seg3d_run / w["file"])
    assert card["software"]["torch"] and card["software"]["onnxruntime"] and card["known_limits"]
    text = (seg3d_run / "MODEL_CARD.md").read_text()
    for heading in ("## Intended use", "## Training data", "## Validation", "## Known limits", "## Software", "## Weights"):
        assert heading in text
    assert card["weights"][0]["sha256"] in text


def test_classification_card_has_metrics_with_intervals(cls_run: Path) -> None:
    card = build_model_card(cls_run, load_run_plan(cls_run))
    assert card["model"]["classes"] == ["lesion", "normal"] and card["training_data"]["class_counts"] == {"lesion": 12, "normal": 12}
    auc = card["validation"]["metrics"]["auc"]
    assert 0 <= auc["value"] <= 1 and auc["ci95"] is not None and isinstance(card["validation"]["thresholds"], float)
    assert (cls_run / "MODEL_CARD.md").is_file()


def test_verify_refuses_changed_weights_and_audits_it(seg3d_run: Path, phantom3d: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(seg3d_run, tmp_path / "run")
    image = phantom3d / "imagesTr" / "case_000_0000.nii.gz"
    out = tmp_path / "out"
    assert main(["-q", "predict", str(run), str(image), str(out), "--no-tta", "--verify"]) == 0
    with (run / "fold_0" / "checkpoint_best.pt").open("ab") as fh:  # tamper: one byte appended
        fh.write(b"\0")
    assert main(["-q", "predict", str(run), str(image), str(out), "--no-tta", "--verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model_card.json" in err[0] and "checkpoint_best.pt" in err[0]
    ok, refused = _lines(out / "audit.jsonl")
    # --verify alone is a consistency check with the card, not integrity: never recorded as verified
    assert ok["status"] == "ok" and ok["model"]["consistent_with_card"] is True and ok["model"]["verified"] is False
    assert refused["status"] == "refused" and refused["error"] == "MedsightError" and refused["outputs"] == []
    assert refused["model"]["weights"][0]["sha256"] != ok["model"]["weights"][0]["sha256"]
    # without --verify the changed model still predicts; `medsight card` re-records the intended change
    assert main(["-q", "predict", str(run), str(image), str(out), "--no-tta", "--overwrite"]) == 0
    assert main(["-q", "card", str(run)]) == 0
    assert main(["-q", "predict", str(run), str(image), str(out), "--no-tta", "--verify", "--overwrite"]) == 0
    assert len(_lines(out / "audit.jsonl")) == 4


def test_dicom_prediction_audit_has_no_identifiers_and_modality_is_checked(seg3d_run: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The audit line holds checksums, output paths and parameters, never the patient's name/ID or DICOM UIDs; a CT
    series given to the MR model is refused with --strict (and audited as refused)."""
    from _factory import load_dicom_factory

    factory = load_dicom_factory()
    series = factory.write_series(tmp_path / "PatientFolder", n_slices=16, rows=24, columns=20, slice_step=1.0,
                                  pixel_spacing=(1.0, 1.0), modality="MR", value_offset=100)
    ct = factory.write_series(tmp_path / "ct", n_slices=16, rows=24, columns=20, slice_step=1.0, pixel_spacing=(1.0, 1.0),
                              modality="CT", value_offset=100)
    log = tmp_path / "logs" / "audit.jsonl"
    common = ["--no-tta", "--engine", "onnx", "--audit-log", str(log)]
    assert main(["-q", "predict", str(seg3d_run), str(ct.paths[0].parent), str(tmp_path / "o1"), "--strict", *common]) == 2
    assert "got modality CT, the model was trained on MR" in capsys.readouterr().err
    assert main(["-q", "predict", str(seg3d_run), str(series.paths[0].parent), str(tmp_path / "out"), *common]) == 0
    refused, record = _lines(log)
    assert refused["status"] == "refused" and record["status"] == "ok"
    assert record["inputs"]["files"] == 16 and len(record["inputs"]["per_file"]) == 16
    assert record["outputs"] == [str((tmp_path / "out" / "PatientFolder.nii.gz").resolve())]
    assert record["model"]["engine"] == "onnx" and record["model"]["format"] == "checkpoint"
    assert record["parameters"]["tta"] is False and record["time"].endswith("Z")
    text = log.read_text()
    for secret in (factory.PATIENT_NAME, factory.PATIENT_ID, series.series_uid, series.study_uid, series.paths[0].name):
        assert secret not in text, secret


def test_audit_log_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUDIT_ENV, raising=False)
    assert audit_log_path(tmp_path / "out") == tmp_path / "out" / "audit.jsonl"
    assert audit_log_path(tmp_path / "pred.nii.gz") == tmp_path / "audit.jsonl"  # a file output: its folder
    monkeypatch.setenv(AUDIT_ENV, str(tmp_path / "central.jsonl"))
    assert audit_log_path(tmp_path / "out") == tmp_path / "central.jsonl"
    assert audit_log_path(tmp_path / "out", tmp_path / "x.jsonl") == tmp_path / "x.jsonl"  # --audit-log wins


def test_concurrent_appends_stay_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    payload = "x" * 3000

    def writer(k: int) -> None:
        for i in range(25):
            append_record(log, {"writer": k, "i": i, "payload": payload})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = _lines(log)
    assert len(records) == 100 and {(r["writer"], r["i"]) for r in records} == {(k, i) for k in range(4) for i in range(25)}
    assert oct(os.stat(log).st_mode & 0o777) == "0o640"
