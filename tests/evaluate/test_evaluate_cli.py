"""``medsight evaluate`` and ``medsight report`` through the real entry point (exit codes, one-line errors)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.cli import app
from medsight.cli.common import parse_labels
from medsight.errors import MedsightError


@pytest.fixture
def main(monkeypatch):
    """``app.main`` with only this command module registered, and the logging setup it changes restored."""
    monkeypatch.setattr(app, "COMMAND_MODULES", ("medsight.cli.evaluate",))
    logger = logging.getLogger("medsight")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield app.main
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture
def folders(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    for i in range(3):
        ref = np.zeros((24, 24), np.uint8)
        ref[4:14, 4 + i: 14 + i] = 255
        pred = np.zeros((24, 24), np.uint8)
        pred[5:15, 4 + i: 14 + i] = 1
        PILImage.fromarray(ref).save(tmp_path / "gt" / f"case{i}.png")
        PILImage.fromarray(pred).save(tmp_path / "pred" / f"case{i}.png")
    return tmp_path


def test_evaluate_prints_table_and_paths(main, folders, capsys):
    rc = main(["evaluate", str(folders / "pred"), str(folders / "gt"), "--out", str(folders / "out")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "foreground (value 1, 3 cases)" in out and "dice" in out and " ± " in out and "[" in out
    assert str(folders / "out" / "per_case.csv") in out and (folders / "out" / "summary.json").is_file()


def test_evaluate_json_and_labels(main, folders, capsys):
    rc = main(["evaluate", str(folders / "pred"), str(folders / "gt"), "--labels", "vessel=1", "--json",
               "--no-distances"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and list(summary["labels"]) == ["vessel"]
    assert summary["labels"]["vessel"]["metrics"]["dice"]["mean"] == pytest.approx(0.9)
    assert "hd95" not in summary["metrics"]


def test_evaluate_missing_folder_is_one_line_exit_2(main, tmp_path, capsys):
    rc = main(["evaluate", str(tmp_path / "nope"), str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("medsight: error: Expected an existing prediction folder")
    assert "\n" not in err and "Traceback" not in err


def test_evaluate_bad_labels_exit_2(main, folders, capsys):
    rc = main(["evaluate", str(folders / "pred"), str(folders / "gt"), "--labels", "vessel"])
    assert rc == 2 and "name=value" in capsys.readouterr().err


def test_report_prints_path_and_fails_cleanly(main, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    rc = main(["report", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("medsight: error: Expected an existing run folder") and "\n" not in err


def test_parse_labels():
    assert parse_labels("liver=1, tumour=2") == {"liver": 1, "tumour": 2}
    assert parse_labels(None) is None
    with pytest.raises(MedsightError):
        parse_labels("liver=one")
