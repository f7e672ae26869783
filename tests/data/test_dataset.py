"""Dataset specs: the real datasets in ../shared/data and every supported layout written in tmp."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medsight.core.image import Image
from medsight.data.dataset import CaseRef, DatasetSpec, load_case, load_dataset
from medsight.errors import MedsightError
from medsight.io import write_image

HIPPO = "msd_task04_hippocampus_cropped"


def _label_values(spec: DatasetSpec, ref: CaseRef) -> set[int]:
    case = load_case(spec, ref)
    assert case.label_array is not None
    assert case.label_map is not None and case.label_map.shape == case.image.shape
    return set(np.unique(case.label_array).tolist())


# ---------------------------------------------------------------------------------------------- real data
def test_hippocampus(shared_data: Path) -> None:
    spec = load_dataset(shared_data / HIPPO)
    assert (spec.layout, spec.task) == ("folders", "segmentation")
    assert len(spec.cases) == 260 and not spec.test_cases
    assert sorted(spec.labels.values()) == [0, 1, 2] and spec.labels["background"] == 0
    assert not spec.binary_masks
    assert all(ref.label is not None and ref.label.name == ref.images[0].name for ref in spec.cases)
    for ref in spec.cases[::37]:
        case = load_case(spec, ref)
        assert case.image.ndim == 3 and case.image.num_channels == 1
        assert np.allclose(case.image.spacing, 1.0)
        assert _label_values(spec, ref) == {0, 1, 2}


def test_drive_training_has_fov_roi(shared_data: Path) -> None:
    spec = load_dataset(shared_data / "drive" / "training")
    assert len(spec.cases) == 20 and spec.task == "segmentation"
    assert spec.labels == {"background": 0, "foreground": 1} and spec.binary_masks
    assert all(ref.roi is not None and ref.roi.parent.name == "mask" for ref in spec.cases)
    assert all(ref.label is not None and ref.label.parent.name == "1st_manual" for ref in spec.cases)
    ref = spec.cases[0]
    assert ref.label is not None and ref.label.name.split("_")[0] == ref.images[0].name.split("_")[0]
    case = load_case(spec, ref)
    assert case.image.array.shape == (3, 584, 565) and case.channel_names == ("R", "G", "B")
    assert case.mask is not None and case.mask.shape == case.image.shape
    assert set(np.unique(case.mask.array).tolist()) == {0, 1}
    assert _label_values(spec, ref) == {0, 1}


def test_drive_test(shared_data: Path) -> None:
    spec = load_dataset(shared_data / "drive" / "test")
    assert len(spec.cases) == 20
    assert all(ref.label is not None and ref.label.parent.name == "1st_manual" for ref in spec.cases)
    assert _label_values(spec, spec.cases[-1]) == {0, 1}


def test_montgomery(shared_data: Path) -> None:
    spec = load_dataset(shared_data / "montgomery_cxr_lung_512")
    assert len(spec.cases) == 138 and spec.labels == {"background": 0, "foreground": 1}
    case = load_case(spec, spec.cases[0])
    assert case.image.array.shape == (1, 512, 512)
    assert _label_values(spec, spec.cases[0]) == {0, 1}  # anti-aliased edges thresholded


def test_isbi_em(shared_data: Path) -> None:
    spec = load_dataset(shared_data / "isbi2012_em_membrane" / "train")
    assert len(spec.cases) == 30
    assert _label_values(spec, spec.cases[0]) == {0, 1}


def test_breastmnist_predefined_split(shared_data: Path) -> None:
    spec = load_dataset(shared_data / "breastmnist" / "BreastMNIST.npz")
    assert (spec.layout, spec.task) == ("npz", "classification")
    assert len(spec.cases) == 546 + 78 and len(spec.test_cases) == 156
    assert spec.predefined_split is not None
    assert len(spec.predefined_split["train"]) == 546 and len(spec.predefined_split["val"]) == 78
    assert set(spec.predefined_split["train"]).isdisjoint(spec.predefined_split["val"])
    assert sorted(spec.labels.values()) == [0, 1]
    case = load_case(spec, spec.test_cases[0])
    assert case.image.array.shape == (1, 28, 28) and case.image.array.dtype == np.uint8
    assert case.label in (0, 1)
    assert _class_counts(spec.cases[:546]) == {0: 147, 1: 399}


def _class_counts(refs: tuple[CaseRef, ...]) -> dict[int, int]:
    out: dict[int, int] = {}
    for ref in refs:
        assert isinstance(ref.class_label, int)
        out[ref.class_label] = out.get(ref.class_label, 0) + 1
    return out


def test_pneumoniamnist(shared_data: Path) -> None:
    spec = load_dataset(shared_data / "pneumoniamnist" / "pneumoniamnist.npz")
    assert len(spec.cases) == 3882 + 524 and len(spec.test_cases) == 624
    assert spec.predefined_split is not None and len(spec.predefined_split["val"]) == 524
    assert _class_counts(spec.test_cases) == {0: 234, 1: 390}
    assert load_case(spec, spec.cases[-1]).image.shape == (28, 28)


# ---------------------------------------------------------------------------------------------- spec files
def _vol(value: float, shape: tuple[int, ...] = (4, 5, 6), dtype: str = "float32") -> Image:
    return Image(np.full((1, *shape), value, dtype=dtype), spacing=(2.0, 1.0, 1.0), origin=(1.0, 2.0, 3.0))


def _label(shape: tuple[int, ...] = (4, 5, 6)) -> Image:
    arr = np.zeros((1, *shape), np.uint8)
    arr[0, 1:3, 1:3, 1:3] = 1
    return Image(arr, spacing=(2.0, 1.0, 1.0), origin=(1.0, 2.0, 3.0))


def test_nnunet_dataset_json(tmp_path: Path) -> None:
    root = tmp_path / "Dataset001_Test"
    for cid in ("a", "b"):
        write_image(_vol(1.0), root / "imagesTr" / f"{cid}_0000.nii.gz")
        write_image(_vol(2.0), root / "imagesTr" / f"{cid}_0001.nii.gz")
        write_image(_label(), root / "labelsTr" / f"{cid}.nii.gz")
    write_image(_vol(3.0), root / "imagesTs" / "c_0000.nii.gz")
    write_image(_vol(4.0), root / "imagesTs" / "c_0001.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1", "1": "FLAIR"}, "labels": {"background": 0, "lesion": 1},
        "numTraining": 2, "file_ending": ".nii.gz", "name": "Test",
    }))
    spec = load_dataset(root)
    assert (spec.layout, spec.name, spec.channel_names) == ("nnunet", "Test", ("T1", "FLAIR"))
    assert [r.case_id for r in spec.cases] == ["a", "b"] and [r.case_id for r in spec.test_cases] == ["c"]
    assert spec.spec_file == root / "dataset.json"
    case = load_case(spec, spec.cases[1])
    assert case.image.num_channels == 2 and case.channel_names == ("T1", "FLAIR")
    assert case.image.array[:, 0, 0, 0].tolist() == [1.0, 2.0]
    assert case.label_map is not None and case.label_map.same_geometry(case.image)
    test_case = load_case(spec, spec.test_cases[0])
    assert test_case.label is None and test_case.image.array[:, 0, 0, 0].tolist() == [3.0, 4.0]
    assert load_dataset(root / "dataset.json").cases == spec.cases


def test_msd_dataset_json(tmp_path: Path) -> None:
    root = tmp_path / "Task09_Test"
    for cid in ("x_001", "x_002"):
        write_image(_vol(5.0), root / "imagesTr" / f"{cid}.nii.gz")
        write_image(_label(), root / "labelsTr" / f"{cid}.nii.gz")
    write_image(_vol(6.0), root / "imagesTs" / "x_003.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "name": "Test", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "organ"},
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in ("x_001", "x_002")],
        "test": ["./imagesTs/x_003.nii.gz"],
    }))
    spec = load_dataset(root / "dataset.json")
    assert (spec.layout, spec.channel_names) == ("msd", ("CT",))
    assert spec.labels == {"background": 0, "organ": 1}
    assert [r.case_id for r in spec.cases] == ["x_001", "x_002"] and len(spec.test_cases) == 1
    case = load_case(spec, spec.cases[0])
    assert case.channel_names == ("CT",)
    assert set(np.unique(case.label_array).tolist()) == {0, 1}  # type: ignore[arg-type]


def test_csv_classification_paths_relative_to_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data" / "img").mkdir(parents=True)
    for i in range(4):
        write_image(Image(np.full((1, 8, 8), 40 * i, np.uint8)), tmp_path / "data" / "img" / f"s{i}.png")
    csv_path = tmp_path / "data" / "labels.csv"
    csv_path.write_text("Image,Label\n" + "".join(f"img/s{i}.png,{'benign' if i % 2 else 'malignant'}\n" for i in range(4)))
    monkeypatch.chdir(tmp_path)  # paths must be relative to the CSV, not to the working folder
    spec = load_dataset(csv_path)
    assert (spec.layout, spec.task) == ("csv", "classification")
    assert spec.labels == {"benign": 0, "malignant": 1}
    assert [r.class_label for r in spec.cases] == [1, 0, 1, 0]
    case = load_case(spec, spec.cases[2])
    assert case.label == 1 and int(case.image.array[0, 0, 0]) == 80


def test_class_folders(tmp_path: Path) -> None:
    for cls, n in (("normal", 3), ("pneumonia", 2)):
        for i in range(n):
            write_image(Image(np.zeros((1, 6, 6), np.uint8)), tmp_path / cls / f"{i}.png")
    spec = load_dataset(tmp_path)
    assert (spec.layout, spec.task) == ("class_folders", "classification")
    assert spec.labels == {"normal": 0, "pneumonia": 1}
    assert len(spec.cases) == 5 and spec.case("pneumonia/1").class_label == 1
    assert load_case(spec, spec.cases[0]).label == 0


@pytest.mark.parametrize(
    "content",
    [
        {"channel_names": {"0": "CT"}, "labels": ["background", "tumour"], "file_ending": ".nii.gz"},
        {"channel_names": ["CT"], "labels": {"background": 0}, "file_ending": ".nii.gz"},
        {"channel_names": {"0": "CT"}, "labels": {"background": 0, "tumour": "one"}, "file_ending": ".nii.gz"},
        {"channel_names": {"0": "CT"}, "labels": {"background": 0}, "file_ending": 7},
        {"labels": {"0": "background"}, "training": "imagesTr/"},
        {"labels": {"background": 0}},
        [1, 2, 3],
        "{not json",
    ],
)
def test_bad_dataset_json_names_the_file(tmp_path: Path, content: object) -> None:
    (tmp_path / "imagesTr").mkdir()
    spec_path = tmp_path / "dataset.json"
    spec_path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(MedsightError) as info:
        load_dataset(tmp_path)
    assert "dataset.json" in str(info.value) and str(info.value).startswith("Expected")


def test_missing_dataset_path_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(MedsightError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")


def test_folder_without_known_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    with pytest.raises(MedsightError, match="image folder"):
        load_dataset(tmp_path)
