"""Memory and disk guards: sizes are estimated from headers before anything is allocated, and refused with an
actionable message when they will not fit."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from medsight.core import guard
from medsight.errors import MedsightError
from medsight.io import read_image

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize("case", ["nifti_huge_header", "mha_huge_header"])
def test_huge_header_is_refused_before_allocating(case: str, tmp_path: Path) -> None:
    from test_bad_inputs import corpus_module

    build = next(c for c in corpus_module.corpus() if c.name == case).build
    path = build(tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(MedsightError, match=rf"fits in memory, got one that needs .* GiB .* in {path}; check the header"):
        read_image(path)
    assert time.perf_counter() - t0 < 5  # refused from the header alone


def test_prediction_refuses_a_volume_whose_probabilities_will_not_fit(tiny_runs: dict[str, Path],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from medsight.tasks.segmentation.predictor import Predictor

    predictor = Predictor.from_run(tiny_runs["run3d"], tta=False)
    monkeypatch.setattr(guard, "available_memory_bytes", lambda: 1024**2)  # 1 MiB left
    with pytest.raises(MedsightError, match="probability volume that fits in memory"):
        predictor.probabilities(np.zeros((1, 64, 64, 64), np.float32))


def test_in_memory_cache_is_checked_against_free_memory(tiny_runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from medsight.transforms.cache import CaseCache

    folder = tiny_runs["run3d"] / "preprocessed"
    ids = sorted(p.stem for p in folder.glob("*.json") if not p.stem.startswith(("_", "index", "dataset")))
    ids = [i for i in ids if (folder / f"{i}.npy").is_file()]
    assert ids
    CaseCache(folder, ids, in_memory=True)  # fits
    monkeypatch.setattr(guard, "available_memory_bytes", lambda: 1024)
    with pytest.raises(MedsightError, match="in-memory case cache"):
        CaseCache(folder, ids, in_memory=True)


def test_disk_guard_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(MedsightError, match=rf"free disk space for the cache .* in {tmp_path}"):
        guard.check_disk(10**18, tmp_path / "not_yet" / "created")
    guard.check_disk(1, tmp_path)
