"""Every case of the bad-input corpus through every command that reads it: exit 2, one line that names the file
and says what was expected, no traceback, nothing written (but predict's audit line recording the refusal)."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pytest

from medsight.cli.app import main

pytestmark = pytest.mark.reliability


def _load_corpus() -> ModuleType:
    if "reliability_corpus" in sys.modules:
        return sys.modules["reliability_corpus"]
    spec = importlib.util.spec_from_file_location("reliability_corpus", Path(__file__).with_name("corpus.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["reliability_corpus"] = module
    spec.loader.exec_module(module)
    return module


corpus_module = _load_corpus()
PLACEHOLDER_RUN = Path("/nonexistent/run3d")
CASES = corpus_module.corpus(PLACEHOLDER_RUN)
PARAMS = [pytest.param(c, cmd, id=f"{c.name}-{cmd.split()[0] if cmd.split()[0] != 'dataset' else 'check'}")
          for c in CASES for cmd in c.commands]


def _files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def test_corpus_has_at_least_30_cases() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "template"), PARAMS)
def test_bad_input_is_refused_in_one_line(case, template: str, tmp_path: Path, tiny_runs: dict[str, Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    build = case.build
    if case.name.startswith("run_"):  # rebuild against the real tiny run
        build = next(c for c in corpus_module.corpus(tiny_runs["run3d"]) if c.name == case.name).build
    root = tmp_path / "in"
    root.mkdir()
    p = build(root)
    out = tmp_path / "out"
    before = sorted(_files_under(root))
    argv = shlex.split(template.format(p=p, out=out, **{k: str(v) for k, v in tiny_runs.items()}))
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    lines = [ln for ln in err.splitlines() if ln.startswith("medsight: error:")]
    assert code == 2, f"{argv}: exit {code}\nstdout: {captured.out}\nstderr: {err}"
    assert "Traceback" not in err
    assert len(lines) == 1, err
    message = lines[0]
    assert "Expected" in message, message
    needle = case.names(p) if case.names else p.name
    assert needle in message, f"{needle!r} not named in: {message}"
    written = [f for f in _files_under(out) if f.name != "audit.jsonl"]
    assert not written, f"{argv} wrote {written}"
    audit = out / "audit.jsonl"
    if audit.exists():  # predict's audit trail records the refusal itself, and nothing else is written
        assert json.loads(audit.read_text().splitlines()[-1])["status"] == "refused"
    assert sorted(_files_under(root)) == before, "the input folder was changed"


@pytest.mark.parametrize("template", ["info {p}", "convert {p} {out}/x.nii.gz", "predict {run3d} {p} {out}"])
def test_file_without_read_permission(template: str, tiny_runs: dict[str, Path], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``chmod 000`` does not stop root (these tests may run as root), so the kernel's answer is simulated."""
    import builtins

    p = tmp_path / "locked.nii.gz"
    p.write_bytes(tiny_runs["good3d"].read_bytes())
    p.chmod(0)
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(str(file)) == p and os.geteuid() == 0:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    out = tmp_path / "out"
    code = main(shlex.split(template.format(p=p, out=out, run3d=tiny_runs["run3d"])))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(p) in err[0] and "permission" in err[0].lower(), err
    assert not [f for f in _files_under(out) if f.name != "audit.jsonl"]
