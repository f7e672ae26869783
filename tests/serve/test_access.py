"""Safe by default (issue 20, item 4): a token on every route, the URL token only as a login, HTTPS beyond loopback,
and request timeouts against slow clients (on a real uvicorn server)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from medsight.serve import ServeConfig, create_app

from .helpers import BASE_URL, TOKEN, live_server

DATA_ROUTES = ["/api/runs", "/api/runs/run3d", "/api/jobs", "/api/presets", "/openapi.json", "/static/viewer.js",
               "/api/runs/run3d/files/report.html", "/api/jobs/abc/files/labels"]


def test_every_route_answers_401_without_the_token(make_client: Callable[..., TestClient]) -> None:
    client = make_client(authorized=False)
    for route in DATA_ROUTES:
        r = client.get(route)
        assert r.status_code == 401, route
        assert "run3d" not in r.text and "structure_1" not in r.text, route
    r = client.post("/api/jobs", data={"run": "run3d", "path": "imagesTr/case_000_0000.nii.gz"})
    assert r.status_code == 401
    page = client.get("/")  # the viewer page: a login hint, no data, no script
    assert page.status_code == 401 and "?token=" in page.text and "<script" not in page.text
    assert page.headers["content-security-policy"] == "default-src 'none'"
    assert client.get("/api/health").status_code == 200


def test_a_server_without_a_configured_token_generates_one(serve_runs: dict[str, Path], tmp_path: Path) -> None:
    app = create_app(ServeConfig(runs=(serve_runs["run3d"],), work_dir=tmp_path / "work"))
    with TestClient(app, base_url=BASE_URL) as client:
        token = app.state.medsight.token
        assert len(token) >= 24
        assert client.get("/api/runs").status_code == 401
        assert client.get("/api/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_the_url_token_only_logs_in(make_client: Callable[..., TestClient]) -> None:
    client = make_client(authorized=False)
    # the token in the query string never answers with data: a redirect to the same URL without it, and the cookie
    r = client.get("/api/runs", params={"token": TOKEN}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/api/runs" and r.content == b""
    assert "token" not in r.headers["location"]
    r = client.get("/", params={"token": TOKEN, "job": "abc"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/?job=abc"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie  # plain HTTP on loopback
    assert client.get("/api/runs").status_code == 200  # the cookie authenticates from now on
    other = make_client(authorized=False)
    assert other.get("/api/runs", params={"token": "wrong-token-value"}, follow_redirects=False).status_code == 401
    r = other.post("/api/jobs", params={"token": TOKEN}, data={"run": "run3d"})
    assert r.status_code == 401 and "Authorization" in r.json()["detail"]  # never on a POST


def test_host_beyond_loopback_needs_tls_or_an_acknowledgement(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Expected HTTPS .* for --host 0.0.0.0"):
        ServeConfig(host="0.0.0.0")
    with pytest.raises(ValueError, match="Expected HTTPS .* for --host 192.168.1.5"):
        ServeConfig(host="192.168.1.5")
    assert ServeConfig(host="0.0.0.0", insecure=True).host == "0.0.0.0"
    assert not ServeConfig(host="127.0.0.1").tls


def _self_signed(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return cert, key


def test_https_with_certfile_and_keyfile(serve_runs: dict[str, Path], tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    config = ServeConfig(runs=(serve_runs["run3d"],), token=TOKEN, work_dir=tmp_path / "work", host="0.0.0.0",
                         certfile=cert, keyfile=key)
    assert config.tls
    app = create_app(config)
    with live_server(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as port:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=context) as http:
            assert http.get("/api/runs").status_code == 401
            r = http.get("/", params={"token": TOKEN}, follow_redirects=False)
            assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()  # a Secure cookie under HTTPS
            assert http.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not spoken
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5)


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when that happened (seconds from now)."""
    start, data = time.monotonic(), b""
    sock.settimeout(0.2)
    while time.monotonic() - start < limit:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - start


def test_slow_clients_are_cut_off(serve_runs: dict[str, Path], tmp_path: Path) -> None:
    app = create_app(ServeConfig(runs=(serve_runs["run3d"],), token=TOKEN, work_dir=tmp_path / "work"))
    with live_server(app, header_timeout=1.0, body_timeout=1.5, min_rate=1024) as port:
        # headers one byte at a time, every 0.3 s: closed with 408 once the header time is up
        with socket.create_connection(("127.0.0.1", port)) as sock:
            start = time.monotonic()
            for byte in b"GET /api/health HTTP/1.1\r\n":
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.3)
                if time.monotonic() - start > 4:
                    break
            data, _ = _read_until_closed(sock, 3)
            assert data.startswith(b"HTTP/1.1 408") and time.monotonic() - start < 5
        # a body one byte every 0.3 s (the 'one byte every 5 s' client, faster): cut off after ~1.5 s, not served
        with socket.create_connection(("127.0.0.1", port)) as sock:
            head = (f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                    "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n")
            sock.sendall(head.encode())
            start = time.monotonic()
            closed = False
            while time.monotonic() - start < 6:
                try:
                    sock.sendall(b"x")
                except OSError:
                    closed = True
                    break
                time.sleep(0.3)
                sock.setblocking(False)
                try:
                    if sock.recv(4096, socket.MSG_PEEK) is not None:
                        closed = True
                        break
                except BlockingIOError:
                    pass
                except OSError:
                    closed = True
                    break
                finally:
                    sock.setblocking(True)
            assert closed and time.monotonic() - start < 4, time.monotonic() - start
        # an ordinary request still works on a fresh connection
        r = httpx.get(f"http://127.0.0.1:{port}/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert r.status_code == 200


def test_documented_timeouts_and_limits_are_the_defaults() -> None:
    config = ServeConfig()
    assert (config.header_timeout_s, config.body_timeout_s, config.min_body_rate) == (10.0, 30.0, 65536)
    assert (config.max_upload_mb, config.max_image_mb, config.job_ttl_hours, config.max_pending_jobs) == (
        512.0, 512.0, 24.0, 16)
