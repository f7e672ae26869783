"""Time-to-quality curves: validation Dice against training wall time, one plot per dataset (issue 22, item 7).

Each tool's curve comes from what its own benchmark run recorded:

- **medsight**: ``fold_0/metrics.csv`` of the run (``segmentation_budget.py``, ``medsight train``): the in-training
  validation of each epoch that validated (whole cases, sliding window without TTA; the mean over labels of each
  label's mean over the cases that annotate it) against ``seconds``, the training time so far, validation included.
- **MONAI**: the ``curve`` of a peer's ``benchmark.json`` (``monai_drive.py --curve N``, ``monai_openkbp.py
  --curve N``): snapshots of the weights at evenly spaced training times, scored after training the same way
  (whole cases, no TTA), so their scoring takes no training time.
- **nnU-Net**: its ``training_log_*.txt`` (or the ``nnunet.curve`` that ``nnunet_compare.py train`` stores): the
  mean over labels of the "Pseudo dice" it logs each epoch, its own in-training estimate from a few validation
  patches (5 per epoch in the benchmark's wall-budget trainer), against the summed epoch times. That is not the
  whole-case Dice of the other two, so it is drawn dashed.

A run's final score (its validation fold predicted as the benchmark scores it) can be added as a marker with
``--final TOOL=SECONDS:DICE``.

    python benchmarks/time_to_quality.py drive --curve medsight=runs/drive_fold0/fold_0/metrics.csv \\
        --curve monai=runs/monai_drive_fold0/benchmark.json --out docs/time_to_quality_drive.png

Writes the PNG and, beside the JSON results, ``docs/results/time_to_quality_<dataset>.json`` with every point.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STYLE = {"medsight": ("tab:blue", "-", "o"), "monai": ("tab:orange", "-", "s"), "nnunet": ("tab:green", "--", "^")}
LABEL = {"medsight": "medsight (whole-case validation)", "monai": "plain MONAI (snapshots, whole-case)",
         "nnunet": "nnU-Net (its pseudo Dice on patches)"}


def medsight_curve(metrics_csv: str) -> list[dict]:
    """(seconds, val_dice) of the epochs of a medsight ``metrics.csv`` that validated."""
    rows = []
    for r in csv.DictReader(io.StringIO(metrics_csv)):
        dice = float(r.get("val_dice") or "nan")
        if math.isfinite(dice):
            rows.append({"seconds": float(r["seconds"]), "epoch": int(r["epoch"]), "val_dice": dice})
    return rows


_NUMBER = re.compile(r"[-+]?\d*\.\d+(?:e[-+]?\d+)?|nan", re.IGNORECASE)


def nnunet_curve(log: str) -> list[dict]:
    """(summed epoch seconds, mean over labels of the pseudo Dice) of each epoch of an nnU-Net training log."""
    rows, seconds, pseudo = [], 0.0, None
    for line in log.splitlines():
        if ": Pseudo dice" in line:
            values = [float(v) for v in _NUMBER.findall(line.split(": Pseudo dice", 1)[1])]
            finite = [v for v in values if math.isfinite(v)]
            pseudo = sum(finite) / len(finite) if finite else None
        elif ": Epoch time:" in line:
            seconds += float(_NUMBER.findall(line.split(": Epoch time:", 1)[1])[0])
            if pseudo is not None:
                rows.append({"seconds": round(seconds, 1), "epoch": len(rows), "val_dice": pseudo})
            pseudo = None
    return rows


def load_curve(tool: str, path: Path) -> list[dict]:
    """A curve from a medsight ``metrics.csv``, an nnU-Net training log (``.txt``), or a benchmark JSON with a
    ``curve`` (at its top level or under ``tool``)."""
    text = path.read_text()
    if path.suffix == ".csv":
        return medsight_curve(text)
    if path.suffix == ".txt":
        return nnunet_curve(text)
    data = json.loads(text)
    node = data[tool] if isinstance(data.get(tool), dict) else data
    if not node.get("curve"):
        raise SystemExit(f"{path}: no 'curve' for {tool}; run the benchmark with its curve option")
    return [{"seconds": float(p["seconds"]), "val_dice": float(p["val_dice"])} | ({"epoch": p["epoch"]} if "epoch" in p else {})
            for p in node["curve"]]


def plot(dataset: str, curves: dict[str, list[dict]], finals: dict[str, tuple[float, float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for tool, pts in curves.items():
        color, style, marker = STYLE.get(tool, ("tab:gray", "-", "."))
        ax.plot([p["seconds"] / 60 for p in pts], [p["val_dice"] for p in pts], style, marker=marker, markersize=4,
                color=color, label=LABEL.get(tool, tool))
    for tool, (seconds, dice) in finals.items():
        color = STYLE.get(tool, ("tab:gray",))[0]
        ax.plot([seconds / 60], [dice], marker="*", markersize=13, color=color, linestyle="none",
                label=f"{tool.replace('monai', 'MONAI').replace('nnunet', 'nnU-Net')} final score {dice:.3f}")
    ax.set_xlabel("training wall time (minutes, 2 CPU cores)")
    ax.set_ylabel("validation Dice (fold 0)")
    ax.set_title(f"{dataset}: time to quality")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="the dataset's name, as the plot's title and the JSON's file name say it")
    ap.add_argument("--curve", action="append", default=[], metavar="TOOL=PATH",
                    help="medsight=metrics.csv, monai=benchmark.json, nnunet=training_log.txt or nnunet_compare JSON")
    ap.add_argument("--final", action="append", default=[], metavar="TOOL=SECONDS:DICE", help="a final-score marker")
    ap.add_argument("--out", type=Path, required=True, help="the PNG to write")
    ap.add_argument("--json", type=Path, help="default docs/results/time_to_quality_<dataset>.json")
    args = ap.parse_args(argv)
    curves, finals = {}, {}
    for spec in args.curve:
        tool, _, path = spec.partition("=")
        if not Path(path).is_file():
            print(f"{path}: not found (--curve {spec})", file=sys.stderr)
            return 2
        curves[tool] = load_curve(tool, Path(path))
    for spec in args.final:
        tool, _, value = spec.partition("=")
        seconds, _, dice = value.partition(":")
        finals[tool] = (float(seconds), float(dice))
    plot(args.dataset, curves, finals, args.out)
    record = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]) if argv is None else None,
              "dataset": args.dataset, "curves": curves,
              "finals": {k: {"seconds": s, "dice": d} for k, (s, d) in finals.items()}}
    dest = args.json or ROOT / "docs" / "results" / f"time_to_quality_{args.dataset.lower()}.json"
    dest.write_text(json.dumps(record, indent=1))
    for tool, pts in curves.items():
        print(f"{tool}: {len(pts)} points, last {pts[-1]['val_dice']:.4f} at {pts[-1]['seconds']:.0f} s" if pts else
              f"{tool}: no points")
    print(f"written: {args.out}, {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
