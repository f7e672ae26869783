"""The uncertainty section from a hand-written RUN/uncertainty.json (schema of the uncertainty module): measure,
threshold, Spearman, AUROC, cases flagged, the score-vs-Dice scatter; per-case scores and flags in the case
captions; the voxel heat map beside the overlay when fold_K/validation/<case>_uncertainty.nii.gz exists."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

from PIL import Image as PILImage

from medsight.report.html import fmt
from medsight.report.segmentation import write_segmentation_report
from medsight.report.uncertainty import read_uncertainty, uncertainty_section

from .conftest import SyntheticRun, build_run


def _pngs(html: str) -> list[PILImage.Image]:
    return [PILImage.open(io.BytesIO(base64.b64decode(m))) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)]


def test_section_shows_the_validation_of_the_score(tmp_path: Path) -> None:
    r = build_run(tmp_path, uncertainty=True)
    data = json.loads((r.run / "uncertainty.json").read_text())
    flagged = sum(c["review"] for c in data["cases"])
    assert 0 < flagged < len(data["cases"])
    html = uncertainty_section(r.run)
    assert html is not None
    for text in ("mean voxel entropy", "review threshold (score above)", "Spearman (score vs Dice)", "AUROC (failed cases)",
                 f"{flagged} of {len(data['cases'])}", f"{flagged} of {len(data['cases'])} cases are above the threshold 0.3",
                 "Dice below 0.7"):
        assert text in html, text
    scatter = _pngs(html)
    assert len(scatter) == 1 and scatter[0].size[0] > 300  # the score-vs-Dice plot
    worst = max((c for c in data["cases"] if c["review"]), key=lambda c: c["score"])
    assert f"<td>{worst['case']}</td>" in html


def test_report_places_the_section_and_marks_the_cases(tmp_path: Path) -> None:
    r = build_run(tmp_path, uncertainty=True)
    html = write_segmentation_report(r.run, images=r.images, references=r.references).read_text()
    assert html.index("Worst and best validation cases") < html.index("Uncertainty: which predictions to check") \
        < html.index("<h2>Training</h2>")
    data = {c["case"]: c for c in json.loads((r.run / "uncertainty.json").read_text())["cases"]}
    worst = min(r.case_dice, key=lambda c: r.case_dice[c])
    assert f"worst: {worst} — Dice {fmt(r.case_dice[worst])}; fold {data[worst]['fold']}; uncertainty " \
           f"{fmt(data[worst]['score'])}" in html
    assert '<span class="flag">flagged for review</span>' in html and "(not flagged)" in html


def test_heat_map_beside_the_overlay_when_the_fold_wrote_one(tmp_path: Path) -> None:
    plain = build_run(tmp_path / "a")
    with_heat = build_run(tmp_path / "b", heat=True)
    widths = []
    for r in (plain, with_heat):
        html = write_segmentation_report(r.run, images=r.images, references=r.references).read_text()
        section = html[html.index("Worst and best validation cases"):html.index("<h2>Training</h2>")]
        widths.append([p.size for p in _pngs(section)])
        assert ("Right panel: voxel uncertainty" in section) is (r is with_heat)
    assert len(widths[0]) == len(widths[1]) == 6
    for (w0, h0), (w1, h1) in zip(*widths):
        assert h1 == h0 and w1 > 2 * w0  # overlay | gap | heat map


def test_absent_or_malformed_files(synthetic_run: SyntheticRun) -> None:
    run = synthetic_run.run
    assert uncertainty_section(run) is None and read_uncertainty(run) == (None, "not available")
    html = write_segmentation_report(run).read_text()
    assert "Uncertainty" not in html
    (run / "uncertainty.json").write_text(json.dumps({"measure": "entropy", "cases": []}))
    section = uncertainty_section(run)
    assert section is not None and "no numeric &#x27;threshold&#x27;" in section
    (run / "uncertainty.json").write_text("{broken")
    assert "could not be read" in (uncertainty_section(run) or "")
    # cases without numbers are dropped, a missing review flag follows the threshold
    (run / "uncertainty.json").write_text(json.dumps({"threshold": 0.5, "cases": [
        {"case": "a", "score": 0.7, "dice": 0.4}, {"case": "b", "score": "x", "dice": 0.9},
        {"case": "c", "score": 0.1, "dice": 0.9, "review": False}]}))
    data, _ = read_uncertainty(run)
    assert data is not None and [(c["case"], c["review"]) for c in data["cases"]] == [("a", True), ("c", False)]
    assert data["auroc"] is None and "1 of 2" in (uncertainty_section(run) or "")


def test_optional_fields_of_the_file_are_shown(synthetic_run: SyntheticRun) -> None:
    """Fields beyond the schema that the writer may add: how the case score is made and the rule behind the goal."""
    run = synthetic_run.run
    (run / "uncertainty.json").write_text(json.dumps({
        "measure": "entropy", "case_score": "U / (U + F)", "goal": {"dice_below": 0.74, "rule": "0.9 x median Dice"},
        "threshold": 0.5, "spearman": -0.4, "auroc": None, "n_failed": 0,
        "cases": [{"case": "a", "fold": "0", "score": 0.4, "dice": 0.8, "review": False}]}))
    html = uncertainty_section(run) or ""
    assert "<td>case score</td><td>U / (U + F)</td>" in html and "0.74 (0.9 x median Dice)" in html
    assert "AUROC not defined" in html and "0 of 1" in html
