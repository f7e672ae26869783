"""Request checks that hold for every route: access token, body size, origin, allowed roots, PHI-free logs.

* **Token** (optional): ``Authorization: Bearer T``, ``X-Medsight-Token: T``, the ``medsight_token`` cookie, or
  ``?token=T``. Opening the viewer with ``/?token=T`` sets the cookie (HttpOnly, SameSite=Strict) and redirects to
  ``/`` so the token leaves the address bar. ``/api/health`` is always open.
* **Body size**: a request whose body exceeds the limit gets 413, whether it declares a ``Content-Length`` or
  streams chunks; nothing beyond the limit is read.
* **Host**: a server bound to loopback answers only to loopback names (no DNS rebinding).
* **Origin**: a browser request from another origin that changes state (POST, DELETE) is refused (403), so a web
  page cannot queue jobs on a local server behind the user's back.
* **Logs**: one line per request with the method, the route *template* (``/api/jobs/{job_id}``), the status and
  the time - never query strings, file names or header values. Unexpected errors are logged by type only.
* **Paths**: :func:`resolve_under_roots` is the only way a client-given path reaches the file system.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from medsight.errors import user_error

log = logging.getLogger(__name__)

TOKEN_COOKIE = "medsight_token"
TOKEN_HEADER = "x-medsight-token"
OPEN_PATHS = ("/api/health",)
#: On every response: no MIME sniffing, no Referer (a ?token= must not leak to pages a report links to).
_SAFE_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))
#: Form fields and multipart framing on top of the files themselves.
FORM_OVERHEAD_BYTES = 256 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def megabytes(nbytes: float) -> str:
    """``"1.5 MB"``: a byte count for messages."""
    return f"{nbytes / 1024 / 1024:.3g} MB"


def api_error(status: int, what: str, got: object, where: str | None, fix: str) -> HTTPException:
    """An HTTP error whose JSON ``detail`` is one line: ``Expected <what>, got <got> in <where>; <fix>``."""
    return HTTPException(status_code=status, detail=str(user_error(what, got, where, fix)))


def _error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


# ---------------------------------------------------------------------------------------------- paths
def resolve_under_roots(name: str, roots: Sequence[Path], *, what: str = "file") -> Path:
    """The real path of ``name`` (relative to one of ``roots``, or absolute inside one of them).

    Symbolic links are resolved before the check, so a link inside a root that points outside it is refused too.

    Raises:
        HTTPException: 400 for an empty name, NUL bytes or a ``..`` component; 403 when no root is configured or
            the path resolves outside every root; 404 when it does not exist.
    """
    text = (name or "").strip()
    if not text or "\x00" in text:
        raise api_error(400, f"a {what} path", repr(text[:80]), None, "give a path relative to a served --root")
    if ".." in PurePosixPath(text.replace("\\", "/")).parts:
        raise api_error(400, f"a {what} path without '..'", repr(text[:200]), None,
                        "give a path inside a served --root, without parent-directory steps")
    if not roots:
        raise api_error(403, f"a server started with --root to name a server-side {what}", "no --root", None,
                        "upload the file instead, or restart 'medsight serve' with --root DIR")
    given = Path(text)
    candidates = [given] if given.is_absolute() else [Path(r) / given for r in roots]
    real_roots = [Path(r).resolve() for r in roots]
    for cand in candidates:
        if not cand.exists():
            continue
        real = cand.resolve(strict=True)
        if any(real == r or real.is_relative_to(r) for r in real_roots):
            return real
        raise api_error(403, f"a {what} inside the served roots", repr(text[:200]), None,
                        "name a file under a --root (links that lead outside the roots are refused)")
    raise api_error(404, f"an existing {what} under the served roots", repr(text[:200]), None, "check the path")


# ---------------------------------------------------------------------------------------------- token
def request_token(request: Request) -> str | None:
    """The token a request carries (header, cookie or query), or ``None``."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return (request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE)
            or request.query_params.get("token"))


def _token_ok(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def _cross_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


class _BodyTooLarge(Exception):
    pass


# ---------------------------------------------------------------------------------------------- middleware
class RequestGuard:
    """Pure ASGI middleware applying the checks of this module to every HTTP request."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int, allowed_hosts: Sequence[str] = ("*",)) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body_bytes
        self.hosts = {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = {"status": 0, "bytes_in": 0, "too_large": False}

        async def send_logged(message: Message) -> None:
            if state["too_large"]:  # the app answered a body it could not read in full (e.g. 400): answer 413
                if message["type"] == "http.response.start" and not state["status"]:
                    state["status"] = 413
                    refusal = self._too_large()
                    await send({"type": "http.response.start", "status": 413,
                                "headers": [*refusal.raw_headers, *_SAFE_HEADERS]})
                    await send({"type": "http.response.body", "body": refusal.body})
                return
            if message["type"] == "http.response.start":
                state["status"] = int(message["status"])
                message["headers"] = [*message.get("headers", []), *_SAFE_HEADERS]
            await send(message)

        request = Request(scope)
        try:
            early = self._check(request)
            if early is not None:
                await early(scope, receive, send_logged)
                return

            async def receive_counted() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    state["bytes_in"] += len(message.get("body", b""))
                    if state["bytes_in"] > self.max_body:
                        state["too_large"] = True
                        raise _BodyTooLarge
                return message

            await self.app(scope, receive_counted, send_logged)
        except _BodyTooLarge:
            if not state["status"]:
                await send_logged({"type": "http.response.start", "status": 413, "headers": []})
        except Exception as exc:  # noqa: BLE001 - logged by type only (messages may hold paths), answered with 500
            log.error("internal error %s while serving %s", type(exc).__name__, _route_template(scope))
            log.debug("traceback", exc_info=True)
            if not state["status"]:
                await _error_response(500, "Expected the request to be served, got an internal server error; "
                                      "retry, or run 'medsight --debug serve' and check the server log")(
                    scope, receive, send_logged)
        finally:
            log.info("%s %s -> %d (%.0f ms, %d bytes in)", scope.get("method", "?"), _route_template(scope),
                     state["status"], (time.perf_counter() - start) * 1000, state["bytes_in"])

    def _too_large(self) -> JSONResponse:
        return _error_response(413, str(user_error(f"a request body of at most {megabytes(self.max_body)}", "a larger body", None,
                                                   "send a smaller file, or restart the server with a larger --max-upload-mb")))

    def _check(self, request: Request) -> Response | None:
        """A response that ends the request early (refusal or token redirect), or ``None`` to go on."""
        host = _host_name(request.headers.get("host", ""))
        if "*" not in self.hosts and host not in self.hosts:
            return _error_response(400, str(user_error(f"a Host header naming this server ({', '.join(sorted(self.hosts))})",
                                                       repr(host[:80]), None, "open the server by the address it printed")))
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            return self._too_large()
        if request.method in ("POST", "PUT", "PATCH", "DELETE") and _cross_origin(request):
            return _error_response(403, str(user_error("a request from the viewer's own origin",
                                                       "a request from another origin", None,
                                                       "use the viewer served by this server, or a non-browser client")))
        if self.token is None or request.url.path in OPEN_PATHS:
            return None
        given = request_token(request)
        if not _token_ok(given, self.token):
            got = "no token" if given is None else "a wrong token"
            return _error_response(401, str(user_error("an access token", got, None,
                                                       "open the URL 'medsight serve' printed (with ?token=...), or send "
                                                       "the header 'Authorization: Bearer <token>'")),
                                   headers={"WWW-Authenticate": "Bearer"})
        if request.query_params.get("token") and request.url.path == "/" and request.method == "GET":
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            return response
        return None


def _host_name(host: str) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _route_template(scope: Scope) -> str:
    """The matched route's path template (no values), or the first path segment when nothing matched."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if template is not None:
        return str(template) or "/"
    path = str(scope.get("path", ""))
    head = path.split("/")[1] if path.count("/") >= 1 else ""
    return f"/{head}/..." if path.count("/") > 1 else path


__all__ = ["OPEN_PATHS", "TOKEN_COOKIE", "RequestGuard", "api_error", "megabytes", "request_token", "resolve_under_roots"]
