"""A hospital DICOM export -> an nnU-Net v2 training dataset (``medsight dataset import DICOM_ROOT OUT``).

:func:`import_dicom_dataset` scans the export (:mod:`medsight.data.dicom_scan`: DICOMDIRs, studies, series, each
SEG and RTSTRUCT paired with its image series through the referenced series UID), maps the structure names to
labels (:mod:`medsight.data.structure_names`: the built-in table or the user's ``--mapping``), reads each paired
image series and its label objects onto the series' grid (``io.read_image``, ``io.dicom_seg.read_dicom_seg``,
``io.rtstruct.read_rtstruct``) and writes, into OUT:

* ``dataset.json`` (nnU-Net v2: ``channel_names``, ``labels`` with background 0, ``numTraining``,
  ``file_ending`` ``.nii.gz``), ``imagesTr/case_NNNN_0000.nii.gz``, ``labelsTr/case_NNNN.nii.gz``;
* ``cases.csv``: case id -> StudyInstanceUID, SeriesInstanceUID, modality, the label objects used (no names,
  no patient IDs: the case ids are anonymous);
* ``absent_structures.json`` (``{"cases": {case: [labels it lacks]}}``) and ``contoured_structures.json``
  (``{"cases": {case: [labels it has]}}``, the shape of ``../shared/data/openkbp_hn_ct``'s file): a structure a
  case lacks was not contoured, which training should treat as unlabelled rather than background. They are files
  beside ``dataset.json`` and not a ``training`` list inside it, because a ``training`` list makes readers
  (medsight's included) take the dataset for an MSD one;
* ``label_mapping.json``: the structure -> label table used, with the names it left out, to edit and pass back;
* ``import_report.csv``: one row per object (image series, SEG, RTSTRUCT, left-out file or series): decision and
  reason, structures found and what they mapped to.

Rules: one case per image series that has at least one mapped structure with voxels; series of other
modalities than the dataset's (the most common among the labelled series, or ``modality=``) are left out. Without
``--mapping`` the labels are the built-in ones the export contains, numbered 1, 2, ... in table order; with it,
every label of the file with its own value (so imports of several exports agree). When two objects give one series
the same label, the newer one (content or structure set date) wins; where two labels overlap, the lower value wins
(as in OpenKBP). OUT is built in a temporary folder beside it and renamed at the end: an existing non-empty OUT is
refused unless ``force``, and then replaced only once the new dataset is complete, and only if it is a dataset
(holds a ``dataset.json``: ``force`` never deletes other files).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight import __version__
from medsight.core.atomic import write_text
from medsight.core.image import Image
from medsight.data.dicom_scan import (
    IMAGE,
    LABEL_KINDS,
    SEG,
    DicomObject,
    ImageSeries,
    LabelPairing,
    export_folder,
    pair_objects,
    relative_path,
    scan_export,
)
from medsight.data.structure_names import LabelEntry, StructureMapping, builtin_mapping, load_mapping
from medsight.errors import MedsightError, user_error
from medsight.io import read_image, write_image
from medsight.io.dicom_seg import read_dicom_seg, segment_names
from medsight.io.rtstruct import read_rtstruct

logger = logging.getLogger(__name__)

FILE_ENDING = ".nii.gz"
REPORT_COLUMNS = ("study_uid", "series_uid", "kind", "path", "files", "decision", "case_id", "reason",
                  "structures_found", "structures_mapped")
UNLABELLED_NOTE = ("structures per case; a label absent from a case was not contoured there (unlabelled), which is "
                   "not the same as background")


@dataclass
class CaseRecord:
    """One written case: ids, where it came from, which labels it has (with voxel counts) and lacks."""

    case_id: str
    study_uid: str
    series_uid: str
    modality: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    objects: list[str]
    voxels: dict[str, int]
    absent: list[str]


@dataclass
class ImportResult:
    """What :func:`import_dicom_dataset` did (also written to OUT)."""

    root: Path
    out: Path
    labels: dict[str, int]
    modality: str
    cases: list[CaseRecord]
    rows: list[dict[str, Any]]
    notes: list[str]
    unmapped: Counter[str] = field(default_factory=Counter)
    mapping_source: str = "built-in"


@dataclass
class _ObjectOutcome:
    """A label object's read result: label map (mapped values) or why not, and name -> label (None: unmapped)."""

    array: np.ndarray | None
    mapped: dict[str, str | None]
    reason: str


def _match(obj: DicomObject, name: str, mapping: StructureMapping) -> str | None:
    label = mapping.match(name)
    if label is None:
        alternative = dict(obj.alternatives).get(name)
        label = mapping.match(alternative) if alternative else None
    return label


def _check_out(root: Path, out: Path, force: bool) -> None:
    root_r, out_r = root.resolve(), out.resolve()
    if out_r == root_r or out_r in root_r.parents:
        raise user_error("an output folder outside the DICOM export", f"{out} which holds the export", out,
                         "choose another OUT")
    if out.exists() and not out.is_dir():
        raise user_error("an output folder", "an existing file", out, "choose another OUT")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise user_error("an empty or new output folder", "a non-empty folder", out,
                             "pass --force to replace it (once the new dataset is complete), or choose another OUT")
        if not (out / "dataset.json").is_file():
            raise user_error("a previous dataset (with dataset.json) to replace with --force",
                             "a non-empty folder without dataset.json", out,
                             "choose another OUT (--force only replaces a dataset, never other files)")


def _series_view(series: ImageSeries, folder: Path) -> Path:
    """A folder holding exactly the series' files (links), so every reader sees one series and nothing else."""
    folder.mkdir(parents=True)
    for i, f in enumerate(series.files):
        link = folder / f"{i:05d}_{f.name}"
        try:
            link.symlink_to(f.resolve())
        except OSError:  # no symlinks on this file system
            shutil.copyfile(f, link)
    return folder


def _lut(values: Mapping[int, int]) -> np.ndarray:
    """Source value -> label value as a lookup table (uint16; unlisted values and 0 -> 0)."""
    lut = np.zeros(max([*values, 0]) + 1, dtype=np.uint16)
    for source, target in values.items():
        lut[source] = target
    return lut


def _apply(lut: np.ndarray, array: np.ndarray) -> np.ndarray:
    """``lut[array]``, values outside the table (and negative ones) read as 0; keeps integer arrays uncopied."""
    arr = np.asarray(array)
    if arr.dtype.kind not in "ui":
        arr = np.rint(arr).astype(np.int64)
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= lut.size):
        arr = np.where((arr < 0) | (arr >= lut.size), 0, arr)
    out = lut[arr]
    return out.astype(np.uint8) if lut.max(initial=0) < 256 else out


def _read_object(obj: DicomObject, view: Path, image: Image, mapping: StructureMapping) -> _ObjectOutcome:
    """Read one SEG/RTSTRUCT onto the image's grid with its structures' label values (0 for unmapped ones)."""
    values = mapping.labels
    mapped = {name: _match(obj, name, mapping) for name in obj.structures}
    wanted = [name for name, label in mapped.items() if label is not None]
    if not wanted:
        return _ObjectOutcome(None, mapped, "none of its structures maps to a label")
    try:
        if obj.kind == SEG:
            names = segment_names(obj.path)
            for name in names:
                mapped.setdefault(name, _match(obj, name, mapping))
            lut = _lut({v: values[label] for n, v in names.items() if (label := mapped.get(n)) is not None})
            labels = read_dicom_seg(obj.path, view, overlaps="last")
        else:
            # the reader paints higher numbers last: number the lowest label value highest, so that it wins overlaps
            order = sorted(wanted, key=lambda n: values[str(mapped[n])], reverse=True)
            numbers = {name: i for i, name in enumerate(order, start=1)}
            labels, used = read_rtstruct(obj.path, view, roi_values=numbers)
            lut = _lut({v: values[label] for n, v in used.items() if (label := mapped.get(n)) is not None})
    except MedsightError as exc:
        return _ObjectOutcome(None, mapped, f"unreadable: {exc}")
    except Exception as exc:  # noqa: BLE001 - a third-party reader's failure on one object must not stop the import
        logger.debug("reading %s failed", obj.path, exc_info=True)
        return _ObjectOutcome(None, mapped, f"unreadable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    if labels.shape != image.shape or not labels.same_geometry(image, atol=1e-2):
        return _ObjectOutcome(None, mapped, f"its label map (shape {labels.shape}) is not on the image grid "
                              f"(shape {image.shape})")
    return _ObjectOutcome(_apply(lut, labels.array[0]), mapped, "")


def _merge(outcomes: list[tuple[DicomObject, _ObjectOutcome]], shape: tuple[int, ...],
           labels: Mapping[str, int]) -> tuple[np.ndarray, dict[str, str], dict[str, int]]:
    """One label map from the objects' maps (newest object first): each label from the first object that has it,
    lower values winning overlaps. Returns (array, label -> path of the object it came from, label -> voxels)."""
    merged = np.zeros(shape, dtype=np.uint16 if max(labels.values(), default=0) > 255 else np.uint8)
    origin: dict[str, str] = {}
    voxels: dict[str, int] = {}
    present = [set(np.unique(o.array).tolist()) if o.array is not None else set() for _, o in outcomes]
    for name, value in sorted(labels.items(), key=lambda kv: kv[1]):
        for (obj, outcome), values in zip(outcomes, present):
            if outcome.array is None or value not in values:
                continue
            mask = outcome.array == value
            if mask.any():
                merged[mask & (merged == 0)] = value
                origin[name] = str(obj.path)
                break
        count = int(np.count_nonzero(merged == value))
        if count:
            voxels[name] = count
    return merged, origin, voxels


def _final_mapping(user: StructureMapping | None, found: list[str], unmapped: list[str],
                   keep_unmapped: bool) -> StructureMapping:
    base = user if user is not None else builtin_mapping().restricted(found, renumber=True)
    return base.extended(unmapped) if keep_unmapped else base


def _mapping_of(mapping: str | Path | StructureMapping | None) -> StructureMapping | None:
    if mapping is None or isinstance(mapping, StructureMapping):
        return mapping
    return load_mapping(mapping)


def import_dicom_dataset(root: str | Path, out: str | Path, *, mapping: str | Path | StructureMapping | None = None,
                         keep_unmapped: bool = False, force: bool = False, modality: str | None = None,
                         name: str | None = None) -> ImportResult:
    """Import a DICOM export (folder tree of studies, with or without DICOMDIR) as an nnU-Net v2 dataset in ``out``.

    Args:
        root: the export folder (or its DICOMDIR).
        out: the dataset folder to write (new, empty, or replaced with ``force``).
        mapping: structure name -> label table (a JSON/YAML file or a :class:`StructureMapping`); default the
            built-in table, restricted to the labels found.
        keep_unmapped: add structures the table does not know as new labels (default: leave them out, reported).
        force: replace a non-empty ``out`` (only once the new dataset is complete).
        modality: import only image series of this modality (default: the most common among the labelled ones).
        name: dataset name in ``dataset.json`` (default: ``out``'s folder name).

    Returns:
        What was written and why each object was or was not used (see :func:`format_summary`).

    Raises:
        MedsightError: no DICOM under ``root``, an unreadable mapping, an ``out`` that would be overwritten, or no
            case at all (one line each; single bad objects never raise, they are reported).
    """
    root, out = export_folder(root), Path(out)
    user = _mapping_of(mapping)
    _check_out(root, out, force)
    scan = scan_export(root, exclude=[out])
    series, pairings = pair_objects(scan)
    notes = list(scan.notes)
    rows: list[dict[str, Any]] = []
    by_object = {p.obj.path: p for p in pairings}
    labelled = [s for s in series.values() if s.labels]
    counts = Counter(s.modality or "?" for s in labelled)
    chosen = modality.upper() if modality else (counts.most_common(1)[0][0] if counts else "")
    candidates = [s for s in labelled if (s.modality or "?").upper() == chosen]
    # pass 1 (headers): structure names -> labels
    current = user if user is not None else builtin_mapping()
    structures = [(o, n) for s in candidates for o in s.labels for n in o.structures]
    found_labels = [lab for o, n in structures if (lab := _match(o, n, current)) is not None]
    final = _final_mapping(user, found_labels, [n for o, n in structures if _match(o, n, current) is None],
                           keep_unmapped)
    unmapped = Counter(n for o, n in structures if _match(o, n, final) is None)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.importing-", dir=out.parent))
    try:
        cases = _write_cases(scan.root, stage, candidates, final, by_object, rows)
        if not cases:
            raise user_error("at least one image series with a SEG/RTSTRUCT whose structures map to labels",
                             _why_none(series, pairings, chosen, unmapped), root,
                             "see the reasons; pass --mapping with synonyms for the names, or --keep-unmapped")
        final = _drop_unused(stage, final, user, cases)
        _other_rows(scan.root, series, pairings, candidates, chosen, rows, scan.objects, final)
        result = ImportResult(root=root, out=out, labels=final.labels, modality=chosen, cases=cases, rows=rows,
                              notes=notes, unmapped=unmapped,
                              mapping_source=final.source if user is not None else "built-in")
        _notes(result, final, user is not None, counts, chosen)
        _write_files(stage, result, final, name or out.name)
        _commit(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return result


def _drop_unused(stage: Path, mapping: StructureMapping, user: StructureMapping | None,
                 cases: list[CaseRecord]) -> StructureMapping:
    """The mapping without the labels no case holds (found in headers only, e.g. of an unreadable object), except
    those of the user's file; the built-in labels are renumbered 1..n and the label files rewritten to match."""
    used = {n for c in cases for n in c.voxels}
    if user is None:
        kept = mapping.restricted(used, renumber=True)
    else:
        extra = [e for e in mapping.entries if e.name not in user.labels and e.name in used]
        top = max(user.labels.values(), default=0)
        kept = StructureMapping.from_entries(
            [*user.entries, *(LabelEntry(e.name, top + i, e.synonyms) for i, e in enumerate(extra, start=1))],
            mapping.source)
    new = kept.labels
    for case in cases:
        case.absent = [n for n in new if n not in case.voxels]
    changes = {v: new.get(n, 0) for n, v in mapping.labels.items() if new.get(n, 0) != v}
    if changes:
        lut = _lut({v: new.get(n, 0) for n, v in mapping.labels.items()})
        for case in cases:
            path = stage / "labelsTr" / f"{case.case_id}{FILE_ENDING}"
            label = read_image(path)
            write_image(label.with_array(_apply(lut, label.array).astype(label.array.dtype)), path)
    return kept


def _why_none(series: dict[str, ImageSeries], pairings: list[LabelPairing], chosen: str,
              unmapped: Counter[str]) -> str:
    paired = sum(p.series_key is not None for p in pairings)
    parts = [f"{len(series)} image series", f"{len(pairings)} SEG/RTSTRUCT object(s), {paired} paired"]
    if chosen:
        parts.append(f"modality {chosen}")
    if unmapped:
        parts.append("unmapped names " + ", ".join(n for n, _ in unmapped.most_common(5)))
    return "none (" + "; ".join(parts) + ")"


def _write_cases(root: Path, stage: Path, candidates: list[ImageSeries], mapping: StructureMapping,
                 by_object: dict[Path, LabelPairing], rows: list[dict[str, Any]]) -> list[CaseRecord]:
    (stage / "imagesTr").mkdir()
    (stage / "labelsTr").mkdir()
    labels = mapping.labels
    cases: list[CaseRecord] = []
    with tempfile.TemporaryDirectory(prefix="medsight-series-") as views:
        for index, entry in enumerate(candidates):
            view = _series_view(entry, Path(views) / f"{index:05d}")
            folder = relative_path(Path(os.path.commonpath([str(f.parent) for f in entry.files])), root)
            row = dict(study_uid=entry.study_uid, series_uid=entry.series_uid or entry.key,
                       kind=f"image series ({entry.modality or '?'})", path=folder, files=len(entry.files))
            try:
                image = read_image(view)
            except Exception as exc:  # noqa: BLE001 - one unreadable series must not stop the import
                reason = str(exc) if isinstance(exc, MedsightError) else f"{type(exc).__name__}: {exc}"
                rows.append({**row, "decision": "skipped", "reason": f"unreadable series: {reason}"})
                rows += [_object_row(root, o, "skipped", "", "its image series is unreadable", {}) for o in entry.labels]
                continue
            outcomes = [(o, _read_object(o, view, image, mapping)) for o in entry.labels]
            merged, origin, voxels = _merge(outcomes, image.shape, labels)
            case_id = f"case_{len(cases) + 1:04d}" if voxels else ""
            for obj, outcome in outcomes:
                used = sorted(n for n, p in origin.items() if p == str(obj.path))
                reason = outcome.reason or by_object[obj.path].reason
                shadowed = sorted(lab for lab in {v for v in outcome.mapped.values() if v} if lab in origin
                                  and origin[lab] != str(obj.path))
                if outcome.array is not None and shadowed:
                    others = sorted({relative_path(Path(origin[lab]), root) for lab in shadowed})
                    reason += f"; {', '.join(shadowed)} taken from {', '.join(others)} (newer, or later by path)"
                elif outcome.array is not None and not used:
                    reason += "; its mapped structures have no voxels"
                decision = "paired" if used and case_id else "skipped"
                rows.append(_object_row(root, obj, decision, case_id if used else "", reason, outcome.mapped))
            if not voxels:
                rows.append({**row, "decision": "skipped",
                             "reason": "its SEG/RTSTRUCT objects gave no mapped structure with voxels (see their rows)"})
                continue
            write_image(_compact(image), stage / "imagesTr" / f"{case_id}_0000{FILE_ENDING}")
            write_image(image.with_array(merged[None]), stage / "labelsTr" / f"{case_id}{FILE_ENDING}")
            rows.append({**row, "decision": "written", "case_id": case_id, "reason": "",
                         "structures_mapped": ";".join(voxels)})
            cases.append(CaseRecord(case_id=case_id, study_uid=entry.study_uid, series_uid=entry.series_uid,
                                    modality=entry.modality, shape=tuple(image.shape),
                                    spacing=tuple(float(s) for s in image.spacing),
                                    objects=[o.sop_uid for o, _ in outcomes if str(o.path) in origin.values()],
                                    voxels=voxels, absent=[n for n in labels if n not in voxels]))
            logger.info("%s: %s %s, %s", case_id, entry.modality, "x".join(map(str, image.shape)),
                        ", ".join(f"{n} {v}" for n, v in voxels.items()))
    return cases


def _compact(image: Image) -> Image:
    """The image as int16 when its values are integers in range (CT in HU after the rescale), lossless and half the
    size of float32; otherwise unchanged."""
    arr = image.array
    if arr.dtype.kind != "f" or not arr.size:
        return image
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -32768 or hi > 32767 or not np.array_equal(arr, np.round(arr)):
        return image
    return image.with_array(arr.astype(np.int16))


def _object_row(root: Path, obj: DicomObject, decision: str, case_id: str, reason: str,
                mapped: Mapping[str, str | None]) -> dict[str, Any]:
    found = list(dict.fromkeys([*obj.structures, *mapped]))
    return dict(study_uid=obj.study_uid, series_uid=obj.series_uid, kind=obj.kind, path=relative_path(obj.path, root),
                files=1, decision=decision, case_id=case_id, reason=reason, structures_found=";".join(found),
                structures_mapped=";".join(f"{n}->{mapped.get(n) or '(unmapped)'}" for n in found))


def _other_rows(root: Path, series: dict[str, ImageSeries], pairings: list[LabelPairing],
                candidates: list[ImageSeries], chosen: str, rows: list[dict[str, Any]], objects: list[DicomObject],
                mapping: StructureMapping) -> None:
    """Rows for what pass 2 did not read: unpaired label objects, series without labels or of another modality,
    and the files left out by kind (one row per series and kind; non-DICOM files one row each)."""
    taken = {id(c) for c in candidates}
    for pairing in pairings:
        if pairing.series_key is None:
            rows.append(_object_row(root, pairing.obj, "skipped", "", pairing.reason,
                                    {n: _match(pairing.obj, n, mapping) for n in pairing.obj.structures}))
    for entry in series.values():
        if id(entry) in taken:
            continue
        folder = relative_path(Path(os.path.commonpath([str(f.parent) for f in entry.files])), root)
        if entry.labels:
            reason = f"modality {entry.modality or '?'} differs from the dataset's {chosen} (pass --modality)"
            rows += [_object_row(root, o, "skipped", "", reason, {n: _match(o, n, mapping) for n in o.structures})
                     for o in entry.labels]
        else:
            reason = "no SEG or RTSTRUCT references this series"
        rows.append(dict(study_uid=entry.study_uid, series_uid=entry.series_uid or entry.key,
                         kind=f"image series ({entry.modality or '?'})", path=folder, files=len(entry.files),
                         decision="skipped", reason=reason))
    grouped: dict[tuple[str, str, str], list[DicomObject]] = {}
    for obj in objects:
        if obj.kind in (IMAGE, *LABEL_KINDS):
            continue
        key = (obj.kind, obj.series_uid, str(obj.path) if obj.kind == "non-DICOM file" or not obj.series_uid else "")
        grouped.setdefault(key, []).append(obj)
    for (kind, series_uid, _), members in grouped.items():
        folder = os.path.commonpath([str(m.path.parent) for m in members]) if len(members) > 1 else str(members[0].path)
        rows.append(dict(study_uid=members[0].study_uid, series_uid=series_uid, kind=kind,
                         path=relative_path(Path(folder), root), files=len(members), decision="skipped",
                         reason=members[0].reason))


def _notes(result: ImportResult, mapping: StructureMapping, from_file: bool, modalities: Counter[str],
           chosen: str) -> None:
    if len(modalities) > 1:
        others = ", ".join(f"{m} ({n})" for m, n in modalities.items() if m != chosen)
        result.notes.append(f"labelled series of other modalities left out: {others}; pass --modality to import them")
    values = sorted(mapping.labels.values())
    if values != list(range(1, len(values) + 1)):
        result.notes.append(f"label values {values} are not consecutive; nnU-Net itself expects 1..{len(values)}")
    if from_file:
        empty = [n for n in mapping.labels if not any(n in c.voxels for c in result.cases)]
        if empty:
            result.notes.append(f"label(s) of the mapping found in no case: {', '.join(empty)}")


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return buffer.getvalue()


def _write_files(stage: Path, result: ImportResult, mapping: StructureMapping, name: str) -> None:
    labels = {"background": 0, **mapping.labels}
    dataset = {"channel_names": {"0": result.modality or "image"}, "labels": labels,
               "numTraining": len(result.cases), "file_ending": FILE_ENDING, "name": name,
               "description": f"imported from DICOM by medsight {__version__} (medsight dataset import); "
                              "unlabelled structures per case in absent_structures.json",
               "reference": "cases.csv (case -> StudyInstanceUID, SeriesInstanceUID)"}
    write_text(stage / "dataset.json", json.dumps(dataset, indent=2) + "\n")
    write_text(stage / "label_mapping.json", json.dumps(mapping.to_json(result.unmapped), indent=2) + "\n")
    absent = {"note": UNLABELLED_NOTE, "labels": list(mapping.labels), "cases": {c.case_id: c.absent for c in result.cases}}
    write_text(stage / "absent_structures.json", json.dumps(absent, indent=1) + "\n")
    contoured = {"note": UNLABELLED_NOTE, "cases": {c.case_id: list(c.voxels) for c in result.cases}}
    write_text(stage / "contoured_structures.json", json.dumps(contoured, indent=1) + "\n")
    case_rows = [dict(case_id=c.case_id, study_uid=c.study_uid, series_uid=c.series_uid, modality=c.modality,
                      shape="x".join(map(str, c.shape)), spacing_mm="x".join(f"{s:g}" for s in c.spacing),
                      label_objects=";".join(c.objects), structures=";".join(f"{n}={v}" for n, v in c.voxels.items()),
                      absent=";".join(c.absent)) for c in result.cases]
    write_text(stage / "cases.csv", _csv(case_rows, ("case_id", "study_uid", "series_uid", "modality", "shape",
                                                     "spacing_mm", "label_objects", "structures", "absent")))
    write_text(stage / "import_report.csv", _csv(result.rows, REPORT_COLUMNS))


def _commit(stage: Path, out: Path) -> None:
    """Move the finished dataset into place; an existing ``out`` is moved aside first and removed last."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.replaced-", dir=out.parent))
        os.replace(out, old / out.name)
    try:
        os.replace(stage, out)
    except OSError:
        if old is not None:
            os.replace(old / out.name, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def format_summary(result: ImportResult) -> str:
    """The printed summary: cases written, structures per label, what was left out and why."""
    kinds = Counter(r["kind"] for r in result.rows if r["kind"] in LABEL_KINDS)
    lines = [f"wrote {len(result.cases)} case(s) to {result.out} (nnU-Net v2: dataset.json, imagesTr/, labelsTr/)",
             f"  from {result.root}: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + " object(s); "
             f"modality {result.modality}; mapping {result.mapping_source}"]
    per_label = {n: sum(n in c.voxels for c in result.cases) for n in result.labels}
    lines.append("labels    " + ", ".join(f"{n}={v} ({per_label[n]} case{'s' if per_label[n] != 1 else ''})"
                                          for n, v in result.labels.items()))
    lacking = [c for c in result.cases if c.absent]
    if lacking:
        lines.append(f"absent    {len(lacking)} case(s) lack some labels (recorded in absent_structures.json, to "
                     "treat as unlabelled): " + "; ".join(f"{c.case_id} {', '.join(c.absent)}" for c in lacking[:5])
                     + (" ..." if len(lacking) > 5 else ""))
    if result.unmapped:
        lines.append("unmapped  " + ", ".join(f"{n} ({k})" for n, k in result.unmapped.most_common(10))
                     + (" ..." if len(result.unmapped) > 10 else "")
                     + ": left out; add them as synonyms in label_mapping.json (--mapping) or pass --keep-unmapped")
    skipped = Counter((r["kind"].split(" (")[0], _short(r["reason"])) for r in result.rows
                      if r["decision"] == "skipped")
    for (kind, why), n in sorted(skipped.items(), key=lambda kv: (kv[0][0] not in (*LABEL_KINDS, "image series"),
                                                                   kv[0][0], -kv[1])):
        lines.append(f"skipped   {kind} ({n}): {why}")
    for note in result.notes:
        lines.append(f"note      {note}")
    lines.append(f"report    {result.out / 'import_report.csv'} (one row per object), cases.csv (case -> UIDs)")
    lines.append(f"next: medsight dataset check {result.out}")
    return "\n".join(lines)


def _short(reason: str) -> str:
    """A reason without its UIDs and paths, so that equal reasons count together."""
    for marker in (" (", " in /", ": Expected"):
        if marker in reason:
            reason = reason.split(marker)[0]
    words = [w if not (w.count(".") >= 3 and w.replace(".", "").isdigit()) else "UID" for w in reason.split(" ")]
    return " ".join(words)


__all__ = ["CaseRecord", "ImportResult", "format_summary", "import_dicom_dataset"]
