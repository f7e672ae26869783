"""MedMNIST-style ``.npz`` datasets: ``{split}_images`` / ``{split}_labels`` arrays, headers checked before any
array is loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.core.guard import check_allocation
from medsight.data.spec import CaseRef, DatasetSpec
from medsight.errors import user_error


def npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an ``.npz`` from the ``.npy`` headers alone (no data is read)."""
    import zipfile

    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if not name.endswith(".npy"):
                    continue
                with zf.open(name) as fh:
                    major, _ = np.lib.format.read_magic(fh)
                    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(fh)
                out[name[:-4]] = (tuple(int(n) for n in shape), np.dtype(dtype))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        if isinstance(exc, PermissionError):
            raise
        raise user_error("a readable .npz archive", f"a file NumPy cannot open ({exc})", path,
                         "re-download it or re-save it with numpy.savez") from exc
    return out


def check_npz_arrays(path: Path, headers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """Numeric arrays only (object arrays would need unpickling: refused) and one label per image in every split."""
    for name, (_, dtype) in headers.items():
        if dtype.kind not in "biuf":
            raise user_error("numeric arrays", f"array {name!r} of dtype {dtype} (pickled Python objects are never loaded)",
                             path, "re-save the archive from numeric NumPy arrays")
    for name, (shape, _) in headers.items():
        if not name.endswith("_labels"):
            continue
        images = name[: -len("_labels")] + "_images"
        if images not in headers:
            raise user_error(f"an array {images!r} beside {name!r}", f"keys {sorted(headers)}", path, "use the MedMNIST layout")
        n_img = headers[images][0][0] if headers[images][0] else 0
        if not shape or n_img != shape[0]:
            raise user_error(f"one label per image in {images!r}", f"{n_img} images and {shape[0] if shape else 0} labels",
                             path, "re-save the archive with matching arrays")

        check_allocation(int(np.prod(headers[images][0], dtype=np.float64)) * headers[images][1].itemsize, path,
                         "image array")


def load_npz_spec(path: Path) -> DatasetSpec:
    check_npz_arrays(path, npz_headers(path))
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            shapes = {k: z[k].shape for k in z.files if k.endswith("_labels")}
            labs = {k: np.asarray(z[k]).reshape(len(z[k]), -1) for k in z.files if k.endswith("_labels")}
    except (OSError, ValueError) as exc:
        raise user_error("a MedMNIST .npz archive", f"an unreadable file ({exc})", path, "re-download the file") from exc
    if "train_images" not in keys or "train_labels" not in keys:
        raise user_error("NPZ keys train_images and train_labels (MedMNIST layout)", f"keys {sorted(keys)}", path, "use the MedMNIST file")
    all_labels = np.concatenate(list(labs.values()))
    multilabel = all_labels.shape[1] > 1
    n_classes = all_labels.shape[1] if multilabel else int(all_labels.max()) + 1
    labels = {str(i): i for i in range(n_classes)}

    def refs(split: str) -> list[CaseRef]:
        if f"{split}_labels" not in labs:
            return []
        lab = labs[f"{split}_labels"]
        return [
            CaseRef(case_id=f"{split}_{i:05d}", npz=(path, split, i),
                    class_label=tuple(int(x) for x in lab[i]) if multilabel else int(lab[i, 0]))
            for i in range(shapes[f"{split}_labels"][0])
        ]

    train, val, test = refs("train"), refs("val"), refs("test")
    split = {"train": [c.case_id for c in train], "val": [c.case_id for c in val]} if val else None
    return DatasetSpec(name=path.stem.lower(), root=path, layout="npz", task="classification", channel_names=(),
                       labels=labels, cases=tuple(train + val), test_cases=tuple(test), predefined_split=split,
                       extra={"multilabel": multilabel})


def npz_image(path: Path, split: str, index: int) -> np.ndarray:
    key = (str(path), split)
    if key not in _NPZ_CACHE:
        with np.load(path, allow_pickle=False) as z:
            _NPZ_CACHE[key] = np.asarray(z[f"{split}_images"])
    arr = _NPZ_CACHE[key][index]
    return arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0) if arr.ndim == 3 and arr.shape[-1] in (3, 4) else arr[None]


# ---------------------------------------------------------------------------------------------- loading
_NPZ_CACHE: dict[tuple[str, str], np.ndarray] = {}
