"""Classification end to end on tiny synthetic data: plan -> train (shared trainer) -> calibrate -> predict -> explain."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.cli.app import main
from medsight.core.image import Image
from medsight.data.dataset import load_dataset
from medsight.data.splits import stratified_kfold
from medsight.io import write_image
from medsight.tasks.classification.plan import load_plan

SIZE = 24


def _picture(rng: np.random.Generator, positive: bool) -> np.ndarray:
    img = rng.normal(80, 12, (SIZE, SIZE))
    if positive:  # a bright square somewhere: the answer a classifier must find
        y, x = rng.integers(2, SIZE - 8, 2)
        img[y:y + 6, x:x + 6] += 90
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    """``normal/`` and ``lesion/`` folders of 16 grey PNGs each."""
    rng = np.random.default_rng(0)
    root = tmp_path / "cls"
    for name, pos in (("normal", False), ("lesion", True)):
        (root / name).mkdir(parents=True)
        for i in range(16):
            PILImage.fromarray(_picture(rng, pos)).save(root / name / f"{name}_{i:02d}.png")
    return root


def _run(*argv: str) -> int:
    return main(["-q", *argv])


def test_train_predict_explain_2d(class_folders: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _run("train", str(class_folders), "--out", str(run), "--epochs", "2", "--model", "smallcnn") == 0
    plan = load_plan(run / "plans.json")
    assert plan.task == "classification" and plan.class_names == ["lesion", "normal"] and plan.input_size == [SIZE, SIZE]
    fold = run / "fold_0"
    for name in ("checkpoint_best.pt", "checkpoint_last.pt", "metrics.csv", "curves.png", "calibration.json"):
        assert (fold / name).is_file(), name
    rows = list(csv.DictReader((fold / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and {"val_auc", "val_accuracy", "val_loss"} <= set(rows[0])
    assert 0.0 <= float(rows[-1]["val_auc"]) <= 1.0
    metrics = json.loads((run / "validation" / "metrics.json").read_text())
    assert metrics["n"] == 7 and set(metrics["ci95"]) >= {"auc", "accuracy"}
    calibration = json.loads((run / "calibration.json").read_text())
    assert calibration["temperature"]["0"] > 0 and len(calibration["thresholds"]) == 1
    for png in ("roc.png", "pr.png", "reliability.png", "confusion.png"):
        assert (run / "validation" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Cross-validated metrics" in (run / "report.html").read_text()

    # predict a labelled folder: predictions.csv + metrics; and a plain folder of images
    out = tmp_path / "pred"
    assert _run("predict", str(run), str(class_folders), str(out)) == 0
    pred = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(pred) == 32 and list(pred[0]) == ["file", "prob_lesion", "prob_normal", "pred", "label"]
    assert all(abs(float(r["prob_lesion"]) + float(r["prob_normal"]) - 1) < 1e-4 for r in pred)
    assert (out / "metrics.json").is_file()
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in sorted((class_folders / "lesion").glob("*.png"))[:3]:
        (plain / f.name).write_bytes(f.read_bytes())
    assert _run("predict", str(run), str(plain), str(tmp_path / "pred2"), "--no-tta") == 0
    rows2 = list(csv.DictReader((tmp_path / "pred2" / "predictions.csv").open()))
    assert [Path(r["file"]).name for r in rows2] == sorted(f.name for f in plain.iterdir())
    assert {r["pred"] for r in rows2} <= {"lesion", "normal"} and "label" not in rows2[0]

    # explain: Grad-CAM and occlusion overlays plus the arrays
    ex = tmp_path / "explain"
    assert _run("explain", str(run), str(plain), str(ex)) == 0
    stem = sorted(plain.iterdir())[0].stem
    assert (ex / f"{stem}_gradcam.png").is_file() and (ex / f"{stem}_occlusion.png").is_file()
    with np.load(ex / f"{stem}_heatmap.npz") as z:
        assert z["gradcam"].shape == (SIZE, SIZE) and 0 <= z["gradcam"].min() and z["gradcam"].max() <= 1


def test_resume_and_fine_tune(class_folders: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _run("train", str(class_folders), "--out", str(run), "--epochs", "1", "--model", "smallcnn", "--iterations", "2") == 0
    assert _run("train", str(class_folders), "--out", str(run), "--epochs", "2", "--iterations", "2", "--resume") == 0
    rows = list(csv.DictReader((run / "fold_0" / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    tuned = tmp_path / "tuned"
    assert _run("train", str(class_folders), "--out", str(tuned), "--epochs", "1", "--iterations", "2", "--model", "smallcnn",
                "--init-from", str(run / "fold_0" / "checkpoint_best.pt"), "--freeze-encoder") == 0
    assert load_plan(tuned / "plans.json").freeze_encoder
    import torch

    a = torch.load(run / "fold_0" / "checkpoint_best.pt", weights_only=True)["state_dict"]
    b = torch.load(tuned / "fold_0" / "checkpoint_last.pt", weights_only=True)["state_dict"]
    enc = [k for k in a if k.startswith("encoder.") and a[k].dtype.is_floating_point and "running" not in k]
    assert enc and all(torch.equal(a[k], b[k]) for k in enc)  # frozen encoder: initialised and unchanged


def _volumes(root: Path, n: int = 12) -> Path:
    """A CSV of small NIfTI volumes (label: a bright blob or not) with age/sex columns."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    with (root / "cases.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label", "age", "sex"])
        for i in range(n):
            pos = i % 2 == 1
            vol = rng.normal(0, 1, (8, 16, 16)).astype(np.float32)
            if pos:
                vol[3:6, 5:10, 5:10] += 4
            write_image(Image(vol[None], spacing=(2.0, 1.0, 1.0)), root / f"vol{i:02d}.nii.gz")
            w.writerow([f"vol{i:02d}.nii.gz", "blob" if pos else "none", 40 + i, "F" if i % 3 else "M"])
    return root / "cases.csv"


def test_3d_cnnlstm_with_tabular_columns(tmp_path: Path) -> None:
    csv_path = _volumes(tmp_path / "vols")
    run = tmp_path / "run"
    assert _run("train", str(csv_path), "--out", str(run), "--epochs", "1", "--iterations", "2", "--model", "cnnlstm",
                "--tabular", "age,sex") == 0
    plan = load_plan(run / "plans.json")
    assert plan.dims == 3 and plan.network == "cnnlstm" and plan.input_size == [8, 16, 16]
    assert plan.tabular["numeric"].keys() == {"age"} and plan.tabular["categorical"] == {"sex": ["F", "M"]}
    out = tmp_path / "pred"
    assert _run("predict", str(run), str(csv_path), str(out)) == 0
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 12 and {"prob_blob", "prob_none", "label"} <= set(rows[0])
    # plain images cannot be predicted by a model that needs the tabular columns
    assert _run("predict", str(run), str(tmp_path / "vols" / "vol00.nii.gz"), str(tmp_path / "p2")) == 2


def test_csv_multilabel_and_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    lines = ["file,target,age"]
    for i, lab in enumerate(["a;b", "b", "", "a", "a|b", "b"]):
        PILImage.fromarray(_picture(rng, False)).save(tmp_path / f"x{i}.png")
        lines.append(f"x{i}.png,{lab},{30 + i}")
    (tmp_path / "ml.csv").write_text("\n".join(lines) + "\n")
    spec = load_dataset(tmp_path / "ml.csv")
    assert spec.extra["multilabel"] and spec.labels == {"a": 0, "b": 1}
    assert [c.class_label for c in spec.cases] == [(1, 1), (0, 1), (0, 0), (1, 0), (1, 1), (0, 1)]
    assert dict(spec.cases[0].columns) == {"age": "30"}


def test_csv_without_label_in_a_row_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    PILImage.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "c.csv").write_text("image,label\na.png,1\na.png,\n")
    assert main(["train", str(tmp_path / "c.csv"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "c.csv" in err[0] and "line 3" in err[0]


def test_segmentation_flags_refused_for_segmentation_data(phantom2d_dataset: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(phantom2d_dataset), "--out", str(tmp_path / "r"), "--model", "resnet18"]) == 2
    assert "--model only with classification" in capsys.readouterr().err


def test_stratified_folds_keep_class_balance() -> None:
    ids = [f"c{i:03d}" for i in range(100)]
    strata = ["pos" if i < 20 else "neg" for i in range(100)]
    folds = stratified_kfold(ids, strata, k=5)
    assert sorted(c for f in folds for c in f["val"]) == ids
    for f in folds:
        assert sum(1 for c in f["val"] if int(c[1:]) < 20) == 4 and len(f["val"]) == 20
        assert not set(f["val"]) & set(f["train"])
