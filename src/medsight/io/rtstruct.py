"""DICOM RT Structure Sets (RTSTRUCT), read and written: the contours radiotherapy departments keep.

* :func:`read_rtstruct` rasterises an RTSTRUCT's ROIs onto its image series' grid
  (:mod:`medsight.io.rtstruct_read` says how: nearest slice, pixel centres inside, XOR for holes, the higher
  label value wins on overlaps); :func:`rtstruct_info` and :func:`is_rtstruct` read the header only.
* :func:`write_rtstruct` turns a label map on a series' grid into closed planar contours per slice and label
  (:mod:`medsight.io.rtstruct_write`: sub-pixel marching squares, so that the contours read back to the same
  voxels), with ROI names, colours and references to the series' instances.
"""

from __future__ import annotations

from medsight.io.rtstruct_read import RTStructInfo, is_rtstruct, read_rtstruct, rtstruct_info
from medsight.io.rtstruct_series import RTSTRUCT_SOP_CLASS_UID
from medsight.io.rtstruct_write import require_rtstruct_input, write_rtstruct

__all__ = ["RTSTRUCT_SOP_CLASS_UID", "RTStructInfo", "is_rtstruct", "read_rtstruct", "require_rtstruct_input",
           "rtstruct_info", "write_rtstruct"]
