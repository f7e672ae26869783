"""Partial labels: structures not annotated per case, from dataset.json, absent_structures.json (medsight dataset
import) and OpenKBP's contoured_structures.json, carried into the fingerprint and the plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsight.data.dataset import load_dataset
from medsight.data.fingerprint import compute_fingerprint
from medsight.data.synthetic import write_phantom_dataset
from medsight.errors import MedsightError
from medsight.tasks.segmentation.plan import make_plan

SHAPE = (12, 16, 14)


def _dataset(tmp_path: Path, **extra: object) -> Path:
    root = write_phantom_dataset(tmp_path / "ds", num_cases=3, shape=SHAPE, seed=0)
    spec = json.loads((root / "dataset.json").read_text())
    spec.update(extra)
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def test_fully_annotated_dataset_has_no_absent_structures(tmp_path: Path) -> None:
    spec = load_dataset(_dataset(tmp_path))
    assert spec.absent == {} and spec.absent_label_values == {}


def test_dataset_json_key_by_name_or_value(tmp_path: Path) -> None:
    spec = load_dataset(_dataset(tmp_path, absent_structures={"case_000": ["structure_2"], "case_001": [1, 2]}))
    assert spec.absent == {"case_000": ("structure_2",), "case_001": ("structure_1", "structure_2")}
    assert spec.absent_values("case_000") == (2,) and spec.absent_values("case_002") == ()
    assert spec.absent_label_values == {"case_000": [2], "case_001": [1, 2]}


def test_absent_and_contoured_files_beside_dataset_json(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    (root / "absent_structures.json").write_text(json.dumps({"cases": {"case_000": ["structure_1"]}}))
    # OpenKBP style: what was contoured; names that are not labels (a PTV) are ignored; unknown cases are ignored
    (root / "contoured_structures.json").write_text(json.dumps({"cases": {
        "case_001": ["structure_1", "PTV70"], "case_002": ["structure_1", "structure_2"], "case_999": []}}))
    spec = load_dataset(root)
    assert spec.absent == {"case_000": ("structure_1",), "case_001": ("structure_2",)}


def test_unknown_absent_name_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(MedsightError, match="Expected absent structures among the labels.*'Oesophagus' for case "
                                            "case_000 in .*dataset.json"):
        load_dataset(_dataset(tmp_path, absent_structures={"case_000": ["Oesophagus"]}))
    with pytest.raises(MedsightError, match="object of case id -> list"):
        load_dataset(_dataset(tmp_path / "b", absent_structures=["structure_1"]))


def test_fingerprint_and_plan_carry_absent_labels(tmp_path: Path) -> None:
    spec = load_dataset(_dataset(tmp_path, absent_structures={"case_001": ["structure_2"]}))
    fp = compute_fingerprint(spec)
    assert fp.absent_labels == {"case_001": [2]} and fp.annotated_cases(2) == 2 and fp.annotated_cases(1) == 3
    assert type(fp).from_dict(fp.to_dict()).absent_labels == {"case_001": [2]}
    plan = make_plan(fp, dataset=spec.name, labels=spec.labels, base_filters=4)
    assert plan.absent_labels == {"case_001": [2]} and plan.absent_of("case_001") == [2] and plan.absent_of("x") == []
    assert type(plan).from_dict(plan.to_dict()).absent_labels == {"case_001": [2]}
    assert ("partial labels", "1 case(s) lack some labels (unlabelled, not background)") in plan.table()


def test_openkbp_contoured_structures(shared_data: Path) -> None:
    root = shared_data / "openkbp_hn_ct"
    if not root.is_dir():
        pytest.skip("openkbp_hn_ct not in shared data")
    spec = load_dataset(root)
    counts = {name: sum(name in v for v in spec.absent.values()) for name in spec.foreground_labels}
    assert len(spec.cases) == 120
    # SOURCE.md / issue 22: Esophagus contoured in 45 of 120 cases, Larynx in 64, Mandible in 80
    assert (counts["Esophagus"], counts["Larynx"], counts["Mandible"]) == (75, 56, 40)
    assert spec.absent_values("openkbp_pt_1") == (5, 6)
