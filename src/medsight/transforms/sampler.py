"""Foreground-oversampled patch sampling from the case cache, with a background prefetch thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from medsight.transforms.augment import augment_batch, draw_params
from medsight.transforms.augment_spatial import context_shape
from medsight.transforms.cache import CaseCache
from medsight.transforms.config import AugmentConfig


def crop_padded(arr: np.ndarray, centre: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Cut ``size`` around ``centre`` from ``(C, *spatial)``, zero-padding outside the array."""
    spatial = arr.shape[1:]
    start = np.asarray(centre) - np.asarray(size) // 2
    out = np.zeros((arr.shape[0], *size), dtype=arr.dtype)
    src, dst = [slice(None)], [slice(None)]
    for s, n, dim in zip(start, size, spatial):
        a, b = max(s, 0), min(s + n, dim)
        if b <= a:
            return out
        src.append(slice(int(a), int(b)))
        dst.append(slice(int(a - s), int(b - s)))
    out[tuple(dst)] = arr[tuple(src)]
    return out


class PatchSampler:
    """Draws augmented training batches.

    A fraction ``foreground_fraction`` of each batch is centred on a voxel of a random foreground label
    present in the case (oversampling rare structures); the rest is centred uniformly in the case.

    Args:
        cache: the preprocessed cases.
        case_ids: cases to sample from (the fold's training cases).
        patch: patch size (spatial).
        batch_size: samples per batch.
        augment: augmentation settings; ``None`` disables augmentation.
        foreground_fraction: share of foreground-centred samples.
        seed: seed of the sampler's own generators (NumPy for locations, torch for augmentation).
        synthetic_ids: synthetic cases (in ``cache``) that training batches may also draw (``--synthetic``).
        synthetic_ratio: probability that a sample of a batch comes from ``synthetic_ids``.
        device: where the batch is augmented and returned (the training GPU: the crops are copied there and warped
            there); the random draws stay on the CPU, so a seed gives the same batches on any device.
        absent: partial labels, case id -> label values not annotated there; when given (with ``num_classes``),
            each batch also carries a ``(B, num_classes)`` bool mask of the classes not annotated in each sample's case.
        num_classes: label values (background included), for the ``absent`` mask.
    """

    def __init__(
        self,
        cache: CaseCache,
        case_ids: list[str],
        patch: tuple[int, ...],
        batch_size: int,
        *,
        augment: AugmentConfig | None,
        foreground_fraction: float = 0.33,
        seed: int = 0,
        synthetic_ids: list[str] | None = None,
        synthetic_ratio: float = 0.0,
        device: torch.device | str = "cpu",
        absent: dict[str, list[int]] | None = None,
        num_classes: int = 0,
    ) -> None:
        self.cache = cache
        self.absent, self.num_classes = absent, num_classes
        self.device = torch.device(device)
        self.case_ids = list(case_ids)
        self.synthetic_ids = list(synthetic_ids or [])
        self.synthetic_ratio = synthetic_ratio if self.synthetic_ids else 0.0
        self.patch = tuple(patch)
        self.batch_size = batch_size
        self.augment = augment
        self.foreground_fraction = foreground_fraction
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)
        if augment is not None:
            self.context = context_shape(self.patch, rotate=augment.p_rotate > 0, scale_max=max(augment.scale_range) if augment.p_scale > 0 else 1.0)
        else:
            self.context = self.patch

    # -- state for exact resume
    def state_dict(self) -> dict[str, Any]:
        return {"numpy": self.rng.bit_generator.state, "torch": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["numpy"]
        self.gen.set_state(state["torch"])

    def _centre(self, cid: str, force_fg: bool) -> np.ndarray:
        shape = np.asarray(self.cache.images[cid].shape[1:])
        fg = self.cache.fg[cid]
        if force_fg and len(fg):
            labels = np.unique(fg[:, 0])
            lab = labels[self.rng.integers(len(labels))]
            rows = fg[fg[:, 0] == lab]
            loc = rows[self.rng.integers(len(rows)), 1:]
            jitter = self.rng.integers(-(np.asarray(self.patch) // 4), np.asarray(self.patch) // 4 + 1)
            return np.clip(loc + jitter, 0, shape - 1)
        half = np.asarray(self.patch) // 2
        lo = np.minimum(half, shape // 2)
        hi = np.maximum(shape - half, shape // 2 + 1)
        return np.asarray([self.rng.integers(a, b) for a, b in zip(lo, hi)])

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        """One batch: image ``(B, C, *patch)`` float32 and label ``(B, 1, *patch)`` int64, and with ``absent`` the
        ``(B, num_classes)`` bool mask of classes not annotated in each sample's case."""
        n_fg = int(round(self.batch_size * self.foreground_fraction))
        imgs, labs, cids = [], [], []
        for i in range(self.batch_size):
            pool = self.synthetic_ids if self.synthetic_ratio and self.rng.random() < self.synthetic_ratio else self.case_ids
            cid = pool[self.rng.integers(len(pool))]
            cids.append(cid)
            centre = self._centre(cid, force_fg=i >= self.batch_size - n_fg)
            imgs.append(crop_padded(self.cache.images[cid], centre, self.context))
            labs.append(crop_padded(self.cache.labels[cid][None], centre, self.context))
        image = torch.from_numpy(np.stack(imgs)).float()
        label = torch.from_numpy(np.stack(labs).astype(np.int64))
        if self.device.type != "cpu":
            image, label = image.to(self.device, non_blocking=True), label.to(self.device, non_blocking=True)
        if self.augment is not None:
            params = draw_params(self.batch_size, self.patch, self.augment, self.gen)
            image, label = augment_batch(image, label, self.patch, params, self.gen)
        if self.absent is None:
            return image, label
        mask = torch.zeros(self.batch_size, self.num_classes, dtype=torch.bool)
        for i, cid in enumerate(cids):
            mask[i, [v for v in self.absent.get(cid, []) if 0 < v < self.num_classes]] = True
        return image, label, mask.to(self.device)


class Prefetcher:
    """Runs ``sampler.next_batch`` in a background thread, keeping up to ``depth`` batches ready.

    ``last_state`` is the sampler's state right after the last batch handed out was drawn; saving it (rather
    than the sampler's own state, which runs ahead by the queued batches) makes a resume draw the same batches.
    """

    def __init__(self, sampler: PatchSampler, depth: int = 2) -> None:
        self.sampler = sampler
        self.q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.last_state: dict[str, Any] = sampler.state_dict()
        # The thread augments with one intra-op thread (as PyTorch's DataLoader workers do): on a few cores a second
        # full-width OpenMP team competing with the training step slowed it by up to 20 % (benchmarks/throughput.py).
        # torch.set_num_threads is per thread once a thread is initialised, but it also sets the process-wide value
        # that threads not yet initialised adopt; so initialise this thread first and restore that value after.
        threads = torch.get_num_threads()
        self._limited = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self._limited.wait(timeout=30)
        torch.set_num_threads(threads)

    def _run(self) -> None:
        torch.get_num_threads()  # this thread's lazy initialisation first, so that the next line sticks
        torch.set_num_threads(1)
        self._limited.set()
        while not self.stop.is_set():
            try:
                batch = self.sampler.next_batch()
                item: Any = (self.sampler.state_dict(), batch)
            except Exception as exc:  # surfaced in the consumer
                item = exc
            while not self.stop.is_set():
                try:
                    self.q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, Exception):
                return

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.q.get()
        if isinstance(item, Exception):
            raise item
        self.last_state = item[0]
        return item[1]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
