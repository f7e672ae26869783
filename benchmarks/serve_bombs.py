"""Memory of ``medsight serve`` under the upload bombs of issue 20, and of one ordinary large job.

``python benchmarks/serve_bombs.py [--out docs/results/serve_bombs.json]``

The server is the real command line (``MEDSIGHT_TOKEN=T python -m medsight serve RUN --port P --work-dir W``) in
its own process; its resident memory (``VmRSS`` of ``/proc/PID/status``) is sampled every 5 ms by a thread of this
script. After a warm-up job (model loaded, imports done) it sends:

* the issue's NIfTI bomb: a ~130 KB ``.nii.gz`` whose header declares 256 x 512 x 512 int16 (128 MiB of voxels);
* the issue's zip bomb: 4 members of 1 MiB of zeros in ~4.5 KB;
* a PNG whose header claims 20000 x 20000 pixels (381 MiB) in ~70 bytes;

each must be refused with 413; the peak RSS while they are handled is compared with the RSS before them. Then one
ordinary job on a 256 x 256 x 256 int16 volume (32 MiB of voxels, 1 mm) measures what a job adds at its peak.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "serve"))


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler:
    """The peak RSS of a process since :meth:`reset`, sampled every 5 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_kib(self.pid))
            time.sleep(0.005)

    def reset(self) -> int:
        self.peak = now = _rss_kib(self.pid)
        return now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    import httpx
    from bombs import nifti_bomb, png_bomb, zip_bomb  # the bombs tests/serve/test_limits.py sends

    from medsight.core.image import Image
    from medsight.data.synthetic import write_phantom_dataset
    from medsight.engine.config import RunOptions
    from medsight.io import write_image
    from medsight.tasks.segmentation.pipeline import train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/results/serve_bombs.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="serve-bombs-"))
    ds = write_phantom_dataset(work / "ds", num_cases=4, shape=(24, 32, 28), spacing=(4.0, 4.0, 4.0), seed=0)
    run = work / "run"
    train(ds, run, folds=[0], config=RunOptions(epochs=1, iterations_per_epoch=1, seed=0, device="cpu"), base_filters=4)
    big = write_image(Image(np.random.default_rng(0).integers(0, 400, (1, 256, 256, 256)).astype(np.int16),
                            spacing=(1.0, 1.0, 1.0)), work / "big.nii.gz")
    token, port = secrets.token_urlsafe(16), _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "medsight", "-q", "serve", str(run), "--port", str(port),
                             "--work-dir", str(work / "server"), "--device", "cpu"],
                            env={**os.environ, "MEDSIGHT_TOKEN": token}, stdout=subprocess.DEVNULL)
    results: dict[str, Any] = {"command": "python benchmarks/serve_bombs.py", "bombs": []}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                          timeout=600) as http:
            for _ in range(600):
                try:
                    if http.get("/api/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            sampler = Sampler(proc.pid)

            def job(content: bytes, name: str) -> tuple[int, str]:
                r = http.post("/api/jobs", data={"run": "run"}, files={"file": (name, content)})
                if r.status_code != 202:
                    return r.status_code, r.json()["detail"]
                job_id = r.json()["id"]
                while (s := http.get(f"/api/jobs/{job_id}").json()["status"]) not in ("done", "failed"):
                    time.sleep(0.1)
                return 202, s

            warm = job((ds / "imagesTr" / "case_000_0000.nii.gz").read_bytes(), "warm.nii.gz")
            results["warm_up"] = warm[1]
            time.sleep(1.0)
            for label, content, name in (("nifti bomb (128 MiB of voxels)", nifti_bomb(), "b.nii.gz"),
                                         ("zip bomb (4 x 1 MiB)", zip_bomb(), "b.zip"),
                                         ("PNG header bomb (20000 x 20000)", png_bomb(20000, 20000), "b.png")):
                before = sampler.reset()
                t0 = time.perf_counter()
                status, detail = job(content, name)
                ms = (time.perf_counter() - t0) * 1000
                time.sleep(0.2)
                results["bombs"].append({"upload": label, "bytes": len(content), "status": status, "ms": round(ms, 1),
                                         "rss_before_mib": round(before / 1024, 1),
                                         "peak_rss_mib": round(sampler.peak / 1024, 1),
                                         "added_mib": round((sampler.peak - before) / 1024, 1), "detail": detail})
            before = sampler.reset()
            t0 = time.perf_counter()
            status, outcome = job(big.read_bytes(), "big.nii.gz")
            results["large_job"] = {"image": "256 x 256 x 256 int16 (32 MiB of voxels), 1 mm", "status": outcome,
                                    "seconds": round(time.perf_counter() - t0, 1),
                                    "rss_before_mib": round(before / 1024, 1),
                                    "peak_rss_mib": round(sampler.peak / 1024, 1),
                                    "added_mib": round((sampler.peak - before) / 1024, 1)}
            sampler.stop()
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    results["machine"] = {"cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
