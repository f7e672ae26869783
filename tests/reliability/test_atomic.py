"""Atomic outputs: every file a command leaves is renamed into place from a temporary name; an interrupted or
failed write (disk full) leaves the previous file intact and no temporary files behind."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch

from medsight.cli.app import main
from medsight.core import atomic
from medsight.engine.checkpoint import load_checkpoint
from medsight.errors import MedsightError

pytestmark = pytest.mark.reliability

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
#: Files appended to line by line (one ``write`` of a whole line with O_APPEND), not replaced.
APPEND_ONLY = {"audit.jsonl"}


@pytest.fixture
def renamed(monkeypatch: pytest.MonkeyPatch) -> set[Path]:
    """Record every target that :mod:`medsight.core.atomic` renames a temporary file onto."""
    seen: set[Path] = set()
    real = os.replace

    def recording(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        seen.add(Path(dst).resolve())
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", recording)
    return seen


def _not_atomic(folder: Path, seen: set[Path]) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.resolve() not in seen and p.name not in APPEND_ONLY]


def _leftover_temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.is_file()]


def test_train_predict_evaluate_report_write_atomically(tiny_runs: dict[str, Path], tmp_path: Path,
                                                          renamed: set[Path]) -> None:
    ds = tiny_runs["dataset3d"]
    run, pred, ev = tmp_path / "run", tmp_path / "pred", tmp_path / "eval"
    assert main(["-q", "train", str(ds), "--out", str(run), "--epochs", "1", "--iterations", "1", "--base-filters", "4"]) == 0
    assert main(["-q", "predict", str(run), str(ds / "imagesTr"), str(pred), "--no-tta", "--save-probabilities"]) == 0
    assert main(["-q", "evaluate", str(pred), str(ds / "labelsTr"), "--out", str(ev)]) == 0
    assert main(["-q", "report", str(run)]) == 0
    assert main(["-q", "convert", str(ds / "imagesTr" / "case_000_0000.nii.gz"), str(tmp_path / "conv" / "x.png")]) == 0
    for folder in (run, pred, ev, tmp_path / "conv"):
        assert any(folder.rglob("*")), folder
        assert _not_atomic(folder, renamed) == [], folder
        assert _leftover_temporaries(folder) == [], folder


def test_deid_writes_atomically(tmp_path: Path, renamed: set[Path]) -> None:
    series = SHARED / "tcia_pgbm005_mr_t1post_dicom" / "volume"
    if not series.is_dir():
        pytest.skip("real DICOM series not found")
    src = tmp_path / "src"
    src.mkdir()
    for f in sorted(series.iterdir())[:3]:
        shutil.copyfile(f, src / f.name)
    out = tmp_path / "deid"
    assert main(["-q", "deid", str(src), str(out), "--key", str(tmp_path / "key.json")]) == 0
    assert len(list(out.rglob("*.dcm"))) + len([p for p in out.rglob("*") if p.is_file()]) >= 3
    assert _not_atomic(out, renamed) == []


def test_interrupted_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    target.write_text('{"old": true}')

    def half_then_crash(tmp: Path) -> None:
        tmp.write_text('{"new": ')
        raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of the write

    with pytest.raises(KeyboardInterrupt):
        atomic.write_with(target, half_then_crash)
    assert target.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_disk_full_keeps_the_previous_checkpoint(tiny_runs: dict[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_runs["run3d"], run)
    last = run / "fold_0" / "checkpoint_last.pt"
    before = last.read_bytes()
    real_save = torch.save

    def full_disk(obj: object, f: str | os.PathLike[str], *a: object, **k: object) -> None:
        with open(f, "wb") as fh:  # half a file, then the disk is full
            fh.write(b"\x00" * 512)
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(torch, "save", full_disk)
    code = main(["-q", "train", str(tiny_runs["dataset3d"]), "--out", str(run), "--epochs", "2", "--iterations", "1",
                 "--resume"])
    monkeypatch.setattr(torch, "save", real_save)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "no space left" in err[0] and "checkpoint is intact" in err[0] and "--resume" in err[0]
    assert last.read_bytes() == before
    assert int(load_checkpoint(last)["epoch"]) == 1
    assert _leftover_temporaries(run) == []


def test_enospc_in_any_atomic_write_is_one_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "pred.nii.gz"
    target.write_bytes(b"previous")

    def full(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(MedsightError, match="no space left on device.*unchanged"):
        atomic.write_with(target, full)
    assert target.read_bytes() == b"previous"
    assert _leftover_temporaries(tmp_path) == []


def test_atomic_writes_are_flushed_to_disk_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new file is fsynced before ``os.replace``, so a power loss leaves the old file or the whole new one."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    atomic.write_text(tmp_path / "x.json", "{}")
    assert events[:2] == ["fsync", "replace"] and (tmp_path / "x.json").read_text() == "{}"


def test_enospc_outside_atomic_writes_is_one_line_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk met by a third-party writer (not through medsight.core.atomic) is still one line, exit 2."""
    from medsight.cli import info

    def full(args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.nii.gz"))

    monkeypatch.setattr(info, "run_convert", full)
    src = tmp_path / "in.nii.gz"
    src.write_bytes(b"")
    rc = main(["convert", str(src), str(tmp_path / "out.nii.gz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no space left on device" in err[0] and "out.nii.gz" in err[0]


def test_enospc_wrapped_by_a_writer_is_still_recognised(tmp_path: Path) -> None:
    """pydicom re-raises a full disk as a new OSError without errno; the cause chain still says ENOSPC."""
    def wrapped(tmp: Path) -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise OSError("writing the dataset failed:\nTraceback ...") from exc

    with pytest.raises(MedsightError, match="no space left on device"):
        atomic.write_with(tmp_path / "x.dcm", wrapped)
