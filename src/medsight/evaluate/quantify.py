"""Quantification of a label map on its image: per label and per connected lesion, as ``medsight quantify`` writes.

Each row: voxel count, volume (ml; area in mm² for 2D images), bounding box (array indices, inclusive, ``z y x``),
centroid in patient coordinates (mm, LPS, from the image geometry), longest diameter in the acquisition plane (mm,
between voxel centres on the same slice; the axial diameter for axial series, ``orientation`` starting with S or I)
and intensity mean / SD / min / max in image units (HU for CT). Lesions are connected components with full
connectivity (:func:`medsight.metrics.lesions.components`), numbered by decreasing size.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.atomic import write_text
from medsight.core.display import resolve_window
from medsight.core.image import Image
from medsight.core.outputs import check_new_outputs
from medsight.errors import user_error
from medsight.io import read_image
from medsight.io.dicom_seg import is_dicom_seg, read_dicom_seg, segment_names
from medsight.metrics.lesions import components
from medsight.report.overlay import best_slice, contour, encode_png, overlay_png

COLUMNS = ("level", "label", "name", "lesion", "voxels", "volume_ml", "area_mm2", "bbox_start", "bbox_end",
           "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "longest_diameter_mm", "diameter_plane",
           "mean", "sd", "min", "max", "unit")


def csv_text(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """CSV text of ``rows`` with exactly ``columns`` (floats to 8 significant digits, ``None`` empty)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else format(r[c], ".8g") if isinstance(r[c], float) else r[c]
                         for c in columns])
    return buf.getvalue()


def longest_diameter(mask: np.ndarray, image: Image) -> float:
    """Longest distance (mm) between two voxel centres of ``mask`` on one slice (array axis 0 for 3D)."""
    from scipy.spatial.distance import pdist

    m = np.asarray(mask, dtype=bool)
    planes = [m] if m.ndim == 2 else [m[k] for k in np.flatnonzero(m.any(axis=(1, 2)))]
    in_plane = image.direction[:, -2:] * np.asarray(image.spacing[-2:])[None, :]
    best = 0.0
    for plane in planes:
        ij = np.argwhere(contour(plane)).astype(float)
        if len(ij) > 2000:  # the hull in the slice's own 2D coordinates (the mm points are coplanar in 3D)
            from scipy.spatial import ConvexHull

            ij = ij[ConvexHull(ij).vertices]
        pts = ij @ in_plane.T
        if len(pts) > 1:
            best = max(best, float(pdist(pts).max()))
    return best


def _stats(mask: np.ndarray, image: Image, values: np.ndarray, labels_row: dict[str, Any]) -> dict[str, Any]:
    idx = np.argwhere(mask)
    n = len(idx)
    unit_size = float(np.prod(image.spacing))
    centre = image.affine @ np.array([*idx.mean(axis=0), 1.0])
    pos = dict(zip(("x", "y", "z"), centre[: image.ndim]))
    v = values[mask].astype(np.float64)
    row = dict(labels_row)
    row.update(
        voxels=n,
        volume_ml=n * unit_size / 1000.0 if image.ndim == 3 else None,
        area_mm2=n * unit_size if image.ndim == 2 else None,
        bbox_start=" ".join(str(int(i)) for i in idx.min(axis=0)),
        bbox_end=" ".join(str(int(i)) for i in idx.max(axis=0)),
        centroid_x_mm=pos["x"], centroid_y_mm=pos["y"], centroid_z_mm=pos.get("z"),
        longest_diameter_mm=longest_diameter(mask, image),
        diameter_plane="axial" if image.ndim == 3 and image.orientation[0] in "SI" else "acquisition plane",
        mean=float(v.mean()), sd=float(v.std()), min=float(v.min()), max=float(v.max()),
        unit="HU" if image.source.modality == "CT" else "",
    )
    return row


def quantify(image: Image, labels: Image, *, label_names: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """Rows (columns :data:`COLUMNS`): one per label value present, then one per lesion of that label.

    Args:
        image: ``(1, *spatial)`` intensity image (the first channel is measured).
        labels: ``(1, *spatial)`` label map on the same grid.
        label_names: name -> value (default ``label_<value>``).
    """
    if labels.shape != image.shape:
        raise user_error(f"a label map of the image's shape {image.shape}", f"shape {labels.shape}",
                         labels.source.path or None, "pass the label map that belongs to this image")
    if not np.allclose(labels.spacing, image.spacing, rtol=1e-3):
        raise user_error(f"a label map with the image's spacing {image.spacing}", f"spacing {labels.spacing}",
                         labels.source.path or None, "resample the labels onto the image grid")
    names = {int(v): n for n, v in (label_names or {}).items()}
    lab = np.asarray(labels.array[0])
    values = np.asarray(image.array[0])
    rows: list[dict[str, Any]] = []
    for value in (int(v) for v in np.unique(lab) if v != 0):
        mask = lab == value
        name = names.get(value, f"label_{value}")
        label_row = _stats(mask, image, values, {"level": "label", "label": value, "name": name, "lesion": 0})
        rows.append(label_row)
        comp, count = components(mask)
        sizes = np.bincount(comp.ravel(), minlength=count + 1)[1:]
        for rank, k in enumerate(np.argsort(-sizes, kind="stable"), start=1):
            rows.append(_stats(comp == k + 1, image, values,
                               {"level": "lesion", "label": value, "name": name, "lesion": rank}))
    return rows


@dataclass(frozen=True)
class QuantifyResult:
    """Files written by :func:`write_quantification`, and the rows."""

    rows: list[dict[str, Any]]
    csv: Path
    html: Path


def _overlay_uri(image: Image, labels: Image, *, window: Any, centre: float | None = None,
                 value: int | None = None) -> str:

    img = np.asarray(image.array[0], dtype=np.float32)
    lab = np.asarray(labels.array[0])
    if value is not None:
        lab = np.where(lab == value, lab, 0)
    if img.ndim == 3:
        k = int(round(centre)) if centre is not None else best_slice(lab)
        img, lab = img[k], lab[k]
    png = encode_png(overlay_png(img, lab, window=window))
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.0f}"
    return html.escape(str(v))


def render_html(rows: list[dict[str, Any]], image: Image, labels: Image, *, window: Any, title: str,
                max_lesions: int = 8) -> str:
    """A self-contained HTML summary: the table and overlays of each label and of the largest lesions."""
    shown = [c for c in COLUMNS if any(r.get(c) not in (None, "") for r in rows)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in shown) + "</tr>" for r in rows)
    figures = []
    for r in rows:
        if r["level"] == "label" or (r["level"] == "lesion" and r["lesion"] <= max_lesions):
            centre = None
            if r["level"] == "lesion" and image.ndim == 3:
                start, end = (int(r["bbox_start"].split()[0]), int(r["bbox_end"].split()[0]))
                centre = (start + end) / 2
            caption = f"{r['name']} (value {r['label']})" + (f", lesion {r['lesion']}" if r["lesion"] else "")
            uri = _overlay_uri(image, labels, window=window, centre=centre, value=r["label"])
            figures.append(f'<figure><img src="{uri}" alt="{html.escape(caption)}">'
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    window_text = "percentiles 0.5-99.5"
    if window is not None:

        level, width = resolve_window(window)
        window_text = html.escape(f"{window if isinstance(window, str) else 'custom'} (level {level:g}, width {width:g})")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;font-size:0.85em}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}figure{{display:inline-block;margin:6px}}
img{{max-width:320px;image-rendering:pixelated}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Volumes in ml (areas in mm² for 2D), centroids in patient coordinates (LPS, mm), diameters in mm, intensities in
image units. Overlay window: {window_text}.</p>
<table><tr>{head}</tr>{body}</table>
<h2>Overlays</h2>{''.join(figures) or '<p>no labels</p>'}
</body></html>
"""


def write_quantification(image_path: str | Path, labels_path: str | Path, out_dir: str | Path, *,
                         label_names: Mapping[str, int] | None = None, window: Any = None,
                         series_uid: str | None = None, overwrite: bool = False) -> QuantifyResult:
    """Read an image and its label map, quantify, and write ``quantification.csv`` and ``quantification.html``.

    Args:
        image_path: the image (any readable format, a DICOM series folder).
        labels_path: the label map (NIfTI, ..., or a DICOM-SEG of that series).
        out_dir: output folder.
        label_names: name -> value for the table.
        window: overlay window (preset name or ``(level, width)``); default ``soft_tissue`` for CT, else
            percentiles.
        series_uid: DICOM series to read when the image folder holds several.
        overwrite: replace the outputs of an earlier run (an input is never written over).
    """
    out = Path(out_dir)
    check_new_outputs([out / "quantification.csv", out / "quantification.html"], [image_path, labels_path],
                      overwrite=overwrite)

    image = read_image(image_path, series_uid=series_uid)
    if is_dicom_seg(labels_path):
        labels = read_dicom_seg(labels_path, image_path if image.source.format == "dicom" else None)
        label_names = label_names or segment_names(labels_path)
    else:
        labels = read_image(labels_path)
    if labels.array.dtype.kind == "f":
        labels = labels.with_array(np.rint(labels.array).astype(np.int32))
    if window is None and image.source.modality == "CT":
        window = "soft_tissue"
    rows = quantify(image, labels, label_names=label_names)
    csv_path = write_text(out / "quantification.csv", csv_text(rows, COLUMNS))
    title = f"Quantification of {Path(labels_path).name} on {Path(image_path).name}"
    html_path = write_text(out / "quantification.html", render_html(rows, image, labels, window=window, title=title))
    return QuantifyResult(rows, csv_path, html_path)


__all__ = ["COLUMNS", "QuantifyResult", "csv_text", "longest_diameter", "quantify", "render_html", "write_quantification"]
