"""Request checks that hold for every route: access token, body size, origin, allowed roots, PHI-free logs.

* **Token** (always): ``Authorization: Bearer T`` or the ``medsight_token`` cookie. ``?token=T`` is only a login: a
  GET carrying it is answered with nothing but a redirect to the same URL without the token, setting the cookie
  (HttpOnly, SameSite=Strict, Secure under HTTPS); it never authorises a response with data. Without a token every
  route answers 401 (the viewer page with a short login hint); only ``/api/health`` is open.
* **Body size**: a request whose body exceeds the limit gets 413, whether it declares a ``Content-Length`` or
  streams chunks; nothing beyond the limit is read.
* **Host**: a server bound to loopback answers only to loopback names (no DNS rebinding).
* **Origin**: a browser request from another origin that changes state (POST, DELETE) is refused (403), so a web
  page cannot queue jobs on a local server behind the user's back.
* **Logs**: one line per request with the method, the route *template* (``/api/jobs/{job_id}``), the status and
  the time - never query strings, file names or header values. Unexpected errors are logged by type only.
* **Paths**: :func:`resolve_under_roots` is the only way a client-given path reaches the file system; a path outside
  the roots and a missing one get the same 404 (no oracle for which files exist).
* **Errors**: :func:`public_message` turns a job's or a route's error into a line without server paths, with an error
  id; the full message goes to the server log under that id.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from medsight.errors import MedsightError, user_error

log = logging.getLogger(__name__)

TOKEN_COOKIE = "medsight_token"
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
        HTTPException: 400 for an empty name, NUL bytes or a ``..`` component; 403 when no root is configured;
            404 when it does not exist *or* resolves outside every root (the same answer: no oracle).
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
        break  # outside every root: answered exactly like a missing file
    raise api_error(404, f"an existing {what} under the served roots", repr(text[:200]), None,
                    "check the path (links that lead outside the roots count as missing)")


# ---------------------------------------------------------------------------------------------- token
def request_token(request: Request) -> str | None:
    """The token a request carries in the ``Authorization: Bearer`` header or the cookie, or ``None``."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get(TOKEN_COOKIE)


def _without_token(request: Request) -> str:
    """The request's path and query, less ``token`` (where a login redirect goes)."""
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    return request.url.path + (f"?{urlencode(rest)}" if rest else "")


# ---------------------------------------------------------------------------------------------- errors
_EXPECTED = re.compile(r"^Expected (.{1,200}?), got ")
_PATHLIKE = re.compile(r"[/\\]|\.(nii|gz|nrrd|mha|mhd|png|jpe?g|tiff?|dcm|zip)\b", re.IGNORECASE)


def new_error_id() -> str:
    """A short random id that ties a client's error message to the server log line holding the detail."""
    return secrets.token_hex(4)


def public_message(exc: BaseException, error_id: str) -> str:
    """A one-line error for clients: the requirement that was not met (when it names no file), never the value
    found nor any path; the error id points to the full message in the server log."""
    if isinstance(exc, MedsightError):
        found = _EXPECTED.match(str(exc))
        what = found.group(1) if found and not _PATHLIKE.search(found.group(1)) else "an input this server can use"
        return (f"Expected {what}, got an input that does not meet it (error id {error_id}); fix the input and try "
                "again, or give the error id to the server's administrator")
    return (f"Expected the request to be served, got an internal error (error id {error_id}); retry, or give the "
            "error id to the server's administrator (the server log has the detail)")


def mentions_paths(text: str, prefixes: Sequence[Path]) -> bool:
    """Whether an error message names a server path (one of ``prefixes``, or any absolute path)."""
    return any(str(p) in text for p in prefixes) or re.search(r"(^|[\s'\"(])/[^\s]", text) is not None


def _token_ok(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def _cross_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


class _BodyTooLarge(Exception):
    pass


#: The viewer page's answer without a token: how to log in, and nothing else.
LOGIN_HINT = ("<!doctype html><meta charset=utf-8><title>medsight: log in</title>"
              "<p>This medsight server needs its access token. Open the address <code>medsight serve</code> printed "
              "when it started (it ends with <code>?token=...</code>), or ask the person who runs the server.</p>")


# ---------------------------------------------------------------------------------------------- middleware
class RequestGuard:
    """Pure ASGI middleware applying the checks of this module to every HTTP request."""

    def __init__(self, app: ASGIApp, *, token: str, max_body_bytes: int, allowed_hosts: Sequence[str] = ("*",),
                 secure_cookie: bool = False) -> None:
        if not token:
            raise ValueError("RequestGuard needs a token")
        self.app = app
        self.token = token
        self.max_body = max_body_bytes
        self.hosts = {h.lower() for h in allowed_hosts}
        self.secure_cookie = secure_cookie

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
        except ClientDisconnect:  # the client went away, or the body timeout cut it off (see serve.protocol)
            state["status"] = state["status"] or 408
        except Exception as exc:  # noqa: BLE001 - logged by type only (messages may hold paths), answered with 500
            error_id = new_error_id()
            log.error("internal error %s (error id %s) while serving %s", type(exc).__name__, error_id,
                      _route_template(scope))
            log.debug("traceback", exc_info=True)
            if not state["status"]:
                await _error_response(500, public_message(exc, error_id))(scope, receive, send_logged)
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
        if request.url.path in OPEN_PATHS:
            return None
        in_query = request.query_params.get("token")
        if in_query is not None:
            return self._login(request, in_query)
        given = request_token(request)
        if _token_ok(given, self.token):
            return None
        if request.url.path == "/" and request.method == "GET":
            return HTMLResponse(LOGIN_HINT, status_code=401, headers={"WWW-Authenticate": "Bearer",
                                                                       "Content-Security-Policy": "default-src 'none'",
                                                                       "Cache-Control": "no-store"})
        got = "no token" if given is None else "a wrong token"
        return _error_response(401, str(user_error("an access token", got, None,
                                                   "open the URL 'medsight serve' printed (with ?token=...), or send "
                                                   "the header 'Authorization: Bearer <token>'")),
                               headers={"WWW-Authenticate": "Bearer"})

    def _login(self, request: Request, given: str) -> Response:
        """``?token=`` on a GET: the cookie and a redirect to the same URL without it; nothing else, ever."""
        if request.method != "GET" or not _token_ok(given, self.token):
            why = "a token in the URL of a " + request.method if request.method != "GET" else "a wrong token in the URL"
            return _error_response(401, str(user_error("an access token in the Authorization header or the cookie", why,
                                                       None, "send 'Authorization: Bearer <token>' (the URL form "
                                                       "only logs a browser in)")),
                                   headers={"WWW-Authenticate": "Bearer"})
        response = RedirectResponse(_without_token(request), status_code=303, headers={"Cache-Control": "no-store"})
        response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict", secure=self.secure_cookie,
                            path="/")
        return response


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


__all__ = ["LOGIN_HINT", "OPEN_PATHS", "TOKEN_COOKIE", "RequestGuard", "api_error", "megabytes", "mentions_paths",
           "new_error_id", "public_message", "request_token", "resolve_under_roots"]
