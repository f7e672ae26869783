"""The training loop of the plain MONAI peers (``monai_drive.py``, ``monai_openkbp.py``): DiceCE, AdamW with cosine
decay over a wall-time budget, as MONAI's tutorials write it."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import torch


def train_for_budget(model: torch.nn.Module, loader: Iterable[dict], budget_s: float, patch: tuple[int, ...],
                     lr: float = 1e-3) -> dict[str, float]:
    """Train ``model`` on ``loader``'s ``image``/``label`` batches until ``budget_s`` seconds have passed; returns the
    steps, samples, seconds, samples/s and voxels (pixels) per second of ``patch``-sized samples."""
    from monai.losses import DiceCELoss

    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-5)
    model.train()
    t0 = time.perf_counter()
    steps = samples = 0
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
            if time.perf_counter() - t0 >= budget_s:
                done = True
                break
    seconds = time.perf_counter() - t0
    return {"steps": steps, "samples": samples, "seconds": round(seconds, 1), "samples_per_s": samples / seconds,
            "voxels_per_s": samples * math.prod(patch) / seconds}
