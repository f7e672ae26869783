"""Segmentation metrics: known answers, empty-mask conventions, AUC, summary statistics."""

from __future__ import annotations

import math
import warnings
import zlib

import numpy as np
import pytest

from medsight.errors import MedsightError
from medsight.metrics.auc import roc_auc
from medsight.metrics.segmentation import binary_metrics, case_metrics, confusion_counts, surface_distances
from medsight.metrics.summary import SegmentationEvaluator, describe, summarize


def _square(shape, lo, hi, value=1):
    a = np.zeros(shape, dtype=np.uint8)
    a[tuple(slice(lo_i, hi_i) for lo_i, hi_i in zip(lo, hi))] = value
    return a


def test_offset_squares_analytic_dice_iou():
    ref = _square((30, 30), (5, 5), (15, 15))
    pred = _square((30, 30), (8, 5), (18, 15))  # 10x10 shifted by 3 rows: overlap 7x10
    (row,) = case_metrics(pred, ref, {"lesion": 1}, spacing=(0.5, 0.5), distances=False, case_id="c1")
    assert row["dice"] == pytest.approx(2 * 70 / 200)
    assert row["iou"] == pytest.approx(70 / 130)
    assert row["sensitivity"] == pytest.approx(0.7)
    assert row["precision"] == pytest.approx(0.7)
    assert row["specificity"] == pytest.approx((900 - 130) / (900 - 100))
    assert row["accuracy"] == pytest.approx((900 - 60) / 900)
    assert row["ref_volume"] == pytest.approx(100 * 0.25) and row["volume_unit"] == "mm2"
    assert math.isnan(row["hd95"]) and math.isnan(row["auc"])
    assert row["case"] == "c1" and row["label"] == "lesion" and row["empty"] == "" and row["missing"] is False


def test_offset_cubes_3d_dice_and_volume_in_ml():
    ref = _square((20, 20, 20), (2, 2, 2), (10, 10, 10))
    pred = _square((20, 20, 20), (4, 2, 2), (12, 10, 10))  # 8^3 cubes, overlap 6*8*8
    (row,) = case_metrics(pred, ref, {"organ": 1}, spacing=(2.0, 1.0, 1.0), distances=False)
    assert row["dice"] == pytest.approx(384 / 512)
    assert row["iou"] == pytest.approx(384 / 640)
    assert row["ref_volume"] == pytest.approx(512 * 2.0 / 1000.0)
    assert row["volume_unit"] == "ml" and row["distance_unit"] == "mm"


def test_hd95_and_assd_in_mm_between_parallel_plates():
    ref = np.zeros((12, 10, 10), np.uint8)
    pred = np.zeros_like(ref)
    ref[5] = 1
    pred[8] = 1  # every surface voxel is exactly 3 slices away
    hd, asd = surface_distances(pred, ref, spacing=(2.5, 1.0, 1.0))
    assert hd == pytest.approx(7.5) and asd == pytest.approx(7.5)
    hd1, _ = surface_distances(pred, ref)
    assert hd1 == pytest.approx(3.0)
    (row,) = case_metrics(pred, ref, {"plate": 1}, spacing=(2.5, 1.0, 1.0))
    assert row["hd95"] == pytest.approx(7.5) and row["assd"] == pytest.approx(7.5)


def test_distances_scale_with_isotropic_spacing():
    rng = np.random.default_rng(3)
    ref = _square((40, 40), (10, 10), (25, 30))
    pred = ref.copy()
    pred[rng.random(pred.shape) < 0.02] = 1
    a = surface_distances(pred, ref, spacing=(1.0, 1.0))
    b = surface_distances(pred, ref, spacing=(0.3, 0.3))
    assert b[0] == pytest.approx(0.3 * a[0], rel=1e-5)
    assert b[1] == pytest.approx(0.3 * a[1], rel=1e-5)
    assert a[0] > 0


@pytest.mark.slow  # importing torch + MONAI takes several seconds
@pytest.mark.parametrize("shape", [(48, 40), (14, 18, 16)])
def test_surface_distances_agree_with_monai(shape):
    torch = pytest.importorskip("torch")
    monai_metrics = pytest.importorskip("monai.metrics")
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(len(shape))
    pred = gaussian_filter(rng.random(shape), 1.5) > 0.52
    ref = gaussian_filter(rng.random(shape), 1.5) > 0.5
    spacing = tuple(rng.uniform(0.4, 2.5, len(shape)))
    yp, yt = torch.from_numpy(pred)[None, None], torch.from_numpy(ref)[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = float(monai_metrics.compute_hausdorff_distance(yp, yt, include_background=True, percentile=95, spacing=spacing))
        asd = float(monai_metrics.compute_average_surface_distance(yp, yt, include_background=True, symmetric=True,
                                                                   spacing=spacing))
    ours = surface_distances(pred, ref, spacing=spacing)
    assert ours[0] == pytest.approx(hd, rel=1e-5) and ours[1] == pytest.approx(asd, rel=1e-5)


def test_empty_conventions_and_summary_counts():
    full = _square((16, 16), (4, 4), (10, 10))
    empty = np.zeros((16, 16), np.uint8)
    labels = {"x": 1}
    both = case_metrics(empty, empty, labels, case_id="both")[0]
    assert (both["dice"], both["iou"], both["hd95"], both["assd"], both["empty"]) == (1.0, 1.0, 0.0, 0.0, "both")
    ref_empty = case_metrics(full, empty, labels, case_id="fp")[0]
    assert ref_empty["dice"] == 0.0 and ref_empty["precision"] == 0.0 and ref_empty["empty"] == "reference"
    assert math.isnan(ref_empty["sensitivity"]) and math.isnan(ref_empty["hd95"]) and math.isnan(ref_empty["assd"])
    pred_empty = case_metrics(empty, full, labels, case_id="fn")[0]
    assert pred_empty["dice"] == 0.0 and pred_empty["sensitivity"] == 0.0 and pred_empty["empty"] == "prediction"
    assert math.isnan(pred_empty["precision"]) and math.isnan(pred_empty["hd95"])
    missing = case_metrics(None, full, labels, case_id="gone")[0]
    assert missing["missing"] is True and missing["dice"] == 0.0

    s = summarize([both, ref_empty, pred_empty, missing], bootstrap=50)
    info = s["labels"]["x"]
    assert (info["empty_both"], info["empty_reference"], info["empty_prediction"], info["missing"]) == (1, 1, 2, 1)
    hd = info["metrics"]["hd95"]
    assert hd["n"] == 1 and hd["n_nan"] == 3 and hd["mean"] == 0.0
    assert info["metrics"]["dice"]["mean"] == pytest.approx(0.25)


def test_roi_restricts_every_metric():
    ref = _square((20, 20), (5, 5), (15, 15))
    pred = ref.copy()
    pred[0:3, 0:3] = 1  # false positives outside the field of view
    roi = np.ones((20, 20), bool)
    roi[0:4, :] = False
    (inside,) = case_metrics(pred, ref, {"v": 1}, roi=roi)
    assert inside["dice"] == 1.0 and inside["hd95"] == 0.0
    assert inside["accuracy"] == 1.0 and inside["specificity"] == 1.0
    (whole,) = case_metrics(pred, ref, {"v": 1})
    assert whole["dice"] < 1.0


def test_confusion_counts_multilabel_match_brute_force():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 4, size=(9, 11, 7))
    ref = rng.integers(0, 4, size=(9, 11, 7))
    counts = confusion_counts(pred, ref, [3, 1])
    for (tp, fp, fn, tn), v in zip(counts, [3, 1]):
        p, r = pred == v, ref == v
        assert (tp, fp, fn, tn) == ((p & r).sum(), (p & ~r).sum(), (~p & r).sum(), (~p & ~r).sum())


def _auc_brute_force(scores, targets):
    pos, neg = scores[targets], scores[~targets]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


def test_roc_auc_matches_pairwise_with_ties():
    rng = np.random.default_rng(1)
    scores = np.round(rng.random(700), 2)  # many ties
    targets = rng.random(700) < scores
    assert roc_auc(scores, targets) == pytest.approx(_auc_brute_force(scores, targets), abs=1e-12)
    assert roc_auc(np.array([0.1, 0.9]), np.array([0, 1])) == 1.0
    assert roc_auc(np.array([0.9, 0.1]), np.array([0, 1])) == 0.0
    assert math.isnan(roc_auc(np.ones(5), np.zeros(5)))


def test_binary_metrics_at_threshold_inside_fov():
    ref = np.array([[1, 1, 0, 0], [0, 0, 0, 1]])
    prob = np.array([[0.9, 0.4, 0.6, 0.1], [0.2, 0.3, 0.1, 0.99]])
    roi = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool)
    m = binary_metrics(prob, ref, roi=roi)
    # inside the FOV: positives 0.9, 0.4; negatives 0.6, 0.1, 0.2, 0.3, 0.1 -> TP 1, FN 1, FP 1, TN 4
    assert m["sensitivity"] == pytest.approx(0.5) and m["specificity"] == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(0.5) and m["accuracy"] == pytest.approx(5 / 7)
    s, t = prob[roi], ref[roi] > 0
    assert m["auc"] == pytest.approx(_auc_brute_force(s, t))


def test_auc_from_per_class_probabilities():
    ref = np.zeros((10, 10), np.uint8)
    ref[2:5, 2:5] = 1
    ref[6:9, 6:9] = 2
    prob = np.zeros((3, 10, 10), np.float32)
    prob[1] = (ref == 1) * 0.8 + 0.1
    prob[2] = 0.5  # uninformative
    rows = case_metrics(ref, ref, {"a": 1, "b": 2}, prob=prob, distances=False)
    assert rows[0]["auc"] == pytest.approx(1.0) and rows[1]["auc"] == pytest.approx(0.5)
    with pytest.raises(MedsightError, match="probability channel for label value 2"):
        case_metrics(ref, ref, {"a": 1, "b": 2}, prob=prob[:2], distances=False)


def test_bootstrap_ci_contains_mean_and_is_reproducible():
    values = np.random.default_rng(5).normal(0.8, 0.05, size=40)
    a = describe(values, bootstrap=500, seed=7)
    b = describe(values, bootstrap=500, seed=7)
    c = describe(values, bootstrap=500, seed=8)
    assert a == b
    assert a["ci_low"] < a["mean"] < a["ci_high"]
    assert (a["ci_low"], a["ci_high"]) != (c["ci_low"], c["ci_high"])
    assert a["sd"] == pytest.approx(np.std(values, ddof=1)) and a["median"] == pytest.approx(np.median(values))
    nan_aware = describe([0.5, math.nan, 0.7, None], bootstrap=0)
    assert nan_aware["n"] == 2 and nan_aware["n_nan"] == 2 and nan_aware["mean"] == pytest.approx(0.6)
    assert math.isnan(nan_aware["ci_low"])


def test_summarize_per_label_and_foreground_mean():
    rows = []
    for i in range(6):
        rows.append({"case": f"c{i}", "label": "a", "value": 1, "dice": 0.9, "hd95": 1.0})
        rows.append({"case": f"c{i}", "label": "b", "value": 2, "dice": 0.5, "hd95": math.nan})
    s = summarize(rows, metrics=["dice", "hd95"], seed=3)
    assert s["n_cases"] == 6 and list(s["labels"]) == ["a", "b"]
    assert s["labels"]["a"]["metrics"]["dice"]["mean"] == pytest.approx(0.9)
    assert s["foreground_mean"]["dice"]["mean"] == pytest.approx(0.7)
    assert s["foreground_mean"]["hd95"]["mean"] == pytest.approx(1.0)  # NaN labels left out per case
    assert summarize(rows, metrics=["dice"], seed=3)["labels"]["a"]["metrics"]["dice"] == s["labels"]["a"]["metrics"]["dice"]
    with pytest.raises(MedsightError, match="did you mean 'dice'"):
        summarize(rows, metrics=["dise"])


def test_default_metrics_leave_out_all_nan_auc():
    ref = _square((10, 10), (2, 2), (6, 6))
    s = summarize(case_metrics(ref, ref, {"x": 1}), bootstrap=0)
    assert "dice" in s["metrics"] and "auc" not in s["metrics"]


def test_evaluator_accumulates_and_rejects_duplicates():
    ev = SegmentationEvaluator({"background": 0, "a": 1, "b": 2}, distances=False)
    ref = np.zeros((8, 8), np.uint8)
    ref[1:4, 1:4] = 1
    ref[5:7, 5:7] = 2
    rows = ev.add("one", ref, ref, spacing=(1.0, 1.0), extra={"reference": "one.png"})
    assert [r["label"] for r in rows] == ["a", "b"] and rows[0]["reference"] == "one.png"
    ev.add("two", np.zeros_like(ref), ref)
    assert len(ev) == 2 and len(ev.rows) == 4
    assert ev.summary(bootstrap=0)["labels"]["a"]["metrics"]["dice"]["mean"] == pytest.approx(0.5)
    with pytest.raises(MedsightError, match="'one' twice"):
        ev.add("one", ref, ref)
    ev.reset()
    assert len(ev) == 0 and ev.rows == []


def test_shape_and_label_errors_are_clear():
    with pytest.raises(MedsightError, match="reference's shape"):
        case_metrics(np.zeros((4, 5)), np.zeros((4, 4)), {"a": 1})
    with pytest.raises(MedsightError, match="non-zero label"):
        case_metrics(np.zeros((4, 4)), np.zeros((4, 4)), {"background": 0})
    with pytest.raises(MedsightError, match=r"\(H, W\) or \(D, H, W\)"):
        case_metrics(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4)), {"a": 1})
    with pytest.raises(MedsightError, match="spacing"):
        case_metrics(np.zeros((4, 4)), np.zeros((4, 4)), {"a": 1}, spacing=(1.0, 0.0))


def test_foreground_mean_is_the_mean_over_labels_with_a_case_bootstrap():
    rng = np.random.default_rng(0)
    full = [{"case": f"c{i}", "label": name, "value": v, "dice": float(rng.uniform())}
            for i in range(20) for v, name in ((1, "a"), (2, "b"))]
    s = summarize(full, metrics=["dice"], seed=1)["foreground_mean"]["dice"]
    per_case = [np.mean([r["dice"] for r in full if r["case"] == f"c{i}"]) for i in range(20)]
    same = describe(per_case, seed=[1, zlib.crc32(b"__mean__/dice")])  # every label in every case: the per-case mean
    assert s["mean"] == pytest.approx(same["mean"]) and s["ci_low"] == pytest.approx(same["ci_low"])
    assert s["ci_high"] == pytest.approx(same["ci_high"]) and s["sd"] == pytest.approx(same["sd"])
    partial = [r for r in full if not (r["label"] == "b" and r["case"] != "c0")]  # b scored in one case only
    p = summarize(partial, metrics=["dice"], bootstrap=200)["foreground_mean"]["dice"]
    a = np.mean([r["dice"] for r in partial if r["label"] == "a"])
    assert p["mean"] == pytest.approx((a + partial[1]["dice"]) / 2) and p["n"] == 20
    assert p["ci_low"] <= p["mean"] <= p["ci_high"]
