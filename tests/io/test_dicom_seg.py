"""DICOM-SEG round trip on the real TCIA MR series: highdicom reads what medsight writes, UIDs reference the series."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medsight.cli.app import main
from medsight.io import read_image
from medsight.io.dicom_seg import dataset_colours, read_dicom_seg, write_dicom_seg

SERIES = "tcia_pgbm005_mr_t1post_dicom"


@pytest.fixture(scope="module")
def series(shared_data: Path) -> Path:
    return shared_data / SERIES / "volume"


@pytest.fixture(scope="module")
def written(series: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    image = read_image(series)
    lab = np.zeros(image.array.shape, dtype=np.uint8)
    lab[0, 5:9, 100:140, 80:120] = 1
    lab[0, 10:12, 200:220, 50:60] = 4  # a gap in the values: read back as 4 through the Tracking ID
    out = tmp_path_factory.mktemp("seg") / "pred_seg.dcm"
    write_dicom_seg(image.with_array(lab), series, out, label_names={"tumour": 1, "oedema": 4},
                    colours={1: (255, 0, 0)})
    return out, lab


def test_seg_passes_highdicom_and_references_the_series(series: Path, written: tuple[Path, np.ndarray]) -> None:
    out, _ = written
    seg = hd.seg.segread(out)
    source = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(series.glob("*.dcm"))]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source[0].SeriesInstanceUID
    assert seg.StudyInstanceUID == source[0].StudyInstanceUID
    referenced = {sop for _, _, sop in seg.get_source_image_uids()}
    assert referenced == {str(d.SOPInstanceUID) for d in source}
    labels = [seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()]
    assert labels == ["tumour", "oedema"]
    red = seg.get_segment_description(1).RecommendedDisplayCIELabValue
    assert hd.color.CIELabColor.from_dicom_value(tuple(red)).to_rgb() == (255, 0, 0)


def test_round_trip_on_the_series_grid(series: Path, written: tuple[Path, np.ndarray]) -> None:
    out, lab = written
    back = read_dicom_seg(out, series)
    assert back.same_geometry(read_image(series))
    np.testing.assert_array_equal(back.array, lab)
    alone = read_dicom_seg(out)  # the SEG's own frame grid: only the slices holding segments
    assert alone.array.max() == 4 and int((alone.array == 1).sum()) == int((lab == 1).sum())


def test_info_and_convert_read_a_seg(written: tuple[Path, np.ndarray], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out, lab = written
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dicom-seg" in text and "tumour=1, oedema=4" in text
    assert main(["convert", str(out), str(tmp_path / "seg.nii.gz")]) == 0
    assert int((read_image(tmp_path / "seg.nii.gz").array == 4).sum()) == int((lab == 4).sum())


def test_wrong_grid_and_colours_from_dataset_json(series: Path, tmp_path: Path) -> None:
    image = read_image(series)
    small = image.with_array(np.zeros((1, 4, 8, 8), np.uint8), origin=(), direction=np.zeros((0, 0)))
    with pytest.raises(ValueError, match="series grid"):
        write_dicom_seg(small, series, tmp_path / "x.dcm", label_names={"a": 1})
    spec = tmp_path / "dataset.json"
    spec.write_text(json.dumps({"labels": {"background": 0, "liver": 1}, "colors": {"liver": [1, 2, 3]}}))
    assert dataset_colours(spec, {"background": 0, "liver": 1}) == {1: (1, 2, 3)}
