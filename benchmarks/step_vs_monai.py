"""One training step of medsight's planned network against the plain MONAI peer's, on random tensors (issue 22's samples/s).

The medsight side is the DynUNet of a ``plans.json`` (``--plan``; for example the one an OpenKBP run writes) on batches
of the plan's patch and batch size, with its Dice + CE loss over the deep-supervision outputs. The peer is the network
of ``monai_openkbp.py``: MONAI's ``UNet`` (channels 16-32-64-128-256, strides 2, two residual units) on 2 patches of
64^3 with ``DiceCELoss``. One step is forward, loss, backward and an AdamW step, in float32 and under bfloat16
autocast. The options alternate over ``--repeats`` rounds; each round times ``--steps`` steps after ``--warmup``, and
the median step time and voxels per second of each are reported. Random tensors: the data path is not measured here
(``throughput.py`` does that).

    python benchmarks/step_vs_monai.py --plan runs/bench_openkbp/plans.json --out docs/results/step_vs_monai_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monai_openkbp import PATCH as MONAI_PATCH  # noqa: E402
from monai_openkbp import peer_network  # noqa: E402

MONAI_BATCH = 2  # RandCropByPosNegLabeld's 2 samples of one case per batch


def _medsight(plan_path: Path) -> tuple[torch.nn.Module, torch.nn.Module, list[int], int, int, int]:
    from medsight.models.registry import create_model
    from medsight.tasks.segmentation.plan import Plan
    from medsight.tasks.segmentation.trainer import SegmentationLoss, network_args

    plan = Plan.load(plan_path)
    torch.manual_seed(0)
    model = create_model(plan.network.name, **network_args(plan))
    return model, SegmentationLoss(), list(plan.patch_size), plan.batch_size, len(plan.channel_names), plan.num_classes


def _monai(num_classes: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    from monai.losses import DiceCELoss

    torch.manual_seed(0)
    return peer_network(num_classes), DiceCELoss(to_onehot_y=True, softmax=True)  # monai_loop's loss


class Candidate:
    def __init__(self, name: str, model: torch.nn.Module, loss: torch.nn.Module, shape: list[int], batch: int,
                 channels: int, classes: int, bf16: bool) -> None:
        self.name, self.model, self.loss, self.bf16 = name, model.train(), loss, bf16
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        self.x = torch.randn(batch, channels, *shape)
        self.y = torch.randint(0, classes, (batch, 1, *shape))
        self.voxels = batch * int(torch.tensor(shape).prod())
        self.times: list[float] = []

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(self.x)
        self.loss(out, self.y).backward()
        self.opt.step()

    def run(self, warmup: int, steps: int) -> None:
        for _ in range(warmup):
            self.step()
        for _ in range(steps):
            t = time.perf_counter()
            self.step()
            self.times.append(time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", type=Path, required=True, help="a medsight plans.json (3D)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    model, loss, patch, batch, channels, classes = _medsight(args.plan)
    peer, peer_loss = _monai(classes)
    candidates = [Candidate(f"medsight {'x'.join(map(str, patch))} x {batch}, {p}", model, loss, patch, batch, channels,
                            classes, p == "bf16") for p in ("bf16", "fp32")]
    candidates += [Candidate(f"MONAI UNet 64^3 x {MONAI_BATCH}, {p}", peer, peer_loss, list(MONAI_PATCH), MONAI_BATCH, 1,
                             classes, p == "bf16") for p in ("fp32", "bf16")]
    for r in range(args.repeats):
        for c in (candidates if r % 2 == 0 else candidates[::-1]):  # alternate the order between rounds
            c.run(args.warmup, args.steps)
    rows: list[dict[str, Any]] = []
    for c in candidates:
        med = statistics.median(c.times)
        rows.append({"name": c.name, "median_step_s": round(med, 4), "voxels_per_step": c.voxels,
                     "m_voxels_per_s": round(c.voxels / med / 1e6, 3), "steps_timed": len(c.times)})
        print(f"{c.name}: {med:.3f} s per step, {c.voxels / med / 1e6:.2f} M voxels/s")
    out = {"command": "python benchmarks/step_vs_monai.py " + " ".join(sys.argv[1:]),
           "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()},
           "plan": str(args.plan), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
