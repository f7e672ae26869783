"""The HTML kit of every report: escaping, number formatting, tables, embedded PNGs, the page frame and its CSS.
Pages are self-contained (images inline as data URIs, no scripts, nothing fetched)."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight import __version__
from medsight.core.tables import csv_float
from medsight.data.dataset import file_stem, image_files
from medsight.errors import InputNotFoundError

log = logging.getLogger(__name__)


CSS = """
*{box-sizing:border-box}
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:1.2em auto;max-width:1150px;
color:#222;line-height:1.45;padding:0 1em;overflow-wrap:break-word}
h1{font-size:1.5em;border-bottom:2px solid #446;padding-bottom:.2em;margin:.2em 0 .3em}
h2{font-size:1.25em;margin-top:1.6em;color:#334}h3{font-size:1.05em;color:#445}
.tbl{max-width:100%;overflow-x:auto;margin:.6em 0}
table{border-collapse:collapse;font-size:.9em}th,td{border:1px solid #ccd;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#eef}tr:nth-child(even) td{background:#f8f8fc}
td{overflow-wrap:break-word;max-width:40em}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.na{color:#888;font-style:italic}.note{color:#555;font-size:.9em}
figure{display:inline-block;margin:.4em;text-align:center;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #ccd}figcaption{font-size:.85em;color:#444;max-width:34em}
img{max-width:100%}img.wide{max-width:100%}details{margin:.5em 0}summary{cursor:pointer;font-weight:600;color:#334}
code{background:#f2f2f6;padding:0 .2em;overflow-wrap:anywhere}
.headline{border:1px solid #bbd;background:#f5f6fc;border-radius:6px;padding:.6em 1em;margin:.6em 0}
.headline .answer{font-size:1.15em;margin:.2em 0 .4em}.headline .big{font-size:1.35em;font-weight:700;color:#224}
.legend{display:flex;flex-wrap:wrap;gap:.3em 1.2em;font-size:.9em;margin:.3em 0;padding:0;list-style:none}
.swatch{display:inline-block;width:1em;height:1em;border:1px solid #555;vertical-align:-.15em;margin-right:.3em}
.flag{color:#a00;font-weight:600}.advice{background:#fff6e0;border-left:4px solid #e0a000;padding:.3em .8em}
"""


# ---------------------------------------------------------------------------------------------- reading
def read_json(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(object, "") or (None, reason)."""
    if not path.is_file():
        return None, "not available"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("could not read %s: %s", path, exc)
        return None, f"not available ({path.name} could not be read: {exc})"
    if not isinstance(data, dict):
        return None, f"not available ({path.name} holds no JSON object)"
    return data, ""


def case_index(folder: str | Path) -> dict[str, Path]:
    """Map case ids to the image files of a folder: the stem, and the stem without an nnU-Net ``_0000`` suffix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFoundError(f"Expected an existing folder, got {folder} which does not exist; check the path")
    out: dict[str, Path] = {}
    for f in image_files(folder):
        stem = file_stem(f)
        out.setdefault(stem, f)
        m = re.fullmatch(r"(.+)_(\d{4})", stem)
        if m and m.group(2) == "0000":
            out.setdefault(m.group(1), f)
    return out


def as_mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else ``{}`` (run files are read defensively: any piece may be missing)."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` when it is a JSON list, else ``[]``."""
    return value if isinstance(value, list) else []


def lookup(index: Mapping[str, Path] | None, case_id: str) -> Path | None:
    if not index:
        return None
    if case_id in index:
        return Path(index[case_id])
    token = re.split(r"[_\-.]", case_id, maxsplit=1)[0]
    hits = [p for k, p in index.items() if re.split(r"[_\-.]", k, maxsplit=1)[0] == token]
    return Path(hits[0]) if len({str(h) for h in hits}) == 1 else None


# ---------------------------------------------------------------------------------------------- HTML helpers
def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "–"
        if abs(v) >= 1000 or (abs(v) >= 100 and v.is_integer()):
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.1f}"
        return f"{v:.4g}"
    return str(value)


def na(reason: str = "not available") -> str:
    return f'<p class="na">{esc(reason)}</p>'


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(headers)
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="num">{esc(fmt(v))}</td>' if num else f"<td>{esc(fmt(v))}</td>" for v, num in zip(r, numeric)
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="tbl"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def compact(value: Any, limit: int | None = None) -> str:
    """A value as one line of text (objects and lists as JSON); cut to ``limit`` characters only when given."""
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, default=str, separators=(", ", ": "))
    else:
        text = fmt(value)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def kv_table(data: Mapping[str, Any], *, scalars_only: bool = False) -> str:
    """Every (key, value) of ``data`` in full (values wrap inside their cell: nothing is cut)."""
    rows = [(k, compact(v)) for k, v in data.items()
            if not scalars_only or not isinstance(v, (dict, list, tuple))]
    return table(("field", "value"), rows) if rows else na("no fields")


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted keys (``timings.fold_0``); lists stay values."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def img(png: bytes, *, alt: str, cls: str = "") -> str:
    b64 = base64.b64encode(png).decode("ascii")
    klass = f' class="{cls}"' if cls else ""
    return f'<img{klass} alt="{esc(alt)}" src="data:image/png;base64,{b64}">'


def fmt_seconds(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    s = int(round(seconds))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def stat_cell(stats: Mapping[str, Any] | None) -> str:
    if not stats or not math.isfinite(csv_float(stats.get("mean"))):
        return "–"
    text = f"{fmt(stats['mean'])} ± {fmt(stats.get('sd'))}"
    if stats.get("ci_low") is not None and stats.get("ci_high") is not None:
        text += f" [{fmt(stats['ci_low'])}, {fmt(stats['ci_high'])}]"
    if stats.get("n_nan"):
        text += f" (n={stats.get('n')}, {stats['n_nan']} NaN)"
    return text


def details(summary: str, body: str, *, open_: bool = False) -> str:
    """A collapsible block: ``summary`` (text) always shown, ``body`` (HTML) on a click."""
    return f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{body}</details>"


def figure(png: bytes, caption: str, *, alt: str = "", caption_html: bool = False) -> str:
    """An embedded PNG with its caption (text, or HTML when ``caption_html``)."""
    cap = caption if caption_html else esc(caption)
    return f"<figure>{img(png, alt=alt or caption)}<figcaption>{cap}</figcaption></figure>"


def legend(items: Sequence[tuple[str, Sequence[int]]], *, outline: Sequence[str] = ()) -> str:
    """A colour legend: (name, RGB 0-255) swatches, then ``outline`` entries drawn as outlined boxes (text)."""
    lis = [f'<li><span class="swatch" style="background:rgb({int(c[0])},{int(c[1])},{int(c[2])})"></span>{esc(n)}</li>'
           for n, c in items]
    lis += [f'<li><span class="swatch" style="background:#333;outline:2px solid #fff;outline-offset:-4px"></span>'
            f"{esc(n)}</li>" for n in outline]
    return f'<ul class="legend">{"".join(lis)}</ul>'


def paragraph(text: str, *, cls: str = "") -> str:
    """A paragraph of plain text (escaped)."""
    klass = f' class="{cls}"' if cls else ""
    return f"<p{klass}>{esc(text)}</p>"


def section_id(title: str) -> str:
    """The HTML id of a section title (``"Training curves"`` -> ``"training-curves"``)."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def page(title: str, parts: Sequence[tuple[str, str]], *, note: str = "", lead: str = "") -> str:
    """A whole HTML page: ``title``, ``lead`` (raw HTML shown first, e.g. the headline), then one ``<h2>`` section
    per (title, HTML) pair, and last a note line (raw HTML, e.g. where the data came from) with the date and
    medsight version."""

    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = "".join(f'<section id="{section_id(name)}"><h2>{esc(name)}</h2>{content}</section>' for name, content in parts)
    tail = f"{note}; generated" if note else "Generated"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>{lead}{body}"
        f"<p class=\"note\">{tail} {when} by medsight {esc(__version__)}.</p></body></html>\n"
    )
