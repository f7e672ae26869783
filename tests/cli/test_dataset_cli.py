"""``medsight dataset check`` and ``medsight dataset init`` through ``main([...])`` and one real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medsight.cli.app import main
from medsight.data.dataset import load_dataset

HIPPO = "msd_task04_hippocampus_cropped"
REPO = Path(__file__).resolve().parents[2]


def _error_files(stdout: str) -> set[str]:
    """Files named by the ``ERROR <file>: <message>`` lines."""
    return {line[len("ERROR "):].split(": ", 1)[0] for line in stdout.splitlines() if line.startswith("ERROR ")}


# ---------------------------------------------------------------------------------------------- check
def test_check_real_hippocampus_passes(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's acceptance test: 260 cases, no errors, exit 0."""
    code = main(["dataset", "check", str(shared_data / HIPPO)])
    out = capsys.readouterr().out
    assert code == 0
    assert "cases       260" in out and "0 error(s)" in out and "result      OK" in out
    assert "ERROR" not in out
    assert "layout folders" in out and "segmentation" in out and "background=0" in out


def test_check_broken_copy_names_exactly_the_three_files(
    broken_hippocampus: tuple[Path, dict[str, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, planted = broken_hippocampus
    code = main(["dataset", "check", str(root)])
    out = capsys.readouterr().out
    assert code == 1
    assert _error_files(out) == {str(p) for p in planted.values()}
    assert "3 error(s)" in out and "FAILED" in out
    assert "unreadable 1" in out and "undeclared_labels 1" in out and "shape_mismatch 1" in out
    assert "[7]" in out


def test_check_json_output_parses(
    broken_hippocampus: tuple[Path, dict[str, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, planted = broken_hippocampus
    code = main(["dataset", "check", str(root), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["ok"] is False and data["num_cases"] == 12 and data["num_errors"] == 3
    assert {p["file"] for p in data["problems"] if p["severity"] == "error"} == {str(p) for p in planted.values()}
    assert data["layout"] == "folders" and data["task"] == "segmentation"


def test_check_phantoms_pass(phantom3d_dataset: Path, phantom2d_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "check", str(phantom3d_dataset)]) == 0
    assert main(["dataset", "check", str(phantom2d_dataset / "dataset.json"), "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out[out.index("{"):])
    assert data["ok"] and data["layout"] == "nnunet" and data["counts"]["dim_2d"] == 6


def test_check_npz_dataset(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "check", str(shared_data / "breastmnist" / "BreastMNIST.npz")]) == 0
    out = capsys.readouterr().out
    assert "cases       624 (+156 test)" in out and "classification" in out


def test_check_warning_only_dataset_exits_0(phantom3d_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medsight.io import read_image, write_image

    label = phantom3d_dataset / "labelsTr" / "case_002.nii.gz"
    lab = read_image(label)
    write_image(lab.with_array(lab.array * 0), label)
    assert main(["dataset", "check", str(phantom3d_dataset)]) == 0
    out = capsys.readouterr().out
    assert f"WARN {label}:" in out and "OK (with warnings)" in out
    assert main(["dataset", "check", str(phantom3d_dataset), "--quiet"]) == 0
    assert "WARN" not in capsys.readouterr().out


def test_check_missing_path_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["dataset", "check", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("medsight: error: Expected") and "nowhere" in err and "Traceback" not in err


def test_dataset_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset"]) == 0
    assert "check" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- init
def test_init_writes_a_spec_that_load_dataset_reads(hippocampus_subset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = load_dataset(hippocampus_subset)
    code = main(["dataset", "init", str(hippocampus_subset), "--labels", "anterior=1,posterior=2"])
    assert code == 0
    spec_file = hippocampus_subset / "dataset.json"
    assert f"wrote {spec_file}" in capsys.readouterr().out
    data = json.loads(spec_file.read_text())
    assert data["layout"] == "folders" and data["labels"] == {"background": 0, "anterior": 1, "posterior": 2}
    after = load_dataset(hippocampus_subset)
    assert after.spec_file == spec_file and after.labels_declared
    assert after.labels == {"background": 0, "anterior": 1, "posterior": 2}
    assert [(r.case_id, r.images, r.label) for r in after.cases] == [(r.case_id, r.images, r.label) for r in before.cases]
    assert main(["dataset", "check", str(spec_file)]) == 0
    assert "(declared)" in capsys.readouterr().out


def test_init_refuses_to_overwrite_without_force(hippocampus_subset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "init", str(hippocampus_subset)]) == 0
    spec_file = hippocampus_subset / "dataset.json"
    spec_file.write_text(spec_file.read_text().replace("label_1", "edited"))
    capsys.readouterr()
    assert main(["dataset", "init", str(hippocampus_subset)]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and str(spec_file) in err
    assert "edited" in spec_file.read_text()  # untouched
    assert main(["dataset", "init", str(hippocampus_subset), "--force", "--labels", "background=0,a=1,b=2"]) == 0
    assert json.loads(spec_file.read_text())["labels"] == {"background": 0, "a": 1, "b": 2}


def test_init_out_elsewhere_for_read_only_data(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "specs" / "drive.json"
    assert main(["dataset", "init", str(shared_data / "drive" / "training"), "--out", str(out)]) == 0
    spec = load_dataset(out)
    original = load_dataset(shared_data / "drive" / "training")
    assert spec.root == (shared_data / "drive" / "training").resolve()
    assert [(r.label, r.roi) for r in spec.cases] == [
        (r.label.resolve() if r.label else None, r.roi.resolve() if r.roi else None) for r in original.cases
    ]
    assert sorted(p.name for p in out.parent.iterdir()) == ["drive.json"]  # written atomically, no leftovers


@pytest.mark.parametrize("labels", ["vessel", "a=1,a=2", "a=x", ","])
def test_init_bad_labels_is_a_usage_error(
    hippocampus_subset: Path, labels: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dataset", "init", str(hippocampus_subset), "--labels", labels]) == 2
    assert "--labels" in capsys.readouterr().err
    assert not (hippocampus_subset / "dataset.json").exists()


def test_init_refuses_non_folder_layouts(phantom3d_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "init", str(phantom3d_dataset), "--out", str(tmp_path / "x.json")]) == 2
    assert "folder of image/label pairs" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- subprocess
def test_subprocess_exit_codes_without_traceback(broken_hippocampus: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    root, planted = broken_hippocampus
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    broken = subprocess.run([sys.executable, "-m", "medsight", "dataset", "check", str(root)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert broken.returncode == 1, broken.stderr
    assert "Traceback" not in broken.stderr
    assert _error_files(broken.stdout) == {str(p) for p in planted.values()}
    missing = subprocess.run([sys.executable, "-m", "medsight", "dataset", "check", str(tmp_path / "nowhere")],
                             capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr and "medsight: error:" in missing.stderr
