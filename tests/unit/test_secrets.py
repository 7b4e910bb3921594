"""The secrets module: keys, the key file, encryption with rotation, refusing to start without a key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from schemasaga.byodb.urls import parse_database_url, redact
from schemasaga.config import Settings
from schemasaga.secrets import (
    KEY_FILE_NAME,
    SecretBox,
    SecretsError,
    generate_key,
    key_id,
    load_or_create_key_file,
    parse_keys,
    resolve_secret_box,
    write_key_file,
)

URL = "mysql+pymysql://app:S3cr3t-pa55word-xyz@db.example:3306/analytics"


def test_key_file_is_created_with_mode_0600_and_reused(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # even a permissive umask must not widen it
    try:
        path = tmp_path / "data" / KEY_FILE_NAME
        first = load_or_create_key_file(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 1
    assert load_or_create_key_file(path) == first


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    write_key_file(path, [generate_key()])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    with pytest.raises(SecretsError, match="chmod 600"):
        load_or_create_key_file(path)


def test_embedded_default_without_key_uses_the_data_dir_key_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=None, secret_key=None)
    box = resolve_secret_box(settings)
    assert (tmp_path / KEY_FILE_NAME).exists()
    assert resolve_secret_box(settings).key_id == box.key_id


def test_core_database_url_without_key_refuses_with_a_clear_message(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="postgresql://core/x", secret_key=None)
    with pytest.raises(SecretsError, match="SCHEMASAGA_SECRET_KEY must be set"):
        resolve_secret_box(settings)
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_configured_key_wins_and_may_list_several(tmp_path: Path) -> None:
    new, old = generate_key(), generate_key()
    settings = Settings(data_dir=tmp_path, database_url="postgresql://core/x", secret_key=f"{new}, {old}")
    box = resolve_secret_box(settings)
    assert box.keys == [new, old] and box.key_id == key_id(new)


def test_malformed_key_is_refused() -> None:
    with pytest.raises(SecretsError, match="not a Fernet key"):
        parse_keys("not-a-key")
    settings = Settings(database_url="postgresql://core/x", secret_key="short")
    with pytest.raises(SecretsError, match="SCHEMASAGA_SECRET_KEY"):
        resolve_secret_box(settings)


def test_round_trip_and_wrong_key_gives_a_clear_error() -> None:
    box = SecretBox([generate_key()])
    token = box.encrypt(URL)
    assert "S3cr3t" not in token and box.decrypt(token) == URL
    other = SecretBox([generate_key()])
    with pytest.raises(SecretsError, match="cannot be decrypted with the configured secret key") as info:
        other.decrypt(token)
    assert "S3cr3t" not in str(info.value)
    assert not other.can_decrypt(token)
    with pytest.raises(SecretsError):
        box.decrypt("garbage")


def test_rotation_box_reads_old_and_writes_new() -> None:
    old = SecretBox([generate_key()])
    token = old.encrypt(URL)
    new_key = generate_key()
    rotating = old.with_primary(new_key)
    assert rotating.key_id == key_id(new_key) and rotating.decrypt(token) == URL
    again = rotating.encrypt(URL)
    assert SecretBox([new_key]).decrypt(again) == URL
    assert not old.can_decrypt(again)


def test_repr_never_shows_keys_or_urls() -> None:
    key = generate_key()
    assert key not in repr(SecretBox([key]))
    assert "S3cr3t" not in repr(parse_database_url(URL))


def test_redact_hides_password_in_any_spelling() -> None:
    url = "postgresql+psycopg://u:p%40ss%2Fw0rd@h/d"
    text = f"failed for {url}: password p@ss/w0rd (p%40ss%2Fw0rd)"
    cleaned = redact(text, url)
    assert "p@ss/w0rd" not in cleaned and "p%40ss%2Fw0rd" not in cleaned


def test_display_parts_hold_no_secret() -> None:
    parsed = parse_database_url(URL + "?ssl_key=/x", from_api=False)
    assert parsed.engine == "mysql"
    assert parsed.display == {
        "driver": "mysql+pymysql",
        "host": "db.example",
        "port": 3306,
        "database": "analytics",
        "username": "app",
    }
