"""Encryption at rest of BYODB credentials (Fernet, from the ``cryptography`` package).

Keys come from ``SCHEMASAGA_SECRET_KEY``: one Fernet key, or several separated by commas. The first key
encrypts; every key decrypts (``MultiFernet``), which is what lets a key be rotated without downtime.
On the embedded default (no ``SCHEMASAGA_DATABASE_URL``) with no key set, the keys live in
``<data_dir>/secret.key`` (one per line, created with mode 0600). With a core database URL and no key the
service refuses to start: a key made up on one machine would not decrypt what another one stored.

Key rotation (``schemasaga secrets rotate``) re-encrypts every stored URL with the new key and records a
``DatabaseCredentialsRotated`` event per database. Events are never rewritten, so the events recorded
before the rotation keep ciphertexts of the old key: destroying the old key makes them unreadable, which
is the point; anyone who still holds the old key can read the credentials of that time, so when a key
leaks, change the database passwords too (and register the new URLs).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from schemasaga.config import Settings

KEY_FILE_NAME = "secret.key"
_SEPARATORS = re.compile(r"[\s,]+")


class SecretsError(Exception):
    """A key is missing, malformed or does not decrypt what is stored; the message says what to do."""


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 of 32 bytes)."""
    return Fernet.generate_key().decode("ascii")


def key_id(key: str) -> str:
    """A short, non-secret fingerprint of a key, recorded next to each ciphertext."""
    return hashlib.sha256(b"schemasaga-key-id:" + key.encode("ascii")).hexdigest()[:12]


def parse_keys(value: str) -> list[str]:
    """The keys of a ``SCHEMASAGA_SECRET_KEY`` value (or key file): separated by commas or whitespace."""
    keys = [k for k in _SEPARATORS.split(value.strip()) if k]
    if not keys:
        raise SecretsError("no secret key given")
    for i, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise SecretsError(
                f"secret key #{i} is not a Fernet key (32 url-safe base64-encoded bytes); "
                "generate one with `schemasaga secrets generate-key`"
            ) from None
    return keys


class SecretBox:
    """Encrypts with the first key, decrypts with any of them."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretsError("no secret key given")
        self.keys = list(parse_keys(",".join(keys)))
        self._fernet = MultiFernet([Fernet(k.encode("ascii")) for k in self.keys])

    def __repr__(self) -> str:  # never the keys
        return f"<SecretBox key_ids={self.key_ids}>"

    @property
    def key_id(self) -> str:
        """The fingerprint of the key that encrypts."""
        return key_id(self.keys[0])

    @property
    def key_ids(self) -> list[str]:
        return [key_id(k) for k in self.keys]

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretsError(
                "stored credentials cannot be decrypted with the configured secret key(s) "
                f"(key ids {', '.join(self.key_ids)}): SCHEMASAGA_SECRET_KEY is not the key they were "
                "encrypted with. Set the right key, or during a rotation both keys ('NEW,OLD')."
            ) from None

    def can_decrypt(self, token: str) -> bool:
        try:
            self.decrypt(token)
        except SecretsError:
            return False
        return True

    def with_primary(self, key: str) -> SecretBox:
        """A box that encrypts with ``key`` and still decrypts with every key of this one."""
        return SecretBox([key, *(k for k in self.keys if k != key)])


def write_key_file(path: Path, keys: Sequence[str]) -> None:
    """Replace the key file atomically; it is created with mode 0600 and never exists with wider rights."""
    parse_keys(",".join(keys))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an umask cannot widen it, but an existing tmp file could be wider
        os.write(fd, ("\n".join(keys) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_key_file(path: Path) -> list[str]:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SecretsError(
            f"key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}` and start again"
        )
    try:
        return parse_keys(path.read_text(encoding="ascii"))
    except SecretsError as exc:
        raise SecretsError(f"key file {path}: {exc}") from None


def load_or_create_key_file(path: Path) -> list[str]:
    """The keys in ``path``, after creating it with a new key (mode 0600) when it does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            try:
                os.write(fd, (generate_key() + "\n").encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
    return read_key_file(path)


def key_file_path(settings: Settings) -> Path:
    return Path(settings.data_dir).expanduser() / KEY_FILE_NAME


def uses_key_file(settings: Settings) -> bool:
    """Whether the keys live in the data dir's key file (embedded default, no key configured)."""
    return settings.secret_key is None and settings.database_url is None


def resolve_secret_box(settings: Settings) -> SecretBox:
    """The keys of this process: ``SCHEMASAGA_SECRET_KEY``, else the data dir's key file on the embedded
    default; with a core database URL and no key, a :class:`SecretsError` that says what to do."""
    if settings.secret_key is not None:
        try:
            return SecretBox(parse_keys(settings.secret_key.get_secret_value()))
        except SecretsError as exc:
            raise SecretsError(f"SCHEMASAGA_SECRET_KEY: {exc}") from None
    if settings.database_url is None:
        return SecretBox(load_or_create_key_file(key_file_path(settings)))
    raise SecretsError(
        "SCHEMASAGA_SECRET_KEY must be set when SCHEMASAGA_DATABASE_URL is: BYODB credentials are stored "
        "encrypted with it, and every process (API replicas, workers) needs the same key. Generate one with "
        "`schemasaga secrets generate-key` and give it to every process."
    )
