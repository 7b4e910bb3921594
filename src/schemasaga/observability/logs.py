"""One log format for the whole process (schemasaga, uvicorn, procrastinate, the drivers): JSON lines or
text, each line with the ids of the work in hand (:mod:`schemasaga.logcontext`), and never a password.

Everything goes through one handler on the root logger: uvicorn is started with ``log_config=None`` so
that its loggers propagate there instead of printing in their own format.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

import psycopg.errors

from schemasaga import logcontext

LogFormat = Literal["json", "text"]

_IDS = ("request_id", "operation_id", "correlation_id")

# A password in a URL's user info (``scheme://user:secret@host``) or in a libpq conninfo
# (``password=secret``). No code logs a URL on purpose; this is the net under that rule, for messages
# and tracebacks that quote one (a driver's error, a library's debug line).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)[^@\s]*@")
_CONNINFO_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
REDACTED = "***"


def redact(text: str) -> str:
    """``text`` with every password it quotes in a URL or conninfo replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}@", text)
    return _CONNINFO_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}", text)


class ContextFilter(logging.Filter):
    """Adds the bound ids to each record (left alone when the caller passed its own). procrastinate's
    lines about a job, written before or after the job's task binds its operation, get the operation of
    the job's arguments (procrastinate passes the job as ``extra``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in logcontext.current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        if not hasattr(record, "operation_id"):
            job = getattr(record, "job", None)
            kwargs = job.get("task_kwargs") if isinstance(job, dict) else None
            operation = kwargs.get("operation_id") if isinstance(kwargs, dict) else None
            if operation is not None:
                record.operation_id = record.correlation_id = str(operation)
        return True


class DriverNoiseFilter(logging.Filter):
    """Drops psycopg's "error ignored terminating <pipeline>: pipeline aborted" warning. psycopg writes it
    when a statement of a pipeline failed inside the ``with conn.pipeline()`` block and the block's end
    finds the pipeline aborted by that same failure, which is the error already on its way to the caller
    (a 409 for a taken name, say): on its own the line reads as a second, ignored failure. Any other error
    met while ending a pipeline is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "psycopg"
            and record.msg == "error ignored terminating %r: %s"
            and isinstance(record.args, tuple)
            and len(record.args) == 2
            and isinstance(record.args[1], psycopg.errors.PipelineAborted)
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the ids that are set,
    and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in _IDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = str(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [request_id=... operation_id=...]``, for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{n}={v}" for n in _IDS if (v := getattr(record, n, None)) is not None)
        if ids:
            head, sep, tail = line.partition("\n")  # after the message, before any traceback
            line = f"{head} [{ids}]{sep}{tail}"
        return redact(line)


def default_format(stream: TextIO) -> LogFormat:
    """JSON for a collector (a file, a pipe), text for a person at a terminal."""
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


class _Handler(logging.StreamHandler[TextIO]):
    """The handler this module installs (told apart from others when configuring again)."""


def configure(*, level: str, log_format: LogFormat | None = None, stream: TextIO | None = None) -> None:
    """Send every logger's records to ``stream`` (default stderr) in one format, from ``level`` up."""
    out = stream if stream is not None else sys.stderr
    fmt = log_format or default_format(out)
    handler = _Handler(out)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(DriverNoiseFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's and procrastinate's loggers print nothing of their own: they propagate to this handler.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "procrastinate"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
