"""Safe loading: a checkpoint that would run code when unpickled is refused with a clear error and the code never
runs; no config value is ever evaluated as code."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from medsight.cli.app import main
from medsight.engine.checkpoint import load_checkpoint
from medsight.errors import MedsightError

pytestmark = pytest.mark.reliability

SRC = Path(__file__).resolve().parents[2] / "src" / "medsight"


class _Payload:
    """Unpickling this calls ``os.system``: what a crafted "model" downloaded from the internet could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _malicious_checkpoint(path: Path, marker: Path, like: Path | None = None) -> Path:
    state = torch.load(like, weights_only=True) if like else {"format_version": 1, "architecture": "dynunet",
                                                                 "init_args": {}, "plan": {}, "state_dict": {}}
    state["plan"] = {**state["plan"], "note": _Payload(marker)}
    torch.save(state, path)
    return path


def test_crafted_checkpoint_is_refused_and_its_code_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ck = _malicious_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(MedsightError, match=r"cannot be loaded safely.*arbitrary code"):
        load_checkpoint(ck)
    assert not marker.exists()
    # the proof that the payload is live: plain pickle loading would run it
    torch.load(ck, weights_only=False)
    assert marker.exists()


def test_predict_with_a_crafted_checkpoint_exits_2_without_running_it(tiny_runs: dict[str, Path], tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_runs["run3d"], run)
    marker = tmp_path / "pwned"
    best = run / "fold_0" / "checkpoint_best.pt"
    _malicious_checkpoint(best, marker, like=best)
    code = main(["predict", str(run), str(tiny_runs["good3d"]), str(tmp_path / "out"), "--no-tta"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "checkpoint_best.pt" in err[0] and "safely" in err[0]
    assert not marker.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.nii.gz"))


def test_checkpoint_without_the_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)  # a bare state dict from another tool
    with pytest.raises(MedsightError, match="Expected a medsight checkpoint"):
        load_checkpoint(path)
    torch.save({"format_version": 99, "architecture": "x", "init_args": {}, "plan": {}, "state_dict": {}}, path)
    with pytest.raises(MedsightError, match="upgrade medsight"):
        load_checkpoint(path)


UNSAFE = {
    r"(?<![.\w`])eval\(": "eval of text",
    r"(?<![.\w`])exec\(": "exec of text",
    r"pickle\.loads?\(": "pickle loading",
    r"allow_pickle\s*=\s*True": "NumPy pickle loading",
    r"weights_only\s*=\s*False": "unsafe torch.load",
    r"yaml\.load\(": "unsafe YAML loading",
    r"torch\.load\((?![^)]*weights_only)": "torch.load without weights_only",
}


def test_no_code_evaluation_or_unsafe_unpickling_in_the_package() -> None:
    found = []
    for py in sorted(SRC.rglob("*.py")):
        for n, line in enumerate(py.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            for pattern, what in UNSAFE.items():
                if re.search(pattern, code):
                    found.append(f"{py.relative_to(SRC)}:{n}: {what}: {line.strip()}")
    assert found == []
