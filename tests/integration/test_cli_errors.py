"""Mistakes an operator can make end a command with one clear line and exit status 2, not a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import TEST_SECRET_KEY


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMASAGA_")}
    return subprocess.run(
        [sys.executable, "-m", "schemasaga.cli", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused(out: subprocess.CompletedProcess[str], *words: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    for word in words:
        assert word in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"SCHEMASAGA_PORT": "abc"}, ("invalid settings", "SCHEMASAGA_PORT")),
        ({"SCHEMASAGA_PORT": "99999"}, ("invalid settings", "SCHEMASAGA_PORT")),
        ({"SCHEMASAGA_LOG_LEVEL": "verbose"}, ("invalid settings", "SCHEMASAGA_LOG_LEVEL")),
        ({"SCHEMASAGA_LOG_FORMAT": "xml"}, ("invalid settings", "SCHEMASAGA_LOG_FORMAT")),
        ({"SCHEMASAGA_WORKER_CONCURRENCY": "0"}, ("invalid settings", "SCHEMASAGA_WORKER_CONCURRENCY")),
        ({"SCHEMASAGA_BYODB_ALLOWED_HOSTS": "10.0.0.0/33"}, ("invalid settings", "10.0.0.0/33")),
    ],
)
def test_bad_settings(env: dict[str, str], words: tuple[str, ...]) -> None:
    assert_refused(cli("verify", **env), *words)


def test_bad_flags() -> None:
    for args in (["worker", "--concurrency", "0"], ["serve", "--port", "99999"]):
        out = cli(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr


def test_an_unreachable_core_database() -> None:
    env = {
        "SCHEMASAGA_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing",
        "SCHEMASAGA_BYODB_URL": "postgresql+psycopg://nobody@127.0.0.1:1/nothing",
        "SCHEMASAGA_SECRET_KEY": TEST_SECRET_KEY,
    }
    for args in (
        ["verify"],
        ["drift"],
        ["db", "upgrade"],
        ["events", "show", "6f1c1c1e-0000-4000-8000-000000000000"],
    ):
        assert_refused(cli(*args, **env), "the core database cannot be reached")


def test_a_core_database_without_the_schema(empty_pg_db: str) -> None:
    env = {
        "SCHEMASAGA_DATABASE_URL": empty_pg_db,
        "SCHEMASAGA_BYODB_URL": "sqlite:////tmp/never-used.db",
        "SCHEMASAGA_SECRET_KEY": TEST_SECRET_KEY,
    }
    assert_refused(cli("verify", **env), "schemasaga db upgrade")


def test_db_upgrade_needs_only_the_core_database(empty_pg_db: str) -> None:
    out = cli("db", "upgrade", SCHEMASAGA_DATABASE_URL=empty_pg_db)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "applied: schema.sql, procrastinate" in out.stdout
    again = cli("db", "upgrade", SCHEMASAGA_DATABASE_URL=empty_pg_db)
    assert again.returncode == 0 and "up to date" in again.stdout, again.stdout + again.stderr


@pytest.mark.parametrize(
    ("env", "words"),
    [
        # A core database URL and no key: credentials could not be stored or read.
        ({"SCHEMASAGA_BYODB_URL": "sqlite:////tmp/never-used.db"}, ("SCHEMASAGA_SECRET_KEY must be set",)),
        # A core database URL and no default database.
        ({"SCHEMASAGA_SECRET_KEY": TEST_SECRET_KEY}, ("SCHEMASAGA_BYODB_URL must be set",)),
        # A default database URL that cannot be used.
        (
            {
                "SCHEMASAGA_SECRET_KEY": TEST_SECRET_KEY,
                "SCHEMASAGA_BYODB_URL": "oracle://scott:tiger@db/orcl",
            },
            ("SCHEMASAGA_BYODB_URL", "unsupported database driver"),
        ),
    ],
)
def test_settings_that_cannot_be_used_exit_2_not_1(
    core_db: str, env: dict[str, str], words: tuple[str, ...]
) -> None:
    # 1 is what verify and drift answer for a divergence: a configuration mistake must not look like one.
    for command in (["verify"], ["drift"]):
        out = cli(*command, SCHEMASAGA_DATABASE_URL=core_db, **env)
        assert_refused(out, *words)
        assert "tiger" not in out.stderr


def test_a_metrics_directory_that_cannot_be_used(core_db: str, tmp_path: Path) -> None:
    env = {
        "SCHEMASAGA_DATABASE_URL": core_db,
        "SCHEMASAGA_BYODB_URL": f"sqlite:///{tmp_path / 'b.db'}",
        "SCHEMASAGA_SECRET_KEY": TEST_SECRET_KEY,
        "SCHEMASAGA_SQLITE_DIR": str(tmp_path),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "missing"),
    }
    for args in (["worker"], ["serve", "--port", "1"]):
        assert_refused(cli(*args, **env), "PROMETHEUS_MULTIPROC_DIR", "is not a directory")


def test_tracing_asked_for_without_the_extra(core_db: str, tmp_path: Path) -> None:
    try:
        import opentelemetry.exporter.otlp.proto.http  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the tracing extra is installed")
    env = {
        "SCHEMASAGA_DATABASE_URL": core_db,
        "SCHEMASAGA_BYODB_URL": f"sqlite:///{tmp_path / 'b.db'}",
        "SCHEMASAGA_SECRET_KEY": TEST_SECRET_KEY,
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
    }
    assert_refused(cli("worker", **env), "schemasaga[tracing]")


def test_a_worker_metrics_address_that_cannot_be_used() -> None:
    # Refused before the core database is looked for (none is configured) and before any name lookup
    # (the other malformed addresses: tests/unit/test_access_rules.py).
    out = cli("worker", SCHEMASAGA_WORKER_METRICS_LISTEN="metrics.example.com:9464")
    assert_refused(out, "SCHEMASAGA_WORKER_METRICS_LISTEN", "'metrics.example.com' is not an IP address")
    # Without PROMETHEUS_MULTIPROC_DIR, each worker answers its own figures: a taken port is refused.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_refused(
            cli("worker", "--metrics-listen", f"127.0.0.1:{port}"),
            f"cannot listen on http://127.0.0.1:{port}: Address already in use",
        )
