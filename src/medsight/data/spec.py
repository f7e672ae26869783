"""What a dataset is, before anything is read: :class:`CaseRef` (where one case's files are) and
:class:`DatasetSpec` (the cases and what their labels mean). Readers live in :mod:`medsight.data.dataset`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsight.errors import MedsightError


@dataclass(frozen=True)
class CaseRef:
    """Where one case's files are; nothing is read until :func:`load_case`.

    Attributes:
        case_id: identifier unique in the dataset.
        images: one file per channel (nnU-Net) or one file holding all channels.
        label: label-map file (segmentation) or ``None``.
        class_label: class index (or multi-hot tuple) for classification, else ``None``.
        roi: optional region-of-interest mask file (e.g. a field-of-view mask).
        npz: ``(file, split, index)`` when the case lives inside a MedMNIST NPZ.
        columns: the other columns of a CSV row (e.g. ``age``, ``sex``), as text, for tabular fusion.
    """

    case_id: str
    images: tuple[Path, ...] = ()
    label: Path | None = None
    class_label: int | tuple[int, ...] | None = None
    roi: Path | None = None
    npz: tuple[Path, str, int] | None = None
    columns: tuple[tuple[str, str], ...] = ()

    @property
    def files(self) -> tuple[Path, ...]:
        """All files this case reads (for messages and change detection)."""
        out = list(self.images)
        if self.label is not None:
            out.append(self.label)
        if self.roi is not None:
            out.append(self.roi)
        if self.npz is not None:
            out.append(self.npz[0])
        return tuple(out)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its cases and what their labels mean.

    Attributes:
        name: short name (folder name or dataset.json ``name``), used for run folders.
        root: the folder (or file) the spec was read from.
        layout: ``"nnunet"``, ``"msd"``, ``"folders"``, ``"csv"`` or ``"npz"``.
        task: ``"segmentation"`` or ``"classification"``.
        channel_names: one name per input channel; modality-like names (``"CT"``, ``"MR"``) drive normalisation.
        labels: segmentation: label name -> value (with ``background``: 0); classification: class name -> index.
        labels_declared: whether ``labels`` came from a spec file (``True``) or were inferred from the files.
        cases: the labelled cases (training pool).
        test_cases: held-out cases shipped with the dataset (``imagesTs``, NPZ ``test``), possibly unlabelled.
        binary_masks: raster masks store foreground as any value > 0 (``{0, 255}``): read as ``{0, 1}``.
        predefined_split: official split of the training pool, ``{"train": [...], "val": [...]}``, if any.
        spec_file: the dataset.json this came from, if any.
        absent: partial labels: case id -> foreground label names that were *not annotated* in that case (unlabelled,
            not background; see :mod:`medsight.data.partial_labels`); cases not listed are fully annotated.
    """

    name: str
    root: Path
    layout: str
    task: str
    channel_names: tuple[str, ...]
    labels: dict[str, int]
    cases: tuple[CaseRef, ...]
    labels_declared: bool = True
    test_cases: tuple[CaseRef, ...] = ()
    binary_masks: bool = False
    predefined_split: dict[str, list[str]] | None = None
    spec_file: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    absent: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Segmentation: number of label values (with background). Classification: number of classes."""
        return len(self.labels)

    @property
    def foreground_labels(self) -> dict[str, int]:
        return {k: v for k, v in self.labels.items() if v != 0} if self.task == "segmentation" else dict(self.labels)

    def absent_values(self, case_id: str) -> tuple[int, ...]:
        """Label values not annotated in ``case_id`` (empty when it is fully annotated)."""
        return tuple(self.labels[n] for n in self.absent.get(case_id, ()) if n in self.labels)

    @property
    def absent_label_values(self) -> dict[str, list[int]]:
        """Case id -> label values not annotated, for the cases lacking some (as saved in the fingerprint and plan)."""
        return {cid: list(self.absent_values(cid)) for cid in self.absent if self.absent_values(cid)}

    def case(self, case_id: str) -> CaseRef:
        for ref in (*self.cases, *self.test_cases):
            if ref.case_id == case_id:
                return ref
        raise MedsightError(f"Expected a case id of dataset {self.name}, got {case_id!r}; list them with 'medsight dataset check'")
