"""Scoring of prediction folders for the benchmarks, partial labels included: each ``<case>.nii.gz`` against the
dataset's reference, a structure that was not annotated in a case left out there (as medsight's validation does)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def score_folder(data: Path, pred_dir: Path, case_ids: list[str], *, names: Mapping[int, str] | None = None,
                 distances: bool = False) -> dict[str, dict]:
    """Label name -> its metric summaries (``{"dice": stats, "hd95": stats, ...}``) over ``case_ids``.

    Args:
        data: the dataset folder (``dataset.json``; partial labels from it).
        pred_dir: predicted label maps named ``<case>.nii.gz``.
        case_ids: the cases to score.
        names: label value -> the name to report (default the dataset's names).
        distances: also HD95/ASSD (slow).
    """
    from medsight.data.dataset import load_case, load_dataset
    from medsight.io import read_image
    from medsight.metrics.summary import SegmentationEvaluator

    spec = load_dataset(data)
    absent = {cid: [spec.labels[n] for n in gone] for cid, gone in spec.absent.items()}
    labels = {(names or {}).get(v, name): v for name, v in spec.labels.items() if v}
    ev = SegmentationEvaluator(labels, distances=distances, absent=absent)
    for cid in case_ids:
        case = load_case(spec, spec.case(cid))
        pred = read_image(pred_dir / f"{cid}.nii.gz").array[0]  # (1, *spatial): one channel
        ev.add(cid, pred.astype(np.int64), case.label_array.astype(np.int64), spacing=case.image.spacing)
    return {name: lab["metrics"] for name, lab in ev.summary()["labels"].items()}
