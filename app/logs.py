"""Log lines as JSON, one object per line, each carrying the request id, with secrets redacted.

Every process of the control plane (API workers, the engine worker, `reflexdb serve`) logs
through `configure_logging`. The request id of the request being served lives in a
contextvar (`request_id`), set by the HTTP edge (app/api/observability.py) for the whole
request: on the event loop, on the Flask thread that runs the handler (a2wsgi copies the
context) and on the threads `run_in_threadpool` uses. Code anywhere may read it with
`current_request_id()`; outside a request it is None.

Redaction is a safety net, not the policy: code never logs a secret on purpose. What it
catches is what slips through a message, an exception text or a traceback: the secret
part of management and query keys (`rmk_<keyId>.<secret>` keeps `rmk_<keyId>.`), bearer
tokens, passwords in URLs (`scheme://user:…@host`) and `password=…`/`"token": "…"` pairs.
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

request_id: ContextVar[str | None] = ContextVar("reflexdb_request_id", default=None)

REDACTED = "[redacted]"
# (pattern, replacement), applied in order to every string a log line carries.
_REDACTIONS = (
    # Management and query keys: the key id stays (it names the key, it opens nothing).
    (re.compile(r"\b(r[mx]k_[A-Za-z0-9]{1,64}\.)[A-Za-z0-9_\-]+"), rf"\1{REDACTED}"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), rf"\1{REDACTED}"),
    # scheme://user:password@host
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s\"']*:)[^@\s\"']+@"), rf"\1{REDACTED}@"),
    # password=…, "mysqlPassword": "…", admin_token: …, secret=…
    (re.compile(r"(?i)((?:password|passwd|pwd|secret|token|api[_-]?key)[\"']?\s*[:=]\s*[\"']?)"
                r"[^\s\"',;&}]+"), rf"\1{REDACTED}"),
)


def current_request_id() -> str | None:
    """The id of the request being served on this thread or task, or None."""
    return request_id.get()


# What every pattern above needs somewhere in the text (case aside): a text without any of
# these has nothing to redact, and one search is cheaper than the four substitutions. It is
# searched case-folded with a case-sensitive pattern: ten times faster than `(?i)` over a
# request's log line (about 30 µs), and case folding maps everything `(?i)` would match
# (`ſ` to `s`, the Kelvin sign to `k`) onto the pattern's letters.
_MIGHT_HOLD_A_SECRET = re.compile(r"r[mx]k_|bearer|://|passw|pwd|secret|token|api[_-]?key")


def might_hold_a_secret(text: str) -> bool:
    """False when `text` certainly holds nothing `redact` would replace."""
    return _MIGHT_HOLD_A_SECRET.search(text.casefold()) is not None


def redact(text: str) -> str:
    """`text` with anything that looks like a secret replaced by `[redacted]`."""
    if not might_hold_a_secret(text):
        return text
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(item) for item in value]
    return value


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (None outside a request) to every record a handler emits."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class RedactingJsonFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, process, message, request_id and any `extra`,
    every string redacted (the message, the traceback, the extra fields)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__("%(levelname)s %(name)s %(process)d %(message)s %(request_id)s", *args, **kwargs)

    def serialize_log_record(self, log_data) -> str:
        # One search over the whole line instead of one per string it carries: a string
        # holding a pattern's trigger puts it in the line too (JSON escapes none of its
        # characters), so a line without any has nothing to redact.
        line = super().serialize_log_record(log_data)
        if not might_hold_a_secret(line):
            return line
        return super().serialize_log_record({key: _redact_value(value) for key, value in log_data.items()})


_HANDLER_MARK = "_reflexdb_json_handler"


def json_handler(stream=None) -> logging.Handler:
    """A stream handler (stderr by default) writing redacted JSON lines with the request id."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingJsonFormatter())
    handler.addFilter(RequestIdFilter())
    setattr(handler, _HANDLER_MARK, True)
    return handler


def configure_logging(level: str | int = "INFO") -> None:
    """Send the root logger's records to stderr as JSON lines (once per process; calling
    again only changes the level). Handlers others installed (pytest's) stay."""
    root = logging.getLogger()
    root.setLevel(level)
    if not any(getattr(handler, _HANDLER_MARK, False) for handler in root.handlers):
        root.addHandler(json_handler())


def lean_records() -> None:
    """Stop gathering, for every record, what the JSON lines never show: the caller's file,
    line and function, the thread's name, the multiprocessing process name (the logging
    HOWTO's "Optimization"). For the served app; tests and the CLI keep them for other
    handlers (pytest's captured log shows the file and line)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False


def gunicorn_logconfig(level: str = "INFO", access_log: str | None = "-") -> dict:
    """`logconfig_dict` for gunicorn: its own lines, and uvicorn's (the ASGI worker sends them
    to gunicorn's handlers), as the same JSON: errors on stderr, the access log on stdout
    (`access_log` "-"), in a file (a path) or nowhere (None)."""
    common = {"formatter": "json", "filters": ["request_id"]}
    if access_log is None:
        access = {"class": "logging.NullHandler"}
    elif access_log == "-":
        access = {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", **common}
    else:
        access = {"class": "logging.FileHandler", "filename": access_log, **common}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"json": {"()": RedactingJsonFormatter}},
        "handlers": {
            "error_console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", **common},
            "access": access,
        },
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
        },
        "root": {"level": level, "handlers": []},
    }


__all__ = ["REDACTED", "RedactingJsonFormatter", "RequestIdFilter", "configure_logging",
           "current_request_id", "gunicorn_logconfig", "json_handler", "lean_records", "redact",
           "request_id"]
