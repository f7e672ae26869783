"""bfloat16 vs float32 training at equal steps: three shared datasets x two seeds, paired runs.

Each run is ``segmentation_budget.py DATASET --fold 0 --epochs E --iterations I --seed S --precision P --threads 1``
(fold 0 validation of the fixed split; DRIVE too, 4 of its 20 training images, so the test set is not used). A pair
shares the seed, so both arms draw the same patches and augmentations; only the arithmetic differs. Quality is compared
at equal steps, so the runs may share the machine (``--jobs`` side by side, one thread each); their times are not
speed figures (``step_options.py`` measures those).

    python benchmarks/precision_check.py --out /tmp/s7 --jobs 2            # train the 12 runs, then collect
    python benchmarks/precision_check.py --out /tmp/s7 --collect-only      # collect existing runs

Writes ``docs/results/precision_check_cpu.json`` (or ``--json``) and prints one row per pair.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("hippocampus", "drive", "montgomery")
PRECISIONS = ("fp32", "bf16")


def run_dir(out: Path, dataset: str, seed: int, precision: str) -> Path:
    return out / f"C_{dataset}_s{seed}_{precision}"


def train(out: Path, dataset: str, seed: int, precision: str, epochs: int, iterations: int) -> int:
    where = run_dir(out, dataset, seed, precision)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "segmentation_budget.py"), dataset, "--fold", "0", "--epochs",
           str(epochs), "--iterations", str(iterations), "--seed", str(seed), "--precision", precision, "--threads", "1",
           "--out", str(where)]
    with open(f"{where}.log", "w") as log:
        return subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)


def collect(out: Path, seeds: list[int]) -> dict:
    pairs = []
    for dataset in DATASETS:
        for seed in seeds:
            arms = {}
            for precision in PRECISIONS:
                where = run_dir(out, dataset, seed, precision)
                bench = json.loads((where / "benchmark.json").read_text())
                rows = list(csv.DictReader((where / "fold_0" / "metrics.csv").open()))
                arms[precision] = {"validation_dice": bench["validation_fold0"]["mean_dice"],
                                   "final_train_loss": float(rows[-1]["train_loss"]),
                                   "epochs": int(rows[-1]["epoch"]), "command": bench["command"],
                                   "trained_precision": bench["trained"]["0"].get("precision")}
            pairs.append({"dataset": dataset, "seed": seed, **arms,
                          "dice_difference": arms["bf16"]["validation_dice"] - arms["fp32"]["validation_dice"]})
    diffs = [p["dice_difference"] for p in pairs]
    return {"pairs": pairs, "mean_dice_difference": statistics.mean(diffs),
            "per_dataset_mean_difference": {d: statistics.mean(p["dice_difference"] for p in pairs if p["dataset"] == d)
                                            for d in DATASETS}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder of the runs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "results" / "precision_check_cpu.json")
    args = ap.parse_args()
    if not args.collect_only:
        args.out.mkdir(parents=True, exist_ok=True)
        todo = [(d, s, p) for s in args.seeds for d in DATASETS for p in PRECISIONS]
        with ThreadPoolExecutor(args.jobs) as pool:
            codes = list(pool.map(lambda t: train(args.out, *t, args.epochs, args.iterations), todo))
        if any(codes):
            print(f"failed runs: {[t for t, c in zip(todo, codes) if c]}")
            return 1
    result = collect(args.out, args.seeds)
    result["command"] = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    result["steps_per_run"] = args.epochs * args.iterations
    args.json.write_text(json.dumps(result, indent=1))
    for p in result["pairs"]:
        print(f"{p['dataset']:<12} seed {p['seed']}: fp32 {p['fp32']['validation_dice']:.4f}  bf16 "
              f"{p['bf16']['validation_dice']:.4f}  ({p['dice_difference']:+.4f}); final train loss "
              f"{p['fp32']['final_train_loss']:.4f} / {p['bf16']['final_train_loss']:.4f}")
    print(f"mean difference (bf16 - fp32): {result['mean_dice_difference']:+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
