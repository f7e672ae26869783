"""Datasets with a mask and a class per case (either may be missing: partial supervision).

Masks come from any segmentation layout :func:`medsight.data.dataset.load_dataset` reads (image + mask folders,
nnU-Net, MSD ``dataset.json``); classes come from:

1. the file name, when ``label_from_name`` is given (a regular expression whose first group is the class; the
   default :data:`NAME_PATTERN` takes the last ``_`` token: Montgomery's ``MCUCXR_0387_1.png`` -> ``1``);
2. otherwise ``dataset.json`` (MSD style), when it has a ``"classes"`` list: a ``"class"`` per ``training`` entry (a
   name of the list or its index); an entry without ``"label"`` (mask) is a class-only case;
3. otherwise ``labels.csv`` in the dataset folder (beside ``images/``, or beside ``dataset.json``): ``file,label``
   (also ``image``/``path`` and ``class``/``target``); ``file`` is the image's name, stem or path relative to the
   CSV; an empty label means "no class for this case".

Cases with neither a mask nor a class are left out (with a warning).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

from medsight.core.atomic import write_text
from medsight.data.dataset import DatasetSpec, file_stem, load_dataset
from medsight.errors import user_error

log = logging.getLogger(__name__)

#: Default ``--label-from-name`` pattern: the last ``_``-separated token of the file stem.
NAME_PATTERN = r"_([^_]+)$"
LABELS_CSV = "labels.csv"
_FILE_COLUMNS = ("file", "image", "path", "filename")
_LABEL_COLUMNS = ("label", "class", "target")


@dataclass(frozen=True)
class MultitaskDataset:
    """A segmentation spec whose cases may lack masks, plus a class per case where one is known.

    Attributes:
        spec: the dataset (``CaseRef.label`` is ``None`` for cases without a mask file).
        class_names: the classes, in index order.
        classes: case id -> class index, for the cases with a class.
        class_source: where the classes came from (``dataset.json``, ``labels.csv``, ``file names``).
    """

    spec: DatasetSpec
    class_names: list[str]
    classes: dict[str, int]
    class_source: str

    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self.spec.cases]

    def has_mask(self, case_id: str) -> bool:
        return self.spec.case(case_id).label is not None

    def supervision(self) -> dict[str, int]:
        """How many cases have both labels, only a mask, only a class."""
        mask = {c.case_id for c in self.spec.cases if c.label is not None}
        cls = set(self.classes)
        return {"both": len(mask & cls), "mask_only": len(mask - cls), "class_only": len(cls - mask)}


def _sorted_names(names: set[str]) -> list[str]:
    return sorted(names, key=int) if names and all(re.fullmatch(r"-?\d+", n) for n in names) else sorted(names)


def _from_json(spec: DatasetSpec) -> tuple[list[str], dict[str, str]] | None:
    """Classes of an MSD-style dataset.json (``"classes"`` + ``"class"`` per training entry), or None."""
    if spec.spec_file is None:
        return None
    data = json.loads(spec.spec_file.read_text(encoding="utf-8"))
    if "classes" not in data:
        return None
    names = data["classes"]
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, (str, int)) for n in names):
        raise user_error("'classes' as a list of at least two class names", repr(names)[:60], spec.spec_file,
                         'write e.g. "classes": ["normal", "abnormal"]')
    names = [str(n) for n in names]
    found: dict[str, str] = {}
    for i, entry in enumerate(data.get("training") or []):
        value = entry.get("class") if isinstance(entry, dict) else None
        if value is None or value == "":
            continue
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
            value = names[value]
        if str(value) not in names:
            raise user_error(f"a class among {names} (or its index)", repr(value), spec.spec_file, f"fix training entry {i}")
        found[file_stem(Path(str(entry["image"])))] = str(value)
    return names, found


def _labels_csv(spec: DatasetSpec) -> Path | None:
    path = (spec.root if spec.root.is_dir() else spec.root.parent) / LABELS_CSV
    return path if path.is_file() else None


def _from_csv(spec: DatasetSpec, path: Path) -> dict[str, str]:
    """case id -> class name from a ``file,label`` CSV (empty labels skipped)."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = {f.strip().lower(): f for f in (reader.fieldnames or [])}
        rows = list(reader)
    fcol = next((fields[c] for c in _FILE_COLUMNS if c in fields), None)
    lcol = next((fields[c] for c in _LABEL_COLUMNS if c in fields), None)
    if fcol is None or lcol is None:
        raise user_error("CSV columns 'file' and 'label'", f"columns {sorted(fields)}", path, "rename the header row to file,label")
    by_key: dict[str, str] = {}
    for ref in spec.cases:
        img = ref.images[0]
        for key in (img.name, file_stem(img), ref.case_id, str(img.resolve())):
            by_key.setdefault(key, ref.case_id)
    out: dict[str, str] = {}
    unknown = []
    for line, row in enumerate(rows, start=2):
        name, label = str(row.get(fcol) or "").strip(), str(row.get(lcol) or "").strip()
        if not name:
            raise user_error("a file name in every row", f"an empty one on line {line}", path, "fill it in or drop the row")
        cid = by_key.get(name) or by_key.get(Path(name).name) or by_key.get(str((path.parent / name).resolve()))
        if cid is None:
            unknown.append(name)
        elif label:
            out[cid] = label
    if unknown:
        log.warning("%d row(s) of %s name no image of the dataset (e.g. %s)", len(unknown), path, unknown[0])
    return out


def _from_names(spec: DatasetSpec, pattern: str) -> dict[str, str]:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise user_error("a valid regular expression for --label-from-name", repr(pattern), None, f"fix it ({exc})") from exc
    out: dict[str, str] = {}
    for ref in spec.cases:
        m = rx.search(file_stem(ref.images[0]))
        if m is None or not (m.group(1) if m.groups() else m.group(0)):
            raise user_error(f"file names matching {pattern!r} (the class is the first group)", ref.images[0].name,
                             spec.root, "rename the files, pass another --label-from-name pattern, or write labels.csv")
        out[ref.case_id] = m.group(1) if m.groups() else m.group(0)
    return out


def load_multitask_dataset(path: str | Path, *, label_from_name: str | None = None) -> MultitaskDataset:
    """Read a dataset with masks and classes (see the module docstring for the sources of each).

    Args:
        path: a dataset folder or ``dataset.json``.
        label_from_name: take the classes from the file names with this pattern instead of a CSV or dataset.json.

    Raises:
        MedsightError: no class source, fewer than two classes, no mask at all, or no case with any label.
    """
    spec = load_dataset(path)
    if spec.task != "segmentation":
        raise user_error("images with masks (an image folder beside a masks/ folder, nnU-Net or MSD layout)",
                         f"a {spec.task} dataset", path, "add the masks; see docs/multitask.md")
    refs = tuple(ref if ref.label is None or ref.label.exists() else replace(ref, label=None) for ref in spec.cases)
    spec = replace(spec, cases=refs)
    declared: list[str] | None = None
    if label_from_name:
        found, source = _from_names(spec, label_from_name), "file names"
    elif (js := _from_json(spec)) is not None:
        (declared, found), source = js, "dataset.json"
    elif (csv_path := _labels_csv(spec)) is not None:
        found, source = _from_csv(spec, csv_path), str(csv_path.name)
    else:
        raise user_error("class labels: labels.csv (file,label) beside the images, 'classes' in dataset.json, or --label-from-name",
                         "none of these", path, "see docs/multitask.md")
    names = declared or _sorted_names(set(found.values()))
    if len(names) < 2:
        raise user_error("at least two classes", names, path, "check the class labels (or the --label-from-name pattern)")
    classes = {cid: names.index(v) for cid, v in found.items()}
    kept = tuple(r for r in spec.cases if r.label is not None or r.case_id in classes)
    if len(kept) < len(spec.cases):
        log.warning("%d case(s) have neither a mask nor a class and are left out", len(spec.cases) - len(kept))
    if not any(r.label is not None for r in kept):
        raise user_error("at least one case with a mask", "none", path, "add a masks/ folder with files named as the images")
    return MultitaskDataset(spec=replace(spec, cases=kept), class_names=names, classes=classes, class_source=source)


def write_labels_csv(dataset: MultitaskDataset, path: str | Path) -> Path:
    """Write the dataset's classes as a ``file,label`` CSV (e.g. to freeze labels taken from file names)."""

    lines = ["file,label"]
    for ref in dataset.spec.cases:
        if ref.case_id in dataset.classes:
            lines.append(f"{ref.images[0].name},{dataset.class_names[dataset.classes[ref.case_id]]}")
    return write_text(path, "\n".join(lines) + "\n")


__all__ = ["LABELS_CSV", "NAME_PATTERN", "MultitaskDataset", "load_multitask_dataset", "write_labels_csv"]
