"""A bounded load test of the DICOM node: N studies sent at once by two senders on loopback, all processed.

Usage (from the repository root)::

    python benchmarks/pacs_load.py                          # 20 studies, 2 senders, a tiny synthetic run
    python benchmarks/pacs_load.py --studies 20 --senders 2 --out docs/results/pacs_load.json

What runs (nothing leaves 127.0.0.1):

* a real Orthanc (``/usr/sbin/Orthanc``, DICOMweb plugin) on free ports, where the results go back (C-STORE);
* the node as the real command line, ``python -m medsight pacs listen --config node.toml``, in its own process
  (quiet period 2 s, results ``seg`` and ``sc``, no TTA, CPU);
* ``--senders`` threads of this process, each a pynetdicom C-STORE SCU with its own AE title, sending its share of
  the studies at the same time (one association per study). Each study is the shared TCIA PGBM-005 MR series
  (24 slices, 320x260) with new Study/Series/SOP Instance UIDs, so every one is a separate job.

The model is a one-iteration run on 8 mm phantoms (``--run`` to use another): quality is irrelevant, the load is
real (reading, resampling, sliding window, SEG and SC writing, sending). Measured: wall time from the first instance
sent to the last job ``sent``; per-study latency = job finished - first instance received (from the node's job
store: queueing behind the other studies included), p50/p95/max; per-study processing = job finished - prediction
started (predict, write, send); the node's peak resident memory (``VmHWM`` of its process); the instance counts in Orthanc.
Writes a JSON with the command and the machine, and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "pacs"))

from orthanc import free_port, start_orthanc  # noqa: E402

MR = ROOT.parent / "shared" / "data" / "tcia_pgbm005_mr_t1post_dicom" / "volume"


def tiny_run(root: Path) -> Path:
    from medsight.data.synthetic import write_phantom_dataset
    from medsight.engine.config import RunOptions
    from medsight.tasks.segmentation.pipeline import train

    dataset = write_phantom_dataset(root / "phantoms", num_cases=4, shape=(12, 40, 40), spacing=(8.0, 8.0, 8.0),
                                    seed=3)
    train(dataset, root / "run", folds=[0], config=RunOptions(epochs=1, iterations_per_epoch=1, seed=0,
                                                               device="cpu"), base_filters=4)
    return root / "run"


def studies(count: int) -> list[list[Any]]:
    """``count`` copies of the MR series, each with its own study, series and SOP Instance UIDs."""
    import copy

    import pydicom
    from pydicom.uid import generate_uid

    source = [pydicom.dcmread(f) for f in sorted(MR.iterdir())]
    out = []
    for k in range(count):
        study, series = generate_uid(), generate_uid()
        copies = []
        for ds in source:
            c = copy.deepcopy(ds)
            c.StudyInstanceUID, c.SeriesInstanceUID, c.SOPInstanceUID = study, series, generate_uid()
            c.file_meta.MediaStorageSOPInstanceUID = c.SOPInstanceUID
            c.StudyDescription = f"load study {k}"
            copies.append(c)
        out.append(copies)
    return out


def sender(ae_title: str, port: int, share: list[list[Any]], errors: list[str]) -> None:
    from pynetdicom import AE

    for datasets in share:
        ae = AE(ae_title=ae_title)
        ae.add_requested_context(str(datasets[0].SOPClassUID), [str(datasets[0].file_meta.TransferSyntaxUID)])
        assoc = ae.associate("127.0.0.1", port, ae_title="MEDSIGHT")
        if not assoc.is_established:
            errors.append(f"{ae_title}: association refused")
            continue
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if status is None or "Status" not in status or int(status.Status) != 0:
                errors.append(f"{ae_title}: C-STORE status {status}")
        assoc.release()


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--run", type=Path, help="a trained segmentation run (default: a tiny synthetic one)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    from medsight.pacs.store import JobStore

    tmp = Path(tempfile.mkdtemp(prefix="pacs_load_"))
    run = args.run or tiny_run(tmp)
    port = free_port()
    orthanc = start_orthanc(tmp / "orthanc", modalities={"medsight": ["MEDSIGHT", "127.0.0.1", port]})
    titles = [f"SENDER{i + 1}" for i in range(args.senders)]
    config = tmp / "node.toml"
    config.write_text(f"""[pacs]
host = "127.0.0.1"
port = {orthanc.dicom_port}
called_ae = "ORTHANC"
[node]
port = {port}
allowed_ae = {json.dumps(titles)}
workdir = "{tmp / 'node'}"
quiet_seconds = 2
series_timeout = {args.timeout}
tta = false
device = "cpu"
send = ["seg", "sc"]
poll_seconds = 0.2
[[rules]]
name = "all"
runs = ["{run}"]
""", encoding="utf-8")
    log = open(tmp / "node.log", "wb")  # noqa: SIM115 - the node writes to it for its life
    node = subprocess.Popen([sys.executable, "-m", "medsight", "pacs", "listen", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    result: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 180
        while "listening as" not in (tmp / "node.log").read_text(errors="replace"):
            if time.monotonic() > deadline or node.poll() is not None:
                raise RuntimeError(f"the node did not start; see {tmp / 'node.log'}")
            time.sleep(0.2)
        data = studies(args.studies)
        errors: list[str] = []
        shares = [data[i::args.senders] for i in range(args.senders)]
        threads = [threading.Thread(target=sender, args=(t, port, s, errors)) for t, s in zip(titles, shares)]
        started = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent_at = time.time()
        store = JobStore(tmp / "node" / "jobs.sqlite")
        while True:
            jobs = store.jobs()
            if len(jobs) == args.studies and all(j["state"] in ("sent", "failed") for j in jobs):
                break
            if time.time() - started > args.timeout:
                raise RuntimeError(f"not finished after {args.timeout} s: {[j['state'] for j in jobs]}")
            time.sleep(0.5)
        finished = time.time()
        peak = peak_rss_mb(node.pid)
        latencies = np.array([j["finished_at"] - j["first_at"] for j in jobs])
        processing = np.array([j["finished_at"] - j["started_at"] for j in jobs])
        instances = len(orthanc.get("/instances"))
        result = {
            "command": " ".join(["python", "benchmarks/pacs_load.py", *(argv if argv is not None else sys.argv[1:])]),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "load_average_at_end": os.getloadavg()},
            "studies": args.studies, "senders": args.senders, "instances_per_study": len(data[0]),
            "send_errors": errors, "states": {s: sum(j["state"] == s for j in jobs) for s in ("sent", "failed")},
            "failed_reasons": [j["reason"] for j in jobs if j["state"] == "failed"],
            "seconds_to_send_all": round(sent_at - started, 1), "seconds_total": round(finished - started, 1),
            "latency_s": {"p50": round(float(np.percentile(latencies, 50)), 1),
                          "p95": round(float(np.percentile(latencies, 95)), 1),
                          "max": round(float(latencies.max()), 1)},
            "processing_s": {"p50": round(float(np.percentile(processing, 50)), 1),
                             "max": round(float(processing.max()), 1)},
            "node_peak_rss_mb": round(peak, 1) if peak else None,
            "orthanc_instances": instances,
            "results_sent": sum(j["sent"] for j in jobs),
        }
        store.close()
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=120)
        orthanc.stop()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    ok = result.get("states", {}).get("sent") == args.studies and not result.get("send_errors")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
