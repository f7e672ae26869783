"""The training loop of the plain MONAI peers (``monai_drive.py``, ``monai_montgomery.py``, ``monai_openkbp.py``):
DiceCE, AdamW with cosine decay over a wall-time budget, as MONAI's tutorials write it; and the scoring of its
snapshots for time-to-quality curves."""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch


def train_for_budget(model: torch.nn.Module, loader: Iterable[dict], budget_s: float, patch: tuple[int, ...],
                     lr: float = 1e-3, snapshots: int = 0) -> tuple[dict[str, float], list[dict]]:
    """Train ``model`` on ``loader``'s ``image``/``label`` batches until ``budget_s`` seconds have passed.

    Returns the steps, samples, seconds, samples/s and voxels (pixels) per second of ``patch``-sized samples, and
    ``snapshots`` copies of the weights taken at evenly spaced training times (``budget_s * k / snapshots``, the last
    one at the end), each ``{"seconds", "steps", "state"}``: the points of a time-to-quality curve, scored after
    training so that scoring them takes nothing from the budget."""
    from monai.losses import DiceCELoss

    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-5)
    model.train()
    t0 = time.perf_counter()
    steps = samples = 0
    taken: list[dict] = []
    done = False
    while not done:
        for batch in loader:
            frac = min((time.perf_counter() - t0) / budget_s, 1.0)
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * frac))
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(batch["image"]), batch["label"])
            loss.backward()
            opt.step()
            steps += 1
            samples += int(batch["image"].shape[0])
            elapsed = time.perf_counter() - t0
            if elapsed >= budget_s:
                done = True
            if snapshots and (done or elapsed >= budget_s * (len(taken) + 1) / snapshots):
                taken.append({"seconds": round(elapsed, 1), "steps": steps, "state": copy.deepcopy(model.state_dict())})
            if done:
                break
    seconds = time.perf_counter() - t0
    return ({"steps": steps, "samples": samples, "seconds": round(seconds, 1), "samples_per_s": samples / seconds,
             "voxels_per_s": samples * math.prod(patch) / seconds}, taken)


def score_snapshots(model: torch.nn.Module, taken: list[dict], score: Callable[[torch.nn.Module], float]) -> list[dict]:
    """``score(model)`` (validation Dice) with each snapshot's weights loaded, in eval mode: the curve's rows
    ``{"seconds", "steps", "val_dice"}``. The model is left with the last snapshot's weights (the trained model)."""
    rows = []
    model.eval()
    for snap in taken:
        model.load_state_dict(snap["state"])
        with torch.no_grad():
            rows.append({"seconds": snap["seconds"], "steps": snap["steps"], "val_dice": float(score(model))})
        print(f"  snapshot at {snap['seconds']:.0f} s ({snap['steps']} steps): validation Dice {rows[-1]['val_dice']:.4f}",
              flush=True)
    return rows


def foreground_probability(model: torch.nn.Module, image: np.ndarray, patch: tuple[int, ...]) -> np.ndarray:
    """Foreground probability of a binary model over one (C, H, W) image: MONAI's sliding window (overlap 0.25,
    Gaussian blending, 4 windows a batch), softmax."""
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(np.asarray(image, dtype=np.float32))[None]
    return torch.softmax(sliding_window_inference(x, patch, 4, model, overlap=0.25, mode="gaussian"), 1)[0, 1].numpy()


def mean_foreground_dice(model: torch.nn.Module, items: list[dict], patch: tuple[int, ...]) -> float:
    """Mean over images of the whole-image foreground Dice at probability 0.5 (medsight's in-training validation
    measure for one label; 1 where both are empty)."""
    from medsight.metrics.segmentation import dice_per_label

    scores = [dice_per_label((foreground_probability(model, it["image"], patch) > 0.5).astype(np.uint8),
                             np.asarray(it["label"][0], dtype=np.uint8), [1])[0] for it in items]
    return float(np.mean([1.0 if np.isnan(d) else d for d in scores]))


def add_peer_arguments(ap: argparse.ArgumentParser, *, budget: str, out: Path, splits_required: bool) -> None:
    """The options every MONAI peer takes: budget, seed, threads, the medsight run's splits, snapshots, output."""
    ap.add_argument("--budget", default=budget)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--splits", type=Path, required=splits_required,
                    help="splits.json of the medsight run: fold 0's training cases train, its validation cases score")
    ap.add_argument("--curve", type=int, default=0, help="snapshots of the weights scored on fold 0's validation cases")
    ap.add_argument("--out", type=Path, default=out)


def write_benchmark(args: argparse.Namespace, result: dict) -> Path:
    """``<out>/benchmark.json``: the command, the machine, then ``result``."""
    record = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
              "machine": {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__}} | result
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "benchmark.json"
    path.write_text(json.dumps(record, indent=2, default=float))
    return path
