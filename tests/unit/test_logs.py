"""The log format: JSON or text lines with the ids of the work in hand, and no password ever."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import psycopg
import pytest

from schemasaga import logcontext
from schemasaga.observability import logs


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    buffer = io.StringIO()
    root = logging.getLogger()
    level = root.level
    try:
        yield buffer, logging.getLogger("schemasaga.test")
    finally:
        for handler in [h for h in root.handlers if isinstance(h, logs._Handler)]:
            root.removeHandler(handler)
        root.setLevel(level)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql+psycopg://app:s3cret@db:5432/x", "postgresql+psycopg://app:***@db:5432/x"),
        ("mysql+pymysql://root:p%40ss@127.0.0.1/db", "mysql+pymysql://root:***@127.0.0.1/db"),
        ("failed: 'postgresql://u:pw@h/d' refused", "failed: 'postgresql://u:***@h/d' refused"),
        ("host=db user=app password=s3cret dbname=x", "host=db user=app password=*** dbname=x"),
        ("password = 'a b c' host=db", "password = *** host=db"),
        ("postgresql://app@db/x and sqlite:////tmp/a.db", "postgresql://app@db/x and sqlite:////tmp/a.db"),
    ],
)
def test_passwords_are_redacted(text: str, shown: str) -> None:
    assert logs.redact(text) == shown


def test_json_lines_carry_the_bound_ids_and_redact_tracebacks(
    captured: tuple[io.StringIO, logging.Logger],
) -> None:
    buffer, log = captured
    logs.configure(level="DEBUG", log_format="json", stream=buffer)

    async def request() -> None:
        logcontext.request_id.set("req-1")
        logcontext.bind_operation("op-1")
        log.debug("connecting to %s", "postgresql://app:hunter2@db/x")
        try:
            raise RuntimeError("could not reach postgresql://app:hunter2@db/x")
        except RuntimeError:
            log.exception("failed")

    asyncio.run(request())
    log.info("outside")
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    first, second, third = (line for line in lines if line["logger"] == "schemasaga.test")
    assert first["message"] == "connecting to postgresql://app:***@db/x"
    assert first["level"] == "DEBUG" and first["logger"] == "schemasaga.test"
    assert (first["request_id"], first["operation_id"], first["correlation_id"]) == ("req-1", "op-1", "op-1")
    assert "RuntimeError" in second["exception"] and "hunter2" not in second["exception"]
    # The ids were bound in the task's own context: nothing shows outside it.
    assert set(third) == {"time", "level", "logger", "message"}
    assert "hunter2" not in buffer.getvalue()


def test_text_lines_put_the_ids_after_the_message(captured: tuple[io.StringIO, logging.Logger]) -> None:
    buffer, log = captured
    logs.configure(level="INFO", log_format="text", stream=buffer)

    async def job() -> None:
        logcontext.bind_operation("op-2", correlation="corr-2")
        log.info("working")
        log.debug("not shown at INFO")

    asyncio.run(job())
    [line] = [line for line in buffer.getvalue().splitlines() if "schemasaga.test" in line]
    assert line.endswith("INFO schemasaga.test: working [operation_id=op-2 correlation_id=corr-2]")


def test_procrastinate_job_lines_carry_the_jobs_operation(
    captured: tuple[io.StringIO, logging.Logger],
) -> None:
    buffer, _ = captured
    logs.configure(level="INFO", log_format="json", stream=buffer)
    job = {"id": 1, "task_kwargs": {"table_id": "t", "operation_id": "op-3"}}
    logging.getLogger("procrastinate.worker").info("Starting job", extra={"action": "start_job", "job": job})
    line = json.loads(buffer.getvalue())
    assert (line["operation_id"], line["correlation_id"]) == ("op-3", "op-3")


def test_configuring_again_replaces_the_handler(captured: tuple[io.StringIO, logging.Logger]) -> None:
    buffer, log = captured
    logs.configure(level="INFO", log_format="json", stream=io.StringIO())
    logs.configure(level="INFO", log_format="json", stream=buffer)
    log.info("once")
    assert len(buffer.getvalue().splitlines()) == 1


def test_the_default_format_is_json_unless_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.default_format(io.StringIO()) == "json"
    assert logs.default_format(Terminal()) == "text"


def test_psycopgs_ignored_error_line_is_dropped_only_for_an_aborted_pipeline(
    captured: tuple[io.StringIO, logging.Logger],
) -> None:
    buffer, _ = captured
    logs.configure(level="DEBUG", log_format="text", stream=buffer)
    driver = logging.getLogger("psycopg")
    driver.warning(
        "error ignored terminating %r: %s", "<pipeline>", psycopg.errors.PipelineAborted("aborted")
    )
    driver.warning(
        "error ignored terminating %r: %s", "<pipeline>", psycopg.OperationalError("server closed")
    )
    text = buffer.getvalue()
    assert "aborted" not in text
    assert "server closed" in text
