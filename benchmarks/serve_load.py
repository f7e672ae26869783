"""A bounded load test of ``medsight serve``: N requests from C concurrent clients on loopback, latency percentiles.

Usage (from the repository root)::

    python benchmarks/serve_load.py                       # 200 requests, 8 clients, a tiny synthetic run
    python benchmarks/serve_load.py --run runs/hippo --requests 200 --clients 8 --out docs/results/serve_load.json

The server is the real command line (``MEDSIGHT_TOKEN=T python -m medsight serve RUN --host 127.0.0.1 --port P``) in its
own process; the clients are threads of this process, each with its own keep-alive ``httpx`` connection, all on
127.0.0.1 (nothing else is contacted). Before the timed part one prediction job runs on a synthetic volume
(``--shape``, default 48x160x160 voxels), so the volume and slice requests read a realistically sized image.

The timed requests are a fixed, seeded mix of what the viewer and API clients send: run list, job status, volume
geometry, slice PNGs (three planes, several windows), the gzip-compressed label map, and a few uploads that queue
new prediction jobs (their worker competes for the CPU while the other requests are served). Every response must
be the expected status (200/202); the uploaded jobs must finish ``done``. Writes a JSON with the command, the
machine, per-kind counts and p50/p95/p99/max latencies (ms), and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
#: request kind -> share of the timed requests
MIX = {"runs": 0.10, "job_status": 0.15, "volume_meta": 0.10, "slice_png": 0.50, "labels_data": 0.12, "upload": 0.03}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _tiny_run(work: Path) -> Path:
    """A one-step 3D segmentation run on phantoms (a few seconds)."""
    from medsight.data.synthetic import write_phantom_dataset
    from medsight.engine.config import RunOptions
    from medsight.tasks.segmentation.pipeline import train

    ds = write_phantom_dataset(work / "phantoms", num_cases=4, shape=(24, 32, 28), spacing=(2.0, 2.0, 2.0), seed=0)
    run = work / "runs" / "phantom3d"
    train(ds, run, folds=[0], config=RunOptions(epochs=1, iterations_per_epoch=1, seed=0, device="cpu"), base_filters=4)
    return run


def _volume(work: Path, shape: tuple[int, ...]) -> Path:
    """A synthetic MR-like volume of ``shape`` (1 mm voxels) as NIfTI."""
    from medsight.core.image import Image
    from medsight.io import write_image

    rng = np.random.default_rng(0)
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    body = (zz**2 + yy**2 + xx**2 < 0.8).astype(np.float32)
    arr = 300 * body + 120 * ((zz - 0.2) ** 2 + yy**2 + (xx + 0.3) ** 2 < 0.05) + rng.normal(0, 15, shape)
    return write_image(Image(arr.astype(np.float32)[None], spacing=(1.0, 1.0, 1.0)), work / "scan.nii.gz")


def _start_server(run: Path, port: int, token: str, work: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "medsight", "-q", "serve", str(run), "--host", HOST, "--port", str(port),
           "--work-dir", str(work / "server")]  # the token travels in the environment, never on the command line
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "MEDSIGHT_TOKEN": token})
    import httpx

    end = time.monotonic() + 120
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://{HOST}:{port}/api/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("server did not answer /api/health within 120 s")


def _plan(n: int, seed: int, shape: tuple[int, ...]) -> list[tuple[str, str, dict[str, Any]]]:
    """``n`` (kind, path template, params) in a seeded order following :data:`MIX`."""
    rng = random.Random(seed)
    kinds = [k for k, share in MIX.items() for _ in range(round(share * n))]
    kinds = (kinds + ["slice_png"] * n)[:n]
    rng.shuffle(kinds)
    windows = [None, "lung", "bone", "soft_tissue", "brain", "40,400"]
    out = []
    for kind in kinds:
        params: dict[str, Any] = {}
        if kind == "slice_png":
            axis = rng.choice(["axial", "coronal", "sagittal"])
            size = shape[{"axial": 0, "coronal": 1, "sagittal": 2}[axis]]
            params = {"axis": axis, "index": rng.randrange(size)}
            window = rng.choice(windows)
            if window:
                params["window"] = window
        out.append((kind, {"runs": "/api/runs", "job_status": "/api/jobs/{job}", "volume_meta": "/api/jobs/{job}/volumes/image",
                           "slice_png": "/api/jobs/{job}/volumes/image/slice.png",
                           "labels_data": "/api/jobs/{job}/volumes/labels/data", "upload": "/api/jobs"}[kind], params))
    return out


def _wait_done(http: Any, job_id: str, timeout: float) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = str(http.get(f"/api/jobs/{job_id}").json()["status"])
        if status in ("done", "failed"):
            return status
        time.sleep(0.25)
    return "timeout"


def run_load(run: Path, *, requests: int, clients: int, shape: tuple[int, ...], work: Path, seed: int) -> dict[str, Any]:
    import httpx

    token = secrets.token_urlsafe(16)
    port = _free_port()
    scan = _volume(work, shape)
    small = _volume(work / "small", (16, 32, 32))
    server = _start_server(run, port, token, work)
    base = f"http://{HOST}:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=600) as http:
            t0 = time.perf_counter()
            job = http.post("/api/jobs", data={"run": run.name}, files={"file": ("scan.nii.gz", scan.read_bytes())}).json()
            warm_status = _wait_done(http, job["id"], 900)
            warm_seconds = time.perf_counter() - t0
            if warm_status != "done":
                message = http.get(f"/api/jobs/{job['id']}").json()["message"]
                raise RuntimeError(f"warm-up job {warm_status}: {message}")
            http.get(f"/api/jobs/{job['id']}/volumes/image")  # first load reads the file; timed requests hit the cache
            http.get(f"/api/jobs/{job['id']}/volumes/labels")
        plan = _plan(requests, seed, shape)
        local = threading.local()
        payload = small.read_bytes()

        def one(item: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
            kind, template, params = item
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=base, headers=headers, timeout=120)
            path = template.format(job=job["id"])
            start = time.perf_counter()
            if kind == "upload":
                r = local.client.post(path, data={"run": run.name}, files={"file": ("small.nii.gz", payload)})
            else:
                r = local.client.get(path, params=params)
            ms = (time.perf_counter() - start) * 1000
            ok = r.status_code == (202 if kind == "upload" else 200)
            return {"kind": kind, "ms": ms, "ok": ok, "status": r.status_code, "bytes": r.num_bytes_downloaded,
                    "job": r.json()["id"] if kind == "upload" and ok else None}

        load_before = os.getloadavg()[0]
        wall = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            results = list(pool.map(one, plan))
        wall = time.perf_counter() - wall
        load_after = os.getloadavg()[0]
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            uploaded = [_wait_done(http, r["job"], 900) for r in results if r["job"]]
    finally:
        server.terminate()
        server.wait(30)
    return _summary(results, uploaded, wall=wall, warm_seconds=warm_seconds, loads=(load_before, load_after),
                    clients=clients, shape=shape)


def _pcts(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 1), "p95": round(float(np.percentile(a, 95)), 1),
            "p99": round(float(np.percentile(a, 99)), 1), "max": round(float(a.max()), 1)}


def _summary(results: list[dict[str, Any]], uploaded: list[str], *, wall: float, warm_seconds: float,
             loads: tuple[float, float], clients: int, shape: tuple[int, ...]) -> dict[str, Any]:
    errors = [r for r in results if not r["ok"]] + [{"kind": "upload job", "status": s} for s in uploaded if s != "done"]
    by_kind = {}
    for kind in MIX:
        rows = [r for r in results if r["kind"] == kind]
        if rows:
            by_kind[kind] = {"count": len(rows), "mean_kb_sent": round(float(np.mean([r["bytes"] for r in rows])) / 1024, 1),
                             **_pcts([r["ms"] for r in rows])}
    return {
        "requests": len(results), "clients": clients, "errors": len(errors),
        "error_examples": [{"kind": e["kind"], "status": e["status"]} for e in errors[:5]],
        "wall_s": round(wall, 2), "throughput_rps": round(len(results) / wall, 1),
        "latency_ms": _pcts([r["ms"] for r in results]), "by_kind": by_kind,
        "uploaded_jobs": {"count": len(uploaded), "done": uploaded.count("done")},
        "volume_shape": list(shape), "warmup_prediction_s": round(warm_seconds, 1),
        "load_average_1min": {"before": round(loads[0], 2), "after": round(loads[1], 2)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a trained run to serve (default: a tiny synthetic one)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--shape", default="48,160,160", help="synthetic volume, z,y,x voxels (default 48,160,160)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "serve_load.json")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    with tempfile.TemporaryDirectory(prefix="medsight-load-") as tmp:
        work = Path(tmp)
        run = args.run.resolve() if args.run else _tiny_run(work)
        result = run_load(run, requests=args.requests, clients=args.clients, shape=shape, work=work, seed=args.seed)
    import torch

    result = {"command": "python benchmarks/serve_load.py" + "".join(f" {a}" for a in (argv or sys.argv[1:])),
              "run": "tiny synthetic (1 training step, 3D phantoms)" if not args.run else args.run.name,
              "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                          "cpus": os.cpu_count(), "note": "CPU cores shared with other jobs; see load_average_1min"},
              **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{result['requests']} requests, {result['clients']} clients, {result['errors']} errors, "
          f"{result['throughput_rps']} req/s, wall {result['wall_s']} s")
    print(f"{'kind':<12} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'KB sent':>8}")
    for kind, row in result["by_kind"].items():
        print(f"{kind:<12} {row['count']:>4} {row['p50']:>8} {row['p95']:>8} {row['max']:>8} {row['mean_kb_sent']:>8}")
    lat = result["latency_ms"]
    print(f"{'all':<12} {result['requests']:>4} {lat['p50']:>8} {lat['p95']:>8} {lat['max']:>8}")
    print(f"written: {args.out}")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
