"""Lesion detection, matching, FROC and CPM on a synthetic case with a hand-computed answer."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medsight.cli.app import main
from medsight.core.image import Image
from medsight.io import write_image
from medsight.metrics.lesions import detect_lesions, froc, match_case

SHAPE = (2, 20, 40)  # two slices (lesions in the first), so that NIfTI keeps them 3D


def _blob(arr: np.ndarray, y: int, x: int, value: float, size: int = 3) -> None:
    arr[0, y:y + size, x:x + size] = value


def _cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """(probability, reference) per case. Case 1: R1 (a bar hit twice: 0.9 and a 0.7 duplicate), R2 (hit at 0.6),
    a FP at 0.8. Case 2: R3 (hit at 0.3), FPs at 0.95 and 0.5."""
    p1, r1 = np.zeros(SHAPE), np.zeros(SHAPE, bool)
    r1[0, 2:5, 2:20] = True                                 # R1
    _blob(p1, 2, 2, 0.9)
    _blob(p1, 2, 15, 0.7)                                   # duplicate on R1
    r1[0, 12:16, 30:34] = True                              # R2
    _blob(p1, 12, 30, 0.6)
    _blob(p1, 12, 5, 0.8)                                   # FP
    p2, r2 = np.zeros(SHAPE), np.zeros(SHAPE, bool)
    r2[0, 5:9, 5:9] = True                                  # R3
    _blob(p2, 6, 6, 0.3)
    _blob(p2, 14, 20, 0.95)                                 # FP
    _blob(p2, 14, 30, 0.5)                                  # FP
    return [(p1, r1), (p2, r2)]


EXPECTED_CURVE = [(0.95, 0.0, 0.5), (0.9, 1 / 3, 0.5), (0.8, 1 / 3, 1.0), (0.6, 2 / 3, 1.0), (0.5, 2 / 3, 1.5),
                  (0.3, 1.0, 1.5)]
EXPECTED_AT = [0.0, 0.0, 1 / 3, 2 / 3, 1.0, 1.0, 1.0]


def test_froc_and_cpm_known_answer() -> None:
    matches = []
    for i, (prob, ref) in enumerate(_cases()):
        dets, det_map = detect_lesions(prob > 0, spacing=(1.0, 1.0, 1.0), probability=prob)
        matches.append(match_case(f"case{i}", dets, det_map, ref))
    assert [m.duplicates for m in matches] == [1, 0]
    assert sorted(m.n_reference for m in matches) == [1, 2]
    result = froc(matches)
    curve = list(zip(result.thresholds, result.sensitivity, result.fp_per_case))
    np.testing.assert_allclose(np.array(curve), EXPECTED_CURVE, atol=1e-6)
    assert result.sensitivity_at == pytest.approx(EXPECTED_AT)
    assert result.cpm == pytest.approx(4 / 7)


def test_min_volume_and_threshold() -> None:
    prob, _ = _cases()[0]
    prob = prob.copy()
    prob[0, 18, 38] = 0.99                                  # a one-voxel speck
    dets, _ = detect_lesions(prob > 0, spacing=(2.0, 1.0, 1.0), probability=prob)
    assert len(dets) == 5 and dets[0].score == pytest.approx(0.99) and dets[0].size == 2.0
    dets, det_map = detect_lesions(prob > 0, spacing=(2.0, 1.0, 1.0), probability=prob, min_volume=10.0)
    assert len(dets) == 4 and det_map[0, 18, 38] == 0 and dets[0].size == 18.0
    assert [round(d.score, 2) for d in dets] == [0.9, 0.8, 0.7, 0.6]
    dets, _ = detect_lesions(prob > 0, spacing=(1.0, 1.0, 1.0), probability=prob, threshold=0.75)
    assert sorted(round(d.score, 2) for d in dets) == [0.8, 0.9, 0.99]
    dets, _ = detect_lesions(prob > 0, spacing=(1.0, 1.0, 1.0))
    assert {d.score for d in dets} == {1.0}


def test_cli_evaluate_lesions_and_detect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ("pred", "gt"):
        (tmp_path / sub).mkdir()
    for i, (prob, ref) in enumerate(_cases()):
        write_image(Image((prob > 0).astype(np.uint8)), tmp_path / "pred" / f"case{i}.nii.gz")
        write_image(Image(ref.astype(np.uint8)), tmp_path / "gt" / f"case{i}.nii.gz")
        np.savez(tmp_path / "pred" / f"case{i}_probabilities.npz",
                 probabilities=np.stack([1 - prob, prob]).astype(np.float32))
    code = main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"), "--lesions",
                 "--prob-dir", str(tmp_path / "pred"), "--out", str(tmp_path / "ev")])
    out = capsys.readouterr().out
    assert code == 0 and "CPM 0.5714" in out
    summary = json.loads((tmp_path / "ev" / "lesion_summary.json").read_text())
    assert summary["n_reference_lesions"] == 3 and summary["sensitivity"] == 1.0 and summary["fp_per_case"] == 1.5
    assert "share a voxel" in summary["matching_rule"] and (tmp_path / "ev" / "froc.png").stat().st_size > 0
    with (tmp_path / "ev" / "lesion_detections.csv").open() as fh:
        statuses = sorted(r["status"] for r in csv.DictReader(fh))
    assert statuses == ["duplicate", "fp", "fp", "fp", "tp", "tp", "tp"]
    assert main(["detect", str(tmp_path / "pred"), "--prob-dir", str(tmp_path / "pred"), "--min-volume", "5"]) == 0
    with (tmp_path / "pred" / "lesions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 7 and float(rows[0]["score"]) == pytest.approx(0.9)
