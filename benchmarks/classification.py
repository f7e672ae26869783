"""Classification quality under a fixed CPU/GPU wall-time budget, on the shared real datasets.

Usage (from the repository root, with ../shared/data beside it)::

    python benchmarks/classification.py breastmnist --budget 10m
    python benchmarks/classification.py pneumoniamnist --budget 15m
    python benchmarks/classification.py hippocampus3d --model resnet18 --budget 5m
    python benchmarks/classification.py hippocampus3d --model cnnlstm --budget 5m

MedMNIST (BreastMNIST, PneumoniaMNIST): trains on the official train split, validates on the official val split
(early stopping, temperature scaling and the decision threshold are all chosen there), then predicts the test split
once and scores it. The test split is never used for a choice.

hippocampus3d: an honest 3D task built from the shared MSD Hippocampus volumes: the class is whether a case's total
hippocampus volume (labels 1+2, from its label map) is above the median of the training cases. 20 % of the cases
(seeded) are held out as a test set; the rest train with medsight's stratified fold 0 for validation. The
network sees only the image.

Prints a table and writes ``<out>/benchmark.json`` (command, machine, figures).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
NPZ = {"breastmnist": DATA / "breastmnist" / "BreastMNIST.npz", "pneumoniamnist": DATA / "pneumoniamnist" / "pneumoniamnist.npz"}
PUBLISHED = {"breastmnist": {"auc": 0.901, "accuracy": 0.863}, "pneumoniamnist": {"auc": 0.944, "accuracy": 0.854}}


def hippocampus_csvs(work: Path, seed: int = 0) -> tuple[Path, Path]:
    """train.csv / test.csv of image,label with label = volume above the training median ("large") or not."""
    from medsight.io import read_image

    root = DATA / "msd_task04_hippocampus_cropped"
    images = sorted((root / "images").glob("*.nii.gz"))
    vols = {}
    for img in images:
        lab = read_image(root / "labels" / img.name)
        vols[img] = float((lab.array > 0).sum() * np.prod(lab.spacing)) / 1000.0
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = len(images) // 5
    test = [images[i] for i in order[:n_test]]
    train = [images[i] for i in order[n_test:]]
    cut = float(np.median([vols[i] for i in train]))
    work.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, files in (("train", train), ("test", test)):
        p = work / f"{name}.csv"
        with p.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", "label", "volume_ml"])
            for f in files:
                w.writerow([str(f), "large" if vols[f] > cut else "small", f"{vols[f]:.4f}"])
        paths.append(p)
    (work / "threshold.json").write_text(json.dumps({"median_training_volume_ml": cut}))
    return paths[0], paths[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=["breastmnist", "pneumoniamnist", "hippocampus3d"])
    ap.add_argument("--budget", default="10m")
    ap.add_argument("--model", default=None, help="network (default: the plan's, resnet18)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    ap.add_argument("--device")
    args = ap.parse_args()

    from medsight.cli.common import parse_duration
    from medsight.engine.config import RunOptions
    from medsight.tasks.classification.pipeline import predict_classification, train_classification

    tag = f"{args.dataset}_{args.model or 'default'}_s{args.seed}"
    out = Path(args.out or ROOT / "runs" / f"bench_cls_{tag}")
    if args.dataset == "hippocampus3d":
        train_src, test_src = hippocampus_csvs(out / "data")
        test_arg: dict[str, str] = {}
    else:
        train_src = test_src = NPZ[args.dataset]
        test_arg = {"split": "test"}
    config = RunOptions(time_budget_s=parse_duration(args.budget), device=args.device, seed=args.seed)
    t0 = time.time()
    summary = train_classification(train_src, out, folds=[0], config=config, network=args.model)
    train_s = time.time() - t0
    t1 = time.time()
    predict_classification(out, test_src, out / "test", device=args.device, **test_arg)  # type: ignore[arg-type]
    predict_s = time.time() - t1
    test = json.loads((out / "test" / "metrics.json").read_text())
    fold = summary["trained_now"]["0"]
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(),
                    "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"), "torch": torch.__version__},
        "dataset": args.dataset, "model": json.loads((out / "plans.json").read_text())["network"], "seed": args.seed,
        "budget": args.budget, "epochs": fold["epochs"], "best_epoch": fold.get("best_epoch"),
        "stopped_early": fold.get("stopped_early"), "train_seconds": round(train_s, 1), "predict_seconds": round(predict_s, 1),
        "validation": summary.get("cross_validation"), "thresholds": summary.get("thresholds"),
        "test": {k: test.get(k) for k in ("n", "auc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity", "ece",
                                          "ci95")},
        "published": PUBLISHED.get(args.dataset),
    }
    (out / "benchmark.json").write_text(json.dumps(result, indent=2))
    t = result["test"]
    print(f"\n{args.dataset} ({result['model']}, {args.budget}, {fold['epochs']} epochs): test n={t['n']}")
    for k in ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "ece"):
        v = t.get(k)
        ci = (t.get("ci95") or {}).get(k)
        pub = (PUBLISHED.get(args.dataset) or {}).get(k)
        print(f"  {k:<18} {v:.4f}" + (f"  [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else "")
              + (f"   published ResNet-18 (28): {pub}" if pub else "") if isinstance(v, float) else f"  {k:<18} {v}")
    print(f"written: {out / 'benchmark.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
