"""CT window presets in preprocessing, overlays and convert."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsight.cli.app import main
from medsight.core.display import WINDOW_PRESETS, apply_window, resolve_window
from medsight.core.image import Image
from medsight.errors import MedsightError
from medsight.io import read_image, write_image
from medsight.report.overlay import to_display
from medsight.transforms.config import Normalization
from medsight.transforms.intensity import normalize_channel


def test_presets_and_custom_windows() -> None:
    for name in ("lung", "mediastinum", "abdomen", "bone", "brain", "liver"):
        assert name in WINDOW_PRESETS
    assert resolve_window("Lung") == (-600.0, 1500.0)
    assert resolve_window("-600,1500") == resolve_window((-600, 1500))
    with pytest.raises(MedsightError, match="did you mean 'bone'"):
        resolve_window("bones")
    with pytest.raises(MedsightError, match="positive width"):
        resolve_window("40,0")


def test_apply_window_and_plan_scheme() -> None:
    hu = np.array([-2000.0, -1350.0, -600.0, 150.0, 3000.0, np.nan])
    np.testing.assert_allclose(apply_window(hu, "lung"), [0, 0, 0.5, 1, 1, 0])
    out = normalize_channel(hu, Normalization(scheme="window:40,400"))
    np.testing.assert_allclose(out, [0, 0, 0, 0.775, 1, 0.4])  # NaN -> 0 HU first, as for every scheme


def test_overlay_takes_a_preset() -> None:
    grey = to_display(np.array([[-160.0, 40.0, 240.0]]), window="abdomen")
    assert grey[0, :, 0].tolist() == [0, 128, 255]


def test_convert_with_a_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_image(Image(np.array([[[[-1400.0, -600.0], [150.0, 500.0]]]], dtype=np.float32)), tmp_path / "v.nii.gz")
    assert main(["convert", str(src), str(tmp_path / "o.png"), "--window", "lung"]) == 0
    assert "mapped" in capsys.readouterr().out
    assert read_image(tmp_path / "o.png").array[0].tolist() == [[0, 128], [255, 255]]
