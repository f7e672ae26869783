"""Pieces of the server without a server: volume compaction and slicing, upload sniffing, roots, the CLI."""

from __future__ import annotations

import gzip
import io
import socket
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import HTTPException
from PIL import Image as PILImage

from medsight.cli.app import main
from medsight.core.image import Image
from medsight.io import write_image
from medsight.serve.config import ServeConfig, is_loopback
from medsight.serve.security import resolve_under_roots
from medsight.serve.uploads import sniff
from medsight.serve.volumes import fraction_volume, image_volume, label_volume, render_png


def test_image_volume_keeps_values_in_the_smallest_dtype() -> None:
    ct = Image(np.array([[[-1000.0, 0.0], [40.0, 3000.0]]])[None], spacing=(2.0, 0.5, 0.5))
    vol = image_volume(ct)
    assert vol.data.dtype == np.int16 and np.array_equal(vol.data, ct.array)
    assert image_volume(Image(np.full((1, 4, 4), 0.25))).data.dtype == np.float32
    assert image_volume(Image(np.arange(16, dtype=np.uint8).reshape(1, 4, 4))).data.dtype == np.uint8
    big = image_volume(Image(np.array([[[0.0, 70000.0]]])))
    assert big.data.dtype == np.float32 and big.data.max() == 70000.0
    meta = vol.meta()
    assert meta["spacing"] == [2.0, 0.5, 0.5] and meta["min"] == -1000.0 and meta["max"] == 3000.0
    assert gzip.decompress(vol.gzip_bytes) == vol.data.astype("<i2").tobytes()


def test_planes_follow_the_array_axes_and_put_the_head_up() -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.int16).reshape(1, 2, 3, 4)
    vol = image_volume(Image(arr))  # default direction: axis 0 runs towards superior
    assert vol.rows_flipped
    assert np.array_equal(vol.plane("axial", 1), arr[0, 1])
    assert np.array_equal(vol.plane("coronal", 2), arr[0, :, 2, :][::-1])
    assert np.array_equal(vol.plane("sagittal", 3), arr[0, :, :, 3][::-1])
    down = image_volume(Image(arr, direction=np.diag([1.0, 1.0, -1.0])[:, ::-1]))
    assert not down.rows_flipped and np.array_equal(down.plane("coronal", 0), arr[0, :, 0, :])
    assert vol.pixel_spacing("coronal") == (1.0, 1.0)
    with pytest.raises(HTTPException) as err:
        vol.plane("oblique", 0)
    assert err.value.status_code == 400 and "axial, coronal, sagittal" in str(err.value.detail)


def test_label_and_fraction_volumes() -> None:
    lab = Image(np.array([[[0, 1], [4, 0]]], dtype=np.uint8))
    vol = label_volume(lab, {"background": 0, "liver": 1, "tumour": 4})
    assert vol.labels == {"1": {"name": "liver", "colour": [255, 0, 0]}, "4": {"name": "tumour", "colour": [255, 255, 0]}}
    png = np.asarray(PILImage.open(io.BytesIO(render_png(vol, "axial", 0))))
    assert png[0, 1].tolist() == [255, 0, 0] and png[0, 0].tolist() == [0, 0, 0]
    probs = fraction_volume(np.array([[[0.0, 1.0]], [[1.0, 0.5]]]), Image(np.zeros((1, 1, 2))), kind="probabilities",
                            names=["background", "liver"])
    assert probs.data.dtype == np.uint8 and probs.data.tolist() == [[[0, 255]], [[255, 128]]]
    assert probs.labels == {"0": "background", "1": "liver"}


@pytest.mark.parametrize(("suffix", "kind"), [(".nii.gz", "nifti-gz"), (".nii", "nifti"), (".nrrd", "nrrd"),
                                              (".mha", "mha"), (".png", "png"), (".tif", "tiff")])
def test_sniff_recognises_what_medsight_writes(tmp_path: Path, suffix: str, kind: str) -> None:
    path = write_image(Image(np.arange(64, dtype=np.uint8).reshape(1, 8, 8)), tmp_path / f"x{suffix}")
    assert sniff(path.read_bytes()[:4096]) == kind


def test_sniff_refuses_other_content() -> None:
    assert sniff(b"%PDF-1.7 ...") is None
    assert sniff(gzip.compress(b"just text, gzipped" * 40)) is None
    assert sniff(b"\x00" * 128 + b"DICM" + b"\x00" * 100) == "dicom"


def test_roots_resolve_inside_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.nii.gz").write_bytes(b"x")
    assert resolve_under_roots("sub/a.nii.gz", [root]) == (root / "sub" / "a.nii.gz").resolve()
    assert resolve_under_roots(str(root / "sub" / "a.nii.gz"), [root]).name == "a.nii.gz"
    for bad, status in (("sub/../sub/a.nii.gz", 400), ("..\\secret", 400), ("", 400), ("a\x00b", 400),
                        (str(tmp_path), 404), ("sub/none.nii.gz", 404)):
        with pytest.raises(HTTPException) as err:
            resolve_under_roots(bad, [root])
        assert err.value.status_code == status, bad
    # outside the roots and missing: the same status and the same words (no oracle for what exists)
    (tmp_path / "secret.txt").write_text("x")
    answers = []
    for name in (str(tmp_path / "secret.txt"), str(root / "none.txt")):
        with pytest.raises(HTTPException) as err:
            resolve_under_roots(name, [root])
        answers.append((err.value.status_code, str(err.value.detail).replace(repr(name), "NAME")))
    assert answers[0] == answers[1]


def test_config_checks_and_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert ServeConfig(host="0.0.0.0", insecure=True).allowed_hosts() == ["*"]
    assert "proxy.example" in ServeConfig(allow_hosts=("proxy.example",)).allowed_hosts()
    with pytest.raises(ValueError, match="at least 8 characters"):
        ServeConfig(token="short")
    with pytest.raises(ValueError, match="positive --max-upload-mb"):
        ServeConfig(max_upload_mb=0)


def test_cli_serve_binds_loopback_and_always_has_a_token(serve_runs: dict[str, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    import medsight.cli.serve as cli_serve

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    monkeypatch.setattr(cli_serve, "_check_port", lambda host, port: None)  # the ports may be taken on this machine
    monkeypatch.delenv("MEDSIGHT_TOKEN", raising=False)
    before = set(Path(tempfile.gettempdir()).glob("medsight-serve-*"))
    assert main(["serve", str(serve_runs["runs"])]) == 0  # bare: a generated token, printed once in the URL
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8000 and calls[-1]["access_log"] is False
    token = calls[-1]["app"].state.medsight.token
    out = capsys.readouterr().out
    assert "2 run(s): run2d, run3d" in out and f"open http://127.0.0.1:8000/?token={token} " in out
    assert out.count(token) == 1 and len(token) >= 24
    assert main(["serve", str(serve_runs["run3d"]), "--host", "0.0.0.0", "--port", "8081", "--insecure"]) == 0
    assert calls[-1]["app"].state.medsight.token in capsys.readouterr().out
    monkeypatch.setenv("MEDSIGHT_TOKEN", "from-the-environment")
    assert main(["serve", str(serve_runs["run3d"])]) == 0
    assert calls[-1]["app"].state.medsight.token == "from-the-environment"
    assert "from-the-environment" not in capsys.readouterr().out  # the user's own token is not printed
    token_file = tmp_path / "token"
    token_file.write_text("from-a-private-file\n")
    token_file.chmod(0o600)
    assert main(["serve", str(serve_runs["run3d"]), "--token-file", str(token_file)]) == 0
    assert calls[-1]["app"].state.medsight.token == "from-a-private-file"
    assert calls[-1]["http"].__name__ == "GuardedH11Protocol"  # the request timeouts are in place
    # every temporary work folder was removed when its server ended: none is left behind
    assert not set(Path(tempfile.gettempdir()).glob("medsight-serve-*")) - before


def test_cli_serve_refuses_a_token_on_the_command_line_and_readable_token_files(
        serve_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(serve_runs["run3d"]), "--token", "visible-in-ps-output"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--token-file FILE" in err and "MEDSIGHT_TOKEN" in err
    token_file = tmp_path / "token"
    token_file.write_text("readable-by-everyone")
    token_file.chmod(0o644)
    assert main(["serve", str(serve_runs["run3d"]), "--token-file", str(token_file)]) == 2
    assert "only its owner can read (mode 600), got mode 644" in capsys.readouterr().err


def test_cli_serve_beyond_loopback_needs_tls_or_insecure(serve_runs: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(serve_runs["run3d"]), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Expected HTTPS (--certfile and --keyfile) for --host 0.0.0.0" in err
    assert "--insecure" in err
    assert main(["serve", str(serve_runs["run3d"]), "--host", "0.0.0.0", "--certfile", str(tmp_path / "c.pem")]) == 2
    assert "both --certfile and --keyfile" in capsys.readouterr().err
    (tmp_path / "c.pem").write_text("not a certificate")
    assert main(["serve", str(serve_runs["run3d"]), "--host", "0.0.0.0", "--certfile", str(tmp_path / "c.pem"),
                 "--keyfile", str(tmp_path / "c.pem")]) == 2
    assert "Expected a PEM certificate and its private key" in capsys.readouterr().err


def test_cli_serve_errors_are_one_line(serve_runs: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medsight: error: Expected a run folder, got no such folder in") and err.count("\n") == 1
    assert main(["serve", str(tmp_path)]) == 2
    assert "a folder without plans.json" in capsys.readouterr().err
    assert main(["serve", "--root", str(tmp_path / "nope")]) == 2
    assert "Expected an existing folder for --root" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", str(serve_runs["run3d"]), "--port", str(taken.getsockname()[1])]) == 2
    assert "Expected an address this machine can listen on" in capsys.readouterr().err
