"""What the HTTP layer writes to the log, and what it never writes.

- One access-log line per request (`SafeAccessLogger`): method, path, status,
  size and time, every client-controlled part escaped (`\\x1b`, `\\n`) and
  cut, so a request cannot forge or flood log lines. No body, no query
  string (it may carry a one-time value), no header but the User-Agent.
- A malformed HTTP request (bad request line, header or chunking) is client
  garbage, not a server fault: aiohttp logs those with a traceback at ERROR;
  `ClientGarbageFilter` turns each into one INFO line without it.
- Tracebacks remain for genuine 500s only (problems.py).
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

MAX_LOGGED_CHARS: Final = 200
ACCESS_LOGGER: Final = "cloudsign.access"


def escape(text: str, limit: int = MAX_LOGGED_CHARS) -> str:
    """Printable ASCII: control characters, quotes and non-ASCII escaped."""
    out = ascii(text)[1:-1]
    return out if len(out) <= limit else out[: limit - 1] + "…"


def loggable_path(request: web.BaseRequest) -> str:
    return escape(request.raw_path.split("?", 1)[0])


class SafeAccessLogger(AbstractAccessLogger):
    """`aiohttp`'s access log with every client-controlled field escaped."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        agent = escape(request.headers.get("User-Agent", "-"), 80)
        self.logger.info(
            '%s "%s %s" %d %d %.1fms "%s"',
            request.remote or "-",
            escape(request.method, 16),
            loggable_path(request),
            response.status,
            response.body_length,
            time * 1000,
            agent,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class ClientGarbageFilter(logging.Filter):
    """On `aiohttp.server`: a malformed request becomes one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "refused a malformed HTTP request (%s): %s"
            record.args = (type(exc).__name__, escape(str(exc.message), 120))
            record.exc_info = None
            record.exc_text = None
        return True


_FILTER: Final = ClientGarbageFilter()


def install_log_policy() -> None:
    """Idempotent: attach the filter to aiohttp's server logger."""
    logger = logging.getLogger("aiohttp.server")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def access_logger() -> logging.Logger:
    return logging.getLogger(ACCESS_LOGGER)
