"""SCHEMASAGA_TRASH_RETENTION: seconds, or a number with a unit; 0 turns the trash off."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemasaga.config import Settings
from schemasaga.domain.changes import is_trash_name, trash_name


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7d", 7 * 86400), ("12h", 43200), ("30m", 1800), ("45s", 45), ("0", 0), ("90", 90), ("1.5h", 5400)],
)
def test_the_retention_reads_seconds_or_a_duration(
    value: str, seconds: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHEMASAGA_TRASH_RETENTION", value)
    assert Settings().trash_retention == seconds


def test_the_retention_is_a_week_by_default_and_refuses_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCHEMASAGA_TRASH_RETENTION", raising=False)
    assert Settings().trash_retention == 7 * 86400
    for bad in ("soon", "-1", "xd"):
        monkeypatch.setenv("SCHEMASAGA_TRASH_RETENTION", bad)
        with pytest.raises(ValidationError, match="trash_retention"):
            Settings()


def test_a_trash_name_fits_every_engine_and_is_recognized() -> None:
    name = trash_name("0123456789abcdef0123456789abcdef")
    assert name == "_ssg_trash_0123456789abcdef" and len(name) <= 63
    assert is_trash_name(name) and is_trash_name(name.upper()) and not is_trash_name("people")
