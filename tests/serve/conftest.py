"""Fixtures of the ``medsight serve`` tests: tiny runs trained once per session, and app clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medsight.data.synthetic import write_phantom_dataset
from medsight.engine.config import RunOptions
from medsight.serve import ServeConfig, create_app
from medsight.tasks.segmentation.pipeline import train

from .helpers import BASE_URL, TOKEN


@pytest.fixture(scope="session")
def serve_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One-step segmentation runs on phantoms: ``run3d`` (NIfTI, (24, 32, 28), 4 mm voxels) and ``run2d`` (PNG, 48x48) under
    ``runs/``, and their datasets ``ds3d`` and ``ds2d`` (``imagesTr``, ``labelsTr``)."""
    root = tmp_path_factory.mktemp("serve_runs")
    # 4 mm voxels: a DICOM series (0.7 x 0.7 x 13 mm) is resampled onto a small grid, so its prediction is quick
    ds3 = write_phantom_dataset(root / "ds3d", num_cases=4, shape=(24, 32, 28), spacing=(4.0, 4.0, 4.0), seed=0)
    ds2 = write_phantom_dataset(root / "ds2d", num_cases=4, shape=(48, 48), seed=1, file_ending=".png")
    cfg = RunOptions(epochs=1, iterations_per_epoch=1, seed=0, device="cpu")
    train(ds3, root / "runs" / "run3d", folds=[0], config=cfg, base_filters=4)
    train(ds2, root / "runs" / "run2d", folds=[0], config=cfg, base_filters=4)
    return {"runs": root / "runs", "run3d": root / "runs" / "run3d", "run2d": root / "runs" / "run2d",
            "ds3d": ds3, "ds2d": ds2}


@pytest.fixture
def make_client(serve_runs: dict[str, Path], tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """``make(authorized=True, **config) -> TestClient`` on both runs (root: the 3D dataset), work folder in tmp,
    token :data:`TOKEN` (sent as ``Authorization: Bearer`` unless ``authorized=False``)."""
    clients: list[TestClient] = []

    def make(*, authorized: bool = True, **changes: Any) -> TestClient:
        options: dict[str, Any] = {"runs": (serve_runs["runs"],), "roots": (serve_runs["ds3d"],),
                                   "work_dir": tmp_path / f"work{len(clients)}", "token": TOKEN}
        options.update(changes)
        headers = {"Authorization": f"Bearer {options['token']}"} if authorized and options["token"] else {}
        client = TestClient(create_app(ServeConfig(**options)), base_url=BASE_URL, headers=headers)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
