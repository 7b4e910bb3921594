"""Readiness: the checks ``GET /readyz`` runs, each passed or failed with why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str | None = None
