"""Does the uncertainty score find the segmentations to check? Validation folds and degraded copies of them.

Usage (from the repository root, with ../shared/data beside it)::

    python benchmarks/uncertainty.py hippocampus --folds 0,1,2 --epochs 3 --iterations 25 --out runs/unc_hippocampus
    python benchmarks/uncertainty.py drive --reuse runs/unc_drive        # a run trained before: no training
    python benchmarks/uncertainty.py montgomery --reuse runs/unc_montgomery --shifted-cases 12

1. Trains the folds with a fixed number of epochs (or reuses ``--reuse RUN``), then computes the run's
   ``uncertainty.json`` (:func:`medsight.tasks.segmentation.uncertainty.run_uncertainty`): Spearman's correlation of
   the case score with the case Dice over the validation cases, and the AUROC of the score for the failed cases (Dice
   below the goal, default 0.9 x the median validation Dice).
2. Shifted data: the first ``--shifted-cases`` validation cases of each trained fold, degraded four ways (Gaussian
   noise, blur, a gamma contrast change, a 3x coarser in-plane resolution), predicted by their own fold's network with
   mirror TTA as validation was; per degradation the mean score and Dice, how many cases fail and how many the run's
   threshold flags. Degradations act on the native image before medsight's preprocessing.

Writes ``docs/results/uncertainty_<dataset>.json`` (or ``--result``) with the command, machine, settings and figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DATASETS = {
    "hippocampus": DATA / "msd_task04_hippocampus_cropped",
    "drive": DATA / "drive" / "training",
    "montgomery": DATA / "montgomery_cxr_lung_512",
}


def degrade(array: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """A degraded copy of an image array ``(C, *spatial)`` as float32 (the same grid): noise, blur, contrast, resolution.

    noise: Gaussian, SD 0.5 x the image's SD; blur: Gaussian, sigma 1.5 voxels per spatial axis; contrast: gamma 2 on
    the 1-99 percentile range (a non-linear change, which a per-image z-score does not undo); resolution: the last two
    (in-plane) axes down-sampled 3x (linear) and back.
    """
    from scipy import ndimage

    x = np.asarray(array, dtype=np.float32)
    out = np.empty_like(x)
    rng = np.random.default_rng(seed)
    for c in range(x.shape[0]):
        ch = x[c]
        if kind == "noise":
            out[c] = ch + rng.normal(0.0, 0.5 * float(ch.std()) + 1e-6, ch.shape).astype(np.float32)
        elif kind == "blur":
            out[c] = ndimage.gaussian_filter(ch, 1.5)
        elif kind == "contrast":
            lo, hi = np.percentile(ch, [1, 99])
            t = np.clip((ch - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
            out[c] = lo + (hi - lo) * t**2
        elif kind == "resolution":
            factor = [1.0] * (ch.ndim - 2) + [1 / 3, 1 / 3]
            small = ndimage.zoom(ch, factor, order=1)
            out[c] = ndimage.zoom(small, [s / t for s, t in zip(ch.shape, small.shape)], order=1)[
                tuple(slice(0, s) for s in ch.shape)]
        else:
            raise ValueError(f"unknown degradation {kind!r}")
    return out


KINDS = ("noise", "blur", "contrast", "resolution")


def shifted_check(dataset: Path, run: Path, unc: dict[str, Any], *, cases_per_fold: int, device: str | None) -> dict[str, Any]:
    from medsight.core.case import Case
    from medsight.data.dataset import load_case, load_dataset
    from medsight.metrics.summary import SegmentationEvaluator
    from medsight.metrics.uncertainty import failure_auroc, spearman
    from medsight.tasks.segmentation.predictor import segmentation_predictor

    spec = load_dataset(dataset)
    level, threshold = unc["goal"]["dice_below"], unc["threshold"]
    by_fold: dict[str, list[dict[str, Any]]] = {}
    for c in unc["cases"]:
        by_fold.setdefault(c["fold"], []).append(c)
    rows: list[dict[str, Any]] = []
    for fold, cases in sorted(by_fold.items()):
        pred = segmentation_predictor(run, folds=[int(fold)], device=device)
        for c in cases[:cases_per_fold]:
            case = load_case(spec, spec.case(c["case"]))
            ref = case.label_array
            assert ref is not None
            rows.append({"case": c["case"], "fold": fold, "kind": "clean", "score": c["score"], "dice": c["dice"]})
            for kind in KINDS:
                img = case.image.with_array(degrade(case.image.array, kind))
                res = pred.predict(Case(case_id=c["case"], image=img))
                ev = SegmentationEvaluator(pred.plan.labels)
                got = ev.add(c["case"], res.labels.array[0], ref, spacing=case.image.spacing,
                             roi=case.mask.array[0] if case.mask is not None else None)
                dice = float(np.nanmean([r["dice"] for r in got]))
                rows.append({"case": c["case"], "fold": fold, "kind": kind, "score": res.score, "dice": dice})
            print(f"  shifted: {c['case']} (fold {fold}) done", flush=True)
    per_kind = {}
    for kind in ("clean", *KINDS):
        sel = [r for r in rows if r["kind"] == kind]
        s = np.asarray([r["score"] for r in sel])
        d = np.asarray([r["dice"] for r in sel])
        failed, flagged = d < level, s > threshold
        per_kind[kind] = {"cases": len(sel), "mean_score": float(s.mean()), "mean_dice": float(np.nanmean(d)),
                          "failed": int(failed.sum()), "flagged": int(flagged.sum()),
                          "failed_flagged": int((failed & flagged).sum()),
                          "score_rose": None if kind == "clean" else int(sum(
                              r["score"] > c["score"] for r, c in zip(sel, [x for x in rows if x["kind"] == "clean"])))}
    s_all = np.asarray([r["score"] for r in rows])
    d_all = np.asarray([r["dice"] for r in rows])
    return {"cases_per_fold": cases_per_fold, "degradations": degrade.__doc__.split("\n\n")[1].strip() if degrade.__doc__
            else "", "per_kind": per_kind, "pooled": {"cases": len(rows), "spearman": spearman(s_all, d_all),
                                                      "auroc": failure_auroc(s_all, d_all < level),
                                                      "failed": int((d_all < level).sum()),
                                                      "flagged": int((s_all > threshold).sum()),
                                                      "failed_flagged": int(((d_all < level) & (s_all > threshold)).sum())},
            "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=sorted(DATASETS))
    ap.add_argument("--out", help="run folder to train into (default runs/unc_<dataset>)")
    ap.add_argument("--reuse", help="a trained run folder of this dataset: no training")
    ap.add_argument("--folds", default="0,1,2,3,4", help="folds of the 5-fold split to train (default all five)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=25, help="iterations per epoch")
    ap.add_argument("--base-filters", type=int)
    ap.add_argument("--device")
    ap.add_argument("--dice-below", type=float, help="failed case: Dice below this (default 0.9 x median)")
    ap.add_argument("--shifted-cases", type=int, default=8, help="validation cases per fold in the shifted check")
    ap.add_argument("--result", help="output JSON (default docs/results/uncertainty_<dataset>.json)")
    args = ap.parse_args()

    from medsight.engine.config import RunOptions
    from medsight.tasks.segmentation.pipeline import train
    from medsight.tasks.segmentation.uncertainty import run_uncertainty

    t0 = time.time()
    run = Path(args.reuse or args.out or ROOT / "runs" / f"unc_{args.dataset}")
    if not args.reuse:
        config = RunOptions(epochs=args.epochs, iterations_per_epoch=args.iterations, val_every=args.epochs,
                            device=args.device, seed=0)
        train(DATASETS[args.dataset], run, folds=[int(f) for f in args.folds.split(",")], config=config,
              base_filters=args.base_filters)
    t_train = time.time() - t0
    unc = run_uncertainty(run, dice_below=args.dice_below)
    dices = [c["dice"] for c in unc["cases"]]
    print(f"{args.dataset}: {unc['n_cases']} validation cases, median Dice {np.median(dices):.3f}; failed "
          f"(< {unc['goal']['dice_below']:.3f}) {unc['n_failed']}; Spearman {unc['spearman']}; AUROC {unc['auroc']}; "
          f"threshold {unc['threshold']:.4f} flags {unc['flagged']} ({unc['failed_flagged']} failed)", flush=True)
    shifted = shifted_check(DATASETS[args.dataset], run, unc, cases_per_fold=args.shifted_cases, device=args.device)
    for kind, v in shifted["per_kind"].items():
        print(f"  {kind:<10} score {v['mean_score']:.4f}  Dice {v['mean_dice']:.3f}  failed {v['failed']}/{v['cases']}  "
              f"flagged {v['flagged']} (failed flagged {v['failed_flagged']})  score rose {v['score_rose']}")
    config_json = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    trained = sorted(p.name for p in run.glob("fold_*") if (p / "validation").is_dir())
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(),
                    "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "dataset": str(DATASETS[args.dataset]),
        "run": str(run),
        "training": {"folds_with_validation": trained, "train": config_json.get("train"),
                     "seconds": round(t_train, 1) if not args.reuse else None},
        "validation": {k: unc[k] for k in ("measure", "case_score", "goal", "threshold", "spearman", "auroc", "n_cases",
                                           "n_failed", "flagged", "failed_flagged")}
        | {"median_dice": float(np.median(dices)), "mean_dice": float(np.mean(dices))},
        "shifted": shifted,
        "wall_s": round(time.time() - t0, 1),
    }
    target = Path(args.result or ROOT / "docs" / "results" / f"uncertainty_{args.dataset}.json")
    target.write_text(json.dumps(result, indent=2, default=str))
    print(f"written: {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
