"""Training batches augmented on the training device: the same batches as on the CPU for the same seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medsight.data.dataset import load_dataset
from medsight.tasks.segmentation.pipeline import plan_dataset
from medsight.transforms.cache import CaseCache, preprocess_dataset
from medsight.transforms.sampler import PatchSampler


def _sampler(dataset: Path, run: Path, device: str) -> PatchSampler:
    plan = plan_dataset(dataset, run, base_filters=4)
    ids = preprocess_dataset(load_dataset(dataset), plan, run / "preprocessed", workers=1)
    cache = CaseCache(run / "preprocessed", ids)
    return PatchSampler(cache, ids, tuple(plan.patch_size), 3, augment=plan.augment, seed=7, device=device)


def _close(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> None:
    torch.testing.assert_close(a[0].cpu(), b[0].cpu(), atol=1e-4, rtol=1e-4)
    assert (a[1].cpu() != b[1].cpu()).float().mean() < 1e-3  # nearest-neighbour labels: ties may round apart


def test_same_seed_same_batches(phantom3d_dataset: Path, tmp_path: Path) -> None:
    a, b = _sampler(phantom3d_dataset, tmp_path / "a", "cpu"), _sampler(phantom3d_dataset, tmp_path / "b", "cpu")
    for _ in range(3):
        _close(a.next_batch(), b.next_batch())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_augmented_on_the_gpu_match_the_cpu(phantom3d_dataset: Path, tmp_path: Path) -> None:
    cpu, gpu = _sampler(phantom3d_dataset, tmp_path / "a", "cpu"), _sampler(phantom3d_dataset, tmp_path / "b", "cuda")
    for _ in range(3):
        batch = gpu.next_batch()
        assert batch[0].device.type == "cuda" and batch[1].device.type == "cuda"
        _close(cpu.next_batch(), batch)


def test_prefetching_leaves_the_training_threads_alone(phantom3d_dataset: Path, tmp_path: Path) -> None:
    """The prefetch thread limits itself to one intra-op thread; the training thread and threads started later keep the
    process's count (torch.set_num_threads also sets the default that new threads adopt)."""
    import threading

    from medsight.transforms.sampler import Prefetcher

    before = torch.get_num_threads()
    pre = Prefetcher(_sampler(phantom3d_dataset, tmp_path / "a", "cpu"))
    try:
        next(pre)
        assert torch.get_num_threads() == before
        seen: list[int] = []
        t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        t.start()
        t.join()
        assert seen == [before]
    finally:
        pre.close()
