"""Sliding-window inference on a CT-sized volume: medsight's predictor core vs MONAI's ``sliding_window_inference``.

Both get the same network (a MONAI DynUNet built by medsight's registry, eval mode, fixed seed), the same input
(``1 x 300 x 512 x 512`` float32), patch size, overlap, Gaussian blending (sigma = 0.125 x patch) and windows per
network call, and both run on the CPU with the same thread count. Each measurement runs in a fresh process, so its
peak resident memory (``ru_maxrss``) is its own; the tools alternate over ``--repeats`` rounds and medians are
reported. medsight returns class probabilities (softmax inside, blended per window). MONAI is measured twice: as it
returns (blended logits, no softmax: less work than medsight does) and followed by the softmax that turns them into
the same output (``monai_softmax``). Targets (issue 6): medsight no slower, and peak RSS at most
2 x (input + output as float32).

A separate small run (``--check-shape``) predicts the same smaller volume with both and reports how often their
arg-max labels agree (they blend different quantities, probabilities vs logits, so they need not be identical).

    python benchmarks/inference.py --repeats 3 --out docs/results/inference_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("medsight", "monai", "monai_softmax")


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _network(filters: list[int], classes: int):
    import torch

    from medsight.models.registry import create_model

    torch.manual_seed(0)
    n = len(filters)
    return create_model("dynunet", spatial_dims=3, in_channels=1, out_channels=classes, kernels=[[3, 3, 3]] * n,
                        strides=[[1, 1, 1]] + [[2, 2, 2]] * (n - 1), filters=filters).eval()


def _volume(shape: tuple[int, ...]):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, *shape), dtype=np.float32)
    x[:, :, : shape[1] // 2] += 1.0  # some structure, so the two halves get different labels
    return x


def _predict(tool: str, x, net, args: argparse.Namespace):
    import torch

    patch = tuple(args.patch)
    if tool == "medsight":
        from medsight.engine.sliding_window import sliding_window_probabilities

        return sliding_window_probabilities(x, [net], patch, overlap=args.overlap, batch_size=args.sw_batch, device="cpu")
    from monai.inferers import sliding_window_inference

    with torch.no_grad():
        logits = sliding_window_inference(torch.from_numpy(x)[None], roi_size=patch, sw_batch_size=args.sw_batch, predictor=net,
                                          overlap=args.overlap, mode="gaussian", sigma_scale=0.125, padding_mode="constant",
                                          device=torch.device("cpu"), sw_device=torch.device("cpu"))[0]
    return torch.softmax(logits, 0) if tool == "monai_softmax" else logits


def child(args: argparse.Namespace) -> int:
    """One measurement in this process: prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    net = _network(args.filters, args.classes)
    x = _volume(tuple(args.shape))
    base = _rss_mib()
    t0 = time.perf_counter()
    out = _predict(args.child, x, net, args)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tool": args.child, "seconds": seconds, "peak_rss_mib": peak, "rss_before_mib": base,
                      "output_shape": list(out.shape), "output_dtype": str(out.dtype)}))
    return 0


def check(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    net = _network(args.filters, args.classes)
    x = _volume(tuple(args.check_shape))
    a = _predict("medsight", x, net, args).argmax(0)
    b = _predict("monai", x, net, args).argmax(0)
    return {"shape": args.check_shape, "argmax_agreement": float((a == b).float().mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[300, 512, 512], help="z y x")
    ap.add_argument("--patch", type=int, nargs=3, default=[96, 160, 160])
    ap.add_argument("--overlap", type=float, default=0.25, help="MONAI's default")
    ap.add_argument("--sw-batch", type=int, default=1, help="windows per network call (the predictor's CPU default)")
    ap.add_argument("--filters", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check-shape", type=int, nargs=3, default=[96, 192, 192])
    ap.add_argument("--child", choices=TOOLS, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "inference_cpu.json")
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    passthrough = ["--shape", *map(str, args.shape), "--patch", *map(str, args.patch), "--overlap", str(args.overlap),
                   "--sw-batch", str(args.sw_batch), "--filters", *map(str, args.filters), "--classes", str(args.classes),
                   "--threads", str(args.threads)]
    runs: dict[str, list[dict]] = {t: [] for t in TOOLS}
    for r in range(args.repeats):
        for tool in (TOOLS if r % 2 == 0 else TOOLS[::-1]):
            proc = subprocess.run([sys.executable, __file__, "--child", tool, *passthrough], capture_output=True, text=True,
                                  cwd=ROOT)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            runs[tool].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {tool}: {runs[tool][-1]['seconds']:.1f} s, peak RSS {runs[tool][-1]['peak_rss_mib']:.0f} MiB",
                  flush=True)
    voxels = int(args.shape[0]) * int(args.shape[1]) * int(args.shape[2])
    io_mib = voxels * 4 * (1 + args.classes) / 2**20
    med = {t: {"seconds": statistics.median(r["seconds"] for r in v), "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in v),
               "rss_before_mib": statistics.median(r["rss_before_mib"] for r in v)} for t, v in runs.items()}
    result = {
        "settings": {k: getattr(args, k) for k in ("shape", "patch", "overlap", "sw_batch", "filters", "classes", "threads", "repeats")},
        "input_plus_output_float32_mib": io_mib, "runs": runs, "median": med,
        "time_ratio_medsight_over": {t: med["medsight"]["seconds"] / med[t]["seconds"] for t in TOOLS[1:]},
        "peak_rss_over_input_plus_output": {t: m["peak_rss_mib"] / io_mib for t, m in med.items()},
        "agreement": check(args),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    import monai
    import torch

    result["machine"] |= {"torch": torch.__version__, "monai": monai.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("median", "time_ratio_medsight_over", "peak_rss_over_input_plus_output",
                                             "input_plus_output_float32_mib", "agreement")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
