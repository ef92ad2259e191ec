"""What the HTTP layer writes to the log, and what it never writes.

- One access-log line per request (`SafeAccessLogger`): method, path, status,
  size and time, every client-controlled part escaped (`\\x1b`, `\\n`) and
  cut, so a request cannot forge or flood log lines. No body, no query
  string (it may carry a one-time value), no header but the User-Agent.
- A malformed HTTP request (bad request line, header or chunking) is client
  garbage, not a server fault: aiohttp logs those with a traceback at ERROR;
  `ClientGarbageFilter` turns each into one INFO line without it.
- Tracebacks remain for genuine 500s only (problems.py).
- Every request has an id (`X-Request-Id`): the client's or the load
  balancer's when it is a plain token of 8 to 64 characters, a new one
  otherwise. The answer echoes it and every log line written while the
  request is handled carries it (`request_id`), so one request can be
  followed across the access log, the service's lines and the balancer's.
- `cloudsign serve` writes JSON lines (`JsonFormatter`): time, level,
  logger, message, request id, and the exception's type and traceback for a
  genuine fault. Messages are the services' own, which name no secret and no
  personal field (a test runs whole flows and searches every line).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

MAX_LOGGED_CHARS: Final = 200
ACCESS_LOGGER: Final = "cloudsign.access"
REQUEST_ID_HEADER: Final = "X-Request-Id"
_REQUEST_ID_KEY: Final = web.RequestKey("request_id", str)
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")

#: The id of the request being handled in this task, for log records.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cloudsign_request_id", default=None
)


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
        # The access line is written after the handler's context is gone.
        token = current_request_id.set(request.get(_REQUEST_ID_KEY))
        try:
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
        finally:
            current_request_id.reset(token)

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


class BelowInfoFilter(logging.Filter):
    """Drops DEBUG lines: on the database drivers' loggers, whose debug lines
    print each statement with its parameters (IINs, names, sealed blobs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO


_FILTER: Final = ClientGarbageFilter()
_NO_DEBUG: Final = BelowInfoFilter()
#: Loggers that would write statement parameters at DEBUG.
DRIVER_LOGGERS: Final = ("aiosqlite", "asyncpg")
_factory_installed = False


RecordFactory = Callable[..., logging.LogRecord]


def _stamp_request_id(factory: RecordFactory) -> RecordFactory:
    def make(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        rid = current_request_id.get()
        if rid is not None:
            record.request_id = rid
        return record

    return make


def install_log_policy() -> None:
    """Idempotent: the malformed-request filter on aiohttp's server logger,
    no DEBUG from the database drivers, and every record stamped with the
    request id of the task that made it (so a handler that formats later,
    or in another thread, still has it)."""
    global _factory_installed
    logger = logging.getLogger("aiohttp.server")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    for name in DRIVER_LOGGERS:
        driver = logging.getLogger(name)
        if _NO_DEBUG not in driver.filters:
            driver.addFilter(_NO_DEBUG)
    if not _factory_installed:
        logging.setLogRecordFactory(_stamp_request_id(logging.getLogRecordFactory()))
        _factory_installed = True


def access_logger() -> logging.Logger:
    return logging.getLogger(ACCESS_LOGGER)


# -- request ids ---------------------------------------------------------------


@web.middleware
async def request_id_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    rid = offered if _ACCEPTED_ID.fullmatch(offered) else uuid.uuid4().hex
    request[_REQUEST_ID_KEY] = rid
    token = current_request_id.set(rid)
    try:
        return await handler(request)
    finally:
        current_request_id.reset(token)


async def echo_request_id(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """`on_response_prepare`: every answer, error pages included, names its id."""
    rid = request.get(_REQUEST_ID_KEY)
    if rid is not None:
        response.headers[REQUEST_ID_HEADER] = rid


def install_request_ids(app: web.Application) -> None:
    """The middleware goes first in the app's list; this adds the echo (and
    the log policy, whose record factory stamps the id on log records)."""
    install_log_policy()
    app.on_response_prepare.append(echo_request_id)


# -- JSON lines ----------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the request id from the record or the task."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or current_request_id.get()
        if rid:
            line["request_id"] = rid
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(fmt: str, level: int = logging.INFO) -> None:
    """The root handler of `cloudsign serve`: JSON lines or plain text."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
