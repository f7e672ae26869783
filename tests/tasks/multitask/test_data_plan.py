"""Multi-task datasets (labels.csv, dataset.json classes, file names, partial labels) and the multi-task plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medsight.errors import MedsightError
from medsight.tasks import load_run_plan as load_plan
from medsight.tasks.multitask.data import NAME_PATTERN, load_multitask_dataset, write_labels_csv
from medsight.tasks.multitask.pipeline import plan_multitask
from medsight.tasks.multitask.plan import MultitaskPlan
from medsight.tasks.multitask.synthetic import write_multitask_dataset


@pytest.fixture
def partial2d(tmp_path: Path) -> Path:
    """6 PNG phantoms: case 2 has no mask, case 3 an empty label."""
    return write_multitask_dataset(tmp_path / "mt", num_cases=6, shape=(40, 40), without_mask=(2,), without_class=(3,))


def test_labels_csv_with_partial_labels(partial2d: Path) -> None:
    data = load_multitask_dataset(partial2d)
    assert data.class_names == ["lesion", "normal"] and data.class_source == "labels.csv"
    assert data.classes == {"case_000": 1, "case_001": 0, "case_002": 1, "case_004": 1, "case_005": 0}
    assert not data.has_mask("case_002") and data.has_mask("case_003")
    assert data.supervision() == {"both": 4, "mask_only": 1, "class_only": 1}
    assert data.spec.binary_masks and data.spec.labels == {"background": 0, "foreground": 1}


def test_labels_from_file_names(tmp_path: Path, partial2d: Path) -> None:
    root = tmp_path / "named"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
        for f in sorted((partial2d / sub).iterdir()):
            i = int(f.stem.split("_")[1])
            shutil.copyfile(f, root / sub / f"MCUCXR_{i:04d}_{i % 2}.png")
    data = load_multitask_dataset(root, label_from_name=NAME_PATTERN)
    assert data.class_names == ["0", "1"] and data.class_source == "file names"
    assert data.classes["MCUCXR_0003_1"] == 1 and data.classes["MCUCXR_0004_0"] == 0
    csv_path = write_labels_csv(data, root / "labels.csv")
    assert load_multitask_dataset(root).classes == data.classes
    assert csv_path.read_text().splitlines()[:2] == ["file,label", "MCUCXR_0000_0.png,0"]
    with pytest.raises(MedsightError, match="first group"):
        load_multitask_dataset(root, label_from_name=r"_(x)$")


def test_dataset_json_classes(tmp_path: Path, partial2d: Path) -> None:
    entries = [{"image": "images/case_000.png", "label": "masks/case_000.png", "class": "normal"},
               {"image": "images/case_001.png", "label": "masks/case_001.png", "class": 1},
               {"image": "images/case_002.png", "class": "tb"},
               {"image": "images/case_003.png", "label": "masks/case_003.png"}]
    spec = {"name": "mt", "labels": {"0": "background", "1": "lung"}, "classes": ["normal", "tb"], "training": entries}
    (partial2d / "dataset.json").write_text(json.dumps(spec))
    data = load_multitask_dataset(partial2d / "dataset.json")
    assert data.class_names == ["normal", "tb"] and data.class_source == "dataset.json"
    assert data.classes == {"case_000": 0, "case_001": 1, "case_002": 1}
    assert data.supervision() == {"both": 2, "mask_only": 1, "class_only": 1}
    spec["training"][0]["class"] = "flu"
    (partial2d / "dataset.json").write_text(json.dumps(spec))
    with pytest.raises(MedsightError, match="fix training entry 0"):
        load_multitask_dataset(partial2d / "dataset.json")


def test_missing_class_source_is_a_user_error(partial2d: Path) -> None:
    (partial2d / "labels.csv").unlink()
    with pytest.raises(MedsightError, match="labels.csv .*--label-from-name"):
        load_multitask_dataset(partial2d)


def test_plan_round_trip_and_dispatch(partial2d: Path, tmp_path: Path) -> None:
    plan = plan_multitask(partial2d, tmp_path / "run", base_filters=4, max_size=20, heatmap=True, loss_weighting="fixed")
    assert plan.task == "multitask" and plan.tasks == ["segmentation", "classification", "heatmap"]
    assert plan.patch_size == [20, 20] and plan.target_spacing == [2.0, 2.0]  # 40 px coarsened to the 20 px cap
    assert plan.class_counts == [2, 3] and plan.supervision == {"both": 4, "mask_only": 1, "class_only": 1}
    again = load_plan(tmp_path / "run" / "plans.json")
    assert isinstance(again, MultitaskPlan) and again == plan
    assert plan.segmentation_plan().patch_size == plan.patch_size and plan.classification_view().num_classes == 2
    data = json.loads((tmp_path / "run" / "plans.json").read_text())
    data["loss_weighting"] = "learned"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(MedsightError, match="loss_weighting, got 'learned'"):
        load_plan(tmp_path / "bad.json")
