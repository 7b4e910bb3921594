"""A consumer of the live feed, run as its own process by test_feed.py: it appends ``<position> <type>``
per event to a file, one write per line, resuming after the last complete line it finds there (the
client sends it as ``Last-Event-ID``). Killed at any moment, it loses at most a line it had not finished
writing, which it then gets again."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from schemasaga.client import Client


def resume_after(path: Path) -> int | None:
    """The position of the last complete line; a torn last line (killed mid-write) is cut off."""
    if not path.exists():
        return None
    text = path.read_bytes().decode()
    complete, _, torn = text.rpartition("\n")
    if torn:
        with path.open("r+b") as f:
            f.truncate(len(complete) + 1 if complete else 0)
    lines = complete.splitlines()
    return int(lines[-1].split()[0]) if lines else None


def main(url: str, out: str) -> None:
    path = Path(out)
    after = resume_after(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with Client(url) as client:
        for event in client.events.stream(after=after):
            os.write(fd, f"{event.position} {event.event_type}\n".encode())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
