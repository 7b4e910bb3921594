"""The files SQLite keeps beside a database, and registrations that would share them.

SQLite writes ``<db>-journal`` (rollback journal), ``<db>-wal`` and ``<db>-shm`` (write-ahead log and its
index) next to a database file. Registered as a database of its own, such a file is overwritten by both:
each destroys the other's data. A name ending so is refused by the registration policy; this module finds
the same file under another name (a hard link, a bind mount), by device and inode.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

COMPANION_SUFFIXES = ("-journal", "-wal", "-shm")


def shared_with(path: str, registered: Mapping[str, str]) -> str | None:
    """The name of the registered SQLite database (``registered``: name to file path) that ``path`` would
    share a file with: ``path`` is one of its companions, or it is one of ``path``'s. Blocking (stat)."""
    for name, database in registered.items():
        for suffix in COMPANION_SUFFIXES:
            if _same_file(path, database + suffix) or _same_file(path + suffix, database):
                return name
    return None


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file now
        return False
