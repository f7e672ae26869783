"""Progress bars for the command line (tqdm on stderr); the library reports progress through callbacks."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class TrainingProgress:
    """Turns trainer events into a per-epoch bar with loss, learning rate and ETA, plus one line per epoch."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bar: tqdm | None = None
        self.pre: tqdm | None = None

    def __call__(self, ev: dict[str, Any]) -> None:
        if self.quiet:
            return
        kind = ev.get("kind")
        if kind == "preprocess":
            if self.pre is None:
                self.pre = tqdm(total=ev["total"], desc="preprocess", unit="case", file=sys.stderr, leave=False, disable=None)
            self.pre.update(ev["done"] - self.pre.n)
            if ev["done"] >= ev["total"]:
                self.pre.close()
        elif kind == "fold":
            tqdm.write(f"fold {ev['fold']}: {ev['train']} training / {ev['val']} validation cases", file=sys.stderr)
        elif kind == "fold_started":
            tqdm.write(f"fold {ev['fold']}: started on {ev['device']} (log: {ev['log']})", file=sys.stderr)
        elif kind == "fold_finished":
            tqdm.write(f"fold {ev['fold']}: {'finished' if ev['ok'] else 'FAILED'} on {ev['device']}", file=sys.stderr)
        elif kind == "step":
            if self.bar is None or ev["iteration"] == 1:
                if self.bar is not None:
                    self.bar.close()
                self.bar = tqdm(total=ev["iterations"], desc=f"epoch {ev['epoch'] + 1}", unit="it", file=sys.stderr, leave=False,
                                disable=None)
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{ev['loss']:.4f}", lr=f"{ev['lr']:.2e}")
        elif kind == "epoch":
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            metric = ev.get("metric", "val_dice")
            name = {"val_dice": "val Dice", "val_auc": "val AUC"}.get(metric, metric.replace("_", " "))
            tqdm.write(
                f"epoch {ev['epoch']:4d}  train loss {ev['train_loss']:.4f}  val loss {ev['val_loss']:.4f}  "
                f"{name} {ev.get(metric, float('nan')):.4f}  (best {ev['best']:.4f})  {ev['seconds']:.0f}s",
                file=sys.stderr,
            )


def case_bar(desc: str, quiet: bool = False) -> Any:
    """A callback ``f(done, total)`` that drives a tqdm bar."""
    state: dict[str, tqdm] = {}

    def update(done: int, total: int) -> None:
        if quiet:
            return
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=desc, unit="case", file=sys.stderr, leave=False, disable=None)
        state["bar"].update(done - state["bar"].n)
        if done >= total:
            state["bar"].close()

    return update
