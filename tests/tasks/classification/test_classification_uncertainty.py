"""Per-image uncertainty of classification predictions: entropy of the fold-mean probability and the review flag."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.cli.app import main
from medsight.tasks.classification.plan import load_plan
from medsight.tasks.classification.uncertainty import classification_review_threshold, image_uncertainty


def test_image_uncertainty_softmax_and_multilabel() -> None:
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.9, 0.1]])
    u = image_uncertainty(probs, multilabel=False)
    assert u[0] == pytest.approx(1.0) and u[1] == pytest.approx(0.0) and 0 < u[2] < 1
    three = image_uncertainty(np.full((1, 3), 1 / 3), multilabel=False)
    assert three[0] == pytest.approx(1.0)
    ml = image_uncertainty(np.array([[0.5, 0.0], [1.0, 1.0]]), multilabel=True)
    assert ml == pytest.approx([0.5, 0.0])


@pytest.mark.slow
def test_predict_uncertainty_adds_score_and_review(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "cls"
    for name, pos in (("normal", False), ("lesion", True)):
        (root / name).mkdir(parents=True)
        for i in range(12):
            img = rng.normal(80, 12, (24, 24))
            if pos:
                img[8:14, 8:14] += 90
            PILImage.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / name / f"{name}_{i:02d}.png")
    run = tmp_path / "run"
    assert main(["-q", "train", str(root), "--out", str(run), "--epochs", "1", "--model", "smallcnn"]) == 0
    threshold = classification_review_threshold(run, load_plan(run / "plans.json"))
    assert threshold is not None and 0 <= threshold <= 1
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in sorted((root / "lesion").glob("*.png"))[:3]:
        (plain / f.name).write_bytes(f.read_bytes())
    assert main(["-q", "predict", str(run), str(plain), str(tmp_path / "pred"), "--uncertainty"]) == 0
    rows = list(csv.DictReader((tmp_path / "pred" / "predictions.csv").open()))
    assert len(rows) == 3 and list(rows[0])[-2:] == ["uncertainty", "review"]
    for r in rows:
        u = float(r["uncertainty"])
        p = float(r["prob_lesion"])
        assert 0 <= u <= 1 and u == pytest.approx(float(image_uncertainty(np.array([[p, 1 - p]]), False)[0]), abs=1e-4)
        assert r["review"] == ("true" if u > threshold else "false")
    # without --uncertainty the columns stay as they were
    assert main(["-q", "predict", str(run), str(plain), str(tmp_path / "pred2")]) == 0
    assert "uncertainty" not in next(csv.DictReader((tmp_path / "pred2" / "predictions.csv").open()))
