"""Request timeouts for uvicorn's HTTP/1.1 protocol (h11): no client can hold a connection by sending slowly.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive`` seconds, but it has no limit on how long
a client may take to send its request headers or body: a client sending one byte every 5 s keeps a connection (and
whatever the request holds) forever. :func:`guarded_protocol` returns a subclass of uvicorn's ``H11Protocol``
with a watchdog (checked every :data:`TICK` seconds) that closes a connection

* whose request headers are not complete ``header_timeout`` seconds after the connection opened (or the previous
  response ended) - answered ``408`` before closing;
* whose request body is not complete ``body_timeout + received / min_rate`` seconds after its headers (like
  Apache's ``mod_reqtimeout``: a slow but steady upload of at least ``min_rate`` bytes/s is never cut off) -
  answered ``408`` when the application has not started its response, and the application sees a disconnect.

The time an application takes to answer is not limited (a prediction is queued as a job; the API answers at once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

TICK = 0.5
_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                     b"content-length: %d\r\n\r\n%s")
_DETAIL = (b'{"detail":"Expected the request to arrive within the server\'s time limit, got a request that was too '
           b'slow; send it again on a faster connection"}')


def guarded_protocol(*, header_timeout: float, body_timeout: float, min_rate: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol class with the header and body timeouts of this module."""

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._idle_since = time.monotonic()
            self._body_cycle: object | None = None
            self._body_since = 0.0
            self._body_bytes = 0
            self._watch: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._idle_since = time.monotonic()
            self._watch = self.loop.call_later(TICK, self._check)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.cycle is not None and self.cycle is self._body_cycle:
                self._body_bytes += len(data)
            super().data_received(data)

        def on_response_complete(self) -> None:
            self._idle_since = time.monotonic()
            super().on_response_complete()

        def _close(self, why: str, answer: bool) -> None:
            log.warning("connection closed: %s", why)
            if answer:
                self.transport.write(_TIMEOUT_RESPONSE % (len(_DETAIL), _DETAIL))
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            self.transport.close()

        def _check(self) -> None:
            self._watch = None
            if self.transport is None or self.transport.is_closing():
                return
            now = time.monotonic()
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                # waiting for request headers (uvicorn's keep-alive timer covers a silent idle connection too)
                if now - self._idle_since > header_timeout:
                    self._close(f"request headers not complete within {header_timeout:g} s", answer=True)
                    return
            elif cycle.more_body:
                if cycle is not self._body_cycle:
                    self._body_cycle, self._body_since, self._body_bytes = cycle, now, len(cycle.body)
                allowed = body_timeout + self._body_bytes / min_rate
                if now - self._body_since > allowed:
                    self._close(f"request body too slow ({self._body_bytes} bytes in {now - self._body_since:.0f} s)",
                                answer=not cycle.response_started)
                    return
            self._watch = self.loop.call_later(TICK, self._check)

    return GuardedH11Protocol


__all__ = ["TICK", "guarded_protocol"]
