"""What the node does with one complete series: check it is whole, predict it, write the objects to send back.

* :func:`completeness` decides whether a quiet series is whole: its single-frame images must lie on evenly spaced
  planes (no step wider than 1.5 x the median one, no two images on one plane); a gap means an instance has not
  arrived yet, so the series waits (until ``series_timeout``, then it fails with that reason).
* :func:`predict_series` runs each run of the matching rule through its task's own predict path (the same call as
  ``medsight predict RUN SERIES OUT --dicom-seg``, audited in the node's ``audit.jsonl`` by
  :func:`medsight.deploy.audit.audited_prediction`), then writes the RTSTRUCT
  (:func:`medsight.io.rtstruct_write.write_rtstruct`) and the overlay Secondary Capture series
  (:func:`medsight.io.sc_write.write_overlay_series`) from the NIfTI label map, and returns every object with its
  SOP Instance UID, ready to be recorded and sent.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom

from medsight.deploy.audit import audited_prediction
from medsight.engine.run import run_dataset_json
from medsight.errors import MedsightError
from medsight.io import read_image
from medsight.io.dicom_files import find_dicom_files
from medsight.io.rtstruct_write import write_rtstruct
from medsight.io.sc_write import write_overlay_series
from medsight.io.seg_write import dataset_colours
from medsight.pacs.config import NodeConfig, Rule
from medsight.tasks import load_run_plan, task_of_run
from medsight.tasks.task import PredictRequest

logger = logging.getLogger("medsight.pacs")

#: a step between neighbouring planes wider than this times the median step is a missing instance
GAP_FACTOR = 1.5


def completeness(folder: Path) -> str | None:
    """``None`` when the series in ``folder`` looks whole, else why not (one short phrase)."""
    files = find_dicom_files(folder)
    if not files:
        return "no instances filed"
    positions = []
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            return None  # a multi-frame image is whole in itself
        iop, ipp = ds.get("ImageOrientationPatient"), ds.get("ImagePositionPatient")
        if iop is None or ipp is None:
            return None  # no geometry to check (a projection image): the quiet period alone decides
        normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
        positions.append(float(np.dot(normal, np.asarray(ipp, float))))
    if len(positions) < 3:
        return None
    steps = np.diff(np.sort(np.asarray(positions)))
    median = float(np.median(steps))
    if median <= 1e-6:
        return None  # several images per plane (several acquisitions): left to the reader
    if np.any(steps < 1e-3 * median):
        return None
    widest = float(steps.max())
    if widest > GAP_FACTOR * median:
        return f"gap in slice positions ({widest:.2f} mm where the step is {median:.2f} mm: instances missing)"
    return None


def predict_series(config: NodeConfig, rule: Rule, folder: Path, out: Path) -> list[tuple[str, str, Path]]:
    """Predict the series in ``folder`` with every run of ``rule``; returns ``[(SOP Instance UID, kind, file)]``
    of the objects to send (kinds ``seg``, ``rtstruct``, ``sc`` as ``config.send`` asks).

    Raises:
        MedsightError: the series cannot be read or predicted (one line, from the reader or the task).
    """
    results: list[tuple[str, str, Path]] = []
    for k, run in enumerate(rule.runs):
        target = out / f"run{k}"
        task = task_of_run(run)
        if task.predict is None:
            raise MedsightError(f"Expected a run that predicts label maps, got a {task.name} run {run}; fix the "
                                "rule's runs")
        options = {"dicom_seg": True} if "seg" in config.send and "dicom_seg" in task.predict_options else {}
        request = PredictRequest(run=Path(run), input=folder, output=target, tta=config.tta, device=config.device,
                                 overwrite=True)
        with audited_prediction(run, folder, target, folds=None, engine="torch", log_path=config.audit_path,
                                parameters={"node": True, "rule": rule.name, "tta": config.tta,
                                            "send": list(config.send)}) as written:
            written += task.predict(request, options)
        label_file = next((w for w in written if str(w).endswith(".nii.gz")), None)
        results += [(_sop_uid(w), "seg", Path(w)) for w in written if str(w).endswith("_seg.dcm")]
        if label_file is None or not ({"rtstruct", "sc"} & set(config.send)):
            continue
        labels = read_image(label_file)
        plan = load_run_plan(run)
        names = dict(getattr(plan, "labels", {}) or {})
        colours = dataset_colours(run_dataset_json(run), names)
        uid = labels.source.series_uid or None
        if "rtstruct" in config.send:
            try:
                rt = write_rtstruct(labels, folder, target / "rtstruct.dcm", label_names=names, colours=colours,
                                    series_uid=uid)
                results.append((_sop_uid(rt), "rtstruct", rt))
            except MedsightError as exc:  # the SEG and the overlays still go back
                logger.warning("series %s: no RTSTRUCT (%s)", labels.source.series_uid, exc)
        if "sc" in config.send:
            for sc in write_overlay_series(labels, folder, target / "overlay", series_uid=uid, colours=colours):
                results.append((_sop_uid(sc), "sc", sc))
    return results


def _sop_uid(path: str | Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


__all__ = ["GAP_FACTOR", "completeness", "predict_series"]
