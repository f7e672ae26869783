"""Never destroy a user's data (issue 20, item 2): every command that writes user-facing outputs refuses an output that
is an input (or a folder holding one) and replaces existing outputs only with ``--overwrite``; each refusal is one
line, exit code 2, with the user's files untouched. (``predict``, ``convert`` and ``export`` have their own tests.)"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from _factory import load_dicom_factory  # noqa: E402
from medsight.cli.app import main
from medsight.core.image import Image
from medsight.io import write_image

dicom_factory = load_dicom_factory()


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], *fragments: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medsight: error: Expected ") and "Traceback" not in err[0], err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    return err[0]


def _snapshot(*roots: Path) -> dict[str, str]:
    """Path -> SHA-256 of every file under ``roots``."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _volume(path: Path, *, labels: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arr = np.zeros((1, 8, 12, 10), np.uint8) if labels else rng.normal(100, 10, (1, 8, 12, 10)).astype(np.float32)
    if labels:
        arr[0, 2:6, 3:9, 2:8] = 1
    write_image(Image(arr, spacing=(2.0, 1.0, 1.0)), path)
    return path


def test_deid_rerun_into_existing_out_needs_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """deid silently wrote into an earlier OUT_DIR and replaced its audit CSV: now refused without --overwrite."""
    dicom_factory.write_series(tmp_path / "in" / "s1", n_slices=3)
    out = tmp_path / "out"
    assert main(["-q", "deid", str(tmp_path / "in"), str(out)]) == 0
    capsys.readouterr()
    before = _snapshot(out, tmp_path / "out_deid_audit.csv")
    _refused(capsys, ["-q", "deid", str(tmp_path / "in"), str(out)], "OUT_DIR", "--overwrite")
    own_audit = tmp_path / "other"
    own_audit.mkdir()
    (own_audit / "notes.csv").write_text("mine")
    _refused(capsys, ["-q", "deid", str(tmp_path / "in"), str(tmp_path / "new"), "--audit", str(own_audit / "notes.csv")],
             "audit CSV", "--overwrite")
    assert (own_audit / "notes.csv").read_text() == "mine" and not (tmp_path / "new").exists()
    assert _snapshot(out, tmp_path / "out_deid_audit.csv") == before
    assert main(["-q", "deid", str(tmp_path / "in"), str(out), "--overwrite"]) == 0


def test_evaluate_and_detect_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    _volume(pred / "c1.nii.gz", labels=True)
    _volume(gt / "c1.nii.gz", labels=True)
    argv = ["-q", "evaluate", str(pred), str(gt), "--no-distances"]
    assert main(argv) == 0
    capsys.readouterr()
    before = _snapshot(pred)
    _refused(capsys, argv, "per_case.csv", "--overwrite")
    assert main([*argv, "--lesions"]) == 0  # other file names: nothing to replace
    _refused(capsys, [*argv, "--lesions"], "--overwrite")
    assert {k: v for k, v in _snapshot(pred).items() if k in before} == before  # nothing replaced
    assert main([*argv, "--overwrite"]) == 0
    capsys.readouterr()
    # detect: --out naming an input label map
    image = _volume(tmp_path / "pred2" / "c1.nii.gz", labels=True)
    original = image.read_bytes()
    _refused(capsys, ["-q", "detect", str(image.parent), "--out", str(image), "--overwrite"], "the input itself")
    assert image.read_bytes() == original
    assert main(["-q", "detect", str(image.parent)]) == 0
    _refused(capsys, ["-q", "detect", str(image.parent)], "lesions.csv", "--overwrite")
    assert main(["-q", "detect", str(image.parent), "--overwrite"]) == 0


def test_quantify_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, labels = _volume(tmp_path / "ct.nii.gz"), _volume(tmp_path / "seg.nii.gz", labels=True)
    out = tmp_path / "q"
    argv = ["-q", "quantify", str(image), str(labels), "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    before = _snapshot(out)
    _refused(capsys, argv, "quantification.csv", "--overwrite")
    assert _snapshot(out) == before
    assert main([*argv, "--overwrite"]) == 0


def test_registration_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixed, moving = _volume(tmp_path / "in" / "fixed.nii.gz"), _volume(tmp_path / "in" / "moving.nii.gz", seed=1)
    before = _snapshot(tmp_path / "in")
    # register into the folder that holds the inputs: refused before anything is read or written
    _refused(capsys, ["-q", "register", str(fixed), str(moving), str(tmp_path / "in"), "--overwrite"],
             "holding the input")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    _refused(capsys, ["-q", "register", str(fixed), str(moving), str(busy)], "--overwrite")
    assert (busy / "notes.txt").read_text() == "mine"
    # warp: OUT is the input image itself
    transform = tmp_path / "t.tfm"
    sitk.WriteTransform(sitk.Euler3DTransform(), str(transform))
    _refused(capsys, ["-q", "warp", str(transform), str(moving), str(moving), "--overwrite"], "the input itself")
    assert _snapshot(tmp_path / "in") == before
    out = tmp_path / "warped.nii.gz"
    assert main(["-q", "warp", str(transform), str(moving), str(out)]) == 0
    capsys.readouterr()
    _refused(capsys, ["-q", "warp", str(transform), str(moving), str(out)], "--overwrite")
    assert main(["-q", "warp", str(transform), str(moving), str(out), "--overwrite"]) == 0


def test_explain_and_synthesize_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both refuse before loading anything: a folder holding the input, or an earlier output folder."""
    folder = tmp_path / "scans"
    image = _volume(folder / "scan.nii.gz")
    ckpt = tmp_path / "checkpoint_best.pt"
    ckpt.write_bytes(b"never read: the output is refused first")
    before = _snapshot(folder)
    _refused(capsys, ["-q", "explain", str(ckpt), str(image), str(folder), "--overwrite"], "holding the input")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "scan_gradcam.png").write_bytes(b"an earlier heat map")
    _refused(capsys, ["-q", "explain", str(ckpt), str(image), str(busy)], "--overwrite")
    assert (busy / "scan_gradcam.png").read_bytes() == b"an earlier heat map" and _snapshot(folder) == before
    gan = tmp_path / "gan"
    gan.mkdir()
    (gan / "plans.json").write_text("{}")
    _refused(capsys, ["-q", "synthesize", "sample", str(gan), "2", str(gan), "--overwrite"], "the input itself")
    _refused(capsys, ["-q", "synthesize", "sample", str(gan), "2", str(busy)], "--overwrite")
    assert (gan / "plans.json").read_text() == "{}"


def test_dataset_init_and_import_take_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medsight.data.synthetic import write_phantom_dataset

    root = write_phantom_dataset(tmp_path / "ds", num_cases=2, shape=(16, 16), seed=0, file_ending=".png")
    spec = root / "dataset.json"
    if spec.exists():
        spec.unlink()
    assert main(["-q", "dataset", "init", str(root)]) == 0
    capsys.readouterr()
    spec.write_text(spec.read_text() + " ")
    edited = spec.read_text()
    _refused(capsys, ["-q", "dataset", "init", str(root)], "--overwrite")
    assert spec.read_text() == edited
    assert main(["-q", "dataset", "init", str(root), "--overwrite"]) == 0
    assert main(["-q", "dataset", "init", str(root), "--force"]) == 0  # the older name still works
    capsys.readouterr()
    export = tmp_path / "dicom"
    dicom_factory.write_series(export / "s1", n_slices=3)
    _refused(capsys, ["-q", "dataset", "import", str(export / "s1"), str(export), "--overwrite"], "holds the export")
