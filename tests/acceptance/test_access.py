"""The real processes under ``SCHEMASAGA_AUTH=required``: ``schemasaga tokens create`` prints a token
that the running server then accepts, ``serve`` says at start which mode is in force, a request without
a token is refused, one with another ``Host`` too, and a revoked token stops working at once."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.acceptance.conftest import CLI, Spawn, start_server

pytestmark = pytest.mark.acceptance


def test_a_token_made_by_the_cli_opens_the_server_until_revoked(
    service_env: dict[str, str], procs: Spawn
) -> None:
    env = {**service_env, "SCHEMASAGA_AUTH": "required"}
    server, base = start_server(procs, env, "--no-worker")
    made = subprocess.run(
        [CLI, "tokens", "create", "--name", "ci", "--scope", "write"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.splitlines()[-1]
    assert token.startswith("ssg_") and made.stdout.count(token) == 1

    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/healthz").status_code == 200  # open for probes
        refused = client.post("/table/create", json={"name": "no_token"})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        mine = {"Authorization": f"Bearer {token}"}
        r = client.post("/table/create", json={"name": "with_token"}, headers=mine)
        assert r.status_code == 200, r.text
        assert (
            client.post("/v1/databases", json={"name": "x", "url": "sqlite:///x"}, headers=mine).status_code
            == 403
        )
        assert client.get("/healthz", headers={"Host": "rebound.example"}).status_code == 400

        revoked = subprocess.run(
            [CLI, "tokens", "revoke", "ci"], env=env, capture_output=True, text=True, timeout=60
        )
        assert revoked.returncode == 0, revoked.stderr
        assert client.get("/v1/tables", headers=mine).status_code == 401

    assert "access: tokens required (SCHEMASAGA_AUTH=required)" in server.stderr()
    assert "access: Host headers answered: 127.0.0.1, ::1, localhost" in server.stderr()
    assert token.rsplit("_", 1)[1] not in server.stderr()
