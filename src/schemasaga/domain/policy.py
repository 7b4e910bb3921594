"""Where a database registered through the API may live.

Registering a database makes the service connect to a host, or open a file, of the caller's choosing.
Without limits, an API user could make it probe hosts of its private network, or create and change
SQLite files anywhere its user can write. The operator sets the limits:

- ``SCHEMASAGA_BYODB_ALLOWED_HOSTS``: comma-separated hosts a PostgreSQL or MySQL/MariaDB database
  may be on: names (``db.example.com``, case-insensitive), suffixes (``*.example.com``: any
  sub-domain), IP addresses and networks (``10.0.0.0/8``, ``::1``), Unix-socket directories
  (``/var/run/postgresql``). Empty (the default): any host. A name is matched as written in the URL,
  never resolved: a network entry matches only URLs that give an IP address.
- ``SCHEMASAGA_BYODB_ALLOWED_SOCKET_DIRS``: comma-separated directories whose Unix sockets a database
  may be reached through (symbolic links and ``..`` resolved first; a MySQL socket file's directory).
  Empty (the default): none. A socket reaches servers that trust local users (the embedded server
  listens on one, with trust authentication), so it is refused unless the operator names its directory
  here, or, as before this setting, as an entry of the host allow-list.
- ``SCHEMASAGA_SQLITE_DIR``: the directory SQLite files must be in (symbolic links and ``..``
  resolved first). The default is ``<data_dir>/sqlite``. A file named as a SQLite database's journal,
  WAL, shared-memory or super-journal file (``-journal``, ``-wal``, ``-shm``, ``-mjXXXXXXXX``) is
  refused: SQLite writes it on behalf of another database, and the two would destroy each other's data.

The configured default database (``SCHEMASAGA_BYODB_URL``) is the operator's own and is not checked.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from schemasaga.domain.errors import DatabaseNotAllowed, SocketNotAllowed, SqliteCompanionFile

SQLITE_COMPANION = re.compile(r"-(journal|wal|shm|mj[0-9A-Fa-f]{8})$")
"""The endings of the files SQLite keeps beside a database (``x.db-wal``...): never a database."""

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One entry of the allow-list."""

    text: str
    network: IpNetwork | None = None

    @classmethod
    def parse(cls, entry: str) -> HostPattern:
        text = entry.strip().lower().rstrip(".")
        if not text:
            raise ValueError("an empty entry")
        if text.startswith("/"):
            return cls(text.rstrip("/") or "/")
        try:
            return cls(text, ipaddress.ip_network(text.strip("[]"), strict=False))
        except ValueError:
            pass
        if "/" in text:
            raise ValueError(f"{entry.strip()!r} is not an IP network")
        name = text[2:] if text.startswith("*.") else text
        if not name or any(not label or "*" in label for label in name.split(".")):
            raise ValueError(f"{entry.strip()!r} is not a host name, '*.domain', IP address or network")
        return cls(text)

    def matches(self, host: str) -> bool:
        host = host.strip().lower().rstrip(".")
        if self.text.startswith("/"):
            return (host.rstrip("/") or "/") == self.text
        address = _ip(host)
        if self.network is not None:
            return address is not None and address in self.network
        if address is not None:
            return False
        if self.text.startswith("*."):
            return host.endswith(self.text[1:])
        return host == self.text


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def parse_allowed_hosts(value: str) -> tuple[HostPattern, ...]:
    """The allow-list from its comma-separated setting; a malformed entry is a ValueError."""
    return tuple(HostPattern.parse(entry) for entry in value.split(",") if entry.strip())


def parse_socket_dirs(value: str) -> tuple[Path, ...]:
    """The allowed socket directories from their comma-separated setting, resolved; a relative one is a
    ValueError."""
    dirs: list[Path] = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        if not entry.startswith("/"):
            raise ValueError(f"{entry!r} is not an absolute directory")
        dirs.append(Path(entry).resolve())
    return tuple(dirs)


def is_socket(host: str) -> bool:
    """A Unix-socket location (libpq: a directory, or ``@name`` in the abstract namespace)."""
    return host.startswith(("/", "@"))


@dataclass(frozen=True, slots=True)
class RegistrationPolicy:
    allowed_hosts: tuple[HostPattern, ...]
    sqlite_dir: Path
    allowed_socket_dirs: tuple[Path, ...] = ()

    @classmethod
    def build(
        cls, *, allowed_hosts: str, sqlite_dir: Path, allowed_socket_dirs: str = ""
    ) -> RegistrationPolicy:
        return cls(
            parse_allowed_hosts(allowed_hosts),
            sqlite_dir.expanduser().resolve(),
            parse_socket_dirs(allowed_socket_dirs),
        )

    def check(self, *, engine: str, host: str | None, sqlite_path: str | None) -> None:
        """Raise :class:`DatabaseNotAllowed` unless a database of ``engine`` at ``host`` (or, for
        SQLite, in the file ``sqlite_path``) may be registered."""
        if engine == "sqlite":
            path = Path(sqlite_path or "").resolve()
            if not path.is_relative_to(self.sqlite_dir):
                raise DatabaseNotAllowed(
                    f"SQLite databases must be files in {self.sqlite_dir} (SCHEMASAGA_SQLITE_DIR); "
                    f"{path} is not"
                )
            if SQLITE_COMPANION.search(path.name):
                raise SqliteCompanionFile(
                    f"{path.name} is named as the journal, WAL or shared-memory file SQLite keeps beside a "
                    "database, not a database: register the database's own file"
                )
            return
        if host is not None and is_socket(host):
            self._check_socket(engine, host)
            return
        if not self.allowed_hosts:
            return
        if host is None or not any(p.matches(host) for p in self.allowed_hosts):
            # The list itself stays the operator's: it may name hosts the caller should not learn.
            raise DatabaseNotAllowed(
                f"host {host!r} is not one this service may connect to (SCHEMASAGA_BYODB_ALLOWED_HOSTS)"
            )

    def _check_socket(self, engine: str, host: str) -> None:
        if host.startswith("/"):
            # libpq names the socket's directory; PyMySQL the socket file itself.
            directory = (Path(host) if engine == "postgresql" else Path(host).parent).resolve()
            if directory in self.allowed_socket_dirs:
                return
            if any(p.text.startswith("/") and p.matches(host) for p in self.allowed_hosts):
                return  # a socket entry of the host allow-list: allowed explicitly too
        raise SocketNotAllowed(
            "Unix-socket connections are refused unless the operator allows the socket's directory "
            "(SCHEMASAGA_BYODB_ALLOWED_SOCKET_DIRS): register the database by its network address"
        )
