"""Quantification: volumes against an independent voxel count x spacing, geometry, diameters, intensities."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medsight.cli.app import main
from medsight.core.image import Image, SourceInfo
from medsight.evaluate.quantify import longest_diameter, quantify
from medsight.io import write_image

SPACING = (2.5, 0.8, 0.6)


def _case() -> tuple[Image, Image]:
    rng = np.random.default_rng(0)
    ct = rng.normal(40, 10, size=(1, 12, 40, 50)).astype(np.float32)
    lab = np.zeros((1, 12, 40, 50), dtype=np.uint8)
    lab[0, 2:5, 5:15, 5:20] = 1          # lesion A of label 1: 3*10*15 = 450 voxels
    lab[0, 8:10, 30:34, 40:44] = 1       # lesion B of label 1: 2*4*4 = 32 voxels
    lab[0, 6, 20:25, 20:30] = 2          # label 2: 50 voxels
    ct[lab == 2] = 300.0
    origin = (-10.0, 20.0, 30.0)
    src = SourceInfo(modality="CT")
    return (Image(ct, spacing=SPACING, origin=origin, source=src),
            Image(lab, spacing=SPACING, origin=origin))


def test_volumes_match_voxel_count_times_spacing() -> None:
    image, labels = _case()
    rows = quantify(image, labels, label_names={"tumour": 1, "calcification": 2})
    voxel_ml = np.prod(SPACING) / 1000.0
    by = {(r["level"], r["label"], r["lesion"]): r for r in rows}
    assert by[("label", 1, 0)]["voxels"] == 482 and by[("label", 1, 0)]["name"] == "tumour"
    assert by[("label", 1, 0)]["volume_ml"] == pytest.approx(482 * voxel_ml)
    assert by[("lesion", 1, 1)]["voxels"] == 450 and by[("lesion", 1, 2)]["voxels"] == 32  # by decreasing size
    assert by[("lesion", 1, 2)]["volume_ml"] == pytest.approx(32 * voxel_ml)
    a = by[("lesion", 1, 1)]
    assert (a["bbox_start"], a["bbox_end"]) == ("2 5 5", "4 14 19")
    # default direction: array axis 0 -> z, 1 -> y, 2 -> x; centroid index (3, 9.5, 12)
    assert (a["centroid_x_mm"], a["centroid_y_mm"], a["centroid_z_mm"]) == pytest.approx(
        (-10.0 + 12 * 0.6, 20.0 + 9.5 * 0.8, 30.0 + 3 * 2.5))  # origin is (x, y, z)
    # longest axial diameter: corner to corner of a 10 x 15 voxel rectangle, centre to centre
    assert a["longest_diameter_mm"] == pytest.approx(np.hypot(9 * 0.8, 14 * 0.6))
    assert a["diameter_plane"] == "axial"
    c = by[("label", 2, 0)]
    assert (c["mean"], c["sd"], c["min"], c["max"], c["unit"]) == (300.0, 0.0, 300.0, 300.0, "HU")


def test_longest_diameter_of_a_disc() -> None:
    yy, xx = np.mgrid[:41, :41]
    disc = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 15**2)[None]
    image = Image(np.zeros((1, 1, 41, 41)), spacing=(1.0, 0.5, 0.5))
    assert longest_diameter(disc, image) == pytest.approx(15.0, abs=0.01)  # 30 voxels x 0.5 mm


def test_cli_writes_csv_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, labels = _case()
    img = write_image(image, tmp_path / "ct.nii.gz")
    lab = write_image(labels, tmp_path / "pred.nii.gz")
    code = main(["quantify", str(img), str(lab), "--labels", "tumour=1,calcification=2", "--window", "liver",
                 "--out", str(tmp_path / "q")])
    out = capsys.readouterr().out
    assert code == 0 and "tumour (1):" in out and "2 lesion(s)" in out
    with (tmp_path / "q" / "quantification.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5 and float(rows[0]["volume_ml"]) == pytest.approx(482 * np.prod(SPACING) / 1000, rel=1e-6)
    page = (tmp_path / "q" / "quantification.html").read_text()
    assert page.count("<img") == 5 and "data:image/png;base64," in page and "level 60, width 160" in page
    code = main(["quantify", str(img), str(lab), "--window", "lungs", "--out", str(tmp_path / "q2")])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean 'lung'" in err
