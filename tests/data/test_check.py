"""check_dataset: every planted problem is reported once, naming the exact file; clean datasets pass."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medsight.core.image import Image
from medsight.data.check import KINDS, CheckReport, Problem, check_dataset, nifti_integrity
from medsight.data.dataset import CaseRef, DatasetSpec, load_dataset
from medsight.data.spec_json import infer_spec_json
from medsight.errors import MedsightError
from medsight.io import read_image, write_image


def _errors(report: CheckReport) -> dict[str, str]:
    """{file: kind} of the errors."""
    return {p.file: p.kind for p in report.errors}


def _vol(shape: tuple[int, ...] = (4, 5, 6), value: float = 1.0, **geometry: object) -> Image:
    return Image(np.full((1, *shape), value, np.float32), **geometry)  # type: ignore[arg-type]


def _lab(shape: tuple[int, ...] = (4, 5, 6), value: int = 1, **geometry: object) -> Image:
    arr = np.zeros((1, *shape), np.uint8)
    arr[(0, *(s // 2 for s in shape))] = value
    return Image(arr, **geometry)  # type: ignore[arg-type]


def _pairs(root: Path, items: dict[str, tuple[Image, Image | None]], suffix: str = ".nii.gz") -> Path:
    for name, (img, lab) in items.items():
        write_image(img, root / "images" / f"{name}{suffix}")
        if lab is not None:
            write_image(lab, root / "labels" / f"{name}{suffix}")
    return root


# ---------------------------------------------------------------------------------------------- clean data
def test_hippocampus_subset_is_clean(hippocampus_subset: Path) -> None:
    calls: list[tuple[int, int]] = []
    report = check_dataset(load_dataset(hippocampus_subset), progress=lambda d, t: calls.append((d, t)))
    assert report.ok and not report.problems
    assert report.num_cases == 12 and report.num_test_cases == 0
    assert calls == [(i, 12) for i in range(1, 13)]
    assert report.counts["dim_3d"] == 12 and report.counts["labels_read"] == 12
    assert {report.counts[f"label_{v}"] for v in (0, 1, 2)} == {12}
    assert report.ranges["spacing_mm"] == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]


def test_phantom_datasets_pass(phantom3d_dataset: Path, phantom2d_dataset: Path) -> None:
    for root, dims in ((phantom3d_dataset, "dim_3d"), (phantom2d_dataset, "dim_2d")):
        report = check_dataset(load_dataset(root))
        assert report.ok and not report.problems, report.problems
        assert report.layout == "nnunet" and report.counts[dims] == 6


def test_npz_dataset_passes(shared_data: Path) -> None:
    report = check_dataset(load_dataset(shared_data / "breastmnist" / "BreastMNIST.npz"))
    assert report.ok and report.num_cases == 624 and report.num_test_cases == 156
    assert report.counts["label_0"] == 147 + 21 + 42 and report.counts["label_1"] == 399 + 57 + 114


def test_drive_with_fov_passes(shared_data: Path) -> None:
    report = check_dataset(load_dataset(shared_data / "drive" / "training"))
    assert report.ok and not report.problems
    assert report.counts["channels_3"] == 20


# ---------------------------------------------------------------------------------------------- acceptance
def test_broken_hippocampus_names_exactly_the_three_files(broken_hippocampus: tuple[Path, dict[str, Path]]) -> None:
    root, planted = broken_hippocampus
    report = check_dataset(load_dataset(root))
    assert not report.ok
    assert _errors(report) == {str(path): kind for kind, path in planted.items()}
    assert not report.warnings
    undeclared = next(p for p in report.problems if p.kind == "undeclared_labels")
    assert "[7]" in undeclared.message
    assert report.problem_counts() == {"unreadable": 1, "undeclared_labels": 1, "shape_mismatch": 1}


@pytest.mark.slow
def test_broken_hippocampus_all_260_cases(hippocampus_copy: Callable[..., tuple[Path, dict[str, Path]]]) -> None:
    root, planted = hippocampus_copy(None, broken=True)
    report = check_dataset(load_dataset(root))
    assert report.num_cases == 260
    assert _errors(report) == {str(path): kind for kind, path in planted.items()}


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_nifti_integrity_finds_truncation_and_nan(tmp_path: Path, suffix: str, dtype: str) -> None:
    """SimpleITK reads both without an error (zero-filled), so the check looks at the file itself."""
    arr = np.random.default_rng(0).normal(0, 100, size=(1, 12, 10, 10)).astype(dtype)
    path = write_image(Image(arr), tmp_path / f"v{suffix}")
    assert nifti_integrity(path) == ("", 0)
    if dtype == "float32":
        arr[0, 1, 2, 3], arr[0, 4, 5, 6] = np.nan, -np.inf
        write_image(Image(arr), path)
        assert nifti_integrity(path) == ("", 2)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in nifti_integrity(path)[0]
    assert nifti_integrity(tmp_path / "not_nifti.png") == ("", 0)


# ---------------------------------------------------------------------------------------------- planted problems
def test_folder_problems_each_name_their_file(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    nan = _vol()
    nan.array[0, 0, 0, 0] = np.nan
    _pairs(root, {
        "a": (_vol(), _lab()),
        "b": (_vol(), _lab()),
        "empty": (_vol(), _lab(value=0)),
        "nan": (nan, _lab()),
        "geom": (_vol(), _lab(origin=(0.0, 0.0, 5.0))),
        "nolabel": (_vol(), None),
        "twod": (_vol((5, 6)), _lab((5, 6))),
        "frac": (_vol(), _lab().with_array(np.full((1, 4, 5, 6), 0.5, np.float32))),
    })
    write_image(_lab(), root / "labels" / "orphan.nii.gz")
    (root / "labels" / "notes.txt").write_text("ignored: not an image file")
    report = check_dataset(load_dataset(root))
    img, lab = root / "images", root / "labels"
    assert _errors(report) == {
        str(img / "nan.nii.gz"): "non_finite",
        str(lab / "geom.nii.gz"): "geometry_mismatch",
        str(img / "nolabel.nii.gz"): "missing_pair",
        str(lab / "orphan.nii.gz"): "missing_pair",
        str(img / "twod.nii.gz"): "mixed_dimensionality",
        str(lab / "frac.nii.gz"): "invalid_label",
    }
    assert [(p.file, p.kind) for p in report.warnings] == [(str(lab / "empty.nii.gz"), "empty_label")]
    geom = next(p for p in report.problems if p.kind == "geometry_mismatch")
    assert "origin" in geom.message and geom.case_id == "geom"
    assert all(p.message and p.severity == KINDS[p.kind] for p in report.problems)


def test_empty_label_alone_is_only_a_warning(tmp_path: Path) -> None:
    root = _pairs(tmp_path / "ds", {"a": (_vol(), _lab()), "b": (_vol(), _lab(value=0))})
    report = check_dataset(load_dataset(root))
    assert report.ok and len(report.warnings) == 1 and report.warnings[0].kind == "empty_label"


def test_raster_pairs_compare_shape_only(tmp_path: Path) -> None:
    gray = Image(np.full((1, 16, 12), 90, np.uint8))
    mask = Image(np.zeros((1, 16, 12), np.uint8))
    mask.array[0, 4:8, 4:8] = 255
    root = _pairs(tmp_path / "ds", {
        "a": (gray, mask),
        "b": (gray, mask),
        "c": (gray, mask),
        "rgb": (Image(np.zeros((3, 16, 12), np.uint8)), mask),
        "small": (gray, Image(np.zeros((1, 8, 12), np.uint8))),
        "colourmask": (gray, Image(np.stack([mask.array[0], mask.array[0] * 0, mask.array[0]]))),
    }, suffix=".png")
    (root / "images" / "bad.png").write_text("not a png")
    write_image(mask, root / "labels" / "bad.png")
    report = check_dataset(load_dataset(root))
    img, lab = root / "images", root / "labels"
    assert _errors(report) == {
        str(img / "rgb.png"): "mixed_channels",
        str(lab / "small.png"): "shape_mismatch",
        str(lab / "colourmask.png"): "invalid_label",
        str(img / "bad.png"): "unreadable",
    }
    assert "geometry_mismatch" not in report.problem_counts()


def test_multiclass_png_labels_read_as_binary_are_reported(tmp_path: Path) -> None:
    """Undeclared {0, 1, 2} PNG label maps are inferred as binary 0/255 masks, which would erase them."""
    lab = np.zeros((1, 16, 16), np.uint8)
    lab[0, 2:6, 2:6], lab[0, 8:12, 8:12] = 1, 2
    gray = Image(np.full((1, 16, 16), 90, np.uint8))
    root = _pairs(tmp_path / "ds", {f"c{i}": (gray, Image(lab)) for i in range(3)}, suffix=".png")
    spec = load_dataset(root)
    report = check_dataset(spec)
    if spec.binary_masks:  # the loader guessed binary: each label file is reported, naming its values
        assert _errors(report) == {str(root / "labels" / f"c{i}.png"): "invalid_label" for i in range(3)}
        assert "[0, 1, 2]" in report.errors[0].message
    else:
        assert report.ok
    (root / "dataset.json").write_text(json.dumps(infer_spec_json(spec, labels={"background": 0, "a": 1, "b": 2})))
    declared = check_dataset(load_dataset(root))
    assert declared.ok and declared.counts["label_2"] == 3


def test_nnunet_missing_channel_and_orphan_label(phantom3d_dataset: Path) -> None:
    root = phantom3d_dataset
    spec_file = root / "dataset.json"
    meta = json.loads(spec_file.read_text())
    meta["channel_names"] = {"0": "MR", "1": "MR2"}
    spec_file.write_text(json.dumps(meta))
    for f in sorted((root / "imagesTr").glob("*_0000.nii.gz"))[1:]:
        write_image(read_image(f), f.with_name(f.name.replace("_0000", "_0001")))
    write_image(read_image(root / "labelsTr" / "case_000.nii.gz"), root / "labelsTr" / "case_999.nii.gz")
    (root / "imagesTr" / "stray.nii.gz").write_bytes((root / "labelsTr" / "case_000.nii.gz").read_bytes())
    report = check_dataset(load_dataset(root))
    assert _errors(report) == {
        str(root / "imagesTr" / "case_000_0001.nii.gz"): "missing_channel",
        str(root / "labelsTr" / "case_999.nii.gz"): "missing_pair",
    }
    assert [(p.file, p.kind) for p in report.warnings] == [(str(root / "imagesTr" / "stray.nii.gz"), "ignored_file")]
    missing = next(p for p in report.problems if p.kind == "missing_channel")
    assert "MR2" in missing.message and missing.case_id == "case_000"


def test_nnunet_channel_geometry_and_declared_channel_count(phantom3d_dataset: Path) -> None:
    root = phantom3d_dataset
    moved = root / "imagesTr" / "case_001_0000.nii.gz"
    img = read_image(moved)
    write_image(img.with_array(img.array, spacing=(2.0, 1.0, 1.0)), moved)
    report = check_dataset(load_dataset(root))
    assert _errors(report) == {str(root / "labelsTr" / "case_001.nii.gz"): "geometry_mismatch"}
    assert "spacing" in report.errors[0].message


def test_classification_class_out_of_range(tmp_path: Path) -> None:
    files = []
    for i in range(3):
        files.append(write_image(Image(np.zeros((1, 8, 8), np.uint8)), tmp_path / f"{i}.png"))
    spec = DatasetSpec(
        name="cls", root=tmp_path, layout="csv", task="classification", channel_names=(),
        labels={"no": 0, "yes": 1},
        cases=(CaseRef("0", images=(files[0],), class_label=0), CaseRef("1", images=(files[1],), class_label=5),
               CaseRef("2", images=(files[2],), class_label=(1, 1, 0))),
    )
    report = check_dataset(spec)
    assert _errors(report) == {str(files[1]): "class_out_of_range", str(files[2]): "class_out_of_range"}
    assert report.counts["label_0"] == 1


def test_one_problem_per_file_and_kind(tmp_path: Path) -> None:
    f = write_image(Image(np.zeros((1, 8, 8), np.uint8)), tmp_path / "same.png")
    missing = tmp_path / "gone.png"
    spec = DatasetSpec(
        name="dup", root=tmp_path, layout="csv", task="classification", channel_names=(), labels={"a": 0},
        cases=tuple(CaseRef(f"c{i}", images=(f if i < 2 else missing,), class_label=9) for i in range(4)),
    )
    report = check_dataset(spec)
    assert sorted((p.file, p.kind) for p in report.problems) == [
        (str(missing), "class_out_of_range"), (str(missing), "missing_file"), (str(f), "class_out_of_range"),
    ]


# ---------------------------------------------------------------------------------------------- report
def test_report_to_dict_is_json(broken_hippocampus: tuple[Path, dict[str, Path]]) -> None:
    root, _ = broken_hippocampus
    data = json.loads(json.dumps(check_dataset(load_dataset(root)).to_dict()))
    assert data["ok"] is False and data["num_errors"] == 3 and data["num_cases"] == 12
    assert {p["kind"] for p in data["problems"]} == {"unreadable", "undeclared_labels", "shape_mismatch"}
    assert set(data["problems"][0]) == {"file", "case_id", "kind", "message", "severity"}


def test_problem_severity_is_validated() -> None:
    with pytest.raises(ValueError, match="severity"):
        Problem("f", "c", "unreadable", "m", severity="fatal")


# ---------------------------------------------------------------------------------------------- infer_spec_json
def test_infer_spec_json_drive_round_trip(shared_data: Path, tmp_path: Path) -> None:
    spec = load_dataset(shared_data / "drive" / "training")
    data = infer_spec_json(spec)
    assert data["layout"] == "folders" and data["root"] == str((shared_data / "drive" / "training").resolve())
    assert (data["images_dir"], data["labels_dir"], data["roi_dir"]) == ("images", "1st_manual", "mask")
    assert (data["image_pattern"], data["label_pattern"]) == ("{id}_training", "{id}_manual1")
    assert data["roi_pattern"] == "{id}_training_mask"
    assert data["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    (tmp_path / "dataset.json").write_text(json.dumps(data))
    back = load_dataset(tmp_path / "dataset.json")
    def files(s):  # the spec stores the resolved root; compare resolved paths (../shared may be a symlink)
        return [tuple(Path(f).resolve() for f in r.files) for r in s.cases]

    assert files(back) == files(spec)
    assert back.labels == spec.labels and back.labels_declared and back.binary_masks


def test_infer_spec_json_same_stems_and_labels(hippocampus_subset: Path) -> None:
    spec = load_dataset(hippocampus_subset)
    data = infer_spec_json(spec, labels={"background": 0, "anterior": 1, "posterior": 2})
    assert data["root"] == str(hippocampus_subset.resolve())
    assert (data["images_dir"], data["labels_dir"]) == ("images", "labels")
    assert "image_pattern" not in data and "roi_dir" not in data
    assert data["labels"] == {"background": 0, "anterior": 1, "posterior": 2}
    assert data["channel_names"] == {"0": "image"}


def test_infer_spec_json_refuses_other_layouts(phantom3d_dataset: Path) -> None:
    with pytest.raises(MedsightError, match="folder of image/label pairs"):
        infer_spec_json(load_dataset(phantom3d_dataset))
