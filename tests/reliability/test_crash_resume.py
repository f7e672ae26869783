"""A training process killed with SIGKILL mid-epoch resumes with ``--resume`` from its last checkpoint and ends
exactly where an uninterrupted run with the same seed ends; the same seed gives the same losses."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medsight.cli.app import main
from medsight.engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.reliability

EPOCHS, ITERS = 4, 12


def _train_argv(dataset: Path, run: Path, *extra: str) -> list[str]:
    return ["-q", "train", str(dataset), "--out", str(run), "--epochs", str(EPOCHS), "--iterations", str(ITERS),
            "--base-filters", "4", "--seed", "3", "--device", "cpu", *extra]


def _rows(run: Path) -> list[dict[str, str]]:
    path = run / "fold_0" / "metrics.csv"
    return list(csv.DictReader(path.open())) if path.is_file() else []


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    ds = tiny_runs["dataset3d"]
    ref, crashed = tmp_path / "ref", tmp_path / "crashed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # the reference runs in a fresh process too: bfloat16 kernels (the CPU default where the processor has them) round
    # differently with another intra-op thread count, and earlier tests may have changed this process's
    subprocess.run([sys.executable, "-m", "medsight.cli.app", *_train_argv(ds, ref)], env=env, check=True,
                   stdout=subprocess.DEVNULL)

    proc = subprocess.Popen([sys.executable, "-m", "medsight.cli.app", *_train_argv(ds, crashed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while len(_rows(crashed)) < 1 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read().decode() if proc.stderr else ''}"
        time.sleep(0.3)  # well inside epoch 2 (an epoch takes seconds)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    done = len(_rows(crashed))
    assert 1 <= done < EPOCHS, "the kill should land mid-run"
    last = crashed / "fold_0" / "checkpoint_last.pt"
    assert int(load_checkpoint(last)["epoch"]) == done  # the checkpoint on disk is whole and matches metrics.csv
    # a SIGKILL may leave the temporary file of a write in progress, never a truncated file under a final name

    subprocess.run([sys.executable, "-m", "medsight.cli.app", *_train_argv(ds, crashed, "--resume")], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    assert not [p for p in (crashed / "fold_0").iterdir() if p.name.startswith(".")], "resume should remove stale temporaries"
    resumed, reference = _rows(crashed), _rows(ref)
    assert list(resumed[0]) == list(reference[0])  # same metrics.csv columns
    assert [r["epoch"] for r in resumed] == [str(e) for e in range(1, EPOCHS + 1)]
    # same optimiser, schedule, RNG and sampler state: every epoch's losses equal the uninterrupted run's
    for a, b in zip(resumed, reference):
        assert (a["train_loss"], a["val_loss"], a["val_dice"], a["lr"]) == (b["train_loss"], b["val_loss"], b["val_dice"], b["lr"])


def _losses_of_two_runs(tmp_path: Path, dataset: Path, *flags: str) -> list[list[tuple[str, str]]]:
    out = []
    for name in ("a", "b"):
        run = tmp_path / f"{dataset.stem}_{name}"
        assert main(["-q", "train", str(dataset), "--out", str(run), "--epochs", "2", "--iterations", "3", "--seed", "11",
                     *flags]) == 0
        out.append([(r["train_loss"], r["val_loss"]) for r in _rows(run)])
    return out


def test_same_seed_same_losses_segmentation_and_classification(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    seg = _losses_of_two_runs(tmp_path, tiny_runs["dataset3d"], "--base-filters", "4")
    assert seg[0] == seg[1] and len(seg[0]) == 2
    cls = _losses_of_two_runs(tmp_path, _tiny_npz(tmp_path / "tiny.npz"), "--model", "smallcnn")
    assert cls[0] == cls[1] and len(cls[0]) == 2


def _tiny_npz(path: Path) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, (n, 1)).astype(np.uint8)
        x = (rng.normal(100, 20, (n, 28, 28)) + 60 * y[:, :, None]).clip(0, 255).astype(np.uint8)
        return x, y

    (a, b), (c, d), (e, f) = split(40), split(12), split(12)
    np.savez(path, train_images=a, train_labels=b, val_images=c, val_labels=d, test_images=e, test_labels=f)
    return path
