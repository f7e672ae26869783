"""Training-step options measured, not assumed (issue 6): thread count, channels_last, bf16 autocast, torch.compile.

One training step = forward, Dice+CE with deep supervision, backward, AdamW step, of the network medsight plans for
Hippocampus (3D DynUNet, the CPU width) on batches of the plan's patch and batch size (random tensors: the data path
is measured by ``throughput.py``). Each option runs ``--steps`` steps after ``--warmup`` steps; options alternate over
``--repeats`` rounds and the median step time of each is reported with its ratio to the default (fp32, contiguous,
eager, every core). ``torch.compile``'s one-off compilation time is reported separately.

    python benchmarks/step_options.py --repeats 3 --steps 8 --out docs/results/step_options_cpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

OPTIONS = ("default", "threads_1", "channels_last", "bf16_autocast", "bf16_channels_last", "compile")
PLANAR = {"drive": ROOT.parent / "shared" / "data" / "drive" / "training",
          "montgomery": ROOT.parent / "shared" / "data" / "montgomery_cxr_lung_512"}


def _plan(dataset: str = "hippocampus", min_batch: int | None = None, base_filters: int = 16):
    if dataset == "hippocampus":
        from throughput import _prepare  # the same Hippocampus plan as the throughput benchmark

        plan, _, _ = _prepare(8, Path(tempfile.mkdtemp(prefix="medsight_steps_")))
        return plan
    from medsight.tasks.segmentation.pipeline import plan_dataset

    return plan_dataset(PLANAR[dataset], Path(tempfile.mkdtemp(prefix="medsight_steps_")) / "plans.json", base_filters=base_filters,
                        min_batch=min_batch)


class Option:
    def __init__(self, name: str, plan, threads: int) -> None:
        from medsight.models.registry import create_model
        from medsight.tasks.segmentation.trainer import SegmentationLoss, network_args

        self.name = name
        torch.manual_seed(0)
        self.model = create_model(plan.network.name, **network_args(plan)).train()
        self.channels_last = name in ("channels_last", "bf16_channels_last")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d if plan.dims == 3 else torch.channels_last)
        self.threads = 1 if name == "threads_1" else threads
        self.autocast = name in ("bf16_autocast", "bf16_channels_last")
        self.compile_s = None
        self.forward = self.model
        if name == "compile":
            self.forward = torch.compile(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.loss = SegmentationLoss()
        g = torch.Generator().manual_seed(0)
        b, c = plan.batch_size, len(plan.channel_names)
        self.x = torch.randn((b, c, *plan.patch_size), generator=g)
        self.y = torch.randint(0, plan.num_classes, (b, 1, *plan.patch_size), generator=g)
        if self.channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last_3d if plan.dims == 3 else torch.channels_last)

    def step(self) -> float:
        torch.set_num_threads(self.threads)
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            out = self.forward(self.x)
            loss = self.loss(out, self.y)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--options", default=",".join(OPTIONS))
    ap.add_argument("--dataset", choices=["hippocampus", *PLANAR], default="hippocampus",
                    help="whose plan: Hippocampus (3D, 8 cases) or a 2D dataset planned whole")
    ap.add_argument("--min-batch", type=int, help="2D: the planner's min_batch (default: the planner's own)")
    ap.add_argument("--base-filters", type=int, default=16,
                    help="2D: filters of the first stage (default 16, the planner's CPU default)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "step_options_cpu.json")
    args = ap.parse_args(argv)
    plan = _plan(args.dataset, args.min_batch, args.base_filters)
    names = args.options.split(",")
    opts = {n: Option(n, plan, args.threads) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    for n, o in opts.items():  # warm-up (and compilation) before any timing
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            o.step()
        if n == "compile":
            o.compile_s = time.perf_counter() - t0
    for r in range(args.repeats):
        for n in (names if r % 2 == 0 else names[::-1]):
            times[n].append(statistics.median(opts[n].step() for _ in range(args.steps)))
        print(f"round {r + 1}: " + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in names), flush=True)
    med = {n: statistics.median(v) for n, v in times.items()}
    base = med.get("default")
    samples = {n: plan.batch_size / v for n, v in med.items()}
    pixels = {n: plan.batch_size * math.prod(plan.patch_size) / v for n, v in med.items()}
    result = {"plan": {"dataset": args.dataset, "patch": plan.patch_size, "batch": plan.batch_size,
                       "filters": plan.network.filters, "dims": plan.dims},
              "samples_per_s": samples, "voxels_per_s": pixels,
              "threads": args.threads, "median_step_s": med, "rounds": times,
              "speedup_vs_default": {n: base / v for n, v in med.items()} if base else None,
              "compile_s": opts["compile"].compile_s if "compile" in opts else None,
              "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
              "date": time.strftime("%Y-%m-%d %H:%M")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("plan", "median_step_s", "speedup_vs_default", "samples_per_s", "compile_s")},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
