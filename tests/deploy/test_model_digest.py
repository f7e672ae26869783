"""Models you can verify (issue 20, item 3): a model digest the user pins, ``--verify`` as a consistency check only,
and the model loaded from the very bytes that were hashed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from medsight.cli.app import main
from medsight.core.pinned import pinned, read_bytes
from medsight.deploy.audit import audited_prediction
from medsight.deploy.export import export_run
from medsight.engine.checkpoint import load_checkpoint
from medsight.engine.run import read_plan_json
from medsight.report.digest import DIGEST_ENV, read_model
from medsight.tasks.segmentation.pipeline import predict

from .conftest import copy_run

IMAGE = "imagesTr/case_000_0000.nii.gz"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _one_line(capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medsight: error: Expected ") and "Traceback" not in err[0], err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    return err[0]


def _printed_digest(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("model digest")]
    assert len(lines) == 1
    digest = lines[0].split(": ", 1)[1].split()[0]
    assert len(digest) == 64
    return digest


def _shell_digest(root: Path, names: list[str]) -> str:
    """What ``(echo "medsight model manifest v1"; sha256sum NAMES | LC_ALL=C sort -k2) | sha256sum`` prints."""
    lines = sorted(f"{hashlib.sha256((root / n).read_bytes()).hexdigest()}  {n}\n" for n in names)
    lines.sort(key=lambda line: line.split("  ", 1)[1])
    return hashlib.sha256(("medsight model manifest v1\n" + "".join(lines)).encode()).hexdigest()


def test_card_prints_and_records_the_digest_of_what_predict_loads(seg3d_run: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(seg3d_run, tmp_path / "run")
    digest = _printed_digest(capsys, ["-q", "card", str(run)])
    card = json.loads((run / "model_card.json").read_text())
    assert card["model_digest"]["sha256"] == digest and card["model_digest"]["folds"] == ["0"]
    names = {f["file"] for f in card["model_digest"]["files"]}
    assert names == {"fold_0/checkpoint_best.pt", "plans.json"}  # what a prediction of this run loads
    assert _shell_digest(run, sorted(names)) == digest  # recomputable without medsight
    assert digest in (run / "MODEL_CARD.md").read_text()
    assert _printed_digest(capsys, ["-q", "card", str(run), "--folds", "0"]) == digest


def test_pinned_digest_refuses_swapped_weights_plan_and_rewritten_card(seg3d_run: Path, phantom3d: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DIGEST_ENV, raising=False)
    run = copy_run(seg3d_run, tmp_path / "run")
    digest = _printed_digest(capsys, ["-q", "card", str(run)])
    image, out = str(phantom3d / IMAGE), tmp_path / "out"
    base = ["-q", "predict", str(run), image, str(out), "--no-tta", "--overwrite"]

    assert main([*base, "--expect-sha256", digest]) == 0  # the correct digest passes
    record = _lines(out / "audit.jsonl")[-1]
    assert record["status"] == "ok" and record["model"]["verified"] is True and record["model"]["digest"] == digest

    # an attacker swaps the weights for other valid weights (the last checkpoint) ...
    best, last = run / "fold_0" / "checkpoint_best.pt", run / "fold_0" / "checkpoint_last.pt"
    original = best.read_bytes()
    shutil.copyfile(last, best)
    assert main([*base, "--expect-sha256", digest]) == 2
    _one_line(capsys, "--expect-sha256", "fold_0/checkpoint_best.pt")
    assert main([*base, "--verify"]) == 2  # the card beside them still disagrees
    _one_line(capsys, "model_card.json", "checkpoint_best.pt")
    # ... and rewrites the card: the consistency check now passes, the pinned digest does not
    assert main(["-q", "card", str(run)]) == 0
    capsys.readouterr()
    assert main([*base, "--verify"]) == 0
    record = _lines(out / "audit.jsonl")[-1]
    assert record["model"]["consistent_with_card"] is True and record["model"]["verified"] is False
    assert main([*base, "--verify", "--expect-sha256", digest]) == 2
    _one_line(capsys, "--expect-sha256")
    monkeypatch.setenv(DIGEST_ENV, digest)  # the same pin from the environment (a deployment's configuration)
    assert main(base) == 2
    _one_line(capsys, f"${DIGEST_ENV}")
    monkeypatch.delenv(DIGEST_ENV)
    best.write_bytes(original)
    assert main(["-q", "card", str(run)]) == 0

    # a swapped plans.json (other postprocessing, label names) fails too
    plan = json.loads((run / "plans.json").read_text())
    plan["labels"] = {str(k): v for k, v in reversed(list(plan["labels"].items()))} if isinstance(plan.get("labels"), dict) \
        else plan.get("labels")
    plan["note"] = "swapped"
    saved = (run / "plans.json").read_bytes()
    (run / "plans.json").write_text(json.dumps(plan))
    assert main([*base, "--expect-sha256", digest]) == 2
    _one_line(capsys, "--expect-sha256", "plans.json")  # named as a hint: it differs from the card too
    assert main([*base, "--verify"]) == 2
    _one_line(capsys, "plans.json")
    (run / "plans.json").write_bytes(saved)
    assert main([*base, "--expect-sha256", f"sha256:{digest.upper()}"]) == 0  # restored: passes again

    assert main([*base, "--expect-sha256", "abc123"]) == 2  # not a digest: one line
    _one_line(capsys, "64 hex digits")
    refused = [r for r in _lines(out / "audit.jsonl") if r["status"] == "refused"]
    assert len(refused) == 7 and all(r["outputs"] == [] for r in refused)


def test_the_model_is_loaded_from_the_bytes_that_were_hashed(seg3d_run: Path, phantom3d: Path, tmp_path: Path) -> None:
    """A file swapped on disk after the check (while the prediction runs) is not what gets loaded."""
    run = copy_run(seg3d_run, tmp_path / "run")
    digest = read_model(run).digest
    best = run / "fold_0" / "checkpoint_best.pt"
    plans = (run / "plans.json").read_bytes()
    with pinned({best: best.read_bytes(), run / "plans.json": plans}):
        best.write_bytes(b"swapped after hashing")
        (run / "plans.json").write_text("{not json")
        assert load_checkpoint(best)["architecture"] == "dynunet"
        assert read_plan_json(run) == json.loads(plans)
    assert read_bytes(best) == b"swapped after hashing"  # outside the block: the disk
    shutil.copytree(seg3d_run, tmp_path / "fresh")
    best.write_bytes((tmp_path / "fresh" / "fold_0" / "checkpoint_best.pt").read_bytes())
    (run / "plans.json").write_bytes((tmp_path / "fresh" / "plans.json").read_bytes())

    out = tmp_path / "out"
    with audited_prediction(run, phantom3d / IMAGE, out, folds=None, engine="torch", expect_sha256=digest) as written:
        best.write_bytes(b"swapped between the check and the load")  # the time-of-check/time-of-use window
        (run / "plans.json").write_text("{not json")
        written += predict(run, phantom3d / IMAGE, out, tta=False, device="cpu")
    assert [p.name for p in written] == ["case_000_0000.nii.gz"]
    assert _lines(out / "audit.jsonl")[-1]["status"] == "ok"


def test_onnx_export_digest_covers_export_json_and_model(seg3d_run: Path, phantom3d: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "export"
    digest = _printed_digest(capsys, ["-q", "export", str(seg3d_run), str(out)])
    card = json.loads((out / "model_card.json").read_text())
    assert card["model_digest"]["sha256"] == digest
    assert {f["file"] for f in card["model_digest"]["files"]} == {"export.json", "plans.json", "fold_0/model.onnx"}
    assert _printed_digest(capsys, ["-q", "card", str(out)]) == digest  # an export: the digest only
    base = ["-q", "predict", str(out), str(phantom3d / IMAGE), str(tmp_path / "pred"), "--no-tta", "--engine", "onnx",
            "--overwrite"]
    assert main([*base, "--expect-sha256", digest]) == 0
    manifest = (out / "export.json").read_bytes()
    edited = json.loads(manifest)
    edited["created"] = "2000-01-01T00:00:00Z"
    (out / "export.json").write_text(json.dumps(edited))
    assert main([*base, "--expect-sha256", digest]) == 2
    _one_line(capsys, "--expect-sha256", "export.json")
    (out / "export.json").write_bytes(manifest)
    with (out / "fold_0" / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    assert main([*base, "--expect-sha256", digest]) == 2
    _one_line(capsys, "--expect-sha256", "model.onnx")
    assert main([*base, "--verify"]) == 2
    _one_line(capsys, "model_card.json")


def test_export_of_a_run_keeps_its_digest_separate(seg3d_run: Path, tmp_path: Path) -> None:
    """The run's digest and its export's digest differ (other files), and each is stable."""
    out = export_run(seg3d_run, tmp_path / "export")
    assert read_model(out).digest == read_model(out).digest != read_model(seg3d_run).digest
    # the card training wrote holds the digest a prediction computes (the plan is final before the card)
    assert json.loads((seg3d_run / "model_card.json").read_text())["model_digest"]["sha256"] == read_model(seg3d_run).digest


def test_torch_floor_is_2_6() -> None:
    """``weights_only=True`` loading can be bypassed before torch 2.6 (CVE-2025-32434): the floor and the install."""
    import tomllib
    import torch
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    (spec,) = [Requirement(r).specifier for r in project["dependencies"] if Requirement(r).name == "torch"]
    assert not spec.contains("2.5.1") and spec.contains("2.6.0")
    assert Version(torch.__version__.split("+")[0]) >= Version("2.6")
