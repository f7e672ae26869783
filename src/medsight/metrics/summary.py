"""Per-case metric tables and their summaries: mean, SD and bootstrap 95 % CI over cases (:func:`describe`,
:func:`summarize`), the ``per_case.csv`` format, and :class:`SegmentationEvaluator`, which adds cases one by one
and summarises them."""

from __future__ import annotations

import csv
import io
import logging
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.tables import csv_cell, read_csv_rows
from medsight.errors import MedsightError, did_you_mean
from medsight.metrics.segmentation import METRICS, RATIO_METRICS, Row, case_metrics, foreground_labels

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- summary
def _floats(values: Iterable[Any]) -> np.ndarray:
    """Values as float64; anything that is not a number (``None``, ``""``) becomes NaN."""
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(math.nan)
    return np.asarray(out, dtype=np.float64)


def _truthy(value: Any) -> bool:
    """A flag from a row, which may have been read back from CSV as text."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def describe(values: Sequence[float], *, bootstrap: int = 1000, seed: int | Sequence[int] = 0,
             ci: float = 0.95) -> dict[str, float | int | None]:
    """NaN-aware statistics of one metric over cases.

    Args:
        values: one value per case; NaN (and non-numbers) are left out and counted.
        bootstrap: resamples for the percentile bootstrap CI of the mean; 0 for no CI.
        seed: seed of the local random generator (the CI is reproducible).
        ci: confidence level.

    Returns:
        ``mean``, ``sd`` (ddof 1), ``median``, ``ci_low``, ``ci_high``, ``n`` (finite values) and ``n_nan``;
        statistics that cannot be computed are NaN.
    """
    a = _floats(values)
    ok = a[np.isfinite(a)]
    n = int(ok.size)
    out: dict[str, float | int | None] = {
        "mean": float(ok.mean()) if n else math.nan,
        "sd": float(ok.std(ddof=1)) if n >= 2 else math.nan,
        "median": float(np.median(ok)) if n else math.nan,
        "ci_low": math.nan, "ci_high": math.nan,
        "n": n, "n_nan": int(a.size - n),
    }
    if n and bootstrap > 0:
        rng = np.random.default_rng(seed)
        means = ok[rng.integers(0, n, size=(int(bootstrap), n))].mean(axis=1)
        alpha = (1.0 - ci) / 2.0
        lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
        out["ci_low"], out["ci_high"] = float(lo), float(hi)
    return out


def label_macro(cases: Mapping[str, Sequence[Mapping[str, Any]]], labels: Sequence[str], metric: str, *,
                bootstrap: int = 1000, seed: int | Sequence[int] = 0, ci: float = 0.95) -> dict[str, float | int | None]:
    """The mean over labels of each label's mean over the cases where it was scored, NaN-aware, with a percentile
    bootstrap CI over cases (a resample of cases, then the same mean over labels).

    With every label scored in every case this is the mean over cases of each case's mean over labels. With partial
    labels (a structure not annotated in some cases has no row there) that per-case mean would count the labels
    annotated in more cases more often; the mean over labels weighs every label once, as nnU-Net's foreground mean
    and the trainers' validation Dice do. ``sd``, ``median``, ``n`` and ``n_nan`` describe the per-case means over
    labels.

    Args:
        cases: case id -> its rows (keys ``label`` and ``metric``).
        labels: label names, in order.
        metric: a key of the rows.
        bootstrap: resamples of the cases for the CI (0: none).
        seed: seed of the local random generator.
        ci: confidence level.
    """
    col = {name: j for j, name in enumerate(labels)}
    table = np.full((len(cases), len(labels)), math.nan)
    for i, crows in enumerate(cases.values()):
        for r in crows:
            table[i, col[str(r["label"])]] = _floats([r.get(metric, math.nan)])[0]
    scored = np.isfinite(table)
    per_case = np.where(scored.any(axis=1), np.nansum(table, axis=1) / np.maximum(scored.sum(axis=1), 1), math.nan)
    out = describe(per_case.tolist(), bootstrap=0, ci=ci)
    ok = table[np.isfinite(per_case)]
    out["mean"] = _macro(ok[None])[0] if ok.size else math.nan
    if ok.size and bootstrap > 0:
        n = ok.shape[0]
        idx = np.random.default_rng(seed).integers(0, n, size=(int(bootstrap), n))  # the draws of describe()
        step = max(1, 4_000_000 // ok.size)
        means = np.concatenate([_macro(ok[idx[k:k + step]]) for k in range(0, idx.shape[0], step)])
        alpha = (1.0 - ci) / 2.0
        lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
        out["ci_low"], out["ci_high"] = float(lo), float(hi)
    return out


def _macro(samples: np.ndarray) -> np.ndarray:
    """``(resamples, cases, labels)`` -> the mean over labels of each label's NaN-aware mean, per resample."""
    scored = np.isfinite(samples)
    counts = scored.sum(axis=1)
    per_label = np.where(counts > 0, np.where(scored, samples, 0.0).sum(axis=1) / np.maximum(counts, 1), math.nan)
    has = (counts > 0).sum(axis=1)
    return np.where(has > 0, np.nansum(per_label, axis=1) / np.maximum(has, 1), math.nan)


def summarize(
    rows: Sequence[Mapping[str, Any]],
    *,
    metrics: Sequence[str] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, Any]:
    """Per-label statistics over cases: mean, SD, median and bootstrap CI of the mean, NaN-aware.

    Args:
        rows: per case and label, as from :func:`case_metrics` (keys ``case``, ``label`` and metrics).
        metrics: which metrics to summarise; default those of :data:`METRICS` with at least one value.
        bootstrap: bootstrap resamples over cases (0: no CI).
        seed: base seed; each (label, metric) uses its own local generator derived from it, so a CI
            does not change when other metrics are added.
        ci: confidence level of the interval.

    Returns:
        ``{"n_cases", "metrics", "bootstrap", "seed", "ci", "labels": {name: {"value", "n_cases",
        "empty_both", "empty_reference", "empty_prediction", "missing", "metrics": {metric: stats}}},
        "foreground_mean": {metric: stats}}`` where stats are from :func:`describe`; ``foreground_mean`` is
        :func:`label_macro`: the mean over labels of each label's mean.
    """
    if metrics is None:  # every metric with at least one value (no all-NaN ``auc`` without probabilities)
        metrics = [m for m in METRICS if np.isfinite(_floats(r.get(m) for r in rows)).any()]
    else:
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:

            raise did_you_mean(unknown[0], METRICS, "metric")
    metrics = list(metrics)
    by_label: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_label.setdefault(str(r["label"]), []).append(r)
    labels_out: dict[str, Any] = {}
    for name, lrows in by_label.items():
        stats = {
            m: describe([r.get(m, math.nan) for r in lrows], bootstrap=bootstrap, ci=ci,
                        seed=[seed, zlib.crc32(f"{name}/{m}".encode())])
            for m in metrics
        }
        labels_out[name] = {
            "value": lrows[0].get("value"),
            "n_cases": len({r.get("case") for r in lrows}),
            "empty_both": sum(r.get("empty") == "both" for r in lrows),
            "empty_reference": sum(r.get("empty") == "reference" for r in lrows),
            "empty_prediction": sum(r.get("empty") == "prediction" for r in lrows),
            "missing": sum(_truthy(r.get("missing")) for r in lrows),
            "metrics": stats,
        }
    cases: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        cases.setdefault(str(r.get("case")), []).append(r)
    fg_mean = {m: label_macro(cases, list(by_label), m, bootstrap=bootstrap, ci=ci,
                              seed=[seed, zlib.crc32(f"__mean__/{m}".encode())])
               for m in metrics if m in RATIO_METRICS}
    return {
        "n_cases": len(cases), "metrics": metrics, "bootstrap": int(bootstrap), "seed": int(seed), "ci": float(ci),
        "labels": labels_out, "foreground_mean": fg_mean,
    }


# ---------------------------------------------------------------------------------------------- evaluator
class SegmentationEvaluator:
    """Accumulates per-case metrics (for trainers, validation loops and :func:`evaluate_folders`).

    Example:
        >>> ev = SegmentationEvaluator({"liver": 1, "tumour": 2})
        >>> ev.add("case_001", pred, ref, spacing=(2.5, 0.8, 0.8))  # doctest: +SKIP
        >>> ev.summary()["labels"]["tumour"]["metrics"]["dice"]["mean"]  # doctest: +SKIP

    Args:
        labels: label name -> value; value 0 is skipped.
        distances: compute HD95/ASSD (set ``False`` for a fast Dice-only evaluation).
        absent: partial labels, case id -> label values not annotated in that case: those labels are not scored
            there (no row; neither a Dice of 0 nor of 1) and are counted as ``unannotated`` in the summary.
    """

    def __init__(self, labels: Mapping[str, int], *, distances: bool = True,
                 absent: Mapping[str, Iterable[int]] | None = None) -> None:
        self.labels = foreground_labels(labels)
        self.distances = distances
        self.absent = {str(k): {int(v) for v in vals} for k, vals in (absent or {}).items()}
        self._rows: list[Row] = []
        self._cases: set[str] = set()
        self._unannotated: dict[str, int] = {}

    def add(
        self,
        case_id: str,
        pred: np.ndarray | None,
        ref: np.ndarray,
        spacing: Sequence[float] | None = None,
        prob: np.ndarray | None = None,
        roi: np.ndarray | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> list[Row]:
        """Score one case (see :func:`case_metrics` for shapes and units) and keep its rows.

        Args:
            case_id: unique id of the case.
            pred: predicted label map ``(*spatial)``, or ``None`` when the prediction is missing.
            ref: reference label map ``(*spatial)``.
            spacing: voxel size (mm) per array axis.
            prob: optional probabilities ``(*spatial)`` or ``(C, *spatial)`` for the AUC.
            roi: optional region-of-interest mask ``(*spatial)``.
            extra: further columns copied into each row (e.g. file names).

        Returns:
            Copies of the rows added, one per label.
        """
        case_id = str(case_id)
        if case_id in self._cases:
            raise MedsightError(f"Expected each case once, got {case_id!r} twice; give cases unique ids")
        gone = self.absent.get(case_id, set())
        scored = {k: v for k, v in self.labels.items() if v not in gone}
        for k, v in self.labels.items():
            if v in gone:
                self._unannotated[k] = self._unannotated.get(k, 0) + 1
        rows = case_metrics(pred, ref, scored, spacing=spacing, prob=prob, roi=roi,
                            distances=self.distances, case_id=case_id) if scored else []
        for r in rows:
            r.update(extra or {})
        self._cases.add(case_id)
        self._rows.extend(rows)
        log.debug("%s: %s", case_id, ", ".join(f"{r['label']} Dice {r['dice']:.4f}" for r in rows))
        return [dict(r) for r in rows]

    @property
    def rows(self) -> list[Row]:
        """All rows so far (copies), in the order added."""
        return [dict(r) for r in self._rows]

    def __len__(self) -> int:
        return len(self._cases)

    def summary(self, *, metrics: Sequence[str] | None = None, bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
        """:func:`summarize` over the cases added so far; each label also gets ``unannotated``: the cases where it
        was not annotated and so not scored."""
        out = summarize(self._rows, metrics=metrics, bootstrap=bootstrap, seed=seed)
        out["n_cases"] = len(self._cases)
        for name, lab in out["labels"].items():
            lab["unannotated"] = self._unannotated.get(name, 0)
        return out

    def reset(self) -> None:
        """Forget all cases."""
        self._rows.clear()
        self._cases.clear()
        self._unannotated.clear()


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text of per-case rows (columns :data:`CSV_COLUMNS` first, then any others)."""
    extra = [k for r in rows for k in r if k not in CSV_COLUMNS]
    columns = [*CSV_COLUMNS, *dict.fromkeys(extra)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([csv_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def read_per_case(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``per_case.csv`` back: metric columns as floats (NaN for blanks), flags as bools."""
    raw = read_csv_rows(path, what="per_case.csv", fix="re-run medsight evaluate")
    rows = []
    for r in raw:
        row: dict[str, Any] = dict(r)
        for m in METRICS:
            if m in row:
                try:
                    row[m] = float(row[m]) if row[m] not in (None, "") else math.nan
                except ValueError:
                    row[m] = math.nan
        if "missing" in row:
            row["missing"] = str(row["missing"]).strip().lower() in ("true", "1")
        rows.append(row)
    return rows


CSV_COLUMNS: tuple[str, ...] = (
    "case", "label", "value", *METRICS, "volume_unit", "distance_unit", "empty", "missing", "prediction", "reference",
)


__all__ = ["CSV_COLUMNS", "SegmentationEvaluator", "describe", "label_macro", "read_per_case", "rows_to_csv", "summarize"]
