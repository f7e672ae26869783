"""Small table and JSON helpers shared by every layer: CSV cells and rows, reading a CSV with one clear error,
JSON-safe values (NaN/Inf as null)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import user_error


# ---------------------------------------------------------------------------------------------- writing
def csv_cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else format(value, ".8g")
    return "" if value is None else str(value)


def read_csv_rows(path: str | Path, *, what: str, fix: str) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts; a read problem becomes one clear error naming ``what`` and ``fix``."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise user_error(f"a readable {what}", f"a read error ({exc})", path, fix) from exc


def read_json_object(path: str | Path, *, fix: str) -> dict[str, Any]:
    """A JSON file that must hold one object; a parse error or another top-level type is one clear error (``fix``
    says how to write the object)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise user_error("valid JSON", f"a parse error ({exc})", path, "fix the JSON syntax") from exc
    if not isinstance(data, dict):
        raise user_error("a JSON object", type(data).__name__, path, fix)
    return data


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/Inf floats as ``None`` and paths/NumPy scalars as plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def csv_float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
