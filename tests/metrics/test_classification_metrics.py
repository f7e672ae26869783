"""Classification metrics: known answers, calibration and temperature scaling, thresholds, bootstrap, plots."""

from __future__ import annotations

import json
import math
import time
import warnings

import numpy as np
import pytest
from scipy.special import expit, logit, softmax

from medsight.errors import MedsightError
from medsight.metrics.classification import (
    CI_METRICS,
    apply_temperature,
    average_precision,
    choose_threshold,
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    predicted_labels,
    roc_curve_points,
)
from medsight.report.plots import plot_confusion, plot_precision_recall, plot_reliability, plot_roc

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A hand-checked binary set: 5 positives, 5 negatives; 23 of the 25 (positive, negative) pairs are ordered.
Y_BIN = np.array([0, 0, 0, 0, 1, 1, 1, 0, 1, 1])
P_BIN = np.array([0.1, 0.2, 0.6, 0.3, 0.8, 0.4, 0.9, 0.55, 0.7, 0.65])


def _two_columns(p_pos):
    p_pos = np.asarray(p_pos, dtype=float)
    return np.stack([1 - p_pos, p_pos], axis=1)


def _pairwise_auc(scores, target):
    """Brute-force AUC over all (positive, negative) pairs, ties one half: an independent reference."""
    pos, neg = scores[target], scores[~target]
    return float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))


def _binary_set(n, rng, separation=0.3):
    y = rng.integers(0, 2, n)
    p = np.clip(separation * y + rng.normal(0.35, 0.2, n), 0, 1)
    return y, _two_columns(p)


@pytest.fixture
def strict_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ---------------------------------------------------------------------------------------------- curves and AUC
def test_roc_points_average_precision_and_auc_of_a_known_example():
    scores, y = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    fpr, tpr, thr = roc_curve_points(y, scores)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.8, 0.4, 0.35, 0.1])
    assert average_precision(y, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # 0.8333, as scikit-learn
    assert classification_metrics(y, _two_columns(scores), ["no", "yes"], n_bootstrap=0)["auc"] == pytest.approx(0.75)


def test_tied_scores_count_one_half():
    y, scores = np.array([0, 1, 0, 1]), np.full(4, 0.5)
    fpr, tpr, _ = roc_curve_points(y, scores)
    np.testing.assert_allclose(fpr, [0, 1])
    np.testing.assert_allclose(tpr, [0, 1])
    assert average_precision(y, scores) == pytest.approx(0.5)
    assert classification_metrics(y, _two_columns(scores), ["a", "b"], n_bootstrap=0)["auc"] == pytest.approx(0.5)
    assert math.isnan(average_precision(np.zeros(4), scores))


def test_multiclass_auc_per_class_matches_pairwise_bruteforce():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 120)
    z = rng.normal(size=(120, 4))
    z[np.arange(120), y] += 1.0
    probs = np.round(softmax(z, axis=1), 2)  # rounding creates ties
    m = classification_metrics(y, probs, ["a", "b", "c", "d"], n_bootstrap=0)
    expected = [_pairwise_auc(probs[:, k], y == k) for k in range(4)]
    assert list(m["auc_per_class"].values()) == pytest.approx(expected)
    assert m["auc"] == pytest.approx(np.mean(expected))


# ---------------------------------------------------------------------------------------------- threshold metrics
def test_binary_metrics_of_a_hand_checked_set():
    m = classification_metrics(Y_BIN, _two_columns(P_BIN), ["benign", "malignant"], n_bootstrap=0)
    assert m["task"] == "binary" and m["n"] == 10 and m["n_per_class"] == {"benign": 5, "malignant": 5}
    assert m["thresholds"] == 0.5
    assert m["auc"] == pytest.approx(23 / 25)
    assert m["confusion_matrix"] == [[3, 2], [1, 4]]
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["sensitivity"] == pytest.approx(0.8) and m["specificity"] == pytest.approx(0.6)
    assert m["balanced_accuracy"] == pytest.approx(0.7)
    assert m["f1"] == pytest.approx(8 / 11)
    assert m["ci95"] == dict.fromkeys(CI_METRICS)  # n_bootstrap=0
    at = classification_metrics(Y_BIN, _two_columns(P_BIN), ["benign", "malignant"], thresholds=0.62, n_bootstrap=0)
    assert at["thresholds"] == 0.62 and at["confusion_matrix"] == [[5, 0], [1, 4]]
    assert at["specificity"] == 1.0 and at["accuracy"] == pytest.approx(0.9)


def test_multiclass_metrics_of_a_hand_checked_set():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 0, 1, 1, 2, 2, 2, 0, 2])
    probs = np.full((9, 3), 0.2)
    probs[np.arange(9), pred] = 0.6
    m = classification_metrics(y, probs, ["a", "b", "c"], thresholds=0.9, n_bootstrap=0)
    assert m["task"] == "multiclass" and m["thresholds"] is None  # argmax, thresholds unused
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 0, 3]]
    assert m["accuracy"] == pytest.approx(6 / 9)
    assert list(m["sensitivity_per_class"].values()) == pytest.approx([2 / 3, 1 / 2, 3 / 4])
    assert list(m["specificity_per_class"].values()) == pytest.approx([5 / 6, 6 / 7, 4 / 5])
    assert list(m["f1_per_class"].values()) == pytest.approx([2 / 3, 1 / 2, 3 / 4])
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3) == m["sensitivity"]
    assert m["specificity"] == pytest.approx((5 / 6 + 6 / 7 + 4 / 5) / 3)
    assert m["f1"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)
    np.testing.assert_array_equal(predicted_labels(probs), pred)


def test_multilabel_metrics_shapes_and_per_class_thresholds():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    probs = np.array([[0.9, 0.2], [0.4, 0.8], [0.3, 0.6], [0.6, 0.1]])
    m = classification_metrics(y, probs, ["effusion", "nodule"], multilabel=True, n_bootstrap=0)
    assert m["task"] == "multilabel" and m["thresholds"] == [0.5, 0.5]
    assert m["confusion_matrix"] == {"effusion": [[1, 1], [1, 1]], "nodule": [[2, 0], [0, 2]]}
    assert m["auc_per_class"] == {"effusion": pytest.approx(0.75), "nodule": 1.0}
    assert m["auc"] == pytest.approx(0.875)
    assert m["accuracy"] == pytest.approx(0.75)  # mean per-label accuracy
    assert m["f1"] == pytest.approx(0.75) and m["sensitivity"] == pytest.approx(0.75)
    t = classification_metrics(y, probs, ["effusion", "nodule"], multilabel=True, thresholds=[0.35, 0.5],
                               n_bootstrap=0)
    assert t["thresholds"] == [0.35, 0.5]
    assert t["sensitivity_per_class"] == {"effusion": 1.0, "nodule": 1.0}
    assert t["specificity_per_class"] == {"effusion": 0.5, "nodule": 1.0}
    labels = predicted_labels(probs, multilabel=True, thresholds=[0.35, 0.5])
    assert labels.shape == (4, 2)
    np.testing.assert_array_equal(labels, [[1, 0], [1, 1], [0, 1], [1, 0]])


def test_predicted_labels_binary_threshold():
    probs = _two_columns(P_BIN)
    np.testing.assert_array_equal(predicted_labels(probs), P_BIN >= 0.5)
    np.testing.assert_array_equal(predicted_labels(probs, thresholds=0.62), P_BIN >= 0.62)
    assert predicted_labels(probs).shape == (10,)


# ---------------------------------------------------------------------------------------------- calibration
def test_ece_of_hand_checked_examples():
    # binary, positive-class reliability: bin (0.8, 0.9] holds 0.9 x2 with 1 positive, bin (0, 0.1] 0.1 x2 with none
    assert expected_calibration_error([1, 0, 0, 0], _two_columns([0.9, 0.9, 0.1, 0.1]), bins=10) \
        == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    # multi-class, top label: confidences 0.72, 0.72 (one right), 0.55 (right), 0.85 (wrong)
    probs = np.array([[0.72, 0.18, 0.10], [0.72, 0.18, 0.10], [0.20, 0.25, 0.55], [0.05, 0.10, 0.85]])
    assert expected_calibration_error([0, 1, 2, 0], probs, bins=10) \
        == pytest.approx(0.5 * 0.22 + 0.25 * 0.45 + 0.25 * 0.85)
    # multi-label: mean over classes (class 0 as the binary case above, class 1 perfectly calibrated at 0 and 1)
    y = np.array([[1, 1], [0, 1], [0, 0], [0, 0]])
    p = np.array([[0.9, 1.0], [0.9, 1.0], [0.1, 0.0], [0.1, 0.0]])
    assert expected_calibration_error(y, p, bins=10, multilabel=True) == pytest.approx(0.25 / 2)


def test_ece_calibrated_against_over_confident_and_temperature_fixes_it():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.02, 0.98, 20000)
    y = (rng.random(20000) < p).astype(int)
    calibrated = expected_calibration_error(y, _two_columns(p))
    logits = np.stack([np.zeros_like(p), 3 * logit(p)], axis=1)  # three times too sharp
    over = expected_calibration_error(y, softmax(logits, axis=1))
    assert calibrated < 0.02 and over > 0.1
    t = fit_temperature(logits, y)
    assert t == pytest.approx(3, rel=0.1)
    assert expected_calibration_error(y, apply_temperature(logits, t)) < 0.02


def test_temperature_recovered_softmax_and_multilabel():
    rng = np.random.default_rng(3)
    z = 2 * rng.normal(size=(5000, 3))  # calibrated logits: labels drawn from their softmax
    y = (rng.random(5000)[:, None] > np.cumsum(softmax(z, axis=1), axis=1)).sum(axis=1)
    assert fit_temperature(2.5 * z, y) == pytest.approx(2.5, rel=0.1)
    assert fit_temperature(0.5 * z, y) == pytest.approx(0.5, rel=0.1)  # under-confident
    zm = 2 * rng.normal(size=(4000, 3))
    ym = (rng.random((4000, 3)) < expit(zm)).astype(int)
    assert fit_temperature(2.0 * zm, ym, multilabel=True) == pytest.approx(2.0, rel=0.1)


def test_temperature_degenerate_inputs_give_one():
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, int)) == 1.0
    assert fit_temperature(np.ones((10, 3)), np.arange(10) % 3) == 1.0  # constant logits
    y = np.arange(30) % 3
    assert fit_temperature(5.0 * np.eye(3)[y], y) == 1.0  # perfectly separated: NLL falls as T -> 0
    assert fit_temperature(5.0 * np.eye(3)[y] - 2.0, np.eye(3)[y], multilabel=True) == 1.0
    assert fit_temperature(-5.0 * np.eye(3)[y], y) == 1.0  # always wrong: NLL falls as T -> inf (search bound)


def test_apply_temperature():
    z = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    p1 = apply_temperature(z, 1.0)
    np.testing.assert_allclose(p1, np.exp(z) / np.exp(z).sum(axis=1, keepdims=True))
    p3 = apply_temperature(z, 3.0)
    np.testing.assert_allclose(p3.sum(axis=1), 1.0)
    assert p3[0].max() < p1[0].max()  # a higher temperature flattens
    np.testing.assert_allclose(apply_temperature(z, 2.0, multilabel=True), 1 / (1 + np.exp(-z / 2)))
    with pytest.raises(MedsightError, match="positive finite temperature"):
        apply_temperature(z, 0.0)


# ---------------------------------------------------------------------------------------------- thresholds
def test_youden_threshold_on_a_separable_set_and_the_hand_checked_set():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    t = choose_threshold(y, p)
    assert 0.3 < t <= 0.6
    np.testing.assert_array_equal(p >= t, y.astype(bool))
    assert choose_threshold(Y_BIN, P_BIN) == 0.65  # J = 0.8 - 0 there, 1 - 0.4 at the next positive (0.4)


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 1.0])
def test_target_sensitivity_threshold_is_the_highest_reaching_it(target):
    rng = np.random.default_rng(4)
    y, probs = _binary_set(400, rng)
    p = probs[:, 1]
    t = choose_threshold(y, p, method="sensitivity", target_sensitivity=target)
    pos = p[y == 1]
    assert np.mean(pos >= t) >= target
    higher = p[p > t]
    if higher.size:  # the next distinct score up misses the target
        assert np.mean(pos >= higher.min()) < target
    if target == 0.8:
        assert choose_threshold(Y_BIN, P_BIN, method="sensitivity", target_sensitivity=0.8) == 0.65


def test_choose_threshold_errors_and_single_class(strict_warnings):
    with pytest.raises(MedsightError, match="did you mean 'youden'"):
        choose_threshold(Y_BIN, P_BIN, method="yuoden")
    with pytest.raises(MedsightError, match="target_sensitivity"):
        choose_threshold(Y_BIN, P_BIN, method="sensitivity")
    with pytest.raises(MedsightError, match="method='sensitivity'"):
        choose_threshold(Y_BIN, P_BIN, target_sensitivity=0.9)
    assert choose_threshold(np.zeros(5), np.linspace(0, 1, 5)) == 0.5


# ---------------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_ci_contains_the_estimate_narrows_and_is_reproducible():
    rng = np.random.default_rng(5)
    small = classification_metrics(*_binary_set(100, rng), ["neg", "pos"], n_bootstrap=500)
    large = classification_metrics(*_binary_set(2000, rng), ["neg", "pos"], n_bootstrap=500)
    for m in (small, large):
        for name in CI_METRICS:
            lo, hi = m["ci95"][name]
            assert lo <= m[name] <= hi, name
    for name in CI_METRICS:
        width = {k: m["ci95"][name][1] - m["ci95"][name][0] for k, m in (("s", small), ("l", large))}
        assert width["l"] < 0.5 * width["s"], name  # sqrt(20) ~ 4.5 times narrower expected
    y, probs = _binary_set(100, np.random.default_rng(6))
    again = [classification_metrics(y, probs, ["neg", "pos"], n_bootstrap=200, seed=s)["ci95"] for s in (1, 1, 2)]
    assert again[0] == again[1] and again[0] != again[2]


def test_bootstrap_is_stratified_so_a_rare_class_keeps_an_auc():
    y = np.zeros(40, int)
    y[[5, 17]] = 1
    p = np.linspace(0.05, 0.95, 40)
    m = classification_metrics(y, _two_columns(p), ["neg", "pos"], n_bootstrap=300)
    lo, hi = m["ci95"]["auc"]  # unstratified, ~10 % of resamples would hold no positive
    assert 0 <= lo <= m["auc"] <= hi <= 1


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_bootstrap_of_1000_cases_is_fast(task):
    rng = np.random.default_rng(7)
    if task == "binary":
        y, probs = _binary_set(1000, rng)
        names, ml = ["neg", "pos"], False
    elif task == "multiclass":
        y = rng.integers(0, 5, 1000)
        z = rng.normal(size=(1000, 5))
        z[np.arange(1000), y] += 1.5
        probs, names, ml = softmax(z, axis=1), list("abcde"), False
    else:
        y = (rng.random((1000, 4)) < 0.3).astype(int)
        probs, names, ml = np.clip(0.4 * y + 0.6 * rng.random((1000, 4)), 0, 1), list("abcd"), True
    start = time.perf_counter()
    m = classification_metrics(y, probs, names, multilabel=ml, n_bootstrap=1000)
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0, f"{elapsed:.2f} s"  # about 0.15-0.3 s on one idle core
    assert all(m["ci95"][k] is not None for k in CI_METRICS)


# ---------------------------------------------------------------------------------------------- degenerate inputs
def test_single_class_gives_nan_auc_and_null_cis_without_warnings(strict_warnings):
    m = classification_metrics(np.zeros(20, int), _two_columns(np.linspace(0, 1, 20)), ["neg", "pos"])
    json.dumps(m, allow_nan=False)
    assert m["auc"] is None and m["sensitivity"] is None and m["specificity"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx(0.5)  # mean recall over the classes present
    assert m["ci95"] == dict.fromkeys(CI_METRICS)
    empty = classification_metrics(np.zeros(0, int), np.zeros((0, 2)), ["neg", "pos"])
    assert empty["n"] == 0 and empty["auc"] is None and empty["ece"] is None


def test_absent_class_is_left_out_of_macro_averages(strict_warnings):
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 60)  # class "c" never occurs
    probs = softmax(rng.normal(size=(60, 3)) + 2 * np.eye(3)[y], axis=1)
    m = classification_metrics(y, probs, ["a", "b", "c"], n_bootstrap=100)
    json.dumps(m, allow_nan=False)
    assert m["auc_per_class"]["c"] is None and m["sensitivity_per_class"]["c"] is None
    assert m["auc"] == pytest.approx((m["auc_per_class"]["a"] + m["auc_per_class"]["b"]) / 2)
    assert m["ci95"]["auc"] is not None
    ml = classification_metrics(np.c_[y, np.zeros(60, int)], probs[:, :2], ["a", "absent"], multilabel=True)
    assert ml["auc_per_class"]["absent"] is None and ml["auc"] == ml["auc_per_class"]["a"]


def test_input_errors_name_the_fix():
    probs = _two_columns(P_BIN)
    with pytest.raises(MedsightError, match="apply_temperature"):
        classification_metrics(Y_BIN, probs * 3 - 1, ["a", "b"])
    with pytest.raises(MedsightError, match="2 class names"):
        classification_metrics(Y_BIN, probs, ["a", "b", "c"])
    with pytest.raises(MedsightError, match=r"class indices in \[0, 1\]"):
        classification_metrics(Y_BIN + 1, probs, ["a", "b"])
    with pytest.raises(MedsightError, match="np.stack"):
        classification_metrics(Y_BIN, P_BIN[:, None], ["a"])
    with pytest.raises(MedsightError, match="multi-label y"):
        classification_metrics(Y_BIN, probs, ["a", "b"], multilabel=True)


# ---------------------------------------------------------------------------------------------- plots
def _is_png(path):
    data = path.read_bytes()
    return path.is_file() and len(data) > 1000 and data[:8] == PNG_SIGNATURE


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_plots_are_written_as_png(tmp_path, task):
    rng = np.random.default_rng(9)
    ml = task == "multilabel"
    if task == "binary":
        y, probs = _binary_set(200, rng)
        names = ["benign", "malignant"]
    elif task == "multiclass":
        y = rng.integers(0, 3, 200)
        probs = softmax(rng.normal(size=(200, 3)) + 2 * np.eye(3)[y], axis=1)
        names = ["a", "b", "c"]
    else:
        y = (rng.random((200, 3)) < 0.4).astype(int)
        probs = np.clip(0.5 * y + 0.5 * rng.random((200, 3)), 0, 1)
        names = ["x", "y", "z"]
    written = [plot_roc(y, probs, names, tmp_path / "roc.png", multilabel=ml)]
    if task != "multiclass":
        written.append(plot_reliability(y, probs ** 0.7, tmp_path / "rel.png", multilabel=ml, probs_before=probs))
    if task == "binary":
        written.append(plot_precision_recall(y, probs, names, tmp_path / "pr.png"))
    if not ml:
        cm = classification_metrics(y, probs, names, n_bootstrap=0)["confusion_matrix"]
        written.append(plot_confusion(cm, names, tmp_path / "cm.png"))
    assert all(_is_png(p) for p in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)  # no temporary left


def test_plots_survive_a_single_class_and_reject_a_wrong_matrix(tmp_path, strict_warnings):
    y = np.zeros(10, int)
    probs = _two_columns(np.linspace(0, 1, 10))
    assert _is_png(plot_precision_recall(y, probs, ["neg", "pos"], tmp_path / "pr.png"))
    assert _is_png(plot_confusion([[10, 0], [0, 0]], ["neg", "pos"], tmp_path / "cm.png"))
    with pytest.raises(MedsightError, match=r"\(3, 3\) matrix"):
        plot_confusion(np.ones((2, 2)), ["a", "b", "c"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_weighted_bootstrap_auc_equals_the_exact_auc_on_repeated_cases():
    # a resample is case weights; check the weighted AUC against the exact AUC of the repeated cases
    from medsight.metrics.auc import roc_auc, weighted_auc

    rng = np.random.default_rng(10)
    scores = np.round(rng.random(50), 1)
    target = rng.random(50) < 0.4
    weights = rng.integers(0, 4, size=(50, 3)).astype(float)
    got = weighted_auc(weights, scores, target)
    for b, w in enumerate(weights.T.astype(int)):
        assert got[b] == pytest.approx(roc_auc(np.repeat(scores, w), np.repeat(target, w)))
