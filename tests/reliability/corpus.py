"""The bad-input corpus: each case builds one broken input and names the commands that must refuse it.

Every case is generated (nothing binary is committed) from small synthetic data, except where a real file's format
matters. A command template may use ``{p}`` (the broken input), ``{out}`` (an output path that must stay unwritten),
``{run3d}`` / ``{run2d}`` (tiny trained runs), ``{ref3d}`` (a folder of good 3D label maps) and ``{ref2d}``.

``python tests/reliability/corpus.py`` prints the corpus as the Markdown table in docs/reliability.md.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, also when run as a script
from _factory import load_dicom_factory  # noqa: E402

IMAGE3D = ("info {p}", "convert {p} {out}/x.nii.gz", "predict {run3d} {p} {out}")
IMAGE3D_PIPELINE = ("convert {p} {out}/x.nii.gz", "predict {run3d} {p} {out}")
IMAGE2D = ("info {p}", "convert {p} {out}/x.nii.gz", "predict {run2d} {p} {out}")
DATASET = ("plan {p} --out {out}", "train {p} --out {out} --epochs 1 --iterations 1 --base-filters 4")
DATASET_ALL = ("dataset check {p}", *DATASET)
# classification datasets: --base-filters is a segmentation option, refused for them
CLS_DATASET = ("plan {p} --out {out}", "train {p} --out {out} --epochs 1 --iterations 1")
PREDICT3D = ("predict {p} {good3d} {out}",)
EVALUATE = ("evaluate {p} {ref3d} --out {out}",)


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        name: short identifier (the test id).
        what: what is wrong, in words (for docs/reliability.md).
        build: writes the input under the folder it is given and returns its path.
        commands: command templates (see the module docstring) that must exit 2 with one line naming the input.
        names: the text the error must contain (default: the input's file name).
    """

    name: str
    what: str
    build: Callable[[Path], Path]
    commands: tuple[str, ...]
    names: Callable[[Path], str] | None = None


# ------------------------------------------------------------------------------------------------ builders: DICOM
def _series(root: Path, **kw: object) -> Path:
    load_dicom_factory().write_series(root / "series", **kw)
    return root / "series"


def _truncated_dicom(root: Path) -> Path:
    f = load_dicom_factory()
    w = f.write_series(root / "series", n_slices=4)
    f.truncate(w.paths[2], drop_bytes=20)
    return root / "series"


def _truncated_single(root: Path) -> Path:
    f = load_dicom_factory()
    w = f.write_series(root / "one", n_slices=1)
    f.truncate(w.paths[0], drop_bytes=20)
    return w.paths[0]


def _no_pixels(root: Path) -> Path:
    f = load_dicom_factory()
    w = f.write_series(root / "series", n_slices=4)
    f.strip_pixel_data(w.paths[1])
    return root / "series"


def _two_series(root: Path) -> Path:
    f = load_dicom_factory()
    f.write_series(root / "mixed", prefix="a", n_slices=3)
    f.write_series(root / "mixed", prefix="b", n_slices=4, modality="CT")
    return root / "mixed"


def _mixed_sizes(root: Path) -> Path:
    f = load_dicom_factory()
    w = f.write_series(root / "series", n_slices=3)
    f.write_series(root / "other", n_slices=1, rows=10, columns=10, series_uid=w.series_uid, study_uid=w.study_uid,
                   origin=(-20.0, -30.0, 17.5), prefix="z")
    shutil.move(str(next((root / "other").iterdir())), root / "series" / "z_extra.dcm")
    return root / "series"


def _mixed_orientations(root: Path) -> Path:
    f = load_dicom_factory()
    w = f.write_series(root / "series", n_slices=3)
    f.write_series(root / "series", n_slices=2, series_uid=w.series_uid, study_uid=w.study_uid, prefix="z",
                   orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    return root / "series"


def _only_text_files(root: Path) -> Path:
    d = root / "notdicom"
    d.mkdir()
    (d / "README.txt").write_text("exported by a viewer\n")
    (d / "IM0001").write_bytes(b"\x00" * 300)
    return d


# ------------------------------------------------------------------------------------------------ builders: NIfTI
def _nifti(path: Path, array: np.ndarray, spacing: tuple[float, ...] = (1.0, 1.0, 1.0)) -> Path:
    import nibabel as nib

    affine = np.diag([*spacing, 1.0])
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def _vol(seed: int = 0, shape: tuple[int, ...] = (20, 24, 22)) -> np.ndarray:
    return np.random.default_rng(seed).normal(100, 20, shape).astype(np.float32)


def _nan_nifti(root: Path) -> Path:
    a = _vol()
    a[3, 4, 5] = np.nan
    return _nifti(root / "nan.nii.gz", a)


def _inf_nifti(root: Path) -> Path:
    a = _vol()
    a[1, 2, 3] = np.inf
    return _nifti(root / "inf.nii.gz", a)


def _four_d(root: Path) -> Path:
    return _nifti(root / "dwi.nii.gz", np.stack([_vol(0), _vol(1)], axis=-1))


def _two_d_nifti(root: Path) -> Path:
    return _nifti(root / "flat.nii.gz", _vol(shape=(32, 32)))


def _truncated_nifti(root: Path) -> Path:
    p = _nifti(root / "cut.nii.gz", _vol())
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return p


def _not_gzip(root: Path) -> Path:
    p = root / "garbage.nii.gz"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return p


def _huge_header(root: Path) -> Path:
    """A valid NIfTI-1 header claiming 30000^3 float32 voxels (108 TB; NIfTI-1 sizes stop at 32767), few data bytes."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((30000, 30000, 30000))
    hdr.set_data_dtype(np.float32)
    hdr.set_qform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    p = root / "huge.nii"
    p.write_bytes(hdr.binaryblock + b"\x00" * 4 + b"\x00" * 1024)
    return p


def _huge_mha(root: Path) -> Path:
    """A MetaImage header claiming 100000^3 float32 voxels (4 PB) followed by a few bytes."""
    p = root / "huge.mha"
    header = ("ObjectType = Image\nNDims = 3\nDimSize = 100000 100000 100000\nElementSpacing = 1 1 1\n"
              "ElementType = MET_FLOAT\nElementDataFile = LOCAL\n")
    p.write_bytes(header.encode() + b"\x00" * 1024)
    return p


def _huge_vox_offset(root: Path) -> Path:
    """Found by fuzzing: a .nii.gz whose vox_offset claims 1.5e12 bytes (used to exhaust memory while skipping)."""
    import nibabel as nib

    raw = bytearray(nib.Nifti1Image(_vol(), np.eye(4)).to_bytes())
    raw[108:112] = struct.pack("<f", 1.5e12)
    p = root / "offset.nii.gz"
    p.write_bytes(gzip.compress(bytes(raw)))
    return p


def _zero_byte(suffix: str) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        p = root / f"empty{suffix}"
        p.touch()
        return p

    return build


def _text_png(root: Path) -> Path:
    p = root / "scan.png"
    p.write_text("this is not an image\n" * 20)
    return p


def _truncated_png(root: Path) -> Path:
    from PIL import Image

    p = root / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:200])
    return p


def _png_bomb(root: Path) -> Path:
    """A PNG whose header claims 100000 x 100000 pixels (a decompression bomb), with a tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    p = root / "bomb.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    return p


def _missing(root: Path) -> Path:
    return root / "does_not_exist.nii.gz"


def _empty_folder(root: Path) -> Path:
    d = root / "empty"
    d.mkdir()
    return d


# ------------------------------------------------------------------------------------------------ builders: datasets
def _phantom(root: Path, *, two_d: bool = False, n: int = 4) -> Path:
    from medsight.data.synthetic import write_phantom_dataset

    if two_d:
        return write_phantom_dataset(root / "ds", num_cases=n, shape=(48, 48), seed=3, file_ending=".png")
    return write_phantom_dataset(root / "ds", num_cases=n, shape=(16, 20, 18), seed=3)


def _label_shape_mismatch(root: Path) -> Path:
    ds = _phantom(root)
    lab = ds / "labelsTr" / "case_001.nii.gz"
    _nifti(lab, np.zeros((16, 20, 17), np.uint8).T)
    return ds


def _edit_case_file(root: Path, rel: str, edit: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> Path:
    """A phantom dataset with the NIfTI file ``rel`` rewritten as ``edit(voxels, affine) -> (voxels, affine)``."""
    import nibabel as nib

    ds = _phantom(root)
    img = nib.load(str(ds / rel))
    arr, affine = edit(np.asarray(img.dataobj).copy(), img.affine.copy())
    nib.save(nib.Nifti1Image(arr, affine), str(ds / rel))
    return ds


def _shifted(arr: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    affine[:3, 3] += 25.0
    return arr, affine


def _with_value(arr: np.ndarray, index: tuple[int, ...], value: float) -> np.ndarray:
    arr = arr.astype(np.float32) if np.isnan(value) else arr
    arr[index] = value
    return arr


def _label_affine_mismatch(root: Path) -> Path:
    return _edit_case_file(root, "labelsTr/case_002.nii.gz", _shifted)


def _undeclared_label(root: Path) -> Path:
    return _edit_case_file(root, "labelsTr/case_000.nii.gz", lambda a, m: (_with_value(a, (0, 0, 0), 7), m))


def _float_label(root: Path) -> Path:
    return _edit_case_file(root, "labelsTr/case_003.nii.gz", lambda a, m: (a.astype(np.float32) * 0.5, m))


def _nan_in_dataset(root: Path) -> Path:
    return _edit_case_file(root, "imagesTr/case_001_0000.nii.gz", lambda a, m: (_with_value(a, (2, 2, 2), np.nan), m))


def _four_d_in_dataset(root: Path) -> Path:
    return _edit_case_file(root, "imagesTr/case_002_0000.nii.gz", lambda a, m: (np.stack([a, a], axis=-1), m))


def _all_zero_labels(root: Path) -> Path:
    import nibabel as nib

    ds = _phantom(root)
    for lab in (ds / "labelsTr").iterdir():
        img = nib.load(str(lab))
        nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), str(lab))
    return ds


def _missing_label(root: Path) -> Path:
    ds = _phantom(root)
    (ds / "labelsTr" / "case_002.nii.gz").unlink()
    return ds


def _rgb_mask(root: Path) -> Path:
    from PIL import Image

    ds = _phantom(root, two_d=True)
    lab = ds / "labelsTr" / "case_001.png"
    arr = np.asarray(Image.open(lab))
    Image.fromarray(np.stack([arr * 100, arr * 50, arr], axis=-1).astype(np.uint8)).save(lab)
    return ds


def _edit_spec(root: Path, edit: Callable[[dict], object]) -> Path:
    ds = _phantom(root)
    spec = json.loads((ds / "dataset.json").read_text())
    edit(spec)
    (ds / "dataset.json").write_text(json.dumps(spec))
    return ds


def _spec_wrong_types(root: Path) -> Path:
    return _edit_spec(root, lambda s: s.update(labels=["background", "structure_1"], numTraining="four"))


def _spec_missing_keys(root: Path) -> Path:
    return _edit_spec(root, lambda s: (s.pop("labels"), s.pop("channel_names")))


def _spec_bad_json(root: Path) -> Path:
    ds = _phantom(root)
    (ds / "dataset.json").write_text('{"name": "ds", "labels": {"background": 0,')
    return ds


def _spec_label_not_int(root: Path) -> Path:
    return _edit_spec(root, lambda s: s["labels"].update(structure_1="one"))


def _csv(root: Path, header: str, rows: list[str]) -> Path:
    from PIL import Image

    d = root / "csvds"
    (d / "img").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((32, 32), 40 * i, np.uint8)).save(d / "img" / f"x{i}.png")
    p = d / "labels.csv"
    p.write_text("\n".join([header, *rows]) + "\n")
    return p


def _csv_missing_columns(root: Path) -> Path:
    return _csv(root, "name,age", [f"img/x{i}.png,{50 + i}" for i in range(6)])


def _csv_missing_files(root: Path) -> Path:
    return _csv(root, "image,label", [f"img/y{i}.png,{i % 2}" for i in range(6)])


def _csv_empty_labels(root: Path) -> Path:
    return _csv(root, "image,label", [f"img/x{i}.png," for i in range(6)])


def _npz(root: Path, **arrays: np.ndarray) -> Path:
    p = root / "data.npz"
    np.savez(p, **arrays)
    return p


def _npz_missing_arrays(root: Path) -> Path:
    return _npz(root, x=np.zeros((4, 28, 28), np.uint8))


def _npz_pickled(root: Path) -> Path:
    obj = np.empty(3, dtype=object)
    obj[:] = [{"a": 1}, {"b": 2}, {"c": 3}]
    return _npz(root, train_images=obj, train_labels=np.zeros((3, 1), np.uint8))


def _npz_mismatched(root: Path) -> Path:
    return _npz(root, train_images=np.zeros((10, 28, 28), np.uint8), train_labels=np.zeros((7, 1), np.uint8),
                val_images=np.zeros((4, 28, 28), np.uint8), val_labels=np.zeros((4, 1), np.uint8))


# ------------------------------------------------------------------------------------------------ builders: run folders
def _copy_run(root: Path, run: Path) -> Path:
    dest = root / "run"
    shutil.copytree(run, dest)
    return dest


def _run_without_plan(run3d: Path) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        dest = _copy_run(root, run3d)
        (dest / "plans.json").unlink()
        return dest

    return build


def _run_bad_plan(run3d: Path) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        dest = _copy_run(root, run3d)
        (dest / "plans.json").write_text("{ not json")
        return dest

    return build


def _run_without_checkpoints(run3d: Path) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        dest = _copy_run(root, run3d)
        for ck in dest.glob("fold_*/checkpoint_*.pt"):
            ck.unlink()
        return dest

    return build


def _run_truncated_checkpoint(run3d: Path) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        dest = _copy_run(root, run3d)
        ck = dest / "fold_0" / "checkpoint_best.pt"
        ck.write_bytes(ck.read_bytes()[:1000])
        return dest

    return build


# ------------------------------------------------------------------------------------------------ builders: evaluation
def _pred_shape_mismatch(root: Path) -> Path:
    d = root / "pred"
    d.mkdir()
    _nifti(d / "case_000.nii.gz", np.zeros((10, 10, 10), np.uint8))
    return d


def _pred_unreadable(root: Path) -> Path:
    d = root / "pred"
    d.mkdir()
    (d / "case_000.nii.gz").write_text("not a volume")
    return d


def _gz_text(root: Path) -> Path:
    p = root / "text.nii.gz"
    p.write_bytes(gzip.compress(b"hello, this is a text file and not a NIfTI header" * 10))
    return p


def corpus(run3d: Path | None = None) -> list[Case]:
    """Every case; the run-folder cases need ``run3d`` (a tiny trained 3D run) to copy."""
    cases = [
        Case("dicom_truncated_slice", "a series with one file cut short (interrupted copy)", _truncated_dicom, IMAGE3D_PIPELINE),
        Case("dicom_truncated_file", "a single truncated DICOM file", _truncated_single, IMAGE3D),
        Case("dicom_no_pixel_data", "a series with a slice that has no PixelData", _no_pixels, IMAGE3D),
        # one missing slice, uneven spacing and gantry tilt are reconstructed onto a regular grid (issue 19,
        # tests/io/test_irregular_series.py); a gap wider than 2 x the median step still needs --allow-irregular
        Case("dicom_missing_slices", "a series with two missing slices (a gap of three steps, too wide to bridge)",
             lambda r: _series(r, offsets=[0.0, 2.0, 4.0, 10.0, 12.0, 14.0]), IMAGE3D_PIPELINE),
        Case("dicom_two_series", "two series in one folder, no --series", _two_series, IMAGE3D_PIPELINE),
        Case("dicom_mixed_orientations", "a series whose slices have two orientations", _mixed_orientations, IMAGE3D),
        Case("dicom_duplicate_positions", "two slices at one position (a 4D series or duplicates)",
             lambda r: _series(r, offsets=[0.0, 2.0, 2.0, 4.0]), IMAGE3D),
        Case("dicom_mixed_sizes", "a series whose slices differ in size", _mixed_sizes, IMAGE3D),
        Case("dicom_folder_without_dicom", "a folder of non-DICOM files", _only_text_files, IMAGE3D),
        Case("nifti_nan", "a NIfTI volume with NaN voxels", _nan_nifti, IMAGE3D_PIPELINE),
        Case("nifti_inf", "a NIfTI volume with Inf voxels", _inf_nifti, IMAGE3D_PIPELINE),
        Case("nifti_4d", "a 4D NIfTI where a 3D volume is expected", _four_d, ("predict {run3d} {p} {out}",)),
        Case("nifti_2d_for_3d_model", "a 2D image given to a 3D model", _two_d_nifti, ("predict {run3d} {p} {out}",)),
        Case("nifti_truncated", "a .nii.gz cut in half", _truncated_nifti, IMAGE3D),
        Case("nifti_not_gzip", "random bytes named .nii.gz", _not_gzip, IMAGE3D),
        Case("nifti_gzip_text", "a gzip of text named .nii.gz", _gz_text, IMAGE3D),
        Case("nifti_huge_vox_offset", "a .nii.gz whose voxel offset points 1.5 TB ahead (found by fuzzing)",
             _huge_vox_offset, IMAGE3D),
        Case("nifti_huge_header", "a NIfTI header claiming 30000^3 voxels (refused before allocating)", _huge_header, IMAGE3D),
        Case("mha_huge_header", "a MetaImage header claiming 100000^3 voxels (refused before allocating)", _huge_mha, IMAGE3D),
        Case("zero_byte_nifti", "a zero-byte .nii.gz", _zero_byte(".nii.gz"), IMAGE3D),
        Case("zero_byte_png", "a zero-byte .png", _zero_byte(".png"), IMAGE2D),
        Case("png_is_text", "a text file named .png", _text_png, IMAGE2D),
        Case("png_truncated", "a PNG cut after 200 bytes", _truncated_png, IMAGE2D),
        Case("png_decompression_bomb", "a PNG header claiming 100000 x 100000 pixels", _png_bomb, IMAGE2D),
        Case("path_missing", "a path that does not exist", _missing, (*IMAGE3D, *DATASET_ALL, "evaluate {p} {ref3d}")),
        Case("folder_empty", "an empty folder", _empty_folder, (*IMAGE3D, *DATASET_ALL, "evaluate {p} {ref3d} --out {out}")),
        Case("dataset_label_shape", "an image/label pair with different shapes", _label_shape_mismatch, DATASET,
             lambda p: "case_001"),
        Case("dataset_label_affine", "an image/label pair with different affines (origin 25 mm apart)",
             _label_affine_mismatch, DATASET, lambda p: "case_002"),
        Case("dataset_undeclared_label", "a label value (7) not declared in dataset.json", _undeclared_label, DATASET,
             lambda p: "case_000"),
        Case("dataset_all_labels_zero", "every label map is empty (nothing to learn)", _all_zero_labels, DATASET,
             lambda p: "labelsTr"),
        Case("dataset_float_label", "a label map holding fractional values", _float_label, DATASET, lambda p: "case_003"),
        Case("dataset_nan_image", "a training image with a NaN voxel", _nan_in_dataset, DATASET, lambda p: "case_001"),
        Case("dataset_4d_image", "a 4D training image in a 3D dataset", _four_d_in_dataset, DATASET, lambda p: "case_002"),
        Case("dataset_missing_label", "an image without its label map", _missing_label, DATASET, lambda p: "case_002"),
        Case("dataset_rgb_mask", "an RGB mask in a 2D dataset", _rgb_mask, DATASET, lambda p: "case_001"),
        Case("dataset_json_wrong_types", "dataset.json with a list for labels and text for numTraining", _spec_wrong_types,
             DATASET_ALL, lambda p: "dataset.json"),
        Case("dataset_json_missing_keys", "dataset.json without labels and channel_names", _spec_missing_keys, DATASET_ALL,
             lambda p: "dataset.json"),
        Case("dataset_json_invalid", "dataset.json that is not valid JSON", _spec_bad_json, DATASET_ALL,
             lambda p: "dataset.json"),
        Case("dataset_json_label_not_int", "dataset.json label value that is not an integer", _spec_label_not_int,
             DATASET_ALL, lambda p: "dataset.json"),
        Case("csv_missing_columns", "a CSV without image/label columns", _csv_missing_columns, DATASET_ALL),
        Case("csv_missing_files", "a CSV naming images that do not exist", _csv_missing_files, CLS_DATASET),
        Case("csv_empty_labels", "a CSV whose label column is empty", _csv_empty_labels, DATASET),
        Case("npz_missing_arrays", "an NPZ without train_images/train_labels", _npz_missing_arrays, DATASET_ALL),
        Case("npz_object_arrays", "an NPZ holding pickled Python objects (refused, never unpickled)", _npz_pickled, DATASET_ALL),
        Case("npz_count_mismatch", "an NPZ with 10 images and 7 labels", _npz_mismatched, DATASET_ALL),
        Case("evaluate_shape_mismatch", "a prediction whose shape differs from its reference", _pred_shape_mismatch, EVALUATE,
             lambda p: "case_000"),
        Case("evaluate_unreadable_prediction", "a prediction file that is text", _pred_unreadable, EVALUATE,
             lambda p: "case_000"),
    ]
    if run3d is not None:
        cases += [
            Case("run_without_plan", "a run folder without plans.json", _run_without_plan(run3d), PREDICT3D,
                 lambda p: "plans.json"),
            Case("run_bad_plan", "a run folder whose plans.json is not JSON", _run_bad_plan(run3d), PREDICT3D,
                 lambda p: "plans.json"),
            Case("run_without_checkpoints", "a run folder without checkpoints", _run_without_checkpoints(run3d), PREDICT3D),
            Case("run_truncated_checkpoint", "a checkpoint cut short", _run_truncated_checkpoint(run3d), PREDICT3D,
                 lambda p: "checkpoint_best.pt"),
        ]
    return cases


def markdown_table() -> str:
    """The corpus as a Markdown table (for docs/reliability.md)."""
    rows = ["| case | what is wrong | refused by |", "|---|---|---|"]
    for c in corpus(Path("RUN")):
        cmds = ", ".join(sorted({t.split()[0] if t.split()[0] != "dataset" else "dataset check" for t in c.commands}))
        rows.append(f"| `{c.name}` | {c.what} | {cmds} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
