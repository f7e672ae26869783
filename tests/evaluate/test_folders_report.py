"""Folder evaluation (NIfTI and DRIVE-style PNG), overlays and the HTML run report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.core.display import LABEL_COLOURS
from medsight.core.image import Image
from medsight.engine.curves import plot_curves
from medsight.errors import InputNotFoundError, MedsightError
from medsight.evaluate.folders import evaluate_folders
from medsight.io import write_image
from medsight.metrics.summary import read_per_case
from medsight.report.html import case_index
from medsight.report.overlay import best_slice, overlay_png, save_overlay
from medsight.report.segmentation import write_segmentation_report


def _cube(shape, lo, hi, value=1, base=None):
    a = np.zeros(shape, np.uint8) if base is None else base.copy()
    a[tuple(slice(x, y) for x, y in zip(lo, hi))] = value
    return a


def _nifti(path, arr, spacing=(2.0, 1.0, 1.0)):
    write_image(Image(arr[None], spacing=spacing), path)


def _png(path, arr):
    PILImage.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)


@pytest.fixture
def nifti_folders(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    shape = (12, 16, 16)
    for i, shift in enumerate([0, 2, 0]):
        ref = _cube(shape, (2, 2, 2), (8, 8, 8), 1)
        ref = _cube(shape, (2, 10, 10), (6, 14, 14), 2, base=ref)
        _nifti(gt / f"case_{i:03d}.nii.gz", ref)
        if i < 2:  # case_002 has no prediction
            p = _cube(shape, (2 + shift, 2, 2), (8 + shift, 8, 8), 1)
            p = _cube(shape, (2, 10, 10), (6, 14, 14), 2, base=p)
            _nifti(pred / f"case_{i:03d}.nii.gz", p)
    return pred, gt


def test_evaluate_nifti_folders_writes_csv_and_json(nifti_folders, tmp_path):
    pred, gt = nifti_folders
    out = tmp_path / "out"
    res = evaluate_folders(pred, gt, out_dir=out, bootstrap=200)
    assert res.labels == {"label_1": 1, "label_2": 2}
    assert res.missing == ("case_002.nii.gz",) and res.match_rule == "same file stem"
    assert any("without a prediction" in w for w in res.warnings)
    assert res.per_case_csv == out / "per_case.csv" and res.summary_json.is_file()

    with res.per_case_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    by = {(r["case"], r["label"]): r for r in rows}
    assert float(by[("case_000", "label_1")]["dice"]) == pytest.approx(1.0)
    assert float(by[("case_001", "label_1")]["dice"]) == pytest.approx(4 / 6)  # 6-slice cube shifted by 2
    assert float(by[("case_001", "label_1")]["hd95"]) == pytest.approx(4.0)  # 2 slices x 2 mm
    assert by[("case_001", "label_1")]["volume_unit"] == "ml"
    assert float(by[("case_000", "label_1")]["ref_volume"]) == pytest.approx(216 * 2 / 1000)
    assert by[("case_002", "label_2")]["missing"] == "true" and float(by[("case_002", "label_2")]["dice"]) == 0.0
    assert by[("case_001", "label_1")]["prediction"] == "case_001.nii.gz"

    summary = json.loads(res.summary_json.read_text())  # strict JSON: NaN written as null
    dice = summary["labels"]["label_1"]["metrics"]["dice"]
    assert dice["mean"] == pytest.approx((1 + 4 / 6 + 0) / 3) and dice["n"] == 3
    assert dice["ci_low"] <= dice["mean"] <= dice["ci_high"]
    assert summary["labels"]["label_2"]["missing"] == 1 and summary["missing"] == ["case_002.nii.gz"]
    assert summary["labels"]["label_1"]["metrics"]["hd95"]["n_nan"] == 1
    back = read_per_case(res.per_case_csv)
    assert math.isnan(back[-1]["hd95"]) and back[-1]["missing"] is True


def test_given_labels_and_default_out_dir(nifti_folders):
    pred, gt = nifti_folders
    res = evaluate_folders(pred, gt, labels={"liver": 1}, distances=False, bootstrap=0)
    assert {r["label"] for r in res.rows} == {"liver"}
    assert (pred / "per_case.csv").is_file() and (pred / "summary.json").is_file()
    # the outputs in pred_dir are not mistaken for predictions on a second run (which replaces them only when asked)
    with pytest.raises(MedsightError, match="--overwrite"):
        evaluate_folders(pred, gt, labels={"liver": 1}, distances=False, bootstrap=0)
    assert evaluate_folders(pred, gt, labels={"liver": 1}, distances=False, bootstrap=0, overwrite=True).unmatched == ()


def test_shape_mismatch_names_the_file(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    _nifti(tmp_path / "gt" / "a.nii.gz", _cube((6, 8, 8), (1, 1, 1), (4, 4, 4)))
    _nifti(tmp_path / "pred" / "a.nii.gz", _cube((6, 8, 9), (1, 1, 1), (4, 4, 4)))
    with pytest.raises(MedsightError, match=r"pred/a\.nii\.gz"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")


def test_missing_and_empty_folders_are_clear(tmp_path):
    with pytest.raises(InputNotFoundError, match="prediction folder"):
        evaluate_folders(tmp_path / "nope", tmp_path)
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    _png(tmp_path / "gt" / "1.png", np.eye(4) * 255)
    with pytest.raises(MedsightError, match="prediction files"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")


def _drive_like(root, n=3, size=(40, 44)):
    """DRIVE names: 21_test.png (prediction) <-> 21_manual1.png (reference, 0/255) <-> 21_test_mask.png."""
    rng = np.random.default_rng(0)
    dirs = {k: root / k for k in ("pred", "gt", "mask", "prob", "images")}
    for d in dirs.values():
        d.mkdir()
    for i in range(n):
        cid = 21 + i
        ref = np.zeros(size, np.uint8)
        ref[:, 10 + i: 14 + i] = 1
        ref[20:23, :] = 1
        fov = np.zeros(size, np.uint8)
        fov[2:-2, 2:-2] = 255
        prob = np.clip(ref * 0.6 + rng.random(size) * (0.45 + 0.05 * i), 0, 1).astype(np.float32)
        pred = (prob >= 0.5).astype(np.uint8)
        _png(dirs["gt"] / f"{cid}_manual1.png", ref * 255)
        _png(dirs["mask"] / f"{cid}_test_mask.png", fov)
        _png(dirs["pred"] / f"{cid}_test.png", pred)
        np.savez(dirs["prob"] / f"{cid}_test.npz", probabilities=np.stack([1 - prob, prob]).astype(np.float16))
        _png(dirs["images"] / f"{cid}_test.png", (rng.random(size) * 200).astype(np.uint8))
    return dirs


def test_drive_style_names_roi_and_auc(tmp_path):
    d = _drive_like(tmp_path)
    res = evaluate_folders(d["pred"], d["gt"], roi_dir=d["mask"], prob_dir=d["prob"], out_dir=tmp_path / "out")
    assert res.match_rule == "leading token before '_'" and res.labels == {"foreground": 1}
    assert [r["case"] for r in res.rows] == ["21_test", "22_test", "23_test"]
    for r in res.rows:
        assert 0.9 < r["auc"] <= 1.0 and r["dice"] > 0.8
        assert r["volume_unit"] == "pixels" and r["distance_unit"] == "pixels"
    assert "auc" in res.summary["metrics"] and res.missing == ()


def test_overlay_colours_contours_and_reference():
    img = np.linspace(0, 1, 30 * 30).reshape(30, 30)
    lab = np.zeros((30, 30), np.uint8)
    lab[5:15, 5:15] = 1
    lab[18:25, 18:25] = 2
    ref = np.zeros_like(lab)
    ref[4:16, 4:16] = 1
    rgb = overlay_png(img, lab, reference=ref, alpha=0.5)
    assert rgb.shape == (30, 30, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[5, 10]) == LABEL_COLOURS[0]  # contour pixel of label 1: solid red
    assert tuple(rgb[18, 20]) == LABEL_COLOURS[1]  # contour of label 2: solid green
    assert rgb[10, 10, 0] > rgb[10, 10, 1]  # semi-transparent red fill
    assert tuple(rgb[4, 10]) == (255, 255, 255)  # reference contour
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    windowed = overlay_png(img * 100, np.zeros((30, 30), int), window=(50, 20))
    assert windowed[0, 0, 0] == 0 and windowed[-1, -1, 0] == 255
    with pytest.raises(MedsightError, match="image's shape"):
        overlay_png(img, lab[:10])


def test_best_slice_and_save_overlay(tmp_path):
    lab = np.zeros((5, 8, 8), np.uint8)
    lab[3, 2:6, 2:6] = 1
    lab[1, 4, 4] = 2
    assert best_slice(lab) == 3 and best_slice(np.zeros((5, 8, 8))) == 2
    assert best_slice(lab, axis=2) in range(2, 6)
    out = save_overlay(tmp_path / "o" / "x.png", np.random.default_rng(0).random((8, 8)), lab[3])
    assert np.asarray(PILImage.open(out)).shape == (8, 8, 3)
    assert [p.name for p in out.parent.iterdir()] == ["x.png"]  # no temporary file left


def test_plot_curves_tolerates_blanks(tmp_path):
    f = tmp_path / "fold_0" / "metrics.csv"
    f.parent.mkdir()
    f.write_text("epoch,train_loss,val_loss,val_dice,lr,seconds\n0,1.0,,,0.01,2\n1,0.8,0.9,0.5,0.01,2\n")
    out = plot_curves([f], tmp_path / "curves.png")
    assert out.is_file() and PILImage.open(out).format == "PNG"


def _fake_run(tmp_path, d):
    run = tmp_path / "run"
    for k in (0, 1):
        (run / f"fold_{k}").mkdir(parents=True)
        lines = ["epoch,train_loss,val_loss,val_dice,lr,seconds"]
        lines += [f"{e},{1 / (e + 1):.3f},{1.2 / (e + 1):.3f},{0.5 + 0.04 * e + 0.01 * k:.3f},0.01,3.5" for e in range(8)]
        (run / f"fold_{k}" / "metrics.csv").write_text("\n".join(lines) + "\n")
    plans = {"name": "Drive", "version": 1, "target_spacing": [1.0, 1.0],
             "configuration": {"patch_size": [32, 32], "batch_size": 4, "network": "unet"},
             "fingerprint": {"n_cases": 3, "spacings": [[1.0, 1.0]] * 3, "sizes": [40, 40, 40]}}
    (run / "plans.json").write_text(json.dumps(plans))
    (run / "summary.json").write_text(json.dumps({"dataset": "Drive", "folds": [0, 1],
                                                  "postprocessing": {"largest_component": False},
                                                  "timings": {"fold_0": 28.0}}))
    val = run / "validation"
    val.mkdir()
    for f in d["pred"].iterdir():
        (val / f.name).write_bytes(f.read_bytes())
    evaluate_folders(val, d["gt"], roi_dir=d["mask"], bootstrap=100)
    return run


def test_report_with_curves_tables_and_rendered_overlays(tmp_path):
    d = _drive_like(tmp_path)
    run = _fake_run(tmp_path, d)
    out = write_segmentation_report(run, images=case_index(d["images"]))
    html = out.read_text()
    assert out == run / "report.html" and (run / "curves.png").is_file()
    assert "<table" in html and "Validation metrics" in html and "foreground" in html and " ± " in html
    assert "patch_size" in html and "Dataset fingerprint" in html and "postprocessing.largest_component" in html
    assert html.count("data:image/png;base64,") == 1 + 3  # curves + best/worst of 3 cases
    assert "<script" not in html and "not available" not in html


def test_report_embeds_existing_overlays_and_tolerates_missing_pieces(tmp_path):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    html = write_segmentation_report(empty).read_text()
    assert html.count("not available") >= 4 and "<html" in html

    run = tmp_path / "run2"
    (run / "validation" / "overlays").mkdir(parents=True)
    save_overlay(run / "validation" / "overlays" / "case_a.png", np.zeros((6, 6)), np.eye(6, dtype=np.uint8))
    (run / "plans.json").write_text("{not json")
    html = write_segmentation_report(run).read_text()
    assert "data:image/png;base64," in html and "case_a" in html
    assert "plans.json could not be read" in html
    with pytest.raises(InputNotFoundError):
        write_segmentation_report(tmp_path / "missing")


def test_report_renders_3d_cases_with_nnunet_image_names(nifti_folders, tmp_path):
    pred, gt = nifti_folders
    run = tmp_path / "run3d"
    (run / "validation").mkdir(parents=True)
    for f in pred.iterdir():
        (run / "validation" / f.name).write_bytes(f.read_bytes())
    evaluate_folders(run / "validation", gt, distances=False, bootstrap=0)
    images = tmp_path / "imagesTr"
    images.mkdir()
    for i in range(3):
        _nifti(images / f"case_{i:03d}_0000.nii.gz", np.random.default_rng(i).random((12, 16, 16)).astype(np.float32))
    index = case_index(images)
    assert index["case_001"].name == "case_001_0000.nii.gz"
    html = write_segmentation_report(run, images=index).read_text()
    assert html.count("data:image/png;base64,") == 2  # the two predicted cases; the missing one is not drawn
    assert "best: case_000" in html and "mean over labels" in html and "missing prediction" in html


def test_report_finds_predictions_in_fold_folders(tmp_path):
    """The trainer pools validation metrics in run/validation but keeps predictions in fold_<k>/validation."""
    from medsight.metrics.summary import SegmentationEvaluator, rows_to_csv

    d = _drive_like(tmp_path)
    run = tmp_path / "run"
    fold_val = run / "fold_0" / "validation"
    fold_val.mkdir(parents=True)
    ev = SegmentationEvaluator({"background": 0, "vessel": 1}, distances=False)
    refs = {}
    for f in sorted(d["pred"].iterdir()):
        (fold_val / f.name).write_bytes(f.read_bytes())
        cid = f.stem
        refs[cid] = d["gt"] / f"{cid.split('_')[0]}_manual1.png"
        pred = np.asarray(PILImage.open(f))
        ev.add(cid, pred, np.asarray(PILImage.open(refs[cid])) > 0)
    (run / "validation").mkdir()
    (run / "validation" / "per_case.csv").write_text(rows_to_csv(ev.rows))
    html = write_segmentation_report(run, images=case_index(d["images"]), references=refs).read_text()
    assert html.count("data:image/png;base64,") == 3 and "best: " in html


def test_training_time_is_the_last_cumulative_value_not_the_sum(tmp_path: Path) -> None:
    """metrics.csv holds the wall time so far at each epoch (79, 134, 178 s): the fold trained 2m 58s, not 6m 31s."""
    from medsight.report.html import fmt_seconds
    from medsight.report.run import write_report

    fold = tmp_path / "run" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "metrics.csv").write_text("epoch,train_loss,val_loss,val_dice,lr,seconds\n"
                                      "1,0.9,0.8,0.5,0.01,79\n2,0.7,0.6,0.6,0.005,134\n3,0.6,0.5,0.7,0.0,178\n")
    html = write_report(tmp_path / "run").read_text()
    assert fmt_seconds(178) in html and fmt_seconds(79 + 134 + 178) not in html
