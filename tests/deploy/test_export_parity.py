"""ONNX / TorchScript export and engine parity: the same preprocessing, sliding window, TTA and postprocessing.

Stated tolerance: class probabilities (float32, after sliding window, mirror TTA and fold averaging) differ by at most
:data:`PROB_TOL` between PyTorch eager and onnxruntime, and label maps are identical wherever the two most likely
classes are more than ``2 * PROB_TOL`` apart. Measured here: about 5e-6 on 3D MRI and phantoms; up to 5e-4 on a chest
X-ray, in 0.05 % of the pixels, where near-uniform bright windows make instance normalisation divide by a tiny
variance and so magnify float32 rounding differences. End-to-end label maps were identical on every case.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image as PILImage

from medsight.cli.app import main
from medsight.core.case import Case
from medsight.deploy.export import export_run
from medsight.engine.networks import OnnxNetwork, make_session
from medsight.engine.runtime import load_networks
from medsight.errors import MedsightError
from medsight.io import read_image
from medsight.tasks.classification.pipeline import predict_classification
from medsight.tasks.segmentation.pipeline import predict
from medsight.tasks.segmentation.predictor import segmentation_predictor
from medsight.transforms.cache import preprocess_case

from .conftest import copy_run

PROB_TOL = 1e-3


def assert_parity(p_ref: torch.Tensor, p_new: torch.Tensor) -> None:
    """Probabilities ``(K, *spatial)`` within :data:`PROB_TOL`; arg-max equal wherever the top-2 margin is clear."""
    assert p_ref.shape == p_new.shape
    assert float((p_ref - p_new).abs().max()) <= PROB_TOL
    top2 = torch.topk(p_ref, 2, dim=0).values
    clear = (top2[0] - top2[1]) > 2 * PROB_TOL
    assert torch.equal(p_ref.argmax(0)[clear], p_new.argmax(0)[clear])


def assert_same_labels(a: np.ndarray, b: np.ndarray, probs: torch.Tensor) -> None:
    """Label maps equal wherever the top-2 probability margin of ``probs`` ``(K, *spatial)`` exceeds ``2 * PROB_TOL``;
    at least 99 % of all voxels equal (a near-random tiny model has many near-ties)."""
    top2 = torch.topk(probs, 2, dim=0).values
    clear = ((top2[0] - top2[1]) > 2 * PROB_TOL).numpy()
    assert np.array_equal(a[clear], b[clear])
    assert (a == b).mean() >= 0.99


def _probabilities(run_or_export: Path, image_file: Path, engine: str, *, tta: bool = True) -> torch.Tensor:
    pred = segmentation_predictor(run_or_export, engine=engine, device="cpu", tta=tta)
    pre = preprocess_case(Case(case_id="c", image=read_image(image_file)), pred.plan)
    return pred.probabilities(pre.image)


def test_onnx_export_matches_pytorch_3d(seg3d_run: Path, phantom3d: Path, tmp_path: Path) -> None:
    out = export_run(seg3d_run, tmp_path / "export", fmt="onnx")
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["format"] == "onnx" and manifest["task"] == "segmentation" and set(manifest["folds"]) == {"0"}
    assert manifest["folds"]["0"]["inputs"]["image"][2:] == ["dim0", "dim1", "dim2"]  # dynamic spatial axes
    for name in ("plans.json", "fold_0/model.onnx", "MODEL_CARD.md", "model_card.json"):
        assert (out / name).is_file(), name
    card = json.loads((out / "model_card.json").read_text())
    assert [w["file"] for w in card["weights"]] == ["fold_0/model.onnx"] and card["source_weights"]
    image = phantom3d / "imagesTr" / "case_001_0000.nii.gz"
    reference = _probabilities(seg3d_run, image, "torch")
    assert_parity(reference, _probabilities(out, image, "onnx"))
    assert_parity(reference, _probabilities(seg3d_run, image, "onnx"))  # a run's checkpoints, exported in memory
    # predict end to end: the label files of both engines agree
    written = {e: predict(src, image, tmp_path / e, engine=e, save_probabilities=True)[0] for e, src in (("torch", seg3d_run), ("onnx", out))}
    with np.load(next((tmp_path / "torch").glob("*_probabilities.npz"))) as z:
        probs = torch.from_numpy(z["probabilities"].astype(np.float32))
    assert_same_labels(read_image(written["torch"]).array[0], read_image(written["onnx"]).array[0], probs)


def test_dynamic_spatial_axes(seg3d_run: Path) -> None:
    """The exported U-Net takes any size that its strides divide, not only the traced patch size."""
    files, (net,) = load_networks(seg3d_run, engine="torch")
    _, (onnx_net,) = load_networks(seg3d_run, engine="onnx")
    x = torch.randn(2, 1, 16, 40, 24)
    with torch.no_grad():
        assert float((net(x) - onnx_net(x)).abs().max()) < 1e-4


@pytest.mark.slow
def test_real_cases_match(seg3d_run: Path, seg2d_run: Path, shared_data: Path, tmp_path: Path) -> None:
    """Real scans through the phantom-trained models: a Hippocampus MRI (3D) and a Montgomery chest X-ray (2D, its
    512x512 PNG resized to 256x256 to keep the test fast), end to end (preprocessing, sliding window, TTA, resampling
    back, postprocessing) with both engines."""
    hippocampus = shared_data / "msd_task04_hippocampus_cropped" / "images" / "hippocampus_001.nii.gz"
    xray = tmp_path / "MCUCXR_0001_0.png"
    PILImage.open(shared_data / "montgomery_cxr_lung_512" / "cxr" / xray.name).resize((256, 256)).save(xray)
    for run, image in ((seg3d_run, hippocampus), (seg2d_run, xray)):
        assert_parity(_probabilities(run, image, "torch", tta=False), _probabilities(run, image, "onnx", tta=False))
        case = Case(case_id="c", image=read_image(image))
        (lab_t, p_t), (lab_o, _) = (segmentation_predictor(run, engine=e, tta=False).predict_case(case) for e in ("torch", "onnx"))
        assert p_t is not None and lab_t.shape == case.image.shape
        assert_same_labels(lab_t.array[0], lab_o.array[0], torch.from_numpy(p_t.astype(np.float32)))


def test_torchscript_export_matches(seg3d_run: Path, phantom3d: Path, tmp_path: Path) -> None:
    out = export_run(seg3d_run, tmp_path / "ts", fmt="torchscript")
    assert (out / "fold_0" / "model.pt").is_file()
    image = phantom3d / "imagesTr" / "case_002_0000.nii.gz"
    assert_parity(_probabilities(seg3d_run, image, "torch"), _probabilities(out, image, "torch"))
    with pytest.raises(MedsightError, match="TorchScript export"):
        segmentation_predictor(out, engine="onnx")


def test_int8_export_is_smaller_and_predicts(seg3d_run: Path, phantom3d: Path, tmp_path: Path) -> None:
    fp32 = export_run(seg3d_run, tmp_path / "fp32")
    int8 = export_run(seg3d_run, tmp_path / "int8", int8=True)
    assert json.loads((int8 / "export.json").read_text())["quantization"] == "dynamic-int8"
    assert (int8 / "fold_0/model.onnx").stat().st_size < (fp32 / "fold_0/model.onnx").stat().st_size
    ops = {n.op_type for n in onnx.load(int8 / "fold_0/model.onnx").graph.node}
    assert {"DynamicQuantizeLinear", "ConvInteger"} <= ops  # convolutions run on uint8 weights and activations
    probs = _probabilities(int8, phantom3d / "imagesTr" / "case_000_0000.nii.gz", "onnx")
    assert torch.isfinite(probs).all() and torch.allclose(probs.sum(0), torch.ones(probs.shape[1:]), atol=1e-4)


def test_export_refusals(seg3d_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = export_run(seg3d_run, tmp_path / "export")
    assert main(["predict", str(out), str(tmp_path), str(tmp_path / "p")]) == 2  # ONNX export, default engine torch
    assert "--engine onnx" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["export", str(seg3d_run), str(tmp_path / "busy")]) == 2  # never overwrite a folder of other files
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    assert main(["export", str(seg3d_run), str(out), "--format", "torchscript", "--int8"]) == 2
    before = (out / "export.json").read_bytes()
    assert main(["export", str(seg3d_run), str(out)]) == 2  # an earlier export is replaced only with --overwrite
    assert "--overwrite" in capsys.readouterr().err and (out / "export.json").read_bytes() == before
    inner = copy_run(seg3d_run, out / "run")  # an export folder that holds the run: replacing it would delete the run
    assert main(["export", str(inner), str(out), "--overwrite"]) == 2 and (inner / "plans.json").is_file()
    assert "holding the input" in capsys.readouterr().err
    shutil.rmtree(inner)
    assert main(["export", str(seg3d_run), str(seg3d_run), "--overwrite"]) == 2  # the run itself
    assert main(["export", str(seg3d_run), str(out), "--overwrite"]) == 0  # an earlier export is replaced
    assert not list(tmp_path.glob(".export.*"))  # no temporary folder left behind
    err = capsys.readouterr().err
    assert "Traceback" not in err


@pytest.mark.slow
def test_classification_onnx_parity_with_tabular_input(cls_run: Path, cls_csv: Path, tmp_path: Path) -> None:
    out = export_run(cls_run, tmp_path / "export")
    assert json.loads((out / "export.json").read_text())["folds"]["0"]["inputs"]["tabular"] == ["batch", 1]
    assert (out / "calibration.json").is_file()
    rows = {}
    for name, source, engine in (("torch", cls_run, "torch"), ("onnx", out, "onnx")):
        predict_classification(source, cls_csv, tmp_path / name, engine=engine)
        rows[name] = list(csv.DictReader((tmp_path / name / "predictions.csv").open()))
    assert len(rows["torch"]) == 24
    for a, b in zip(rows["torch"], rows["onnx"]):
        assert abs(float(a["prob_lesion"]) - float(b["prob_lesion"])) <= PROB_TOL and a["pred"] == b["pred"]
    # the adapter reports the class count and passes the tabular input through
    _, (net,) = load_networks(out, engine="onnx")
    assert isinstance(net, OnnxNetwork) and net.num_classes == 2
    assert net(torch.zeros(3, 1, 24, 24), torch.zeros(3, 1)).shape == (3, 2)


def test_corrupt_onnx_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not an onnx graph")
    with pytest.raises(MedsightError, match="valid ONNX model"):
        make_session(bad)
