"""Key rotation: every stored BYODB URL encrypted again with a new key, without ever leaving one that no
key at hand can decrypt.

With a key file (the embedded default), the order is what makes it safe: the file first holds the new
key *and* the old ones, then the URLs are re-encrypted in one transaction, and only then does the file
lose the old keys. A crash or a failed write at any point leaves a file that decrypts every URL: before
the commit the URLs are under an old key the file still holds, after it under the new key it holds too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from schemasaga.secrets import SecretBox, write_key_file
from schemasaga.services.databases import DatabaseCommands
from schemasaga.services.webhooks import WebhookCommands


@dataclass(frozen=True, slots=True)
class Rotation:
    key_id: str
    databases: list[str]
    webhooks: list[UUID] = field(default_factory=list)


async def rotate_keys(
    databases: DatabaseCommands,
    *,
    current: SecretBox,
    new_key: str,
    key_file: Path | None,
    metadata: Mapping[str, Any],
    webhooks: WebhookCommands | None = None,
) -> Rotation:
    """Re-encrypt every stored URL (and every webhook's URL and secret) with ``new_key`` (``current`` must
    decrypt them all); with a ``key_file``, keep it able to decrypt every one at each instant, then leave
    only the new key in it."""
    new = current.with_primary(new_key)
    if key_file is not None:
        write_key_file(key_file, new.keys)
    names = await databases.rotate(new, metadata=metadata)
    hooks = [] if webhooks is None else await webhooks.rotate(new, metadata=metadata)
    if key_file is not None:
        write_key_file(key_file, [new_key])
    return Rotation(key_id=new.key_id, databases=names, webhooks=hooks)
