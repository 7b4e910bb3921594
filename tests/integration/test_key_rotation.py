"""Key rotation with a key file never leaves a stored URL that the file cannot decrypt: whatever fails,
wherever it fails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from schemasaga.bootstrap import Container
from schemasaga.config import Settings
from schemasaga.secrets import SecretBox, generate_key, read_key_file, write_key_file
from schemasaga.services import keys as keys_module
from schemasaga.services.keys import rotate_keys
from tests.integration.conftest import TEST_SECRET_KEY, running_service


class Boom(Exception):
    pass


@pytest.fixture
async def registry(
    settings_factory: Callable[..., Settings], byodb_sqlite_url: str, second_sqlite_url: str
) -> AsyncIterator[Container]:
    async with running_service(settings_factory(byodb_sqlite_url), worker=False) as c:
        await c.databases.register(name="analytics", url=second_sqlite_url, metadata={})
        yield c


async def stored(c: Container) -> list[str]:
    async with c.pool.connection() as conn:
        rows = await (await conn.execute("SELECT url_encrypted FROM rm_databases ORDER BY name")).fetchall()
    return [r[0] for r in rows]


async def assert_file_decrypts_everything(c: Container, key_file: Path) -> None:
    box = SecretBox(read_key_file(key_file))
    urls = await stored(c)
    assert len(urls) == 2
    for url in urls:
        assert box.can_decrypt(url), f"the key file {box!r} cannot decrypt a stored URL"


def failing_write(*, on_call: int) -> Callable[..., None]:
    calls = 0

    def write(path: Path, keys: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == on_call:
            raise Boom(f"write #{calls} failed (disk full)")
        write_key_file(path, keys)

    return write


async def test_a_rotation_that_completes_leaves_only_the_new_key(registry: Container, tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    write_key_file(key_file, [TEST_SECRET_KEY])
    new_key = generate_key()
    rotation = await rotate_keys(
        registry.databases, current=registry.secrets, new_key=new_key, key_file=key_file, metadata={}
    )
    assert sorted(rotation.databases) == ["analytics", "default"]
    assert read_key_file(key_file) == [new_key]
    await assert_file_decrypts_everything(registry, key_file)


@pytest.mark.parametrize(
    "where",
    [
        "first key file write",  # nothing changed yet
        "re-encryption",  # the core transaction fails: the URLs stay under the old key
        "last key file write",  # the URLs are under the new key, the file still holds both
    ],
)
async def test_a_rotation_that_fails_leaves_every_url_decryptable(
    registry: Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    key_file = tmp_path / "secret.key"
    write_key_file(key_file, [TEST_SECRET_KEY])
    if where == "first key file write":
        monkeypatch.setattr(keys_module, "write_key_file", failing_write(on_call=1))
    elif where == "last key file write":
        monkeypatch.setattr(keys_module, "write_key_file", failing_write(on_call=2))
    else:

        async def core_lost(*_: object, **__: object) -> None:
            raise Boom("the core database went away")

        monkeypatch.setattr(registry.databases, "rotate", core_lost)
    new_key = generate_key()
    with pytest.raises(Boom):
        await rotate_keys(
            registry.databases, current=registry.secrets, new_key=new_key, key_file=key_file, metadata={}
        )
    await assert_file_decrypts_everything(registry, key_file)
    under = "new" if where == "last key file write" else "old"
    assert all(
        SecretBox([{"new": new_key, "old": TEST_SECRET_KEY}[under]]).can_decrypt(u)
        for u in await stored(registry)
    )
    expected = [TEST_SECRET_KEY] if where == "first key file write" else [new_key, TEST_SECRET_KEY]
    assert read_key_file(key_file) == expected


async def test_a_rotation_re_encrypts_each_webhook_url_and_secret_with_the_new_key(
    settings_factory: Callable[..., Settings], byodb_sqlite_url: str, tmp_path: Path
) -> None:
    settings = settings_factory(byodb_sqlite_url, webhook_allowed_hosts="127.0.0.1")
    async with running_service(settings, worker=False) as c:
        made = await c.webhooks.create(
            url="http://127.0.0.1:9/hook", events=["*"], secret=None, metadata={"actor": "test"}
        )
        key_file = tmp_path / "secret.key"
        write_key_file(key_file, [TEST_SECRET_KEY])
        new_key = generate_key()
        rotation = await rotate_keys(
            c.databases,
            current=c.secrets,
            new_key=new_key,
            key_file=key_file,
            metadata={},
            webhooks=c.webhooks,
        )
        assert rotation.webhooks == [made.webhook.webhook_id]
        only_new = SecretBox([new_key])
        async with c.pool.connection() as conn:
            row = await (
                await conn.execute("SELECT url_encrypted, secret_encrypted, key_id FROM rm_webhooks")
            ).fetchone()
            types = await (
                await conn.execute(
                    "SELECT event_type FROM event_store_events WHERE event_type LIKE 'Webhook%' "
                    "ORDER BY position"
                )
            ).fetchall()
        assert row is not None
        assert only_new.decrypt(row[0]) == "http://127.0.0.1:9/hook"
        assert only_new.decrypt(row[1]) == made.secret
        assert row[2] == only_new.key_id
        assert [t for (t,) in types] == ["WebhookCreated", "WebhookSecretRotated"]
        # The commands go on with the new key: the webhook still reads.
        assert (await c.webhooks.get(made.webhook.webhook_id)).url == "http://127.0.0.1:9/hook"
