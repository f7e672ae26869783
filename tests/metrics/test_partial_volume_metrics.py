"""Volume error per label, and validation that does not score a label where it was not annotated."""

from __future__ import annotations

import math

import numpy as np

from medsight.metrics.segmentation import case_metrics
from medsight.metrics.summary import SegmentationEvaluator, rows_to_csv

LABELS = {"background": 0, "a": 1, "b": 2}


def test_volume_error_in_ml_and_relative() -> None:
    ref = np.zeros((4, 10, 10), np.uint8)
    pred = np.zeros_like(ref)
    ref[1:3, 2:7, 2:7] = 1  # 50 voxels of 2 mm^3 = 0.1 ml
    pred[1:3, 2:8, 2:7] = 1  # 60 voxels
    rows = case_metrics(pred, ref, LABELS, spacing=(2.0, 1.0, 1.0), distances=False)
    a, b = rows
    assert math.isclose(a["volume_error"], 0.02) and math.isclose(a["volume_error_rel"], 0.2)
    assert math.isclose(a["pred_volume"] - a["ref_volume"], a["volume_error"])
    assert b["volume_error"] == 0 and math.isnan(b["volume_error_rel"])  # empty reference: no relative error
    assert "volume_error" in rows_to_csv(rows).splitlines()[0]


def test_absent_label_is_not_scored_for_that_case() -> None:
    ref = np.zeros((6, 8, 8), np.uint8)
    ref[1:4, 1:4, 1:4] = 1
    pred = ref.copy()
    pred[4:6, 5:8, 5:8] = 2  # the network finds "b", which was not contoured in case x
    ev = SegmentationEvaluator(LABELS, absent={"x": [2]}, distances=False)
    rows = ev.add("x", pred, ref, spacing=(1, 1, 1))
    assert [r["label"] for r in rows] == ["a"]  # b: neither Dice 0 (false positive) nor 1 (both empty)
    ev.add("y", pred, ref, spacing=(1, 1, 1))  # fully annotated: b is a false positive here
    summary = ev.summary(bootstrap=0)
    assert summary["n_cases"] == 2
    assert summary["labels"]["b"]["unannotated"] == 1 and summary["labels"]["a"]["unannotated"] == 0
    assert summary["labels"]["b"]["metrics"]["dice"]["n"] == 1 and summary["labels"]["b"]["metrics"]["dice"]["mean"] == 0
    assert summary["labels"]["a"]["metrics"]["dice"]["mean"] == 1
    # the mean over labels weighs b once: a 1 (x and y), b 0 (y only); a per-case mean would give (1 + 0.5) / 2
    assert summary["foreground_mean"]["dice"]["mean"] == 0.5
