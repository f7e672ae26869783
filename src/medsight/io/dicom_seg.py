"""DICOM Segmentation objects: one import for reading (:mod:`medsight.io.seg_read`) and writing
(:mod:`medsight.io.seg_write`).

* :func:`read_dicom_seg` reads any standard SEG (binary, fractional, label map SOP class; highdicom, dcmqi/3D
  Slicer, Brainlab writers; sparse frames) as a label map on its referenced series' grid, or alone on the SEG's own
  frame geometry; overlapping segments are refused, resolved (``overlaps="last"``) or kept apart
  (``overlaps="separate"``).
* :func:`write_dicom_seg` writes a label map on a series' grid as a BINARY SEG that dciodvfy, dcmqi and highdicom
  accept, with segment labels, colours and SNOMED CT anatomy codes from the label names, after repairing the
  source series' header defects (:mod:`medsight.io.dicom_repair`).

Both keep medsight's conventions: ``(C, D, H, W)`` arrays, spacing per array axis, origin/direction in LPS.
"""

from __future__ import annotations

from medsight.io.seg_read import (
    LABELMAP_SEG_SOP_CLASS_UID,
    OVERLAPS,
    SEG_SOP_CLASS_UID,
    SEG_SOP_CLASS_UIDS,
    is_dicom_seg,
    read_dicom_seg,
    segment_names,
)
from medsight.io.seg_write import dataset_colours, require_series_input, write_dicom_seg

__all__ = ["LABELMAP_SEG_SOP_CLASS_UID", "OVERLAPS", "SEG_SOP_CLASS_UID", "SEG_SOP_CLASS_UIDS", "dataset_colours",
           "is_dicom_seg", "read_dicom_seg", "require_series_input", "segment_names", "write_dicom_seg"]
