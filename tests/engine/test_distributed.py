"""DDP training on 2 CPU ranks (gloo): gradients synchronised (weights identical on every rank), each rank sampling
its own patches, rank 0 alone writing; and the real ``torchrun ... medsight train`` command line."""

from __future__ import annotations

import csv
import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from medsight.data.synthetic import write_phantom_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, world: int, port: int, run: str, queue: mp.Queue) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from medsight.engine import distributed
    from medsight.engine.config import RunOptions
    from medsight.tasks.segmentation.plan import Plan
    from medsight.tasks.segmentation.trainer import SegmentationTrainer
    from medsight.transforms.cache import CaseCache

    plan = Plan.load(Path(run) / "plans.json")
    ids = sorted(p.stem for p in (Path(run) / "preprocessed").glob("*.npy") if not p.stem.endswith(("_seg", "_fg")))
    trainer = SegmentationTrainer(plan, CaseCache(Path(run) / "preprocessed", ids), ids[:3], ids[3:], Path(run) / "fold_0",
                                  RunOptions(epochs=2, iterations_per_epoch=3, seed=0, device="cpu"))
    trainer.fit()
    state = trainer.model.state_dict()
    digest = hashlib.sha256(b"".join(v.detach().cpu().numpy().tobytes() for v in state.values())).hexdigest()
    queue.put((rank, digest, [row["train_loss"] for row in trainer.history]))
    distributed.shutdown()


@pytest.mark.slow
def test_two_cpu_ranks_keep_identical_weights_and_sample_differently(tmp_path: Path) -> None:
    from medsight.data.dataset import load_dataset
    from medsight.tasks.segmentation.pipeline import plan_dataset
    from medsight.transforms.cache import preprocess_dataset

    ds = write_phantom_dataset(tmp_path / "ds", num_cases=4, shape=(16, 20, 18), seed=3)
    run = tmp_path / "run"
    plan = plan_dataset(ds, run, base_filters=4)
    preprocess_dataset(load_dataset(ds), plan, run / "preprocessed", workers=1)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, 2, port, str(run), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = {}
    for _ in procs:
        rank, digest, losses = queue.get(timeout=600)
        results[rank] = (digest, losses)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0][0] == results[1][0], "gradients were not synchronised: the ranks' weights differ"
    assert results[0][1] != results[1][1], "both ranks drew the same patches"
    fold = run / "fold_0"
    rows = list(csv.DictReader((fold / "metrics.csv").open()))  # written by rank 0 alone
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert [float(r["train_loss"]) for r in rows] == pytest.approx(results[0][1], rel=1e-5)
    assert (fold / "checkpoint_best.pt").is_file() and (fold / "checkpoint_last.pt").is_file()


@pytest.mark.slow
def test_torchrun_command_line(tmp_path: Path) -> None:
    ds = write_phantom_dataset(tmp_path / "ds", num_cases=4, shape=(16, 20, 18), seed=3)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "medsight.cli.app", "-q", "train", str(ds), "--out", str(run), "--epochs", "2", "--iterations", "2",
           "--base-filters", "4", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    rows = list(csv.DictReader((run / "fold_0" / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # resume works under torchrun too
    resumed = subprocess.run([*cmd[:-6], "--epochs", "3", "--iterations", "2", "--base-filters", "4", "--device", "cpu",
                              "--resume"], capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = list(csv.DictReader((run / "fold_0" / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
