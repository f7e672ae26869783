"""Fine-tuning for segmentation on OpenKBP: 10 labelled cases from scratch vs from a model trained on other cases.

The situation it measures: a new site has a few contoured CTs and a model trained elsewhere. The source is a
medsight run trained on fold 0's training cases (96 CTs), e.g. the run of ``segmentation_budget.py openkbp``. Its
24 validation cases were never seen by it; the first ``--target-cases`` of them (sorted ids) become the new site's
training cases and the others its test cases. Both variants train with the source's plan (same network, so every
weight can be carried over), the same seed and the same fixed number of steps (``--epochs`` x ``--iterations``, not
a wall-time budget, so the result does not depend on the machine's load; in-training validation on the last epoch
only), through the command line a user would type::

    medsight train DATA --out RUN --fold 0 --plan SOURCE/plans.json --epochs E --iterations I --val-every E --device cpu
    medsight train ... --init-from SOURCE/fold_0/checkpoint_best.pt [--freeze-encoder-epochs N]

and are scored by medsight's own validation of the held-out cases (sliding window, 50 % overlap; organs not
contoured in a case are left out there). The source model as it is, without fine-tuning, is scored on the same cases
from its saved validation predictions.

    python benchmarks/finetune_openkbp.py --source runs/bench_openkbp --epochs 3 --iterations 100 --out runs/finetune_openkbp

Writes ``<out>/benchmark.json`` (command, machine, per-variant wall time, mean and per-organ Dice).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from partial_scoring import score_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "openkbp_hn_ct"


def _source_score(source: Path, cases: list[str]) -> dict:
    """The source model's saved fold-0 validation predictions, scored on ``cases`` only."""
    per = {name: m["dice"]["mean"] for name, m in score_folder(DATA, source / "fold_0" / "validation", cases).items()}
    return {"mean_dice": float(np.mean(list(per.values()))), "per_label_dice": per}


def _train(run: Path, source: Path, split: dict, args: argparse.Namespace, extra: list[str]) -> dict:
    run.mkdir(parents=True, exist_ok=True)
    (run / "splits.json").write_text(json.dumps([split], indent=1))
    if not (run / "preprocessed").exists():  # the source's cache was made with the same plan: share it
        (run / "preprocessed").symlink_to((source / "preprocessed").resolve())
    cmd = [sys.executable, "-m", "medsight.cli.app", "--quiet", "train", str(DATA), "--out", str(run), "--fold", "0",
           "--plan", str(source / "plans.json"), "--epochs", str(args.epochs), "--iterations", str(args.iterations),
           "--val-every", str(args.epochs), "--device", "cpu", "--seed", str(args.seed), *extra]
    t0 = time.perf_counter()
    with (run / "train.log").open("w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"training failed ({proc.returncode}); see {run / 'train.log'}")
    cv = json.loads((run / "summary.json").read_text())["cross_validation"]
    return {"command": " ".join(["medsight", *cmd[4:]]), "wall_s": round(time.perf_counter() - t0, 1),
            "mean_dice": cv["mean_dice"], "per_label_dice": cv["per_label_dice"], "cases": cv["cases"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, required=True,
                    help="medsight run trained on fold 0 (plans.json, splits.json, preprocessed/, fold_0/)")
    ap.add_argument("--target-cases", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--freeze-encoder-epochs", type=int, default=0, help="of the fine-tuned variant")
    ap.add_argument("--variants", default="scratch,finetune")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "finetune_openkbp")
    args = ap.parse_args()
    ckpt = args.source / "fold_0" / "checkpoint_best.pt"
    if not ckpt.is_file() or not (args.source / "splits.json").is_file():
        print(f"{args.source}: expected a medsight run trained on fold 0 (fold_0/checkpoint_best.pt, splits.json)",
              file=sys.stderr)
        return 2
    val = sorted(json.loads((args.source / "splits.json").read_text())[0]["val"])
    split = {"train": val[: args.target_cases], "val": val[args.target_cases:]}
    result: dict = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                    "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                    "source": str(args.source), "target_train": split["train"], "target_test": split["val"],
                    "steps": args.epochs * args.iterations, "source_as_is": _source_score(args.source, split["val"])}
    print(f"source model as is: mean organ Dice {result['source_as_is']['mean_dice']:.4f}", flush=True)
    for variant in args.variants.split(","):
        extra = [] if variant == "scratch" else ["--init-from", str(ckpt)] + (
            ["--freeze-encoder-epochs", str(args.freeze_encoder_epochs)] if args.freeze_encoder_epochs else [])
        result[variant] = _train(args.out / variant, args.source, split, args, extra)
        print(f"{variant}: mean organ Dice {result[variant]['mean_dice']:.4f} ({result[variant]['wall_s']:.0f} s)",
              flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
