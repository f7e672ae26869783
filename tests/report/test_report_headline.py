"""The report answers first: headline (task, data, validation, main metric with the run's own 95 % CI, per label and
per fold), then cases with a legend, training, plan in words, full tables collapsed; no truncated key dumps."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from medsight.core.display import label_colour
from medsight.report.headline import classification_headline, render_headline, segmentation_headline
from medsight.report.html import fmt
from medsight.report.segmentation import choose_cases, write_segmentation_report

from .conftest import SyntheticRun


def test_segmentation_headline_reuses_the_pooled_summary_and_its_ci(synthetic_run: SyntheticRun) -> None:
    run = synthetic_run.run
    pooled = json.loads((run / "validation" / "summary.json").read_text())
    dice = pooled["foreground_mean"]["dice"]
    h = segmentation_headline(run)
    assert h.task == "3D segmentation" and h.value == dice["mean"] and h.ci == (dice["ci_low"], dice["ci_high"])
    assert h.n == 8 and "8 3D MR cases of phantoms" in h.data and "labels structure_1, structure_2" in h.data
    assert h.validation == "out-of-fold predictions of all folds of a 2-fold cross-validation, pooled (8 validation cases)"
    assert h.answer == f"mean Dice over foreground labels {fmt(dice['mean'])} (95 % CI {fmt(dice['ci_low'])}–" \
                       f"{fmt(dice['ci_high'])}, 8 cases)"
    labels = [r[0] for r in h.rows]
    assert labels == ["structure_1", "structure_2", "fold 0", "fold 1"]
    for k in (0, 1):  # the fold rows are the folds' own summaries
        fold = json.loads((run / f"fold_{k}" / "validation" / "summary.json").read_text())
        assert h.rows[2 + k][1:3] == [4, fmt(fold["foreground_mean"]["dice"]["mean"])]
    s1 = pooled["labels"]["structure_1"]["metrics"]["dice"]
    assert h.rows[0][2] == f"{fmt(s1['mean'])} [{fmt(s1['ci_low'])}, {fmt(s1['ci_high'])}]"


def test_report_order_legend_and_no_key_dumps(synthetic_run: SyntheticRun) -> None:
    r = synthetic_run
    html = write_segmentation_report(r.run, images=r.images, references=r.references).read_text()
    order = ['id="headline"', "Worst and best validation cases", "<h2>Training</h2>", "<h2>Plan</h2>", "<h2>Full tables</h2>"]
    positions = [html.index(s) for s in order]
    assert positions == sorted(positions)
    assert "entries:" not in html and "folds_with_validation" not in html[: html.index("<h2>Full tables</h2>")]
    assert "…" not in html  # nothing cut
    # the legend names each label with its overlay colour, and the reference outline
    for value, name in ((1, "structure_1"), (2, "structure_2")):
        c = label_colour(value)
        assert f'background:rgb({c[0]},{c[1]},{c[2]})"></span>{name} (label {value})' in html
    assert "reference outline" in html
    # the plan in a sentence, the decision with its reason, the fingerprint as a sentence
    assert "The plan: a dynunet, 3 levels, filters 8/16/32, deep supervision network, trained on patches of " \
           "12 × 16 × 16 voxels" in html
    assert "structure_1: keep the largest component" in html and "structure_1 0.8 → 0.82" in html
    assert "8 training cases, median size 12 × 20 × 16 voxels" in html
    # full tables collapsed, each inside a scrolling box
    full = html[html.index("<h2>Full tables</h2>"):]
    assert full.count("<details>") >= 3 and "Per-case metrics" in full
    assert html.count("<table") == html.count('<div class="tbl"><table')


def test_worst_and_best_cases_are_the_extremes(synthetic_run: SyntheticRun) -> None:
    dice = synthetic_run.case_dice
    chosen = choose_cases(dice)
    ranked = sorted(dice, key=lambda c: dice[c])
    assert [c for k, c in chosen if k == "worst"] == ranked[:3] and [c for k, c in chosen if k == "best"] == ranked[-3:]
    assert choose_cases({"a": 0.1, "b": 0.9}) == [("worst", "a"), ("best", "b")]
    html = write_segmentation_report(synthetic_run.run, images=synthetic_run.images,
                                     references=synthetic_run.references).read_text()
    assert f"worst: {ranked[0]} — Dice {fmt(dice[ranked[0]])}" in html and f"best: {ranked[-1]}" in html


def _classification_run(tmp_path: Path) -> Path:
    run = tmp_path / "cls"
    (run / "validation").mkdir(parents=True)
    plans = {"task": "classification", "dataset": "chest", "dims": 2, "modalities": ["other"], "class_names": ["normal", "tb"],
             "class_counts": [40, 40], "multilabel": False, "input_size": [64, 64], "resize": True, "network": "smallcnn",
             "batch_size": 16, "fingerprint": {"summary": {"cases": 80}}}
    (run / "plans.json").write_text(json.dumps(plans))
    (run / "summary.json").write_text(json.dumps({"task": "classification", "folds_with_validation": [0, 1], "num_folds": 5}))
    metrics = {"task": "binary", "n": 32, "class_names": ["normal", "tb"], "n_per_class": {"normal": 16, "tb": 16},
               "thresholds": 0.42, "auc": 0.875, "sensitivity": 0.8125, "specificity": 0.75,
               "ci95": {"auc": [0.74, 0.97], "sensitivity": [0.6, 1.0]}}
    (run / "validation" / "metrics.json").write_text(json.dumps(metrics))
    for k, probs in ((0, [0.1, 0.2, 0.8, 0.9]), (1, [0.6, 0.2, 0.4, 0.9])):
        folder = run / f"fold_{k}" / "validation"
        folder.mkdir(parents=True)
        with (folder / "predictions.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "prob_normal", "prob_tb", "pred", "label"])
            for i, p in enumerate(probs):
                w.writerow([f"c{k}{i}", 1 - p, p, "tb" if p > 0.42 else "normal", "normal" if i < 2 else "tb"])
    return run


def test_classification_headline(tmp_path: Path) -> None:
    run = _classification_run(tmp_path)
    h = classification_headline(run)
    assert h.task == "2D classification" and h.metric == "AUC" and h.value == 0.875 and h.ci == (0.74, 0.97)
    assert h.answer == "AUC 0.875 (95 % CI 0.74–0.97, 32 cases)"
    assert "80 2D cases of chest; classes normal (40), tb (40)" == h.data
    assert h.validation == "out-of-fold predictions of folds 0, 1 of a 5-fold cross-validation, pooled"
    assert h.rows[0] == ["all (normal 16, tb 16; positive class tb)", 32, 0.875, 0.8125, 0.75]
    assert h.rows[1] == ["fold 0", 4, 1.0, None, None] and h.rows[2] == ["fold 1", 4, 0.75, None, None]
    html = render_headline(h)
    assert html.startswith('<div class="headline" id="headline">') and '<span class="big">0.875</span>' in html
    assert re.search(r"Validated by:</b> out-of-fold predictions of folds 0, 1", html)


def test_classification_plan_states_threshold_and_temperature(tmp_path: Path) -> None:
    from medsight.report.run import write_report

    run = _classification_run(tmp_path)
    (run / "calibration.json").write_text(json.dumps({"temperature": {"0": 1.7, "1": 2.1}, "thresholds": [0.42],
                                                      "method": "youden", "decided_on": "8 out-of-fold validation cases"}))
    html = write_report(run).read_text()  # the default headline follows the plan's task
    assert '<span class="big">0.875</span>' in html and "The plan: a smallcnn network, trained on images of 64 × 64" in html
    assert "<td>decision threshold</td><td>0.42</td><td>youden on 8 out-of-fold validation cases</td>" in html
    assert "<td>temperature</td><td>fold 0: 1.7, fold 1: 2.1</td>" in html


def test_two_task_headline_keeps_one_box(synthetic_run: SyntheticRun, tmp_path: Path) -> None:
    seg = segmentation_headline(synthetic_run.run)
    cls = classification_headline(_classification_run(tmp_path), task="classification")
    html = render_headline(seg, cls)
    assert html.count('id="headline"') == 1 and html.count('class="answer"') == 2
    assert "3D segmentation: mean Dice over foreground labels" in html and "classification: AUC" in html
    assert "<b>Task:</b> 3D segmentation + classification." in html
