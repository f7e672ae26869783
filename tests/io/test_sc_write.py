"""The overlay Secondary Capture series: same study, references its source instances, passes dciodvfy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medsight.io import read_image
from medsight.io.sc_write import SC_SOP_CLASS_UID, orientation_letters, overlay_rgb, write_overlay_series

MR = Path("tcia_pgbm005_mr_t1post_dicom") / "volume"


def test_overlay_blends_label_colours_over_the_window() -> None:
    grey = np.array([[0.0, 50.0], [100.0, 200.0]])
    rgb = overlay_rgb(grey, np.array([[0, 1], [0, 2]]), 0.0, 100.0)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[1, 0].tolist() == [255, 255, 255]
    assert rgb[0, 1].tolist() == [191, 64, 64]  # half grey 128, half red
    assert orientation_letters([1, 0, 0]) == "L" and orientation_letters([0, -0.8, -0.6]) == "AF"


def test_overlay_series_references_the_source_and_passes_dciodvfy(shared_data: Path, tmp_path: Path) -> None:
    series = shared_data / MR
    image = read_image(series)
    labels = np.zeros(image.array.shape, np.uint8)
    labels[0, 10:13, 100:160, 90:150] = 1
    labels[0, 12, 170:190, 100:130] = 2
    files = write_overlay_series(image.with_array(labels), series, tmp_path / "sc")
    assert [f.name for f in files] == ["sc_0001.dcm", "sc_0002.dcm", "sc_0003.dcm"]  # the labelled slices only
    sources = {str(d.SOPInstanceUID): d for d in (pydicom.dcmread(f, stop_before_pixels=True)
                                                  for f in series.iterdir())}
    scs = [pydicom.dcmread(f) for f in files]
    assert {sc.SeriesInstanceUID for sc in scs} != {next(iter(sources.values())).SeriesInstanceUID}
    assert len({sc.SeriesInstanceUID for sc in scs}) == 1
    for sc in scs:
        assert sc.SOPClassUID == SC_SOP_CLASS_UID and sc.PhotometricInterpretation == "RGB"
        assert sc.StudyInstanceUID == next(iter(sources.values())).StudyInstanceUID
        ref = sources[sc.SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert sc.pixel_array.shape == (int(ref.Rows), int(ref.Columns), 3)
        assert list(sc.ImageType) == ["DERIVED", "SECONDARY"] and sc.BurnedInAnnotation == "YES"
    labelled = scs[2].pixel_array[100:160, 90:150]  # array slice 12: label 1, red over the brain
    assert (labelled[..., 0] > labelled[..., 1]).all()
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) not installed")
    for f in files:
        report = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
        errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], f"{f.name}: {errors}"
