"""A run's data and plan in words: the fingerprint as a sentence and a compact table, the plan's settings (patch,
spacing, network, batch) and what was decided on the validation folds and why (postprocessing, thresholds,
temperatures). Everything is read from the run's JSON files as plain dicts (segmentation, classification and
multitask plans; plans of older layouts give fewer rows, never an error)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medsight.report.html import as_list, as_mapping, compact, esc, fmt, table
from medsight.transforms.postprocess import rule_text, rules_of


def _dims(values: Any) -> str:
    return " × ".join(fmt(v) for v in values) if isinstance(values, (list, tuple)) and values else ""


def _ranges(ranges: Any) -> str:
    if not isinstance(ranges, (list, tuple)) or not ranges:
        return ""
    parts = []
    for r in ranges:
        if isinstance(r, (list, tuple)) and len(r) == 2:
            parts.append(fmt(r[0]) if r[0] == r[1] else f"{fmt(r[0])}–{fmt(r[1])}")
    return " × ".join(parts)


def label_names(plans: Mapping[str, Any]) -> dict[int, str]:
    """Foreground label value -> name (segmentation and multitask plans)."""
    labels = plans.get("labels")
    if isinstance(labels, Mapping):
        return {int(v): str(k) for k, v in labels.items() if isinstance(v, (int, float)) and int(v) != 0}
    return {}


def modality_text(plans: Mapping[str, Any]) -> str:
    mods = [str(m) for m in plans.get("modalities") or [] if m and m != "other"]
    return "/".join(dict.fromkeys(mods))


def case_count(plans: Mapping[str, Any]) -> int | None:
    fp = plans.get("fingerprint")
    summary = fp.get("summary") if isinstance(fp, Mapping) else None
    if isinstance(summary, Mapping) and isinstance(summary.get("cases"), int):
        return int(summary["cases"])
    counts = plans.get("class_counts")
    if isinstance(counts, list) and counts and not plans.get("multilabel"):
        return int(sum(counts))
    return None


def data_phrase(plans: Mapping[str, Any]) -> str:
    """``"16 3D MR cases of demo_hippocampus; labels anterior, posterior"`` (what the plan knows)."""
    n = case_count(plans)
    dims = f"{plans['dims']}D " if plans.get("dims") else ""
    mod = modality_text(plans)
    what = f"{n if n is not None else 'the'} {dims}{mod + ' ' if mod else ''}{'case' if n == 1 else 'cases'}"
    if plans.get("dataset"):
        what += f" of {plans['dataset']}"
    names = label_names(plans)
    classes = plans.get("class_names")
    parts = [what]
    if names:
        parts.append("labels " + ", ".join(names[v] for v in sorted(names)))
    if isinstance(classes, list) and classes:
        counts = as_list(plans.get("class_counts"))
        shown = [f"{c} ({counts[i]})" if i < len(counts) else str(c) for i, c in enumerate(classes)]
        parts.append(("multi-label classes " if plans.get("multilabel") else "classes ") + ", ".join(shown))
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- fingerprint
def fingerprint_sentence(plans: Mapping[str, Any]) -> str:
    """The dataset fingerprint in one or two sentences (cases, shape, spacing, how much of the image each label is)."""
    fp = plans.get("fingerprint")
    s = fp.get("summary") if isinstance(fp, Mapping) else None
    if not isinstance(s, Mapping):
        return ""
    out = [f"{s.get('cases', '?')} training cases"]
    if s.get("median_shape"):
        shape = f"median size {_dims(s['median_shape'])} voxels"
        if _ranges(s.get("shape_range")):
            shape += f" (range {_ranges(s['shape_range'])})"
        out.append(shape)
    if s.get("median_spacing_mm"):
        sp = f"median spacing {_dims(s['median_spacing_mm'])} mm"
        if _ranges(s.get("spacing_range_mm")):
            sp += f" (range {_ranges(s['spacing_range_mm'])} mm)"
        out.append(sp)
    if s.get("channels"):
        out.append(f"channels {', '.join(map(str, s['channels']))}")
    text = ", ".join(out) + "."
    fractions = s.get("label_fraction")
    names = label_names(plans)
    if isinstance(fractions, Mapping) and fractions:
        shown = [f"{names.get(int(k), 'background' if str(k) == '0' else k)} {100 * float(v):.1f} %"
                 for k, v in fractions.items() if str(k).lstrip("-").isdigit()]
        text += " Share of the voxels: " + ", ".join(shown) + "."
    return text


def fingerprint_table(plans: Mapping[str, Any]) -> str:
    """Per channel intensities and per label cases and voxels, when the plan's full fingerprint holds them."""
    fp = plans.get("fingerprint")
    full = fp.get("full") if isinstance(fp, Mapping) else None
    if not isinstance(full, Mapping):
        return ""
    parts = []
    channels = [c for c in full.get("channels") or [] if isinstance(c, Mapping)]
    if channels:
        parts.append(table(("channel", "modality", "mean", "SD", "0.5th percentile", "99.5th percentile"),
                           [(c.get("name"), c.get("modality"), c.get("mean"), c.get("std"), c.get("p00_5"), c.get("p99_5"))
                            for c in channels], (False, False, True, True, True, True)))
    voxels, cases = full.get("label_voxels"), full.get("label_cases")
    if isinstance(voxels, Mapping) and voxels:
        names = label_names(plans)
        total = sum(float(v) for v in voxels.values()) or 1.0
        rows = [(names.get(int(k), "background" if str(k) == "0" else str(k)), k,
                 (cases or {}).get(k) if isinstance(cases, Mapping) else None, v, 100 * float(v) / total)
                for k, v in voxels.items() if str(k).lstrip("-").isdigit()]
        parts.append(table(("label", "value", "cases with it", "voxels", "% of voxels"), rows,
                           (False, True, True, True, True)))
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- plan
def _network(plans: Mapping[str, Any]) -> str:
    net = plans.get("network")
    if isinstance(net, Mapping):
        text = str(net.get("name", "?"))
        if isinstance(net.get("filters"), list):
            text += f", {len(net['filters'])} levels, filters {'/'.join(map(str, net['filters']))}"
        if net.get("deep_supervision"):
            text += ", deep supervision"
        return text
    if net:
        args = plans.get("network_args")
        return f"{net} {args}" if isinstance(args, Mapping) and args else str(net)
    config = plans.get("configuration")
    return str(config.get("network", "")) if isinstance(config, Mapping) else ""


def _get(plans: Mapping[str, Any], *keys: str) -> Any:
    config = as_mapping(plans.get("configuration"))
    for k in keys:
        if plans.get(k) not in (None, [], ""):
            return plans[k]
        if config.get(k) not in (None, [], ""):
            return config[k]
    return None


def plan_rows(plans: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(setting, value) of the plan: input patch or size, spacing, normalisation, network, batch, optimiser."""
    rows: list[tuple[str, str]] = []
    patch = _get(plans, "patch_size")
    if patch:
        rows.append(("patch (voxels)", _dims(patch)))
    size = _get(plans, "input_size")
    if size:
        rows.append(("input size", _dims(size) + (" (resized)" if plans.get("resize") else "")))
    spacing = _get(plans, "target_spacing")
    if spacing:
        rows.append(("target spacing (mm)", _dims(spacing)))
    norm = plans.get("normalization")
    if isinstance(norm, list) and norm:
        rows.append(("normalisation", ", ".join(str(n.get("scheme")) for n in norm if isinstance(n, Mapping))))
    net = _network(plans)
    if net:
        rows.append(("network", net))
    batch = _get(plans, "batch_size")
    if batch:
        rows.append(("batch", str(batch)))
    tr = plans.get("training")
    if isinstance(tr, Mapping) and tr.get("optimizer"):
        rows.append(("optimiser", f"{tr['optimizer']}, learning rate {fmt(tr.get('learning_rate'))}, "
                                  f"{tr.get('schedule', '')} schedule"))
    return rows


def plan_sentence(plans: Mapping[str, Any]) -> str:
    """The plan in one sentence."""
    rows = dict(plan_rows(plans))
    bits = []
    if "network" in rows:
        bits.append(f"a {rows['network']} network")
    if "patch (voxels)" in rows:
        bits.append(f"trained on patches of {rows['patch (voxels)']} voxels")
    elif "input size" in rows:
        bits.append(f"trained on images of {rows['input size']}")
    if "target spacing (mm)" in rows:
        bits.append(f"resampled to {rows['target spacing (mm)']} mm")
    if "batch" in rows:
        bits.append(f"{rows['batch']} per batch")
    return ("The plan: " + ", ".join(bits) + ".") if bits else ""


def decisions(plans: Mapping[str, Any], summary: Mapping[str, Any] | None,
              calibration: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """(decision, value, why) of what was decided on the validation folds: postprocessing, threshold, temperature."""
    out: list[tuple[str, str, str]] = []
    summary = summary or {}
    post = summary.get("postprocessing")
    if not isinstance(post, Mapping):
        seg = summary.get("segmentation")
        post = seg.get("postprocessing") if isinstance(seg, Mapping) else None
    if not isinstance(post, Mapping):
        post = plans.get("postprocessing") if isinstance(plans.get("postprocessing"), Mapping) else None
    names = label_names(plans)
    if isinstance(post, Mapping):
        rules = {v: r for v, r in rules_of(post).items() if not r.is_identity}
        before, after = post.get("dice_without") or {}, post.get("dice_with") or {}
        why = []
        for key in sorted(set(before) | set(after), key=lambda k: int(k) if str(k).isdigit() else 0):
            b, a = before.get(key), after.get(key)
            if isinstance(b, (int, float)) and isinstance(a, (int, float)):
                why.append(f"{names.get(int(key), key)} {fmt(b)} → {fmt(a)}")
        if not post.get("allowed", True):
            value, reason = "none", "not allowed by the plan"
        elif not post.get("decided", True) and not why:
            value, reason = "none yet", "decided once every fold has validation predictions"
        else:
            value = "; ".join(f"{names.get(v, str(v))}: {rule_text(r)}" for v, r in sorted(rules.items())) or "none"
            reason = "per label, the connected-component rule (keep the k largest, drop small components, fill holes) " \
                     "that raised the pooled validation Dice; none where no rule did"
            if why:
                reason += "; Dice without → with: " + ", ".join(why)
            if not post.get("decided", True):
                reason += " (provisional: not every fold has validation predictions yet)"
        out.append(("postprocessing", value, reason or "–"))
    cal = calibration or {}
    thresholds = cal.get("thresholds", summary.get("thresholds"))
    if thresholds is not None:
        method = cal.get("method") or plans.get("threshold_method") or ""
        shown = ", ".join(fmt(t) for t in thresholds) if isinstance(thresholds, list) else fmt(thresholds)
        out.append(("decision threshold", shown, f"{method} on {cal.get('decided_on', 'the validation cases')}".strip()))
    temps = cal.get("temperature")
    if isinstance(temps, Mapping) and temps:
        shown = ", ".join(f"fold {k}: {fmt(v)}" for k, v in temps.items())
        out.append(("temperature", shown, "fitted per fold on its own validation cases (lowest log-loss); divides the "
                                          "logits so that probabilities match observed frequencies"))
    return out


def plan_html(plans: Mapping[str, Any] | None, summary: Mapping[str, Any] | None,
              calibration: Mapping[str, Any] | None, *, extra_rows: Sequence[tuple[str, str]] = ()) -> str:
    """The plan section: a sentence, the compact settings table and the decisions table."""
    if not plans:
        return ""
    parts = []
    sentence = plan_sentence(plans)
    if sentence:
        parts.append(f"<p>{esc(sentence)}</p>")
    rows = plan_rows(plans) + list(extra_rows)
    if rows:
        parts.append(table(("setting", "value"), rows))
    decided = decisions(plans, summary, calibration)
    if decided:
        parts.append("<h3>Decided on the validation folds</h3>")
        parts.append(table(("decision", "value", "why"), decided))
    fp = fingerprint_sentence(plans)
    if fp:
        parts.append(f"<h3>Dataset fingerprint</h3><p>{esc(fp)}</p>{fingerprint_table(plans)}")
    elif isinstance(plans.get("fingerprint"), Mapping) and plans["fingerprint"]:  # a layout without a summary
        rows = [(k, describe_value(v)) for k, v in plans["fingerprint"].items()]
        parts.append(f"<h3>Dataset fingerprint</h3>{table(('field', 'value'), rows)}")
    return "".join(parts)


def describe_value(value: Any) -> str:
    """A value in a few words: number lists as count, range and median (per axis for lists of vectors), other
    values in full."""
    if isinstance(value, list) and value:
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            arr = None
        if arr is not None and arr.ndim == 1:
            return f"{arr.size} values, {fmt(np.nanmin(arr))}–{fmt(np.nanmax(arr))}, median {fmt(np.nanmedian(arr))}"
        if arr is not None and arr.ndim == 2:
            med = " × ".join(fmt(v) for v in np.nanmedian(arr, axis=0))
            return f"{arr.shape[0]} entries, median {med}"
    return compact(value)


__all__ = ["case_count", "data_phrase", "decisions", "describe_value", "fingerprint_sentence", "fingerprint_table", "label_names",
           "modality_text", "plan_html", "plan_rows", "plan_sentence"]
