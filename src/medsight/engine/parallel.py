"""Cross-validation folds trained side by side, one process per device (``medsight train --fold cv --devices ...``).

The calling process plans, preprocesses and writes the split first (so every fold reads one cache), then starts one
worker process per device; when a fold finishes its device takes the next waiting fold. Each worker runs the task's
ordinary training function for its one fold (training, validation, checkpoints) and writes its log to
``fold_K/log.txt``; the calling process then pools the folds (postprocessing or calibration, summary, report) as a
sequential run would. ``cpu`` may be listed several times: the CPU's cores are then shared out among those workers.

This is for independent folds. To speed up one fold with several GPUs or machines, use ``torchrun`` (see
``docs/distributed.md``).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch

from medsight.engine.run import fold_dir as run_fold_dir
from medsight.errors import MedsightError, user_error

log = logging.getLogger(__name__)



def parse_devices(text: str | Sequence[str]) -> list[str]:
    """``"cuda:0,cuda:1"`` (or a list) -> checked device names; ``cuda`` alone means every visible GPU."""
    items = [d.strip() for d in (text.split(",") if isinstance(text, str) else text) if d.strip()]
    if items == ["cuda"]:
        items = [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cuda"]
    out = []
    for d in items:
        try:
            dev = torch.device(d)
        except (RuntimeError, ValueError) as exc:
            raise user_error("devices like cpu, cuda:0, cuda:1", d, None, "fix --devices") from exc
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise user_error("a CUDA device", d, None, "this machine has no GPU; use --devices cpu,cpu or leave --devices out")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise user_error(f"a GPU index below {torch.cuda.device_count()}", d, None, "fix --devices")
        elif dev.type != "cpu":
            raise user_error("cpu or cuda devices", d, None, "fix --devices")
        out.append(d)
    if not out:
        raise user_error("at least one device", repr(text), None, "e.g. --devices cuda:0,cuda:1")
    return out


def _threads_per_cpu_worker(devices: Sequence[str]) -> int:
    n_cpu = sum(1 for d in devices if torch.device(d).type == "cpu")
    return max(1, (os.cpu_count() or 1) // max(1, n_cpu))


def _worker(train_fn: Callable[..., dict[str, Any]], fold: int | str, device: str, threads: int, dataset: str, run: str, kwargs: dict[str, Any],
            log_path: str, conn: Connection) -> None:
    """Child process: train one fold with the task's own function; report its result (or error) on ``conn``."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = kwargs.pop("config")
        config = replace(config, device=device, num_threads=threads if torch.device(device).type == "cpu" else config.num_threads)
        summary = train_fn(dataset, run, folds="all" if fold == "all" else [int(fold)], config=config, finalize=False, **kwargs)
        conn.send({"ok": True, "result": summary["trained_now"][str(fold)]})
    except MedsightError as exc:
        logging.getLogger("medsight").error("%s", exc)
        conn.send({"ok": False, "error": str(exc)})
    except BaseException as exc:  # noqa: BLE001 - the parent reports the fold as failed; the log keeps the traceback
        traceback.print_exc()
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def train_folds_in_parallel(train_fn: Callable[..., dict[str, Any]], dataset: str | Path, run: str | Path, *, folds: Sequence[int | str],
                            devices: Sequence[str], kwargs: dict[str, Any],
                            progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, dict[str, Any]]:
    """Train ``folds`` in worker processes, at most one per entry of ``devices`` at a time.

    Args:
        train_fn: the task's training function, module-level so that a spawned worker can import it; called as
            ``train_fn(dataset, run, folds=[fold], config=..., finalize=False, **kwargs)`` and returning a summary
            with ``trained_now[fold]``.
        dataset, run: as for ``train_fn``; the run must already be planned and preprocessed.
        folds: the folds to train.
        devices: one entry per concurrent worker (``cuda:0``, ``cuda:1``, ``cpu``, ...).
        kwargs: the remaining keyword arguments of the task's training function (``config`` included).
        progress: receives ``{"kind": "fold_started"|"fold_finished", "fold", "device", ...}`` events.

    Returns:
        Fold name -> that fold's training result (as ``summary["trained_now"]`` of a sequential run).

    Raises:
        MedsightError: when a fold failed (after the other folds have finished), naming its log file.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise user_error("one process for --devices (it starts a process per fold itself)", "a torchrun launch", None,
                         "run either torchrun (one fold on several devices) or --devices (folds side by side)")
    ctx = mp.get_context("spawn")  # a fresh interpreter per fold: no CUDA state or threads inherited
    threads = _threads_per_cpu_worker(devices)
    pending = list(folds)
    free = list(devices)
    running: dict[str, tuple[Any, Connection, str]] = {}
    answers: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    while pending or running:
        while pending and free:
            fold, device = pending.pop(0), free.pop(0)
            fold_dir = run_fold_dir(run, fold)
            fold_dir.mkdir(parents=True, exist_ok=True)
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker, name=f"medsight-fold-{fold}",
                               args=(train_fn, fold, device, threads, str(dataset), str(run), dict(kwargs),
                                     str(fold_dir / "log.txt"), send))
            proc.start()
            send.close()
            running[str(fold)] = (proc, receive, device)
            log.info("fold %s started on %s (log: %s)", fold, device, fold_dir / "log.txt")
            if progress:
                progress({"kind": "fold_started", "fold": fold, "device": device, "log": str(fold_dir / "log.txt")})
        wait([p.sentinel for p, _, _ in running.values()] + [c for n, (_, c, _) in running.items() if n not in answers])
        for name, (proc, conn, device) in list(running.items()):
            if name not in answers and conn.poll():
                try:
                    answers[name] = conn.recv()
                except EOFError:
                    answers[name] = {"ok": False, "error": "the worker exited without a result"}
            if proc.is_alive():
                continue
            proc.join()
            conn.close()
            del running[name]
            free.append(device)
            answer = answers.pop(name, {"ok": False, "error": f"the worker exited with code {proc.exitcode}"})
            if answer.get("ok"):
                results[name] = answer["result"]
            else:
                failures.append(f"fold {name} ({answer.get('error')}; log {run_fold_dir(run, name) / 'log.txt'})")
            log.info("fold %s finished on %s: %s", name, device, "ok" if answer.get("ok") else "failed")
            if progress:
                progress({"kind": "fold_finished", "fold": name, "device": device, "ok": bool(answer.get("ok")),
                          "result": answer.get("result")})
    if failures:
        raise MedsightError(f"Expected every fold to train, got {len(failures)} failed: {'; '.join(failures)}; "
                            "fix the cause, then run the same command with --resume")
    return results
